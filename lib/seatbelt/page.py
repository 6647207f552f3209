"""What every chapter page does besides its argument: set up, glue numbers, word effects.

A chapter's first hidden cell::

    from seatbelt import page
    chapter = page.setup(results_dir, "intro")  # the theme, results/intro/, a timer
    page.glue_values(profile=profile, n_pairs=n_pairs)

Its prose then pastes a whole effect as one role: ``page.glue_effect("raw", effect,
kind="ratio")`` glues ``raw`` as "rose 4.3× [3.9, 4.9]": the trend against the effect's null,
the estimate and its interval (the effect's level, 95% in this book; the page says so once).
``kind`` words the estimate: ``"ratio"`` is "4.3×", ``"difference"`` and ``"value"`` print the
number with ``unit`` after it. ``fmt`` is the numbers' format, as a glue role's would be.

:func:`not_run` is the one line a section shows instead of its results when its data is
missing (:func:`glue_not_run` glues it, and stand-ins for the section's numbers).
:func:`maths` glues Markdown whose ``$...$`` the page typesets: paste it with
``{glue:md}`key:myst```, the ``myst`` format, so the book's dollar maths applies.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import pandas as pd

from .claims import Effect

TRENDS = ("rose", "fell", "did not move detectably")
KINDS = ("value", "ratio", "difference")
COLUMNS = {"claim": "prediction", "held": "supported", "method": "method", "n": "n"}


def _glue(name: str, value: Any) -> None:
    from myst_nb import glue  # the book's renderer: imported on use, needed only by a page

    glue(name, value, display=False)


@dataclass
class Chapter:
    """A running chapter: where its tables go (``out``) and when it started."""

    name: str
    out: Path
    started: float = field(default_factory=time.perf_counter)

    def minutes(self) -> float:
        """Minutes since :func:`setup`."""
        return (time.perf_counter() - self.started) / 60

    def glue_minutes(self, name: str = "minutes") -> None:
        """Glue the minutes the page took so far (training and attacks included). Returns
        nothing, so that a cell ending with it shows no stray number on the page."""
        _glue(name, self.minutes())

    def save_budget(self, table) -> Path:
        """Write a claim's training-budget rows (:func:`seatbelt.claims.budget_table`) to
        ``<results_dir>/reach/<claim>.csv``, one file per claim, so chapters in separate processes
        never write the same file; the scorecard gathers them into ``reach/budget.csv``."""
        (claim,) = set(table["claim"])
        path = self.out.parent / "reach" / f"{claim}.csv"
        path.parent.mkdir(exist_ok=True)
        table.to_csv(path, index=False)
        return path


def likelihood(dataset: str, profile: str) -> str:
    """One sentence on the likelihood's scale at ``profile``: its std, the data range, and the
    effective beta where the profile departs from the paper profile's resolution."""
    from . import zoo

    r, paper = zoo.recipe(profile, dataset), zoo.recipe("paper", dataset)
    scale = zoo.beta_scale(dataset, profile)
    side = f"{r.image_size}×{r.image_size}" if r.image_size else "the data's own size"
    if dataset == "swissroll":
        return f"The likelihood is a Gaussian of std {r.likelihood_std:g} on the 3-D points."
    text = (
        f"The likelihood is a Gaussian of std {r.likelihood_std:g} per pixel on images in [-1, 1] "
        f"(the paper states σ = 0.1 but no data range) at {side}"
    )
    if r.image_size == paper.image_size:
        return text + ", the paper profile's resolution."
    paper_side = f"{paper.image_size}×{paper.image_size}"
    if abs(scale - 1) < 1e-9:
        return text + (
            f": with fewer pixels than the paper profile's {paper_side} at std "
            f"{paper.likelihood_std:g}, the likelihood keeps the same weight per image (pixels / "
            "std²) against the KL and TC terms, so each β is the paper's β."
        )
    return text + (
        f": against the paper profile's {paper_side} at std {paper.likelihood_std:g}, every KL "
        f"and TC term weighs {scale:.3g}× more, so a β here acts as {scale:.3g}β would there."
    )


def setup(results_dir: str | Path, chapter: str, *, theme: bool = True) -> Chapter:
    """Start a chapter: the book's theme, its results folder ``results_dir/<chapter>``, a timer."""
    if theme:
        from . import style

        style.set_theme()
    out = Path(results_dir) / chapter
    out.mkdir(parents=True, exist_ok=True)
    return Chapter(chapter, out)


def glue_values(values: Mapping[str, Any] | None = None, /, **named: Any) -> None:
    """Glue every value under its name (not displayed): a mapping, keywords, or both."""
    for name, value in {**(values or {}), **named}.items():
        _glue(name, value)


def maths(text: str):
    """Markdown to glue where the page's maths typesets: paste it with ``{glue:md}`key:myst```."""
    from IPython.display import Markdown

    return Markdown(text)


def power_range(low: float, high: float, base: int = 2) -> str:
    """A range of powers in page maths: ``power_range(-20, 20)`` is "$2^{-20}$ to $2^{20}$"."""
    return f"${base}^{{{low:g}}}$ to ${base}^{{{high:g}}}$"


def listing(values: Iterable[Any], conjunction: str = "and") -> str:
    """ "a", "a and b", "a, b and c"."""
    values = [str(v) for v in values]
    if not values:
        raise ValueError("listing needs at least one value.")
    if len(values) == 1:
        return values[0]
    return f"{', '.join(values[:-1])} {conjunction} {values[-1]}"


def seed_reach(
    per_seed: Sequence[float], what: str, *, fmt: str = ".3g", per: str = "family"
) -> str:
    """What an interval covers, in words for a page's prose: over several training seeds, the seeds
    crossed with the images and ``what`` seed by seed (``per_seed``: one estimate per seed, its
    range); with one seed, the images of one trained model per ``per``."""
    if len(per_seed) < 2:
        return f"the images of one trained model per {per}: not the variation between training runs"
    return (
        f"{len(per_seed)} training seeds crossed with the images; seed by seed {what} runs from "
        f"{min(per_seed):{fmt}} to {max(per_seed):{fmt}}"
    )


def direction(
    effect: Effect, up: str = TRENDS[0], down: str = TRENDS[1], flat: str = TRENDS[2]
) -> str:
    """``up`` when the whole interval lies above the effect's null, ``down`` when below, else
    ``flat`` (the interval straddles the null)."""
    if effect.low > effect.null:
        return up
    if effect.high < effect.null:
        return down
    return flat


def effect_text(
    effect: Effect,
    *,
    kind: str = "value",
    fmt: str = ".3g",
    unit: str = "",
    trend: bool | Sequence[str] = True,
) -> str:
    """One effect as words: "rose 4.3× [3.9, 4.9]", "fell -2.1 nats [-3, -1.2]", "did not move
    detectably (1.02× [0.91, 1.15])".

    ``trend``: True puts :func:`direction`'s word first, a (up, down, flat) triple other words,
    False none; the numbers of an interval that straddles the null follow in parentheses.
    ``kind`` "ratio" writes the estimate as a factor (×), "difference" and "value" as the number
    followed by ``unit``; the interval follows in brackets, in the same ``fmt``.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}.")
    estimate = f"{effect.estimate:{fmt}}"
    if kind == "ratio":
        estimate += "×"
    elif unit:
        estimate += f" {unit}"
    text = f"{estimate} [{effect.low:{fmt}}, {effect.high:{fmt}}]"
    if trend is False:
        return text
    words = TRENDS if trend is True else tuple(trend)
    word = direction(effect, *words)
    return f"{word} ({text})" if word == words[2] else f"{word} {text}"


def glue_effect(name: str, effect: Effect, **words: Any) -> str:
    """Glue :func:`effect_text` of ``effect`` (its keywords in ``words``) as ``name``; return it."""
    text = effect_text(effect, **words)
    _glue(name, text)
    return text


def glue_effects(effects: Mapping[str, Effect], **words: Any) -> dict[str, str]:
    """:func:`glue_effect` for each named effect, all worded alike."""
    return {name: glue_effect(name, effect, **words) for name, effect in effects.items()}


def effect_table(effects: Iterable[Effect], *extra: str) -> pd.DataFrame:
    """One row per effect: its name, estimate and interval, then the ``extra`` columns asked for:
    "claim" (what the claim predicts), "held" (whether the interval lies there), "method", "n"."""
    unknown = [c for c in extra if c not in COLUMNS]
    if unknown:
        raise ValueError(f"unknown effect columns {unknown}; choose from {list(COLUMNS)}.")
    return pd.DataFrame(
        [
            {
                "effect": e.name,
                "estimate": e.estimate,
                "low": e.low,
                "high": e.high,
                **{c: getattr(e, COLUMNS[c]) for c in extra},
            }
            for e in effects
        ],
        columns=["effect", "estimate", "low", "high", *extra],
    )


def missing(dataset: str) -> str | None:
    """Why the zoo's ``dataset`` cannot be had (what to get, and where), or None when it can."""
    from .chapters import data_missing

    return data_missing(dataset)


def not_run(*datasets: str) -> str | None:
    """The line a section shows instead of its results when one of ``datasets`` is missing:
    "not run: data missing — <how to get it>"; None when every dataset can be had."""
    for dataset in datasets:
        reason = missing(dataset)
        if reason is not None:
            return f"not run: data missing — {reason}"
    return None


def glue_not_run(
    name: str, *datasets: str, placeholders: Mapping[str, Any] | Iterable[str] = ()
) -> bool:
    """Glue ``name`` as the :func:`not_run` line of ``datasets`` ("" when they can all be had) and
    return whether the section can run. When it cannot, the section's own glue keys
    (``placeholders``: names, glued as NaN, or a mapping of names to the words to show) are glued
    in its place, so its prose still renders, under the line that says why it did not run."""
    line = not_run(*datasets)
    _glue(name, line or "")
    if line is not None:
        values = (
            placeholders
            if isinstance(placeholders, Mapping)
            else dict.fromkeys(placeholders, math.nan)
        )
        glue_values(values)
    return line is None


CONTROL_COLUMNS = {
    "trials": "trials",
    "above_copy_bound": "above copy (%)",
    "capped": "capped (%)",
    "cap10_change_max": "10× cap: Δ drop (%)",
    "reference_strict": "≥ reference (%)",
}


def controls(
    frame: pd.DataFrame, by: Sequence[str] = ("model", "attack", "layers"), name: str = "controls"
) -> pd.DataFrame:
    """The attack controls of a page's batteries, one row per battery, and their summary glued.

    Glued: ``<name>_above`` (the largest share of trials whose solver alone ended above the cost
    of copying the target, which the battery then kept), ``<name>_cap10`` (the largest relative
    drop of Δ with 10× the iteration cap), ``<name>_reference`` (the smallest share of re-solved
    trials as strong as the scipy reference) and ``<name>_trials`` (the trials in all). Returns
    the table to show (shares in %), rounded.
    """
    from .attacks import controls as battery_controls

    table = battery_controls(frame, by=tuple(by))
    glue_values(
        {
            f"{name}_above": f"{100 * table['above_copy_bound'].max():.1f}%",
            f"{name}_cap10": f"{100 * table['cap10_change_max'].max():.2f}%",
            f"{name}_reference": f"{100 * table['reference_strict'].min():.0f}%",
            f"{name}_trials": f"{int(table['trials'].sum()):,}",
        }
    )
    shown = table[[*by, *CONTROL_COLUMNS]].copy()
    shown["trials"] = shown["trials"].astype(int)
    for column in list(CONTROL_COLUMNS)[1:]:
        shown[column] = (100 * shown[column]).round(1)
    # a column that is the same for every battery says nothing per row
    constant = [c for c in by if shown[c].nunique() == 1 and len(shown) > 1]
    return shown.drop(columns=constant).rename(columns=CONTROL_COLUMNS)
