"""Publish a rendered book as a self-contained static site that works from disk or any web host.

    python -m seatbelt.book publish --profile cpu --check   # what `make publish` runs

The rendered HTML of a profile (``_build/<profile>/html``) is copied to ``_build/publish/``, or
to ``--out``, and then:

- each chapter's results tables (``<results_dir>/<chapter>/**/*.csv``, and
  ``<results_dir>/<chapter>.csv`` such as the scorecard's) are copied to
  ``results/<chapter>/`` and linked from the end of the chapter's page as downloads;
- Sphinx's build stamp (``.buildinfo``) is dropped, and ``.nojekyll`` added so that a
  GitHub Pages host serves the ``_static`` and ``_images`` folders as they are;
- :data:`MARKER` says the folder is the publisher's: publishing again replaces a folder that
  holds it, and publishes into no other folder that is not empty (a mistyped ``--out`` must
  never delete a home directory or the model cache);
- :func:`problems` checks the folder without a browser: every link and asset of every page
  resolves to a file inside it (relative links only, so it opens from ``file://``), no page
  loads an asset from the network, and no text file holds the build machine's paths.

The page check in Chromium (:func:`seatbelt.book.browser.check_book` on the published folder)
then opens every page from disk, as a reader who downloaded the folder would.
"""

from __future__ import annotations

import html as htmllib
import os
import shutil
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse

from . import browser, toc
from .layout import results_dir
from .params import chapter_name
from .render import html_dir

TEXT_SUFFIXES = (".html", ".js", ".css", ".csv", ".json", ".txt", ".svg")
DROPPED = (".buildinfo",)
SECTION_ID = "results-downloads"
MARKER = ".seatbelt-publish"


class PublishError(RuntimeError):
    """The rendered book is missing, or the published folder is not self-contained."""


def publish_dir(root: Path) -> Path:
    return root / "_build" / "publish"


def chapter_results(results: Path, name: str) -> list[Path]:
    """The CSV tables chapter ``name`` wrote: ``results/<name>/**/*.csv`` and
    ``results/<name>.csv``."""
    found = sorted((results / name).rglob("*.csv")) if (results / name).is_dir() else []
    return found + ([results / f"{name}.csv"] if (results / f"{name}.csv").is_file() else [])


def _size(path: Path) -> str:
    size = path.stat().st_size
    return f"{size / 1e6:.1f} MB" if size >= 1e6 else f"{max(size / 1e3, 0.1):.1f} kB"


def downloads_section(page: Path, files: list[tuple[Path, Path]], profile: str) -> str:
    """The HTML of the downloads list at the end of ``page``; ``files``: (published, source)
    pairs."""
    items = "\n".join(
        f'<li><a href="{htmllib.escape(Path(os.path.relpath(target, page.parent)).as_posix())}" '
        "download>"
        f"{htmllib.escape(target.name)}</a> ({_size(source)})</li>"
        for target, source in files
    )
    return (
        f'<section id="{SECTION_ID}">\n<h2>Download the results<a class="headerlink" '
        f'href="#{SECTION_ID}" title="Link to this heading">#</a></h2>\n<p>The tables this page '
        "computed, as CSV files "
        f"(profile {htmllib.escape(profile)}):</p>\n<ul>\n{items}\n</ul>\n</section>\n"
    )


def add_downloads(page: Path, section: str) -> None:
    """Insert ``section`` at the end of the page's article (before ``</article>``)."""
    text = page.read_text()
    at = text.rfind("</article>")
    if at < 0:
        raise PublishError(
            f"{page}: no </article> to add the downloads to; is it a Jupyter Book page?"
        )
    page.write_text(text[:at] + section + text[at:])


def publish(root: Path, profile: str, out: Path | None = None) -> Path:
    """Copy ``profile``'s rendered book to ``out`` (default ``_build/publish``) with the chapters'
    results as downloads; return ``out``. Raises :class:`PublishError` if the book is not
    rendered, or if ``out`` is neither empty nor a folder published before (it is left as it is)."""
    html, results, out = (
        html_dir(root, profile),
        results_dir(root, profile),
        out or publish_dir(root),
    )
    if not (html / "index.html").is_file():
        raise PublishError(
            f"no rendered book in {html}: run `python -m seatbelt.book build --profile {profile}` "
            "first."
        )
    _claim(out, html, ours=out.resolve() == publish_dir(root).resolve())
    shutil.copytree(html, out, dirs_exist_ok=True)
    for name in DROPPED:
        (out / name).unlink(missing_ok=True)
    (out / ".nojekyll").touch()
    for entry, _ in toc.notebooks(root):
        page = out / f"{entry}.html"
        sources = chapter_results(results, chapter_name(entry))
        if not sources or not page.is_file():
            continue
        copied = []
        for source in sources:
            inside = source.relative_to(results)
            target = (
                out
                / "results"
                / (
                    inside
                    if inside.parts[0] == chapter_name(entry)
                    else chapter_name(entry) / inside
                )
            )
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
            copied.append((target, source))
        add_downloads(page, downloads_section(page, copied, profile))
    return out


def _claim(out: Path, html: Path, ours: bool) -> None:
    """Make ``out`` an empty folder holding :data:`MARKER`, or raise :class:`PublishError`
    without touching it: only a folder that is empty, absent or published before is replaced,
    or, if ``ours`` (the default ``_build/publish``, also from before the marker), any folder."""
    target, rendered = out.resolve(), html.resolve()
    if target.is_relative_to(rendered) or rendered.is_relative_to(target):
        raise PublishError(
            f"refusing to publish into {out}: it holds, or is inside, the rendered book {html}."
        )
    if out.exists() and not out.is_dir():
        raise PublishError(f"refusing to publish into {out}: it is not a folder.")
    if out.is_dir() and not ours and not (out / MARKER).is_file() and any(out.iterdir()):
        raise PublishError(
            f"refusing to publish into {out}: it is not empty, and not a folder "
            f"that publish made (no {MARKER}); choose an empty or new folder."
        )
    if out.is_dir():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    (out / MARKER).write_text("Made by `python -m seatbelt.book publish`, which replaces it.\n")


# --- is it self-contained? ---------------------------------------------------------------------


class _Links(HTMLParser):
    """Every URL a page links to or loads: (tag, attribute, url)."""

    ATTRIBUTES = {
        "a": "href",
        "link": "href",
        "script": "src",
        "img": "src",
        "iframe": "src",
        "source": "src",
        "video": "src",
        "audio": "src",
        "embed": "src",
        "object": "data",
    }

    def __init__(self):
        super().__init__()
        self.urls: list[tuple[str, str]] = []

    def handle_starttag(self, tag, attrs):
        url = dict(attrs).get(self.ATTRIBUTES.get(tag, ""))
        if url:
            self.urls.append((tag, url))


def broken_links(page: Path, site: Path) -> list[str]:
    """Relative links and assets of ``page`` that do not resolve to a file inside ``site``, or to
    an anchor of that page that does not exist (links to other sites are fine; absolute paths
    and ``file:`` URLs never are)."""
    parser = _Links()
    parser.feed(page.read_text())
    broken = []
    for tag, url in parser.urls:
        parsed = urlparse(url)
        if parsed.scheme in ("http", "https", "mailto", "data", "javascript") or url.startswith(
            "#"
        ):
            continue
        if parsed.scheme or parsed.netloc or parsed.path.startswith("/"):
            broken.append(f"{url} (not relative)")
            continue
        target = (page.parent / unquote(parsed.path)).resolve()
        if target.is_dir():
            target = target / "index.html"
        if not target.is_relative_to(site.resolve()) or not target.is_file():
            broken.append(url)
        elif (
            parsed.fragment
            and target.suffix == ".html"
            and f'id="{parsed.fragment}"' not in target.read_text()
        ):
            broken.append(f"{url} (no such section)")
    return broken


def problems(root: Path, site: Path) -> list[str]:
    """Why the published ``site`` would not work from disk: broken or absolute links, assets
    from the network, machine paths in any text file; and toc pages that are missing."""
    found = []
    for entry in toc.entries(root):
        if not (site / f"{entry}.html").is_file():
            found.append(f"{entry}: no page {entry}.html")
    for path in sorted(site.rglob("*")):
        if not path.is_file() or path.suffix not in TEXT_SUFFIXES:
            continue
        name = path.relative_to(site).as_posix()
        text = path.read_text(errors="replace")
        vendored = name.startswith(
            "_static/"
        )  # the themes' and MathJax's files (HTML fragments too)
        if path.suffix == ".html" and not vendored:
            found += browser.static_problems(text, name, root)
            broken = broken_links(path, site)
            if broken:
                found.append(
                    f"{name}: {len(broken)} link(s) lead outside the folder or nowhere: "
                    f"{', '.join(broken[:5])}"
                )
        else:
            paths = browser.machine_paths(text, root, generic=not vendored)
            if paths:
                found.append(f"{name}: holds the build machine's paths: {', '.join(paths[:5])}")
    return found
