"""The book's one look: the family palette, the theme, and the chapter template's code rules."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import matplotlib as mpl
import matplotlib.pyplot as plt
import nbformat
import pytest
from matplotlib.colors import to_rgb

from seatbelt import style

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "book").glob("*.ipynb"))
MAX_LINE = 100


def test_every_zoo_family_has_one_distinct_colour():
    from seatbelt import zoo

    assert style.FAMILIES == tuple(zoo.FAMILIES)
    colours = [to_rgb(c) for c in style.PALETTE.values()]
    assert len(set(colours)) == len(colours)
    assert style.NEUTRAL not in style.PALETTE.values()


@pytest.mark.parametrize(
    "name, family",
    [
        ("VAE", "vae"),
        ("vae", "vae"),
        ("VAE (beta = 1)", "vae"),
        ("beta-VAE", "beta-vae"),
        ("β-VAE", "beta-vae"),
        ("beta_vae", "beta-vae"),
        ("beta-TCVAE", "beta-tcvae"),
        ("β-TCVAE (β = 6)", "beta-tcvae"),
        ("beta-tcvae", "beta-tcvae"),
        ("Seatbelt-VAE", "seatbelt"),
        ("seatbelt L=3", "seatbelt"),
        ("chain", "chain"),
        ("TC chain", "chain"),
    ],
)
def test_display_names_map_to_their_family(name, family):
    assert style.family(name) == family
    assert style.colour(name) == style.PALETTE[family]


def test_an_unknown_model_name_is_an_error_listing_the_families():
    with pytest.raises(KeyError, match="vae, beta-vae, beta-tcvae, seatbelt, chain"):
        style.colour("ResNet")


def test_set_theme_puts_the_family_colours_first_in_the_cycle():
    with mpl.rc_context():
        style.set_theme()
        cycle = [to_rgb(c) for c in mpl.rcParams["axes.prop_cycle"].by_key()["color"]]
        assert cycle[: len(style.PALETTE)] == [to_rgb(c) for c in style.PALETTE.values()]
        assert mpl.rcParams["figure.dpi"] == style.FIGURE_DPI
        fig, ax = plt.subplots()
        assert to_rgb(ax.plot([0, 1])[0].get_color()) == to_rgb(style.PALETTE["vae"])
        plt.close(fig)


# --- the chapter template (book/TEMPLATE.md) ------------------------------------------------------


def code_lines(cell) -> list[str]:
    """A code cell's lines, or the lines of a Markdown cell's fenced code blocks."""
    if cell.cell_type == "code":
        return cell.source.splitlines()
    return [
        line
        for block in re.findall(r"```[^\n]*\n(.*?)```", cell.source, re.S)
        for line in block.splitlines()
    ]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_chapter_code_lines_fit_100_characters(path):
    nb = nbformat.read(path, as_version=4)
    long = [
        f"cell {i}: {len(line)} characters: {line[:50]}..."
        for i, cell in enumerate(nb.cells)
        for line in code_lines(cell)
        if len(line) > MAX_LINE
    ]
    assert not long, (
        f"{path.name}: wrap these lines at {MAX_LINE} characters (book/TEMPLATE.md):\n"
        + "\n".join(long)
    )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_chapters_that_plot_use_the_book_theme(path):
    code = "\n".join(
        c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"
    )
    if "plt." in code or "attack_panel(" in code:
        assert "style.set_theme()" in code or "page.setup(" in code, (
            f"{path.name} draws figures: call page.setup(...) or style.set_theme() first "
            "(book/TEMPLATE.md)"
        )


def test_no_two_chapters_define_the_same_helper():
    """A helper two chapters need belongs in the library (seatbelt.page, or the module of its
    concept), not copied into both notebooks."""
    defined: dict[str, list[str]] = {}
    for path in NOTEBOOKS:
        for cell in nbformat.read(path, as_version=4).cells:
            if cell.cell_type == "code":
                for node in ast.parse(cell.source).body:
                    if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                        defined.setdefault(node.name, []).append(path.name)
    twice = {name: where for name, where in defined.items() if len(where) > 1}
    assert not twice, f"move these helpers into the library: {twice}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_captions_leave_the_numbering_to_the_page(path):
    """The page numbers its figures ("Fig. 3"); a caption that opens with a figure number of its
    own ("Fig 3: ...") shows two numbers. The paper's figure is named inside the caption."""
    for cell in nbformat.read(path, as_version=4).cells:
        caption = cell.metadata.get("mystnb", {}).get("figure", {}).get("caption", "")
        assert not re.match(r"\s*(Fig|Figure)\.?\s*[A-Z]?\d", caption), (
            f"{path.name}: caption opens with a figure number: {caption[:40]!r}..."
        )
