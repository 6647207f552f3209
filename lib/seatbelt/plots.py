"""Figures shared by the chapters.

``attack_panel`` draws the paper's attack panel (Figs 1 and 4): the original, the adversarial
input, the distortion, the target, and the reconstructions of original, adversarial input and
target. Images are in [-1, 1] as the models see them and are shown mapped to [0, 1]; the
distortion is rescaled to fill [0, 1] as in the paper ("scaled to [0, 1] for ease of viewing").
The title is in the model's colour of :mod:`seatbelt.style`, and the first image says its size
in pixels (the axes of an image strip carry no ticks).
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
from torch import Tensor

from . import style
from .attacks.results import AttackResults

PANEL_ORDER = (
    "original",
    "adversarial",
    "distortion",
    "target",
    "original_recon",
    "adversarial_recon",
    "target_recon",
)
PANEL_TITLES = {
    "original": "original",
    "adversarial": "adversarial input",
    "distortion": "distortion",
    "target": "target",
    "original_recon": "recon. of original",
    "adversarial_recon": "recon. of adversarial",
    "target_recon": "recon. of target",
}


def to_display(image: Tensor, rescale: bool = False) -> np.ndarray:
    """A (C, H, W) image as an array imshow accepts: (H, W) for one channel, (H, W, 3) for RGB.

    Values in [-1, 1] map to [0, 1]; with ``rescale`` the image's own range is stretched to [0, 1]
    (a constant image shows as mid-grey).
    """
    if image.dim() != 3 or image.shape[0] not in (1, 3):
        raise ValueError(
            f"expected a (C, H, W) image with 1 or 3 channels, got shape {tuple(image.shape)}."
        )
    array = image.detach().cpu().double().numpy()
    if rescale:
        low, high = array.min(), array.max()
        array = (array - low) / (high - low) if high > low else np.full_like(array, 0.5)
    else:
        array = (array + 1) / 2
    array = np.clip(array, 0.0, 1.0)
    return array[0] if array.shape[0] == 1 else array.transpose(1, 2, 0)


def attack_panel(results: AttackResults, row: int, axes=None, titles: bool = True):
    """The seven images of attack ``row`` of ``results`` in one strip; returns the figure.

    ``axes``: seven matplotlib axes to draw into (for grids of panels), else a new figure.
    """
    images = results.panel(row)
    if axes is None:
        fig, axes = plt.subplots(1, len(PANEL_ORDER), figsize=(1.6 * len(PANEL_ORDER), 1.9))
    else:
        axes = np.asarray(axes).ravel()
        if len(axes) != len(PANEL_ORDER):
            raise ValueError(f"attack_panel draws {len(PANEL_ORDER)} images; got {len(axes)} axes.")
        fig = axes[0].figure
    for ax, key in zip(axes, PANEL_ORDER):
        shown = to_display(images[key], rescale=key == "distortion")
        ax.imshow(
            shown,
            cmap="gray" if shown.ndim == 2 else None,
            vmin=0.0,
            vmax=1.0,
            interpolation="nearest",
        )
        ax.set_xticks([])
        ax.set_yticks([])
        ax.grid(False)
        if titles:
            ax.set_title(PANEL_TITLES[key], fontsize=8)
    axes[0].set_ylabel(f"{shown.shape[0]}×{shown.shape[1]} px", fontsize=8)
    info = results.frame.loc[row]
    try:
        colour = style.colour(str(info["model"]))
    except KeyError:  # a model outside the book's families keeps the default colour
        colour = None
    unit = (
        " nats" if info["attack"] in ("kl", "output") else ""
    )  # a KL and a -log-likelihood are in nats
    fig.suptitle(
        f"{info['model']}: {info['attack']} attack ({info['layers']}), lambda = "
        f"{info['lambda']:.3g}, Delta = {info['delta']:.4g}{unit}",
        fontsize=9,
        color=colour,
    )
    return fig


STATUS_COLOURS = {
    "held": "#2e7d32",
    "contradicted": "#c62828",
    "inconclusive": "#9e9e9e",
    "out of reach": "#6a1b9a",
}


def forest(table, *, width: float = 9.0):
    """Every measured claim's deciding effect against its null: one row per claim of a scorecard
    table (:func:`seatbelt.claims.scorecard`), each on its own axis since the effects have
    different units. The dashed line is the null, the shaded band the margin (a non-inferiority
    or equivalence margin), the bar the 95% interval, coloured by status; a ratio is drawn on a
    log axis."""
    measured = table[table["status"] != "not run"]
    fig, axes = plt.subplots(
        len(measured), 1, figsize=(width, 0.62 * len(measured) + 0.6), squeeze=False
    )
    for ax, row in zip(axes[:, 0], measured.itertuples()):
        colour = STATUS_COLOURS[row.status]
        finite = np.isfinite([row.low, row.high]).all()
        if finite:
            ax.plot([row.low, row.high], [0, 0], color=colour, lw=3, solid_capstyle="butt")
        ax.plot(row.estimate, 0, "o", color=colour, ms=6)
        ax.axvline(row.null, color="black", ls="--", lw=0.8)
        if row.margin > 0:
            if row.direction == "within":
                band = (row.null - row.margin, row.null + row.margin)
            elif row.direction == "greater":
                band = (row.null - row.margin, row.null)
            else:
                band = (row.null, row.null + row.margin)
            ax.axvspan(*band, color="#dddddd", zorder=0)
        values = [v for v in (row.low, row.high, row.estimate, row.null) if np.isfinite(v)]
        if row.null > 0 and min(values) > 0 and max(values) / min(values) > 4:
            ax.set_xscale("log")
        ax.set_yticks([])
        ax.set_ylabel(
            f"{row.claim}\n{row.status}", rotation=0, ha="right", va="center", color=colour
        )
        ax.tick_params(axis="x", labelsize=8)
        ax.set_title(row.effect, fontsize=8, loc="left", pad=2)
        ax.grid(False, axis="y")
    fig.tight_layout(h_pad=0.4)
    return fig


def budget(table, paper_images: int, ax=None, *, ylabel: str = "effect"):
    """A claim's effect against the training images per model (log axis): the estimate and its 95%
    interval at each budget, coloured by the verdict there, the claim's null dashed, and the
    paper profile's budget marked (the axis reaches it)."""
    if ax is None:
        ax = plt.subplots(figsize=(5, 3.4))[1]
    images = table["training_images"].to_numpy(dtype=float)
    ax.plot(images, table["estimate"], color=style.NEUTRAL, lw=1, zorder=1)
    for row in table.itertuples():
        colour = STATUS_COLOURS[row.verdict]
        ax.errorbar(
            row.training_images,
            row.estimate,
            yerr=[[row.estimate - row.low], [row.high - row.estimate]],
            color=colour,
            marker="o",
            capsize=3,
            zorder=2,
        )
    ax.axhline(table["null"].iloc[0], color="black", ls="--", lw=0.8)
    ax.axvline(paper_images, color=style.NEUTRAL, ls=":", lw=1.2)
    ax.text(
        paper_images,
        0.98,
        " paper profile",
        transform=ax.get_xaxis_transform(),
        fontsize=8,
        va="top",
        ha="right",
        rotation=90,
        color=style.NEUTRAL,
    )
    ax.set_xscale("log")
    ax.set_xlim(images.min() / 2, paper_images * 2)
    ax.set(xlabel="training images per model (log scale)", ylabel=ylabel)
    return ax
