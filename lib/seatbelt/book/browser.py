"""Open the rendered book in headless Chromium and check what a reader would see.

Every page of the toc must load, show every figure its executed notebook made (an ``img``
whose source is inline data or a file that exists and is not empty), and show no Python
traceback or error output. Every chapter but the scorecard must have at least one figure.

Chromium is Debian's ``chromium`` package (never a downloaded browser build); ``make book``
installs it when missing. This check is part of ``make book`` and not of ``make test``:
installing a browser in every CI run would cost more than the whole test suite.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse

import nbformat

from . import toc
from .runner import SCORECARD

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync")
IMAGE_TYPES = ("image/png", "image/jpeg", "image/svg+xml", "image/gif")
ERROR_MARKERS = ("Traceback (most recent call last)", "PapermillExecutionError")


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        raise FileNotFoundError("no chromium on PATH: install Debian's package (apt-get install chromium) or run `make book`, which does.")
    return path


def dump_dom(url: str, profile_dir: Path, timeout: float = 120) -> str:
    """The DOM of ``url`` after Chromium has loaded it."""
    cmd = [chromium(), *FLAGS, f"--user-data-dir={profile_dir}", "--dump-dom", url]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"chromium could not load {url} ({done.returncode}): {done.stderr[-2000:]}")
    return done.stdout


class _Page(HTMLParser):
    """Collects image sources, the classes of output blocks, and the visible text."""

    def __init__(self):
        super().__init__()
        self.images: list[str] = []
        self.classes: set[str] = set()
        self.text: list[str] = []
        self.has_main = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.classes.update((attrs.get("class") or "").split())
        if tag == "img" and attrs.get("src"):
            self.images.append(attrs["src"])
        if tag in ("main", "article"):
            self.has_main = True

    def handle_data(self, data):
        self.text.append(data)


def notebook_figures(path: Path) -> int:
    """How many image outputs an executed notebook holds."""
    nb = nbformat.read(path, as_version=4)
    return sum(any(t in out.get("data", {}) for t in IMAGE_TYPES)
               for cell in nb.cells if cell.cell_type == "code" for out in cell.get("outputs", ()))


def _figure_ok(src: str, page: Path) -> bool | None:
    """True for a figure that displays, False for a broken one, None for a non-figure image."""
    if src.startswith("data:image"):
        return True
    parsed = urlparse(src)
    if parsed.scheme not in ("", "file") or "_images/" not in parsed.path:
        return None
    target = (page.parent / unquote(parsed.path)).resolve() if parsed.scheme == "" else Path(unquote(parsed.path))
    return target.is_file() and target.stat().st_size > 0


def check_page(dom: str, page: Path, figures: int | None, entry: str) -> list[str]:
    """Problems of one rendered page, given the DOM Chromium built and the figures its
    notebook made (None for a page that is not a notebook)."""
    parsed = _Page()
    parsed.feed(dom)
    problems = []
    if not parsed.has_main:
        problems.append(f"{entry}: the page did not load (no main content in the DOM)")
    text = "".join(parsed.text)
    for marker in ERROR_MARKERS:
        if marker in text:
            problems.append(f"{entry}: shows {marker!r}")
    if "traceback" in parsed.classes or "output_error" in parsed.classes:
        problems.append(f"{entry}: shows an error output")
    shown = [ok for ok in (_figure_ok(s, page) for s in parsed.images) if ok is not None]
    if not all(shown):
        problems.append(f"{entry}: {shown.count(False)} figure(s) point to missing or empty files")
    if figures is not None and sum(shown) < figures:
        problems.append(f"{entry}: shows {sum(shown)} of the {figures} figures its notebook made")
    if entry != SCORECARD and figures == 0:
        problems.append(f"{entry}: a chapter without a figure")
    return problems


def check_book(root: Path, site: Path, html: Path) -> list[str]:
    """Problems of every page of the toc, as rendered in ``html`` from the notebooks in ``site``."""
    problems = []
    with tempfile.TemporaryDirectory(prefix="seatbelt-chromium-") as profile_dir:
        for entry in toc.entries(root):
            page = html / f"{entry}.html"
            if not page.is_file():
                problems.append(f"{entry}: no rendered page {page}")
                continue
            source, figures = toc.page(root, entry), None
            if source is not None and source.suffix == ".ipynb":
                executed = site / source.relative_to(root)
                if not executed.is_file():
                    problems.append(f"{entry}: no executed notebook {executed}")
                    continue
                figures = notebook_figures(executed)
            problems += check_page(dump_dom(page.as_uri(), Path(profile_dir)), page, figures, entry)
    return problems
