"""The page check: what a reader would see on each rendered page, and what counts as a problem.

Every page of the toc must:

- load, and show no Python traceback or error output;
- show every figure its executed notebook made (an ``img`` whose source is inline data or a
  file that exists and is not empty), each inside a ``<figure>`` with a caption; every chapter
  but the scorecard has at least one figure;
- have its maths typeset: every ``math`` element holds MathJax's output, and no raw ``\\(``,
  ``\\[``, ``$$`` or TeX command (``\\lambda``) is left in the visible text (code blocks aside):
  a ``$`` that MyST did not pair, e.g. inline maths whose second line starts with ``+`` and so
  became a list item, leaves its TeX as text;
- make no request outside the site: every URL the page asks for while loading is a file under
  the site's folder (or inline data); a file under it that fails to load is a problem too;
- keep its tables, code boxes and displayed equations within the text column at a
  1280-pixel-wide window;
- contain none of the build machine's absolute paths (:func:`machine_paths`).

The browser itself (finding Chromium, launching it offline, the DevTools protocol, recording
requests) is :mod:`seatbelt.book.devtools`; this module only says what to read from a page
(:data:`SETTLE`, run after the load event: it waits for MathJax's first typesetting, then reads
the DOM and measures widths) and what in it is a problem. :func:`find_chromium` returns None
when there is no browser, and the book is then built without this check. It is not part of
``make test``.
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse

import nbformat

from . import devtools, toc
from .devtools import HOW_TO_GET_ONE, chromium, find_chromium  # noqa: F401  (the callers' names)
from .layout import SCORECARD

WIDTH, HEIGHT = 1280, 900  # the window the layout is checked at: a laptop screen
IMAGE_TYPES = ("image/png", "image/jpeg", "image/svg+xml", "image/gif")
ERROR_MARKERS = ("Traceback (most recent call last)", "PapermillExecutionError")
RAW_TEX = ("\\(", "\\[", "$$")
TEX_COMMAND = re.compile(r"\\[A-Za-z]+")
CODE_TAGS = ("script", "style", "pre", "code", "textarea", "mjx-assistive-mml", "math")
VOID_TAGS = {
    "area",
    "base",
    "br",
    "col",
    "embed",
    "hr",
    "img",
    "input",
    "link",
    "meta",
    "source",
    "track",
    "wbr",
}
# Tag -> attributes whose URL the browser fetches by itself when the page loads.
ASSET_ATTRIBUTES = {
    "script": ("src",),
    "link": ("href",),
    "img": ("src", "srcset"),
    "iframe": ("src",),
    "source": ("src", "srcset"),
    "video": ("src", "poster"),
    "audio": ("src",),
    "embed": ("src",),
    "object": ("data",),
}
LOCAL_SCHEMES = ("data", "blob", "about")

# After the load event: wait for MathJax's first typesetting (at most 30 s), then report the DOM
# and every table, code box or displayed equation wider than the article's text column (MathJax
# clips or scrolls a wide equation, so the reader sees it cut off).
SETTLE = r"""(async () => {
  const mj = window.MathJax;
  if (mj && mj.startup && mj.startup.promise) {
    await Promise.race([mj.startup.promise, new Promise(done => setTimeout(done, 30000))]);
  }
  const column = document.querySelector("article") || document.querySelector("main")
    || document.body;
  const right = column.getBoundingClientRect().right + 1;
  const wide = [];
  for (const el of column.querySelectorAll("table, pre, mjx-container[display='true']")) {
    if (el.offsetParent === null) continue;  // folded away (hidden input): not shown
    const box = el.getBoundingClientRect();
    if (box.right > right || el.scrollWidth > el.clientWidth + 1) {
      wide.push(`a ${el.tagName.toLowerCase()} ${Math.round(el.scrollWidth)} px wide in a `
                + `${Math.round(column.clientWidth)} px column: `
                + el.textContent.replace(/\s+/g, " ").trim().slice(0, 60));
    }
  }
  return JSON.stringify({dom: document.documentElement.outerHTML, wide});
})()"""


@dataclass(frozen=True)
class View:
    """What Chromium showed for one page: its DOM after scripts ran, every URL it requested,
    the requested URLs that failed to load, and the boxes wider than the text column."""

    dom: str
    requests: tuple[str, ...] = ()
    failed: tuple[str, ...] = ()
    wide: tuple[str, ...] = ()


class Chromium(devtools.Chromium):
    """The DevTools client at the checked window size, reading pages as :class:`View`s.

    with Chromium() as browser:
        view = browser.view(page.as_uri())
    """

    def __init__(self, binary: str | None = None, timeout: float = 120):
        super().__init__(binary, timeout, window=(WIDTH, HEIGHT))

    def view(self, url: str) -> View:
        """Load ``url`` in a fresh tab; return what it showed once MathJax finished."""
        loaded = self.load(url, SETTLE)
        if loaded.value is None:  # navigation failed: nothing to read
            return View(dom="", requests=loaded.requests, failed=loaded.failed)
        report = json.loads(loaded.value)
        return View(report["dom"], loaded.requests, loaded.failed, tuple(report["wide"]))


# --- reading a page ----------------------------------------------------------------------------


class _Page(HTMLParser):
    """Collects figures and their captions, maths, error classes and the visible text."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.images: list[tuple[str, int | None]] = []  # (src, the enclosing <figure>'s index)
        self.captioned: set[int] = set()
        self.classes: set[str] = set()
        self.text: list[str] = []  # all the text, code included
        self.prose: list[str] = []  # the text outside code, scripts and MathJax's own markup
        self.maths: list[bool] = []  # per math element: typeset?
        self.has_main = False
        self._open: list[tuple[str, int | None, int | None]] = []  # (tag, figure, math element)
        self._figures = 0

    def _innermost(self, index: int) -> int | None:
        return next((o[index] for o in reversed(self._open) if o[index] is not None), None)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        classes = (attrs.get("class") or "").split()
        self.classes.update(classes)
        figure, math = None, None
        if tag == "figure":
            figure, self._figures = self._figures, self._figures + 1
        if tag == "figcaption" and self._innermost(1) is not None:
            self.captioned.add(self._innermost(1))
        if "math" in classes and tag in ("span", "div"):
            math = len(self.maths)
            self.maths.append(False)
        if tag in ("mjx-container", "mjx-math") or "katex" in classes:
            if self._innermost(2) is not None:
                self.maths[self._innermost(2)] = True
        if tag == "img" and attrs.get("src"):
            self.images.append((attrs["src"], self._innermost(1)))
        if tag in ("main", "article"):
            self.has_main = True
        if tag not in VOID_TAGS:
            self._open.append((tag, figure, math))

    def handle_endtag(self, tag):
        for i in range(len(self._open) - 1, -1, -1):
            if self._open[i][0] == tag:
                del self._open[i:]
                return

    def handle_data(self, data):
        self.text.append(data)
        if not any(o[0] in CODE_TAGS for o in self._open):
            self.prose.append(data)


def notebook_figures(path: Path) -> int:
    """How many image outputs an executed notebook holds."""
    nb = nbformat.read(path, as_version=4)
    return sum(
        any(t in out.get("data", {}) for t in IMAGE_TYPES)
        for cell in nb.cells
        if cell.cell_type == "code"
        for out in cell.get("outputs", ())
    )


def _figure_ok(src: str, page: Path) -> bool | None:
    """True for a figure that displays, False for a broken one, None for a non-figure image."""
    if src.startswith("data:image"):
        return True
    parsed = urlparse(src)
    if parsed.scheme not in ("", "file") or "_images/" not in parsed.path:
        return None
    path = Path(unquote(parsed.path))
    target = (page.parent / path).resolve() if parsed.scheme == "" else path
    return target.is_file() and target.stat().st_size > 0


def _outside(url: str, site: Path | None) -> bool:
    """Whether a requested URL lies outside the site folder (any network URL does; with no
    ``site``, no file does)."""
    parsed = urlparse(url)
    if parsed.scheme in LOCAL_SCHEMES:
        return False
    if parsed.scheme != "file":
        return True
    path = Path(unquote(parsed.path)).resolve()
    return site is not None and not path.is_relative_to(site.resolve())


def check_page(
    view: View | str, page: Path, figures: int | None, entry: str, site: Path | None = None
) -> list[str]:
    """Problems of one rendered page, given what Chromium showed (a :class:`View`, or just a DOM)
    and the figures its notebook made (None for a page that is not a notebook). ``site``: the
    folder the page's requests must stay in (None: only network requests count as outside)."""
    view = View(view) if isinstance(view, str) else view
    parsed = _Page()
    parsed.feed(view.dom)
    problems = []
    if not parsed.has_main:
        problems.append(f"{entry}: the page did not load (no main content in the DOM)")
    text = "".join(parsed.text)
    for marker in ERROR_MARKERS:
        if marker in text:
            problems.append(f"{entry}: shows {marker!r}")
    if "traceback" in parsed.classes or "output_error" in parsed.classes:
        problems.append(f"{entry}: shows an error output")
    judged = ((_figure_ok(src, page), figure) for src, figure in parsed.images)
    checked = [(ok, figure) for ok, figure in judged if ok is not None]
    shown = [ok for ok, _ in checked]
    if not all(shown):
        problems.append(f"{entry}: {shown.count(False)} figure(s) point to missing or empty files")
    if figures is not None and sum(shown) < figures:
        problems.append(f"{entry}: shows {sum(shown)} of the {figures} figures its notebook made")
    if entry != SCORECARD and figures == 0:
        problems.append(f"{entry}: a chapter without a figure")
    uncaptioned = sum(figure is None or figure not in parsed.captioned for _, figure in checked)
    if uncaptioned:
        problems.append(
            f"{entry}: {uncaptioned} figure(s) without a caption (give the cell "
            "metadata mystnb.figure.caption; see book/TEMPLATE.md)"
        )
    prose = "".join(parsed.prose)
    raw = [m for m in RAW_TEX if m in prose] + sorted(set(TEX_COMMAND.findall(prose)))[:5]
    if raw:
        problems.append(f"{entry}: raw TeX {' '.join(raw)} in the text (the maths was not typeset)")
    if not all(parsed.maths):
        problems.append(
            f"{entry}: {parsed.maths.count(False)} of {len(parsed.maths)} equation(s) not typeset"
        )
    external = [u for u in view.requests if _outside(u, site)]
    if external:
        problems.append(f"{entry}: requests outside the site: {', '.join(external[:5])}")
    broken = [u for u in view.failed if not _outside(u, site)]
    if broken:
        problems.append(f"{entry}: files of the site failed to load: {', '.join(broken[:5])}")
    problems += [f"{entry}: {w}" for w in view.wide]
    return problems


# --- what the HTML holds, without a browser ------------------------------------------------------

# Where a path starts: not inside a URL's path or a longer name.
START = r"(?:(?<=file://)|(?<![\w./~-]))"


def machine_paths(text: str, root: Path | None = None, generic: bool = True) -> list[str]:
    """The build machine's absolute paths in ``text``: the repository's (``root``), the home
    folder's, the Python environment's, and (``generic``) any ``/home/<user>``, ``/Users/<user>``,
    ``/root/`` (leave those out for vendored files, which may name their authors' machines)."""
    known = {
        str(p) for p in (root and root.resolve(), Path.home(), Path(sys.prefix).resolve()) if p
    }
    known = {p for p in known if len(Path(p).parts) > 1}  # "/" alone is no machine path
    # A path where a path starts (not inside a URL or a longer name), as itself or a parent.
    found = [
        p
        for p in sorted(known, key=len, reverse=True)
        if re.search(rf"{START}{re.escape(p)}(?![\w.-])", text)
    ]
    if not generic:
        return found
    homes = re.findall(
        rf"{START}(?:/home/[\w.-]+|/Users/[\w.-]+|/root/|[A-Za-z]:\\Users\\[\w.-]+)", text
    )
    found += [
        g for g in homes if not any(g.rstrip("/") in (k, *map(str, Path(k).parents)) for k in found)
    ]
    return list(dict.fromkeys(found))


class _Assets(HTMLParser):
    def __init__(self):
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "link" and not (
            {"stylesheet", "icon", "preload", "modulepreload", "manifest"}
            & set((attrs.get("rel") or "").split())
        ):
            return  # a plain link (rel=next, canonical, ...) is not fetched
        for name in ASSET_ATTRIBUTES.get(tag, ()):
            for url in re.split(r",\s*", attrs.get(name) or ""):
                url = url.strip().split(" ")[0]
                if url:
                    self.urls.append(url)


def external_assets(html: str) -> list[str]:
    """URLs of scripts, styles, images, frames and media that ``html`` loads from outside its
    site (absolute ``http(s)://`` or protocol-relative ``//``). Plain ``<a href>`` links are
    fine."""
    parser = _Assets()
    parser.feed(html)
    return [
        u
        for u in parser.urls
        if re.match(r"^([a-z][a-z0-9+.-]*:)?//", u, re.I) and not u.startswith("file:")
    ]


def static_problems(html: str, entry: str, root: Path | None = None) -> list[str]:
    """What the HTML source of a page shows without a browser: machine paths, external assets."""
    problems = []
    paths = machine_paths(html, root)
    if paths:
        problems.append(f"{entry}: shows the build machine's paths: {', '.join(paths[:5])}")
    external = external_assets(html)
    if external:
        problems.append(f"{entry}: loads assets from outside the site: {', '.join(external[:5])}")
    return problems


# --- the whole book ------------------------------------------------------------------------------


def check_book(root: Path, site: Path, html: Path, browser: str | None = None) -> list[str]:
    """Problems of every page of the toc, as rendered in ``html`` from the notebooks in ``site``."""
    problems, pages = [], []
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
        problems += static_problems(page.read_text(), entry, root)
        pages.append((entry, page, figures))
    # This module's find_chromium, looked up when called (a test may replace it).
    with Chromium(browser or devtools.require(find_chromium())) as chrome:
        for entry, page, figures in pages:
            problems += check_page(chrome.view(page.as_uri()), page, figures, entry, site=html)
    return problems
