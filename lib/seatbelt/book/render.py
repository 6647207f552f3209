"""Render the executed notebooks to HTML with Jupyter Book 1.x, failing on any warning.

Notebooks are never executed here (``execute_notebooks: off`` in ``_config.yml``): they were
executed by the runner, and their outputs (figures, glued numbers) are rendered as they are.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from .runner import build_dir, stage_site


class RenderError(RuntimeError):
    """Jupyter Book reported an error or a warning."""


def html_dir(root: Path, profile: str) -> Path:
    return build_dir(root, profile) / "html"


def render(root: Path, profile: str) -> Path:
    """Build the HTML of ``profile``'s executed book; return the folder holding index.html."""
    site = stage_site(root, profile)
    work = build_dir(root, profile) / "render"  # Jupyter Book writes <path-output>/_build/html
    cmd = [sys.executable, "-c", "from jupyter_book.cli.main import main; main()", "build", str(site),
           "--path-output", str(work), "--all", "-W", "--keep-going"]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RenderError(f"jupyter-book build failed ({done.returncode}):\n{done.stdout[-6000:]}\n{done.stderr[-6000:]}")
    html = html_dir(root, profile)
    shutil.rmtree(html, ignore_errors=True)
    shutil.move(work / "_build" / "html", html)
    return html
