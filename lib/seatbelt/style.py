"""The book's one look: a seaborn theme, and a fixed colour per model family.

Every chapter starts with ``style.set_theme()`` and colours a model with ``style.colour(name)``,
so the VAE, the beta-VAE, the beta-TCVAE, the Seatbelt-VAE and the chain baseline have the same
colour on every page. The colours are from seaborn's colour-blind palette (Okabe and Ito's
hues), assigned so that the pairs the book compares most (VAE and beta-TCVAE, beta-TCVAE and
Seatbelt, Seatbelt and the chain) differ in hue and in lightness.

    from seatbelt import style
    style.set_theme()
    ax.plot(x, y, color=style.colour("beta-TCVAE"), label="beta-TCVAE")
"""

from __future__ import annotations

import re

import matplotlib as mpl
import seaborn as sns

# Family name (as in seatbelt.zoo.FAMILIES) -> colour.
PALETTE: dict[str, str] = {
    "vae": "#0173B2",  # blue
    "beta-vae": "#CC78BC",  # pink
    "beta-tcvae": "#DE8F05",  # orange
    "seatbelt": "#029E73",  # bluish green
    "chain": "#D55E00",  # vermilion
}
FAMILIES = tuple(PALETTE)
NEUTRAL = "#949494"  # anything that is not a model: references, the paper's numbers, bounds
FIGURE_DPI = 110  # inline PNGs: sharp on a laptop screen, small pages


def family(name: str) -> str:
    """The family of a model's display name: "VAE" -> "vae", "β-TCVAE (β = 6)" -> "beta-tcvae",
    "Seatbelt-VAE L=3" -> "seatbelt", "chain" -> "chain". Unknown names are an error."""
    key = re.sub(r"\(.*?\)", "", name).lower().replace("β", "beta")
    key = re.sub(r"[\s_]+", "-", key).strip("-")
    if "seatbelt" in key:
        return "seatbelt"
    if "chain" in key:
        return "chain"
    if re.search(r"tc-?vae", key):
        return "beta-tcvae"
    if re.search(r"beta-?vae", key):
        return "beta-vae"
    if re.fullmatch(r"vae([-\d.=a-z]*)?", key):
        return "vae"
    raise KeyError(
        f"{name!r} names no model family; the families are {', '.join(FAMILIES)} "
        "(display names like 'VAE', 'beta-TCVAE', 'β-VAE', 'Seatbelt-VAE', 'chain' work)."
    )


def colour(name: str) -> str:
    """The fixed colour of a model, by family name or display name."""
    return PALETTE[family(name)]


def set_theme() -> None:
    """The book's theme: seaborn's whitegrid at notebook scale, the family colours first in the
    colour cycle, and figures sized and resolved for the text column."""
    sns.set_theme(context="notebook", style="whitegrid", palette=list(PALETTE.values()))
    mpl.rcParams.update(
        {
            "figure.dpi": FIGURE_DPI,
            "savefig.dpi": FIGURE_DPI,
            "axes.titlesize": "medium",
            "legend.frameon": False,
        }
    )
