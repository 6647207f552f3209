"""`make publish`: the rendered book copied into a folder that works from disk, with each chapter's
results linked as downloads, checked without a browser and, where there is one, in Chromium."""

from __future__ import annotations

import shutil
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_markdown_cell, new_notebook

from seatbelt.book import browser, layout, publish, render

REPO = Path(__file__).resolve().parents[1]
needs_chromium = pytest.mark.skipif(
    browser.find_chromium() is None,
    reason="no Chromium or Chrome (make book installs Debian's where it can)",
)

PAGE = """<html><head><link rel="stylesheet" href="../_static/s.css"></head>
<body><main><article>{body}</article></main></body></html>"""


@pytest.fixture
def book(tmp_path: Path) -> Path:
    """A rendered two-chapter book, as Jupyter Book would leave it, without running Jupyter Book."""
    (tmp_path / "_toc.yml").write_text(
        "format: jb-book\nroot: book/intro\nchapters:\n  - file: book/scorecard\n"
    )
    (tmp_path / "book").mkdir()
    for name in ("intro", "scorecard"):
        nbformat.write(
            new_notebook(cells=[new_markdown_cell(f"# {name}")]),
            tmp_path / "book" / f"{name}.ipynb",
        )
    html = layout.build_dir(tmp_path, "smoke") / "html"
    (html / "book").mkdir(parents=True)
    (html / "_static").mkdir()
    (html / "_static" / "s.css").write_text("body {}")
    (html / ".buildinfo").write_text("config: x")
    (html / "index.html").write_text(
        '<meta http-equiv="Refresh" content="0; url=book/intro.html" />'
    )
    (html / "book" / "intro.html").write_text(
        PAGE.format(body='<h1>Intro</h1><section id="claim-c3">C3</section>')
    )
    (html / "book" / "scorecard.html").write_text(
        PAGE.format(body='<a href="intro.html#claim-c3">intro</a>')
    )
    results = layout.results_dir(tmp_path, "smoke")
    (results / "intro" / "detail").mkdir(parents=True)
    (results / "intro" / "attacks.csv").write_text("pair,delta\n0,1.5\n")
    (results / "intro" / "detail" / "pairs.csv").write_text("pair\n0\n")
    (results / "scorecard.csv").write_text("claim,status\nC3,held\n")
    (results / "claims").mkdir()
    (results / "claims" / "C3.json").write_text("{}")
    return tmp_path


def test_publish_copies_the_book_and_links_each_chapters_results(book):
    out = publish.publish(book, "smoke")
    assert out == book / "_build" / "publish"
    assert (out / "results" / "intro" / "attacks.csv").read_text() == "pair,delta\n0,1.5\n"
    assert (out / "results" / "intro" / "detail" / "pairs.csv").is_file()
    assert (out / "results" / "scorecard" / "scorecard.csv").is_file()
    assert not (out / "results" / "claims").exists()  # JSON records are not tables
    assert not (out / ".buildinfo").exists() and (out / ".nojekyll").exists()
    intro = (out / "book" / "intro.html").read_text()
    assert intro.index('<section id="results-downloads">') < intro.index("</article>")
    assert '<a href="../results/intro/attacks.csv" download>attacks.csv</a>' in intro
    assert '<a href="../results/intro/detail/pairs.csv" download>pairs.csv</a>' in intro
    assert (
        '<a href="../results/scorecard/scorecard.csv" download>'
        in (out / "book" / "scorecard.html").read_text()
    )
    assert publish.problems(book, out) == []
    publish.publish(book, "smoke")  # publishing again replaces the folder: one downloads section
    assert (out / "book" / "intro.html").read_text().count(
        "results-downloads"
    ) == 2  # the id and its link


def test_problems_find_what_breaks_a_site_opened_from_disk(book):
    out = publish.publish(book, "smoke")
    page = out / "book" / "intro.html"
    page.write_text(
        page.read_text().replace(
            "<h1>Intro</h1>",
            (
                '<script src="https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-mml-chtml.js"></script>'
                '<a href="/book/scorecard.html">absolute</a><img src="../_images/missing.png">'
                '<a href="scorecard.html#nowhere">anchor</a><pre>results_dir = '
                f'"{book}/_build/smoke/results"</pre><a '
                'href="https://arxiv.org/abs/2010.07856">the paper</a>'
            ),
        )
    )
    (out / "_static" / "leak.js").write_text(f'const where = "{book}/lib";')
    found = "\n".join(publish.problems(book, out))
    assert "book/intro.html: shows the build machine's paths" in found
    assert "loads assets from outside the site: https://cdn.jsdelivr.net" in found
    assert "/book/scorecard.html (not relative)" in found and "../_images/missing.png" in found
    assert "scorecard.html#nowhere (no such section)" in found
    assert "_static/leak.js: holds the build machine's paths" in found
    assert "arxiv" not in found


def test_publish_needs_a_rendered_book_and_a_safe_folder(book):
    with pytest.raises(publish.PublishError, match="no rendered book"):
        publish.publish(book, "cpu")
    for unsafe in (book, book.parent, layout.build_dir(book, "smoke")):
        with pytest.raises(publish.PublishError, match="refusing to publish"):
            publish.publish(book, "smoke", unsafe)
    assert (layout.build_dir(book, "smoke") / "html" / "index.html").is_file()


def test_publish_replaces_only_an_empty_folder_or_one_it_made(book, tmp_path):
    home = tmp_path / "home"  # a mistyped --out: a home directory, lib/, the model cache
    (home / "work").mkdir(parents=True)
    (home / "work" / "notes.txt").write_text("mine")
    with pytest.raises(publish.PublishError, match="not empty, and not a folder that publish made"):
        publish.publish(book, "smoke", home)
    assert (home / "work" / "notes.txt").read_text() == "mine"
    (tmp_path / "file").write_text("mine")
    with pytest.raises(publish.PublishError, match="not a folder"):
        publish.publish(book, "smoke", tmp_path / "file")
    assert (tmp_path / "file").read_text() == "mine"

    empty = tmp_path / "empty"
    empty.mkdir()
    assert publish.publish(book, "smoke", empty) == empty and (empty / publish.MARKER).is_file()
    (empty / "stale.html").write_text("from an earlier book")
    publish.publish(book, "smoke", empty)  # a folder it made is replaced whole
    assert not (empty / "stale.html").exists() and (empty / "index.html").is_file()
    publish.publish(book, "smoke", tmp_path / "new" / "site")
    assert (tmp_path / "new" / "site" / "book" / "intro.html").is_file()


def test_a_rendered_book_publishes_and_passes_the_page_check_from_disk(tmp_path):
    """Jupyter Book with the repository's config, a page with maths: the published folder holds
    MathJax itself, and in Chromium (offline) every equation is typeset with no outside request."""
    shutil.copy(REPO / "_config.yml", tmp_path / "_config.yml")
    (tmp_path / "_toc.yml").write_text("format: jb-book\nroot: book/index\n")
    (tmp_path / "book").mkdir()
    (tmp_path / "book" / "index.md").write_text(
        "# Maths offline\n\n(claim-c3)=\n## The attack\n\nThe loss $\\Delta_{KL}$ of the "
        "attack,\n\n$$\\Delta(d) = \\mathrm{KL}\\big(q(z \\mid x + d) \\,\\|\\, q(z \\mid "
        "x_t)\\big) + \\lambda \\lVert d \\rVert^2 .$$\n"
    )
    html = render.render(tmp_path, "smoke")
    assert "cdn.jsdelivr" not in (html / "book" / "index.html").read_text()
    assert (html / "_static" / "mathjax" / "tex-chtml.js").is_file()
    out = publish.publish(tmp_path, "smoke")
    assert publish.problems(tmp_path, out) == []
    if browser.find_chromium() is None:
        pytest.skip("no Chromium or Chrome: the published folder was checked without a browser")
    assert browser.check_book(tmp_path, layout.site_dir(tmp_path, "smoke"), out) == []
