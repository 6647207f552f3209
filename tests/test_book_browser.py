"""The rendered-page check: what counts as a loaded page, a shown figure, an error on the page."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from seatbelt.book import browser

PNG = "data:image/png;base64,iVBORw0KGgo="


def page(body: str) -> str:
    return f"<html><body><main><article>{body}</article></main></body></html>"


@pytest.fixture
def html(tmp_path: Path) -> Path:
    (tmp_path / "_images").mkdir()
    (tmp_path / "_images" / "fig.png").write_bytes(b"\x89PNG")
    (tmp_path / "_images" / "empty.png").write_bytes(b"")
    (tmp_path / "book").mkdir()
    return tmp_path / "book" / "intro.html"


def test_a_page_with_all_its_figures_passes(html):
    dom = page(f'<img src="../_images/fig.png"><img src="{PNG}"><img src="../_static/logo.png">')
    assert browser.check_page(dom, html, 2, "book/intro") == []


@pytest.mark.parametrize("body, figures, problem", [
    ('<img src="../_images/fig.png">', 2, "shows 1 of the 2 figures"),
    ('<img src="../_images/missing.png">', 1, "point to missing or empty files"),
    ('<img src="../_images/empty.png">', 1, "point to missing or empty files"),
    ("<p>no figure</p>", 0, "a chapter without a figure"),
    ('<img src="../_images/fig.png"><pre>Traceback (most recent call last):\n  File</pre>', 1, "Traceback"),
    ('<img src="../_images/fig.png"><div class="output traceback">x</div>', 1, "an error output"),
])
def test_missing_figures_and_errors_are_found(html, body, figures, problem):
    problems = browser.check_page(page(body), html, figures, "book/intro")
    assert any(problem in p for p in problems), problems


def test_a_page_that_did_not_load_is_found(html):
    assert "did not load" in browser.check_page("<html><body></body></html>", html, None, "book/x")[0]


def test_the_scorecard_and_text_pages_need_no_figure(html):
    assert browser.check_page(page("<table></table>"), html, 0, "book/scorecard") == []
    assert browser.check_page(page("<p>text</p>"), html, None, "book/notes") == []


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium not installed (make book installs it)")
def test_chromium_returns_the_dom_after_scripts_ran(tmp_path):
    file = tmp_path / "p.html"
    file.write_text('<html><body><main id="m"></main><script>document.getElementById("m").textContent = "built";</script></body></html>')
    dom = browser.dump_dom(file.as_uri(), tmp_path / "profile")
    assert '<main id="m">built</main>' in dom
