"""The rendered-page check: a loaded page, shown and captioned figures, typeset maths, no request
outside the site, nothing wider than the text column, no machine path, no error on the page."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from seatbelt.book import browser, devtools, render

PNG = "data:image/png;base64,iVBORw0KGgo="
ROOT = Path(__file__).resolve().parents[1]
needs_chromium = pytest.mark.skipif(
    browser.find_chromium() is None,
    reason="no Chromium or Chrome (make book installs Debian's where it can)",
)


def page(body: str) -> str:
    return f"<html><body><main><article>{body}</article></main></body></html>"


def figure(src: str, caption: str = "What to look at.") -> str:
    return f'<figure><img src="{src}"><figcaption><p>{caption}</p></figcaption></figure>'


@pytest.fixture
def html(tmp_path: Path) -> Path:
    (tmp_path / "_images").mkdir()
    (tmp_path / "_images" / "fig.png").write_bytes(b"\x89PNG")
    (tmp_path / "_images" / "empty.png").write_bytes(b"")
    (tmp_path / "book").mkdir()
    return tmp_path / "book" / "intro.html"


def test_a_page_with_all_its_figures_passes(html):
    dom = page(figure("../_images/fig.png") + figure(PNG) + '<img src="../_static/logo.png">')
    assert browser.check_page(dom, html, 2, "book/intro") == []


@pytest.mark.parametrize(
    "body, figures, problem",
    [
        (figure("../_images/fig.png"), 2, "shows 1 of the 2 figures"),
        (figure("../_images/missing.png"), 1, "point to missing or empty files"),
        (figure("../_images/empty.png"), 1, "point to missing or empty files"),
        ("<p>no figure</p>", 0, "a chapter without a figure"),
        (
            figure("../_images/fig.png") + "<pre>Traceback (most recent call last):\n  File</pre>",
            1,
            "Traceback",
        ),
        (
            figure("../_images/fig.png") + '<div class="output traceback">x</div>',
            1,
            "an error output",
        ),
        ('<img src="../_images/fig.png">', 1, "1 figure(s) without a caption"),
        ('<figure><img src="../_images/fig.png"></figure>', 1, "1 figure(s) without a caption"),
    ],
)
def test_missing_figures_captions_and_errors_are_found(html, body, figures, problem):
    problems = browser.check_page(page(body), html, figures, "book/intro")
    assert any(problem in p for p in problems), problems


def test_a_page_that_did_not_load_is_found(html):
    assert (
        "did not load" in browser.check_page("<html><body></body></html>", html, None, "book/x")[0]
    )


def test_the_scorecard_and_text_pages_need_no_figure(html):
    assert browser.check_page(page("<table></table>"), html, 0, "book/scorecard") == []
    assert browser.check_page(page("<p>text</p>"), html, None, "book/notes") == []


# --- maths -------------------------------------------------------------------------------------

TYPESET = (
    '<span class="math notranslate"><mjx-container class="MathJax"><mjx-math>x</mjx-math>'
    "</mjx-container></span>"
)


@pytest.mark.parametrize(
    "body, problem",
    [
        (
            r'<p>the loss <span class="math notranslate nohighlight">\(\Delta\)</span></p>',
            "raw TeX \\(",
        ),
        (r'<div class="math notranslate nohighlight">\[ \Delta(d) \]</div>', "raw TeX \\["),
        ("<p>$$x^2$$</p>", "raw TeX $$"),
        (
            r"<p>it minimises $-\big(x\big)</p><ul><li><p>\lambda d$. Every model</p></li></ul>",
            "raw TeX \\big \\lambda",
        ),
        (
            '<span class="math notranslate nohighlight"></span>' + TYPESET,
            "1 of 2 equation(s) not typeset",
        ),
    ],
)
def test_untypeset_maths_is_found(html, body, problem):
    problems = browser.check_page(page(body), html, None, "book/x")
    assert any(problem in p for p in problems), problems


def test_typeset_maths_and_tex_in_code_pass(html):
    code = r"<pre>print('\\(not maths\\)', '$$')</pre><p><code>$$</code></p>"
    assert browser.check_page(page(TYPESET + code), html, None, "book/x") == []


# --- requests, width, machine paths --------------------------------------------------------------


def test_requests_outside_the_site_and_broken_files_are_found(html):
    site = html.parent.parent
    inside = (site / "_static" / "x.js").as_uri()
    view = browser.View(
        page("<p>text</p>"), requests=(html.as_uri(), inside, "data:image/png;base64,xx")
    )
    assert browser.check_page(view, html, None, "book/x", site=site) == []
    view = browser.View(
        page("<p>text</p>"),
        requests=(
            "https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-mml-chtml.js",
            "file:///etc/passwd",
            inside,
        ),
        failed=(inside,),
    )
    problems = browser.check_page(view, html, None, "book/x", site=site)
    assert any(
        "requests outside the site: https://cdn.jsdelivr.net" in p and "file:///etc/passwd" in p
        for p in problems
    )
    assert any("files of the site failed to load" in p and "x.js" in p for p in problems)


def test_boxes_wider_than_the_column_are_reported(html):
    view = browser.View(
        page("<p>text</p>"), wide=("a table 919 px wide in a 740 px column: claim",)
    )
    assert browser.check_page(view, html, None, "book/x") == [
        "book/x: a table 919 px wide in a 740 px column: claim"
    ]


def test_machine_paths_are_found_and_urls_are_not(tmp_path):
    root = tmp_path / "repo"
    found = browser.machine_paths(f'results_dir = "{root}/_build/cpu/results"', root)
    assert found == [str(root)]
    assert browser.machine_paths(f"see {root.as_uri()}/x.csv", root) == [str(root)]
    assert browser.machine_paths("/home/alice/seatbelt and /Users/bob/x and C:\\Users\\eve\\y") == [
        "/home/alice",
        "/Users/bob",
        "C:\\Users\\eve",
    ]
    clean = 'results_dir = "../_build/cpu/results"; https://example.org/home/x; a/root/b; /workshop'
    assert browser.machine_paths(clean, root) == []
    assert browser.machine_paths("/Users/dpvc/mathjax", root, generic=False) == []


def test_external_assets_are_found_and_plain_links_are_not():
    html = (
        '<script src="https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-mml-chtml.js"></script>'
        '<link rel="stylesheet" href="//fonts.example.org/a.css"><link rel="canonical" href="https://x.org/">'
        '<img src="../_images/a.png"><a href="https://arxiv.org/abs/2010.07856">the paper</a>'
        '<script src="../_static/mathjax/tex-chtml.js"></script>'
    )
    assert browser.external_assets(html) == [
        "https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-mml-chtml.js",
        "//fonts.example.org/a.css",
    ]
    problems = browser.static_problems(html + "<p>/home/alice/x</p>", "book/x")
    assert (
        len(problems) == 2
        and "machine's paths: /home/alice" in problems[0]
        and "cdn.jsdelivr" in problems[1]
    )


def test_a_missing_browser_named_by_chromium_is_an_error(monkeypatch):
    monkeypatch.setenv("CHROMIUM", "/nowhere/chrome")
    with pytest.raises(FileNotFoundError, match="CHROMIUM='/nowhere/chrome' is not an executable"):
        browser.find_chromium()


# --- in Chromium ----------------------------------------------------------------------------------


@needs_chromium
def test_chromium_records_requests_layout_and_typeset_maths(tmp_path):
    """One browser, a few pages: scripts ran, an external request is recorded (and fails, offline),
    a wide table and a wide equation are measured, and MathJax from the site itself typesets the
    maths."""
    assets = render.mathjax_assets()
    (tmp_path / "mathjax" / "output" / "chtml").mkdir(parents=True)
    shutil.copy(assets / "tex-chtml.js", tmp_path / "mathjax")
    shutil.copytree(
        assets / "output" / "chtml" / "fonts", tmp_path / "mathjax" / "output" / "chtml" / "fonts"
    )
    pages = {
        "script.html": (
            '<main id="m"></main>'
            '<script>document.getElementById("m").textContent = "built";</script>'
        ),
        "external.html": (
            '<main><article><p>x</p></article></main><img src="https://images.example.org/a.png">'
            '<script>fetch("https://api.example.org/data.json").catch(() => {});</script>'
        ),
        "wide.html": (
            '<main><article style="width: 400px"><table><tr><td style="white-space: nowrap">'
            + "wide " * 100
            + "</td></tr></table></article></main>"
        ),
        "maths.html": (
            '<main><article><p>the loss <span class="math notranslate '
            'nohighlight">\\(\\Delta_{KL}\\)</span></p><div class="math notranslate '
            'nohighlight">\\[ \\lambda \\lVert d \\rVert^2 \\]</div></article></main><script defer '
            'src="mathjax/tex-chtml.js"></script>'
        ),
        "wide_maths.html": (
            '<main><article style="width: 300px"><div class="math notranslate nohighlight">\\['
            + " + ".join(f"x_{{{i}}}" for i in range(60))
            + "\\]</div></article></main>"
            '<script defer src="mathjax/tex-chtml.js"></script>'
        ),
    }
    for name, body in pages.items():
        (tmp_path / name).write_text(f"<html><head></head><body>{body}</body></html>")
    with browser.Chromium() as chrome:
        views = {name: chrome.view((tmp_path / name).as_uri()) for name in pages}
    assert '<main id="m">built</main>' in views["script.html"].dom
    assert {"https://images.example.org/a.png", "https://api.example.org/data.json"} <= set(
        views["external.html"].requests
    )
    problems = browser.check_page(
        views["external.html"], tmp_path / "external.html", None, "x", site=tmp_path
    )
    assert any("requests outside the site" in p for p in problems), problems
    assert len(views["wide.html"].wide) == 1 and "400 px column" in views["wide.html"].wide[0]
    assert views["maths.html"].failed == ()
    assert (
        browser.check_page(views["maths.html"], tmp_path / "maths.html", None, "x", site=tmp_path)
        == []
    )
    assert "<mjx-container" in views["maths.html"].dom
    assert views["maths.html"].wide == ()
    assert (
        len(views["wide_maths.html"].wide) == 1
        and "mjx-container" in views["wide_maths.html"].wide[0]
    )


@needs_chromium
def test_the_transport_alone_returns_the_scripts_value_and_the_requests(tmp_path):
    """devtools with no page rule: the value of the script run after load (at the window size
    asked for), the requests that failed, and a navigation that fails."""
    (tmp_path / "a.html").write_text(
        '<title>t</title><img src="missing.png"><script>document.title += "!"</script>'
    )
    with devtools.Chromium(window=(800, 600)) as chrome:
        loaded = chrome.load((tmp_path / "a.html").as_uri(), "[document.title, innerWidth]")
        gone = chrome.load((tmp_path / "none.html").as_uri(), "1")
    assert loaded.value == ["t!", 800]
    assert loaded.failed == ((tmp_path / "missing.png").as_uri(),)
    assert gone.value is None and gone.failed == ((tmp_path / "none.html").as_uri(),)


def test_without_a_browser_the_build_skips_the_check_in_one_line(tmp_path, monkeypatch, capsys):
    from seatbelt.book.__main__ import page_check

    (tmp_path / "_toc.yml").write_text("format: jb-book\nroot: book/index\n")
    monkeypatch.delenv("CHROMIUM", raising=False)
    monkeypatch.setattr(browser, "find_chromium", lambda: None)
    assert page_check(tmp_path, "cpu", tmp_path / "_build" / "publish", required=False) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "page check skipped: no Chromium or Chrome found"
    )
    assert "CHROMIUM=" in lines[0] and "check --profile cpu --html" in lines[0]
    with pytest.raises(FileNotFoundError, match="no Chromium or Chrome found"):
        page_check(tmp_path, "cpu", tmp_path / "_build" / "cpu" / "html", required=True)
