"""Render the executed notebooks to HTML with Jupyter Book 1.x, failing on any warning.

Notebooks are never executed here (``execute_notebooks: off`` in ``_config.yml``): they were
executed by the runner, and their outputs (figures, glued numbers) are rendered as they are.
Only notebooks whose run succeeded are in ``site/`` (:mod:`seatbelt.book.layout`); a chapter
that has never run successfully stops the rendering, naming it.

This module is also the book's Sphinx extension (``extra_extensions`` in ``_config.yml``), so
that the pages work offline and fit the reader's screen:

- MathJax 3 is served from the site itself (``_static/mathjax/``), copied from the PyPI package
  ``sphinx-mathjax-offline`` (MathJax 3.2.2's browser build), instead of loaded from a CDN.
  Only what ``tex-chtml.js`` loads is copied: the combined component itself and the parts it
  loads on demand (TeX extensions, CHTML fonts, the menu, accessibility).
- ``_static/seatbelt.css`` wraps long code lines inside their box and keeps tables inside the
  text column (a wide one scrolls within it rather than running past the page edge).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, distribution
from pathlib import Path

from . import toc
from .layout import build_dir, site_dir


class RenderError(RuntimeError):
    """A chapter has no good run to render, or Jupyter Book reported an error or a warning."""


def html_dir(root: Path, profile: str) -> Path:
    return build_dir(root, profile) / "html"


def stage_site(root: Path, profile: str) -> Path:
    """Copy the book's config, toc and non-notebook pages beside the executed notebooks."""
    site = site_dir(root, profile)
    missing = [
        entry
        for entry, source in toc.notebooks(root)
        if not (site / source.relative_to(root)).is_file()
    ]
    if missing:
        raise RenderError(
            f"not rendered: {', '.join(missing)} never ran successfully at profile "
            f"{profile!r}; run `python -m seatbelt.book build --profile {profile}`."
        )
    site.mkdir(parents=True, exist_ok=True)
    for name in ("_config.yml", toc.TOC):
        shutil.copy2(root / name, site / name)
    for entry in toc.entries(root):
        page = toc.page(root, entry)
        if page is not None and page.suffix != ".ipynb":
            (site / page.relative_to(root)).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(page, site / page.relative_to(root))
    return site


def render(root: Path, profile: str) -> Path:
    """Build the HTML of ``profile``'s executed book; return the folder holding index.html."""
    site = stage_site(root, profile)
    work = build_dir(root, profile) / "render"  # Jupyter Book writes <path-output>/_build/html
    cmd = [
        sys.executable,
        "-c",
        "from jupyter_book.cli.main import main; main()",
        "build",
        str(site),
        "--path-output",
        str(work),
        "--all",
        "-W",
        "--keep-going",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RenderError(
            "jupyter-book build failed "
            f"({done.returncode}):\n{done.stdout[-6000:]}\n{done.stderr[-6000:]}"
        )
    html = html_dir(root, profile)
    shutil.rmtree(html, ignore_errors=True)
    shutil.move(work / "_build" / "html", html)
    return html


# --- the Sphinx extension ---------------------------------------------------------------------

MATHJAX_PACKAGE = "sphinx-mathjax-offline"
MATHJAX_ENTRY = (
    "tex-chtml.js"  # TeX in, HTML-CSS out: the component Sphinx's default loads from a CDN
)
# What tex-chtml.js loads on demand; the other combined components (tex-svg.js, ...) are not needed.
MATHJAX_PARTS = (MATHJAX_ENTRY, "input", "output/chtml", "ui", "a11y", "adaptors", "sre")

CSS = """\
/* seatbelt: the book's own rules (written by seatbelt.book.render). */
/* Code: cells' sources are wrapped at 100 characters, and a 100-character line fits its box at a
   1280-pixel window (narrower sidebars, a smaller code font); a longer line (or output) wraps. */
:root { --pst-sidebar-secondary: 14rem; }
@media (min-width: 992px) { .bd-sidebar-primary { flex-basis: 17%; } }
article div.highlight pre, div.cell_output pre { white-space: pre-wrap; overflow-wrap: anywhere; }
article div.highlight pre { font-size: 0.75em; padding: 0.75rem; }
/* Tables never run past the text column: text wraps, and a table still too wide scrolls \
inside it. */
div.cell_output table, article table.table { display: block; max-width: 100%; overflow-x: auto; }
div.cell_output table td, div.cell_output table th { overflow-wrap: anywhere; vertical-align: top; }
/* Figure captions read as captions. */
figure figcaption { font-size: 0.9em; text-align: left; }
"""


def mathjax_assets() -> Path:
    """The folder of MathJax's browser build inside the installed ``sphinx-mathjax-offline``."""
    try:
        folder = Path(
            distribution(MATHJAX_PACKAGE).locate_file(f"{MATHJAX_PACKAGE}/static/mathjax")
        )
    except PackageNotFoundError:
        folder = None
    if folder is None or not (folder / MATHJAX_ENTRY).is_file():
        raise RenderError(
            f"MathJax's offline files are missing: install {MATHJAX_PACKAGE} "
            "(`make env`, or pip install -r requirements.txt -c constraints.txt)."
        )
    return folder


def _config_inited(app, config) -> None:
    mathjax_assets()  # fail at the start of the build, not after it
    config.mathjax_path = f"mathjax/{MATHJAX_ENTRY}"  # relative to _static
    config.html_copy_source = False  # _sources would publish the executed notebooks (machine paths)


def _build_finished(app, exception) -> None:
    if exception is not None or app.builder.format != "html":
        return
    static = Path(app.outdir) / "_static"
    source = mathjax_assets()
    for part in MATHJAX_PARTS:
        if (source / part).is_dir():
            shutil.copytree(source / part, static / "mathjax" / part, dirs_exist_ok=True)
        else:
            (static / "mathjax" / part).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source / part, static / "mathjax" / part)
    (static / "seatbelt.css").write_text(CSS)


def setup(app):
    """Sphinx's entry point: ``sphinx: extra_extensions: [seatbelt.book.render]``."""
    app.connect("config-inited", _config_inited)
    app.connect("build-finished", _build_finished)
    app.add_css_file("seatbelt.css")
    return {"parallel_read_safe": True, "parallel_write_safe": True}
