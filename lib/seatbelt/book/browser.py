"""Open the rendered book in headless Chromium and check what a reader would see.

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

How requests are recorded: Chromium runs headless with ``--remote-debugging-pipe`` and this
module speaks the DevTools protocol to it over that pipe (JSON messages on file descriptors 3
and 4, no port, no extra package). Each page opens in a fresh tab with the ``Network`` domain
enabled before navigation, so every request the page makes (scripts, styles, fonts, images,
fetches, including ones made by scripts after load) arrives as ``Network.requestWillBeSent``.
DNS is mapped to nothing (``--host-resolver-rules``), so an external request fails fast and is
recorded, and the check gives the same answer with or without a network. After the load event
the check waits for MathJax's ``startup.promise`` (the first typesetting), then reads the DOM.

Chromium is Debian's ``chromium`` package or any installed Chromium or Chrome (``CHROMIUM``
names one explicitly); :func:`find_chromium` returns None when there is none, and the book is
then built without this check. It is not part of ``make test``.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import select
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse

import nbformat

from . import toc
from .runner import SCORECARD

WIDTH, HEIGHT = 1280, 900  # the window the layout is checked at: a laptop screen
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-extensions", "--host-resolver-rules=MAP * ~NOTFOUND", f"--window-size={WIDTH},{HEIGHT}",
         "--remote-debugging-pipe", "about:blank")
CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome",
              "/Applications/Chromium.app/Contents/MacOS/Chromium",
              "/Applications/Google Chrome.app/Contents/MacOS/Google Chrome")
HOW_TO_GET_ONE = ("install Chromium or Google Chrome (Debian/Ubuntu: apt-get install chromium; macOS: "
                  "brew install --cask google-chrome) or set CHROMIUM=/path/to/chrome")
IMAGE_TYPES = ("image/png", "image/jpeg", "image/svg+xml", "image/gif")
ERROR_MARKERS = ("Traceback (most recent call last)", "PapermillExecutionError")
RAW_TEX = ("\\(", "\\[", "$$")
TEX_COMMAND = re.compile(r"\\[A-Za-z]+")
CODE_TAGS = ("script", "style", "pre", "code", "textarea", "mjx-assistive-mml", "math")
VOID_TAGS = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}
# Tag -> attributes whose URL the browser fetches by itself when the page loads.
ASSET_ATTRIBUTES = {"script": ("src",), "link": ("href",), "img": ("src", "srcset"), "iframe": ("src",),
                    "source": ("src", "srcset"), "video": ("src", "poster"), "audio": ("src",), "embed": ("src",),
                    "object": ("data",)}
LOCAL_SCHEMES = ("data", "blob", "about")

# After the load event: wait for MathJax's first typesetting (at most 30 s), then report the DOM
# and every table, code box or displayed equation wider than the article's text column (MathJax
# clips or scrolls a wide equation, so the reader sees it cut off).
SETTLE = r"""(async () => {
  const mj = window.MathJax;
  if (mj && mj.startup && mj.startup.promise) {
    await Promise.race([mj.startup.promise, new Promise(done => setTimeout(done, 30000))]);
  }
  const column = document.querySelector("article") || document.querySelector("main") || document.body;
  const right = column.getBoundingClientRect().right + 1;
  const wide = [];
  for (const el of column.querySelectorAll("table, pre, mjx-container[display='true']")) {
    if (el.offsetParent === null) continue;  // folded away (hidden input): not shown
    const box = el.getBoundingClientRect();
    if (box.right > right || el.scrollWidth > el.clientWidth + 1) {
      wide.push(`a ${el.tagName.toLowerCase()} ${Math.round(el.scrollWidth)} px wide in a `
                + `${Math.round(column.clientWidth)} px column: ` + el.textContent.replace(/\s+/g, " ").trim().slice(0, 60));
    }
  }
  return JSON.stringify({dom: document.documentElement.outerHTML, wide});
})()"""


def find_chromium() -> str | None:
    """The Chromium (or Chrome) to use: ``$CHROMIUM``, else the first of :data:`CANDIDATES` found."""
    named = os.environ.get("CHROMIUM")
    if named:
        if shutil.which(named) is None:
            raise FileNotFoundError(f"CHROMIUM={named!r} is not an executable; unset it or name a Chromium or Chrome.")
        return shutil.which(named)
    return next((shutil.which(c) for c in CANDIDATES if shutil.which(c)), None)


def chromium() -> str:
    path = find_chromium()
    if path is None:
        raise FileNotFoundError(f"no Chromium or Chrome found: {HOW_TO_GET_ONE}.")
    return path


@dataclass(frozen=True)
class View:
    """What Chromium showed for one page: its DOM after scripts ran, every URL it requested,
    the requested URLs that failed to load, and the boxes wider than the text column."""

    dom: str
    requests: tuple[str, ...] = ()
    failed: tuple[str, ...] = ()
    wide: tuple[str, ...] = ()


class Chromium:
    """One headless Chromium driven over the DevTools protocol on a pipe; ``view(url)`` per page.

        with Chromium() as browser:
            view = browser.view(page.as_uri())
    """

    def __init__(self, binary: str | None = None, timeout: float = 120):
        self.binary, self.timeout = binary or chromium(), timeout
        self._next_id, self._buffer, self._events = 0, b"", []

    def __enter__(self) -> Chromium:
        self._profile = tempfile.TemporaryDirectory(prefix="seatbelt-chromium-")
        # Chromium reads commands from fd 3 and writes replies to fd 4. The pipe ends are moved to
        # fds >= 10 first so that placing them at 3 and 4 in the child cannot clobber each other.
        to_child, from_us = (fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in os.pipe())
        to_us, from_child = (fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in os.pipe())

        def at_3_and_4():
            os.dup2(to_child, 3)
            os.dup2(from_child, 4)

        self._process = subprocess.Popen(
            [self.binary, *FLAGS, f"--user-data-dir={self._profile.name}"], preexec_fn=at_3_and_4,
            pass_fds=(3, 4), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for fd in (to_child, from_child):
            os.close(fd)
        self._write, self._read = from_us, to_us
        return self

    def __exit__(self, *exc) -> None:
        try:
            self._call("Browser.close", timeout=10)
        except (OSError, RuntimeError, TimeoutError):
            pass
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        for fd in (self._write, self._read):
            os.close(fd)
        self._profile.cleanup()

    # --- the protocol: JSON messages, each ended by a NUL byte -----------------------------------

    def _send(self, method: str, params: dict | None = None, session: str | None = None) -> int:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        data = memoryview(json.dumps(message).encode() + b"\0")
        while data:
            data = data[os.write(self._write, data):]
        return self._next_id

    def _receive(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._read], [], [], left)[0]:
                raise TimeoutError("Chromium did not answer in time")
            chunk = os.read(self._read, 1 << 16)
            if not chunk:
                raise RuntimeError(f"Chromium exited (status {self._process.poll()})")
            self._buffer += chunk
        message, _, self._buffer = self._buffer.partition(b"\0")
        return json.loads(message)

    def _call(self, method: str, params: dict | None = None, session: str | None = None,
              timeout: float | None = None) -> dict:
        sent = self._send(method, params, session)
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            message = self._receive(deadline)
            if message.get("id") == sent:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error'].get('message')}")
                return message["result"]
            self._events.append(message)

    def _wait_for(self, method: str, session: str) -> None:
        deadline = time.monotonic() + self.timeout
        seen = lambda: any(e.get("method") == method and e.get("sessionId") == session for e in self._events)  # noqa: E731
        while not seen():
            self._events.append(self._receive(deadline))

    def view(self, url: str) -> View:
        """Load ``url`` in a fresh tab; return what it showed once MathJax finished."""
        self._events = []
        target = self._call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self._call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        try:
            self._call("Network.enable", session=session)
            self._call("Page.enable", session=session)
            navigation = self._call("Page.navigate", {"url": url}, session=session)
            if navigation.get("errorText"):
                return View(dom="", requests=(url,), failed=(url,))
            self._wait_for("Page.loadEventFired", session)
            settled = self._call("Runtime.evaluate", {"expression": SETTLE, "awaitPromise": True, "returnByValue": True},
                                 session=session)
            if "exceptionDetails" in settled:
                raise RuntimeError(f"{url}: the page check's script failed: {settled['exceptionDetails'].get('text')}")
            report = json.loads(settled["result"]["value"])
        finally:
            self._call("Target.closeTarget", {"targetId": target})
        mine = [e for e in self._events if e.get("sessionId") == session]
        urls = {e["params"]["requestId"]: e["params"]["request"]["url"]
                for e in mine if e.get("method") == "Network.requestWillBeSent"}
        failed = [urls.get(e["params"]["requestId"], "?") for e in mine if e.get("method") == "Network.loadingFailed"
                  and not e["params"].get("canceled")]
        return View(report["dom"], tuple(dict.fromkeys(urls.values())), tuple(failed), tuple(report["wide"]))


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


def _outside(url: str, site: Path | None) -> bool:
    """Whether a requested URL lies outside the site folder (any network URL does; with no
    ``site``, no file does)."""
    parsed = urlparse(url)
    if parsed.scheme in LOCAL_SCHEMES:
        return False
    if parsed.scheme != "file":
        return True
    return site is not None and not Path(unquote(parsed.path)).resolve().is_relative_to(site.resolve())


def check_page(view: View | str, page: Path, figures: int | None, entry: str, site: Path | None = None) -> list[str]:
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
    checked = [(ok, figure) for ok, figure in ((_figure_ok(s, page), f) for s, f in parsed.images) if ok is not None]
    shown = [ok for ok, _ in checked]
    if not all(shown):
        problems.append(f"{entry}: {shown.count(False)} figure(s) point to missing or empty files")
    if figures is not None and sum(shown) < figures:
        problems.append(f"{entry}: shows {sum(shown)} of the {figures} figures its notebook made")
    if entry != SCORECARD and figures == 0:
        problems.append(f"{entry}: a chapter without a figure")
    uncaptioned = sum(figure is None or figure not in parsed.captioned for _, figure in checked)
    if uncaptioned:
        problems.append(f"{entry}: {uncaptioned} figure(s) without a caption (give the cell metadata "
                        "mystnb.figure.caption; see book/TEMPLATE.md)")
    prose = "".join(parsed.prose)
    raw = [m for m in RAW_TEX if m in prose] + sorted(set(TEX_COMMAND.findall(prose)))[:5]
    if raw:
        problems.append(f"{entry}: raw TeX {' '.join(raw)} in the text (the maths was not typeset)")
    if not all(parsed.maths):
        problems.append(f"{entry}: {parsed.maths.count(False)} of {len(parsed.maths)} equation(s) not typeset")
    external = [u for u in view.requests if _outside(u, site)]
    if external:
        problems.append(f"{entry}: requests outside the site: {', '.join(external[:5])}")
    broken = [u for u in view.failed if not _outside(u, site)]
    if broken:
        problems.append(f"{entry}: files of the site failed to load: {', '.join(broken[:5])}")
    problems += [f"{entry}: {w}" for w in view.wide]
    return problems


# --- what the HTML holds, without a browser ------------------------------------------------------

START = r"(?:(?<=file://)|(?<![\w./~-]))"  # where a path starts: not inside a URL's path or a longer name


def machine_paths(text: str, root: Path | None = None, generic: bool = True) -> list[str]:
    """The build machine's absolute paths in ``text``: the repository's (``root``), the home
    folder's, the Python environment's, and (``generic``) any ``/home/<user>``, ``/Users/<user>``,
    ``/root/`` (leave those out for vendored files, which may name their authors' machines)."""
    known = {str(p) for p in (root and root.resolve(), Path.home(), Path(sys.prefix).resolve()) if p}
    known = {p for p in known if len(Path(p).parts) > 1}  # "/" alone is no machine path
    # A path where a path starts (not inside a URL or a longer name), as itself or a parent.
    found = [p for p in sorted(known, key=len, reverse=True) if re.search(rf"{START}{re.escape(p)}(?![\w.-])", text)]
    if not generic:
        return found
    homes = re.findall(rf"{START}(?:/home/[\w.-]+|/Users/[\w.-]+|/root/|[A-Za-z]:\\Users\\[\w.-]+)", text)
    found += [g for g in homes if not any(g.rstrip("/") in (k, *map(str, Path(k).parents)) for k in found)]
    return list(dict.fromkeys(found))


class _Assets(HTMLParser):
    def __init__(self):
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "link" and not ({"stylesheet", "icon", "preload", "modulepreload", "manifest"}
                                  & set((attrs.get("rel") or "").split())):
            return  # a plain link (rel=next, canonical, ...) is not fetched
        for name in ASSET_ATTRIBUTES.get(tag, ()):
            for url in re.split(r",\s*", attrs.get(name) or ""):
                url = url.strip().split(" ")[0]
                if url:
                    self.urls.append(url)


def external_assets(html: str) -> list[str]:
    """URLs of scripts, styles, images, frames and media that ``html`` loads from outside its
    site (absolute ``http(s)://`` or protocol-relative ``//``). Plain ``<a href>`` links are fine."""
    parser = _Assets()
    parser.feed(html)
    return [u for u in parser.urls if re.match(r"^([a-z][a-z0-9+.-]*:)?//", u, re.I) and not u.startswith("file:")]


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
    with Chromium(browser) as chrome:
        for entry, page, figures in pages:
            problems += check_page(chrome.view(page.as_uri()), page, figures, entry, site=html)
    return problems
