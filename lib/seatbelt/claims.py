"""The paper's claims, the checks the chapters make of them, and the effect sizes those checks
report.

A chapter measures an effect (a ratio, a difference, a correlation) over many units (attack
pairs, test images), attaches a 95% interval (:func:`measure`: a BCa bootstrap for any
statistic; :func:`paired_comparison`: a Student-t interval for the same units measured twice,
which holds its level with few units), and records a :class:`ClaimCheck`
for one claim of the registry :data:`CLAIMS`. A check is *held* when the whole interval lies on
the side of ``null`` the claim predicts, *contradicted* when the whole interval lies on the other
side, *inconclusive* when it straddles, and *out of reach* when the chapter states why its profile
cannot test the claim (too few models for the interval to fit, an effect still moving with the
training budget); a claim no chapter has measured is *not run*. Each check also says how far its
verdict reaches: the dataset, the seeds behind it, and the training images per model against the
paper profile's. The scorecard chapter reads every check back with :func:`load_checks` and shows
:func:`scorecard`.

Checks are JSON files ``<results_dir>/claims/<claim>.json``, one per claim, so chapters that
run in separate processes (or on separate machines of a sweep) never write the same file.
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Literal, Sequence

import numpy as np
import pandas as pd
from scipy import stats

Direction = Literal["greater", "less", "within"]
Status = Literal["held", "contradicted", "inconclusive", "out of reach", "not run"]
Kind = Literal["empirical", "identity"]
DIRECTIONS: tuple[str, ...] = ("greater", "less", "within")
STATUSES: tuple[str, ...] = ("held", "contradicted", "inconclusive", "out of reach", "not run")
SCHEMA = 2


@dataclass(frozen=True)
class Claim:
    """A claim of the paper. ``kind`` "identity": it holds for any data and any model, so only a
    code error can fail it (the scorecard keeps it apart). ``paper_data``: the datasets the paper
    shows it on."""

    id: str
    statement: str
    paper: str
    paper_data: str = ""
    kind: Kind = "empirical"


CLAIMS: dict[str, Claim] = {
    c.id: c
    for c in (
        Claim(
            "C1",
            "beta-TCVAE's posterior std norm is larger than beta-VAE's at equal beta",
            "Fig 2",
            "CelebA",
        ),
        Claim(
            "C2",
            "reconstruction likelihood degrades less with beta for beta-TCVAE than for beta-VAE",
            "Fig 2, Fig A.7",
            "CelebA, Swiss roll",
        ),
        Claim(
            "C3",
            "the attacker's Delta_KL rises from beta = 1 to beta > 1 for beta-TCVAE",
            "Fig 3",
            "dSprites, Chairs, 3D Faces",
        ),
        Claim(
            "C4",
            "Seatbelt beats beta-TCVAE on -log p(x_t|z*) at large beta for the KL, output and W2 "
            "attacks",
            "Fig 5",
            "3D Faces, Chairs",
        ),
        Claim(
            "C5",
            "Seatbelt at large beta multiplies Delta_KL over the VAE by a large factor",
            "Fig 5, Fig D.9",
            "3D Faces, Chairs",
        ),
        Claim(
            "C6",
            "Seatbelt's beta = 1 ELBO degrades more slowly with beta than beta-TCVAE's",
            "Fig 6",
            "Chairs, 3D Faces",
        ),
        Claim(
            "C7",
            "attacking all layers is at least as effective as attacking z_1 or z_L alone",
            "Fig D.8",
            "3D Faces, Chairs",
        ),
        Claim(
            "C8",
            "robustness is not reconstruction decay: the adversarial reconstruction's distance to "
            "the target grows faster with beta than the target-reconstruction distance",
            "Fig E.10",
            "dSprites, Chairs, 3D Faces",
        ),
        Claim(
            "C9",
            "there is no simple correspondence between MIG and the attack loss",
            "Fig E.11",
            "3D Faces, Chairs",
        ),
        Claim("C10", "beta > 1 denoises better at every noise scale", "Fig F.12", "Chairs"),
        Claim(
            "C11",
            "downstream accuracy under attack ranks VAE < beta-TCVAE < Seatbelt",
            "Table 1",
            "SVHN, CIFAR-10",
        ),
        Claim(
            "C12",
            "the Theorem 1 decomposition sums to the ELBO",
            "Appendix B",
            "any",
            kind="identity",
        ),
        Claim(
            "C13",
            "TC on a chain model (likelihood on z_1 only) does not confer the single-layer "
            "robustness gain",
            "Section 4",
        ),
        # Beyond the paper: today's threat models (book/threat_models.ipynb) and defences
        # (book/defences.ipynb). ``paper`` names where the claim comes from.
        Claim(
            "N1",
            "the Seatbelt's advantage over the VAE under the paper's attack survives a fixed "
            "L-infinity budget",
            "this book",
            "any",
        ),
        Claim(
            "N2",
            "under untargeted attacks robustness ranks VAE < beta-TCVAE < Seatbelt",
            "this book",
            "any",
        ),
        Claim(
            "N3",
            "the worst case over restarts is strictly worse than the restart average",
            "this book, on how Kuzina et al. (2022) measure",
            "any",
        ),
        Claim(
            "D1",
            "HMC on the posterior raises robustness under a non-adaptive attack, for every family",
            "Kuzina et al. (2022)",
        ),
        Claim(
            "D2",
            "under an adaptive attack through the chain, a share of HMC's gain remains",
            "this book",
            "any",
        ),
        Claim(
            "D3",
            "HMC leaves clean reconstructions no worse",
            "Kuzina et al. (2022)",
        ),
        Claim(
            "D4",
            "under the adaptive attack the Seatbelt with HMC is more robust than either alone",
            "this book",
            "any",
        ),
    )
}
PAPER_CLAIMS: tuple[str, ...] = tuple(c for c in CLAIMS if c.startswith("C"))


@dataclass(frozen=True)
class Effect:
    """An effect size with its interval and the side of ``null`` a claim predicts.

    direction "greater": the claim predicts effect > null - margin (margin 0: strictly larger;
    margin > 0: "at least as large", a non-inferiority margin); "less" mirrors it; "within"
    predicts |effect - null| <= margin (an equivalence, margin > 0).
    """

    name: str
    estimate: float
    low: float
    high: float
    null: float
    direction: Direction
    margin: float = 0.0
    level: float = 0.95
    n: int = 0
    method: str = "BCa bootstrap"

    def __post_init__(self):
        if self.direction not in DIRECTIONS:
            raise ValueError(
                f"Effect {self.name!r}: direction {self.direction!r} is not one of {DIRECTIONS}."
            )
        if self.margin < 0 or (self.direction == "within" and self.margin == 0):
            raise ValueError(
                f"Effect {self.name!r}: margin must be >= 0, and > 0 for direction 'within' (got "
                f"{self.margin})."
            )
        if not 0 < self.level < 1:
            raise ValueError(f"Effect {self.name!r}: level must be in (0, 1), got {self.level}.")
        if self.low > self.high:
            raise ValueError(f"Effect {self.name!r}: interval low {self.low} > high {self.high}.")

    @property
    def supported(self) -> bool:
        """Whether the whole interval lies where the claim predicts (False when it is not
        finite)."""
        if not (math.isfinite(self.low) and math.isfinite(self.high)):
            return False
        if self.direction == "greater":
            return self.low > self.null - self.margin
        if self.direction == "less":
            return self.high < self.null + self.margin
        return self.null - self.margin <= self.low and self.high <= self.null + self.margin

    @property
    def contradicted(self) -> bool:
        """Whether the whole interval lies on the other side of the claim's bound (False when it
        is not finite): "greater" wanted and all of it below ``null - margin``; for
        "within", all of it outside ``null ± margin``."""
        if not (math.isfinite(self.low) and math.isfinite(self.high)):
            return False
        if self.direction == "greater":
            return self.high < self.null - self.margin
        if self.direction == "less":
            return self.low > self.null + self.margin
        return self.high < self.null - self.margin or self.low > self.null + self.margin

    @property
    def verdict(self) -> str:
        """held, contradicted or inconclusive: where the whole interval lies."""
        return "held" if self.supported else "contradicted" if self.contradicted else "inconclusive"

    @property
    def prediction(self) -> str:
        if self.direction == "within":
            return f"within {self.null:g} ± {self.margin:g}"
        sign, bound = (
            (">", self.null - self.margin)
            if self.direction == "greater"
            else ("<", self.null + self.margin)
        )
        return f"{sign} {bound:g}"

    def __str__(self) -> str:
        pct = round(100 * self.level)
        return (
            f"{self.name} = {self.estimate:.3g} [{self.low:.3g}, {self.high:.3g}] "
            f"({pct}%, n={self.n}; claim {self.prediction})"
        )


def ratio_of_medians(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
    """median(a) / median(b), vectorised over ``axis`` as :func:`scipy.stats.bootstrap` wants."""
    return np.median(a, axis=axis) / np.median(b, axis=axis)


def median(a: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.median(a, axis=axis)


def measure(
    name: str,
    statistic: Callable[..., np.ndarray],
    samples: tuple[np.ndarray, ...] | list[np.ndarray],
    *,
    null: float,
    direction: Direction,
    margin: float = 0.0,
    paired: bool = False,
    level: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
) -> Effect:
    """The effect ``statistic(*samples)`` with a BCa bootstrap interval at ``level``.

    ``statistic`` takes one array per sample and an ``axis`` keyword (see :func:`ratio_of_medians`).
    ``paired=True`` resamples the units of all samples together (same attack problems measured
    on two models); otherwise each sample is resampled on its own. An interval that collapses to
    a point (all resamples equal, e.g. constant data) is returned as that point.
    """
    arrays = [np.asarray(s, dtype=float).ravel() for s in samples]
    if not arrays or any(len(a) < 2 for a in arrays):
        raise ValueError(
            f"Effect {name!r}: every sample needs at least 2 values, got sizes "
            f"{[len(a) for a in arrays]}."
        )
    if paired and len({len(a) for a in arrays}) != 1:
        raise ValueError(
            f"Effect {name!r}: paired samples must have equal sizes, got "
            f"{[len(a) for a in arrays]}."
        )
    if not all(np.isfinite(a).all() for a in arrays):
        raise ValueError(
            f"Effect {name!r}: samples contain NaN or inf; drop or explain them before measuring."
        )
    estimate = float(statistic(*arrays, axis=-1))
    with warnings.catch_warnings():
        # BCa is undefined when resamples barely vary; the non-finite interval is handled below
        warnings.simplefilter("ignore", stats.DegenerateDataWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        res = stats.bootstrap(
            arrays,
            statistic,
            n_resamples=n_resamples,
            vectorized=True,
            paired=paired,
            confidence_level=level,
            method="BCa",
            rng=np.random.default_rng(seed),
        )
    low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
    if not (math.isfinite(low) and math.isfinite(high)):
        spread = res.bootstrap_distribution
        if np.ptp(spread) == 0:  # degenerate: BCa is undefined but every resample agrees
            low = high = float(spread.flat[0])
    return Effect(
        name,
        estimate,
        low,
        high,
        null=null,
        direction=direction,
        margin=margin,
        level=level,
        n=len(arrays[0]),
    )


def paired_comparison(
    name: str,
    a: np.ndarray,
    b: np.ndarray,
    *,
    scale: Literal["ratio", "difference"],
    null: float,
    direction: Direction,
    margin: float = 0.0,
    level: float = 0.95,
    n_resamples: int = 4000,
) -> Effect:
    """How ``a`` compares with ``b`` on the same units, with a Student-t interval.

    ``scale="ratio"``: the geometric mean of a_i / b_i (a and b positive), the interval from the
    t interval of the mean log ratio; ``"difference"``: the mean of a_i - b_i and its t interval.
    Few units (attack pairs: 5 to 20) are where bootstrap intervals undercover (measured for a
    mean with BCa: 81% at n = 5, 88% at n = 10, 91% at n = 20 for a nominal 95%); the t interval
    is exact for normal per-unit differences and close for symmetric ones.

    Where ``a`` and ``b`` are Series indexed by (seed, pair) over more than one training seed, the
    units are not independent: the pairs are the same under every seed, and a seed's models move
    all of its pairs. The interval is then a percentile bootstrap that resamples the seeds and the
    pairs, each on its own (:func:`cluster_weights`, crossed), of the same mean per-unit
    difference (or log ratio).
    """
    seeds = _seeds(a, b)
    index = a.index if seeds > 1 else None
    a, b = np.asarray(a, dtype=float).ravel(), np.asarray(b, dtype=float).ravel()
    if len(a) != len(b) or len(a) < 2:
        raise ValueError(
            f"Effect {name!r}: needs two paired samples of equal size >= 2, got {len(a)} and "
            f"{len(b)}."
        )
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError(
            f"Effect {name!r}: samples contain NaN or inf; drop or explain them before measuring."
        )
    if scale == "ratio":
        if (a <= 0).any() or (b <= 0).any():
            raise ValueError(
                f"Effect {name!r}: a ratio needs positive values; compare differences instead."
            )
        d = np.log(a) - np.log(b)
    elif scale == "difference":
        d = a - b
    else:
        raise ValueError(f"Effect {name!r}: scale must be 'ratio' or 'difference', got {scale!r}.")
    if index is not None:  # seeds as well as pairs: the two-way cluster bootstrap
        units = index.to_frame(index=False)
        weights = cluster_weights(
            units,
            ["seed", *(n for n in index.names if n != "seed")],
            n_resamples,
            np.random.default_rng(0),
            crossed=True,
        )
        spread = (weights @ d) / weights.sum(axis=1)
        tail = 100 * (1 - level) / 2
        low, high = np.percentile(spread, [tail, 100 - tail])
        mid = d.mean()
        method = f"two-way bootstrap over {seeds} seeds and the pairs ({scale})"
    else:
        half = stats.t.ppf(0.5 + level / 2, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d))
        low, mid, high = d.mean() - half, d.mean(), d.mean() + half
        method = f"paired t ({'log ' if scale == 'ratio' else ''}{scale})"
    if scale == "ratio":
        low, mid, high = np.exp(low), np.exp(mid), np.exp(high)
    return Effect(
        name,
        float(mid),
        float(low),
        float(high),
        null=null,
        direction=direction,
        margin=margin,
        level=level,
        n=len(d),
        method=method,
    )


def _seeds(a, b) -> int:
    """How many training seeds the units of a paired comparison span: the values of a "seed"
    level of the index of ``a`` (1 when there is none); ``b`` must be indexed alike."""
    index = getattr(a, "index", None)
    if not isinstance(index, pd.MultiIndex) or "seed" not in index.names:
        return 1
    if not index.equals(getattr(b, "index", None)):
        raise ValueError(
            "paired samples indexed by (seed, pair) must have the same index, in the same order."
        )
    return index.get_level_values("seed").nunique()


def slope_comparison(
    name: str,
    x: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    *,
    null: float = 0.0,
    direction: Direction = "greater",
    margin: float = 0.0,
    level: float = 0.95,
) -> Effect:
    """Whether ``a`` grows faster with ``x`` than ``b`` does, on the same units.

    ``a`` and ``b`` are (n_units, len(x)) arrays: each unit (an attack pair) measured at every
    ``x`` (e.g. beta). Each unit gives the least-squares slope of its ``a`` on ``x`` and of its
    ``b`` on ``x``; the effect is the mean over units of slope(a) - slope(b), with the paired
    Student-t interval of :func:`paired_comparison` (the unit is the pair, as there).
    """
    x = np.asarray(x, dtype=float).ravel()
    a, b = np.atleast_2d(np.asarray(a, dtype=float)), np.atleast_2d(np.asarray(b, dtype=float))
    if a.shape != b.shape or a.shape[1] != len(x):
        raise ValueError(
            f"Effect {name!r}: a and b must both be (n_units, {len(x)}) (one column per x); "
            f"got {a.shape} and {b.shape}."
        )
    if len(np.unique(x)) < 2:
        raise ValueError(
            f"Effect {name!r}: a slope needs at least two distinct x values, got {x.tolist()}."
        )
    centred = x - x.mean()
    slopes = [(v - v.mean(axis=1, keepdims=True)) @ centred / (centred @ centred) for v in (a, b)]
    return paired_comparison(
        name,
        slopes[0],
        slopes[1],
        scale="difference",
        null=null,
        direction=direction,
        margin=margin,
        level=level,
    )


def cluster_weights(
    frame: pd.DataFrame,
    levels: Sequence[str],
    n_resamples: int,
    rng: np.random.Generator,
    *,
    crossed: bool = False,
) -> np.ndarray:
    """(n_resamples, len(frame)) multiplicities of a hierarchical bootstrap over ``levels``.

    The first level's units (training seeds) are drawn with replacement; then, within each drawn
    unit, the next level's units (pairs) with replacement, and so on; a row's weight is how often
    its innermost unit was drawn. Each of c draws of a unit resamples its n sub-units afresh, and
    the sum of c independent Multinomial(n, 1/n) counts is one Multinomial(c n, 1/n), which is
    how the counts are drawn. Rows of one innermost unit (a pair's λ and β) share its weight, so
    they move together: the resample keeps a pair's trials together, and pairs shared across the
    compared arms paired.

    ``crossed=True`` is for levels that are not nested: the same pairs attacked on the models of
    every seed. Each level's units are then drawn on their own, and a row's weight is the product
    of its units' counts (the two-way bootstrap of McCullagh 2000, conservative where both levels
    vary).
    """
    if not levels:
        raise ValueError("cluster_weights needs at least one level (a column of frame).")
    missing = [level for level in levels if level not in frame.columns]
    if missing:
        raise ValueError(f"cluster_weights: frame has no column {missing}; it has {list(frame)}.")
    if crossed:
        weights = np.ones((n_resamples, len(frame)))
        for level in levels:
            units, row_unit = np.unique(frame[level].to_numpy(), return_inverse=True)
            weights *= _draw_counts(len(units), n_resamples, rng)[:, row_unit]
        return weights
    counts = np.ones((n_resamples, 1))
    parents = np.zeros(len(frame), dtype=np.int64)
    for depth, level in enumerate(levels):
        keys = frame[list(levels[: depth + 1])].drop_duplicates().reset_index(drop=True)
        key_of = pd.MultiIndex.from_frame(keys)
        row_unit = key_of.get_indexer(pd.MultiIndex.from_frame(frame[list(levels[: depth + 1])]))
        unit_parent = np.zeros(len(keys), dtype=np.int64)
        unit_parent[row_unit] = parents
        child_counts = np.zeros((n_resamples, len(keys)))
        for parent in np.unique(unit_parent):
            children = np.flatnonzero(unit_parent == parent)
            draws = counts[:, parent] * len(children)
            child_counts[:, children] = rng.multinomial(
                draws.astype(np.int64), np.full(len(children), 1 / len(children))
            )
        counts, parents = child_counts, row_unit
    return counts[:, parents]


def _draw_counts(n_units: int, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    """(n_resamples, n_units): how often each of n units is drawn in n draws with replacement."""
    return rng.multinomial(n_units, np.full(n_units, 1 / n_units), n_resamples)


def crossed_means(
    name: str,
    statistic: Callable[[np.ndarray], np.ndarray],
    samples: Sequence[np.ndarray],
    *,
    null: float,
    direction: Direction,
    margin: float = 0.0,
    level: float = 0.95,
    n_resamples: int = 4000,
    seed: int = 0,
) -> Effect:
    """``statistic`` of the means of ``samples``, with an interval over training seeds crossed with
    units.

    Each sample is an (n_seeds, n_units) array: row s holds one arm's model of training seed s
    measured on every unit (held-out images, the same in every row and every arm). ``statistic``
    maps the (..., len(samples)) arm means to the effect (a ratio of two slopes over beta, say).
    Seeds and units are drawn on their own (the crossed bootstrap of :func:`cluster_weights`),
    and every arm's mean is taken under the same draw, so that the arms stay paired by image and
    by seed. Percentile interval; with one seed, it covers the units only.
    """
    arrays = np.stack([np.atleast_2d(np.asarray(s, dtype=float)) for s in samples])
    if arrays.ndim != 3 or arrays.shape[2] < 2:
        raise ValueError(
            f"Effect {name!r}: every sample must be (n_seeds, n_units) with >= 2 units, the same "
            f"shape for all; got {[np.shape(s) for s in samples]}."
        )
    if not np.isfinite(arrays).all():
        raise ValueError(
            f"Effect {name!r}: samples contain NaN or inf; drop or explain them before measuring."
        )
    _, n_seeds, n_units = arrays.shape
    rng = np.random.default_rng(seed)
    seed_counts = _draw_counts(n_seeds, n_resamples, rng)
    unit_counts = _draw_counts(n_units, n_resamples, rng)
    means = np.einsum("rs,msn,rn->rm", seed_counts, arrays, unit_counts) / (n_seeds * n_units)
    with np.errstate(invalid="ignore", divide="ignore"):
        spread = np.asarray(statistic(means), dtype=float)
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(spread[np.isfinite(spread)], [tail, 100 - tail])
    over = f"{n_seeds} seeds and the units" if n_seeds > 1 else "the units"
    return Effect(
        name,
        float(statistic(arrays.mean(axis=(1, 2)))),
        float(low),
        float(high),
        null=null,
        direction=direction,
        margin=margin,
        level=level,
        n=n_units,
        method=f"percentile bootstrap over {over}",
    )


def ratio_of_pooled_means(
    name: str,
    frame: pd.DataFrame,
    value: str,
    arm: np.ndarray,
    *,
    levels: Sequence[str] = ("seed", "pair"),
    crossed: bool = False,
    null: float = 1.0,
    direction: Direction = "greater",
    level: float = 0.95,
    n_resamples: int = 4000,
    seed: int = 0,
) -> Effect:
    """mean(value over the rows in ``arm``) / mean(value over the rest), with a hierarchical
    bootstrap over ``levels`` (:func:`cluster_weights`): seeds, then the pairs within a seed, the
    same draw for both arms, so that a pair's trials stay together and pairs are shared across
    the arms (``crossed``: seeds and pairs drawn on their own, for pairs shared across seeds).
    Percentile interval. This is Fig 3's statistic (pooled trials per β) with an interval
    whose units are the ones that vary independently. An interval that resamples trials as
    independent units misstates it both ways: too narrow, since a pair's trials at nearby λ are
    nearly its KL0, and too wide where pairing the arms removes the pairs' own spread.
    """
    arm = np.asarray(arm, dtype=bool)
    values = frame[value].to_numpy(dtype=float)
    if len(arm) != len(frame) or not arm.any() or arm.all():
        raise ValueError(
            f"Effect {name!r}: arm must mark some rows of frame (not all) as the numerator's."
        )
    if not np.isfinite(values).all():
        raise ValueError(f"Effect {name!r}: {value} contains NaN or inf; drop or explain them.")

    def statistic(weights: np.ndarray) -> np.ndarray:
        top = (weights[..., arm] @ values[arm]) / weights[..., arm].sum(axis=-1)
        bottom = (weights[..., ~arm] @ values[~arm]) / weights[..., ~arm].sum(axis=-1)
        return top / bottom

    weights = cluster_weights(
        frame, levels, n_resamples, np.random.default_rng(seed), crossed=crossed
    )
    with np.errstate(invalid="ignore", divide="ignore"):
        spread = statistic(weights)
    spread = spread[np.isfinite(spread)]  # a resample that drew no row of one arm
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(spread, [tail, 100 - tail])
    units = frame[list(levels)].drop_duplicates()
    return Effect(
        name,
        float(statistic(np.ones(len(frame)))),
        float(low),
        float(high),
        null=null,
        direction=direction,
        level=level,
        n=len(units),
        method=f"percentile bootstrap over {(' and ' if crossed else ', then ').join(levels)}",
    )


def all_of(effects: Sequence[Effect]) -> dict[str, object]:
    """A claim that holds only if every one of ``effects`` does ("for every family", a ranking of
    three), as the ``effect``, ``requires`` and ``context`` keywords of a :class:`ClaimCheck`.

    Held when every effect is supported; contradicted when any one is contradicted (that one then
    decides, the others shown as context); inconclusive otherwise (the first effect that is not
    supported decides, the others as premises).
    """
    effects = list(effects)
    if not effects:
        raise ValueError("all_of needs at least one effect.")
    against = [e for e in effects if e.contradicted]
    if against:
        others = tuple(e for e in effects if e is not against[0])
        return {"effect": against[0], "requires": (), "context": others}
    open_ = [e for e in effects if not e.supported]
    decide = open_[0] if open_ else effects[0]
    return {
        "effect": decide,
        "requires": tuple(e for e in effects if e is not decide),
        "context": (),
    }


def lambda_free_context(
    robust: pd.DataFrame,
    reference: pd.DataFrame,
    label: str,
    *,
    eps: float = 0.1,
    level: float = 0.95,
) -> tuple[Effect, Effect]:
    """The λ-free comparison of two models attacked on the same pairs, as two paired effects.

    ``robust`` and ``reference`` are battery frames of one attack each (same protocol, so the same
    pairs). Per pair: the envelope AUDDC and the minimal distortion that reaches within ``eps`` of
    the target (:mod:`seatbelt.attacks.measures`), each compared on the pairs with a paired t
    interval: the AUDDC as the mean difference robust - reference (the normalised distance can
    pass below 0, so the area need not be positive), predicting > 0; the distortion as the
    geometric mean of robust / reference, predicting > 1 (the robust model needs more). Unlike Δ/KL0
    or any fixed-λ summary, neither moves when a model's posteriors only widen. A pair whose curve
    is degenerate (NaN) is dropped; a minimal distortion that no λ reached counts at the largest
    distortion tried, a lower bound, and the effect's name says how many were censored.
    """
    from .attacks.measures import auddc, minimal_distortion

    def per_pair(frame: pd.DataFrame, measure) -> pd.DataFrame:
        if frame[["attack", "layers"]].drop_duplicates().shape[0] != 1:
            raise ValueError(
                f"{label}: give one attack's rows per frame, got "
                f"{frame[['attack', 'layers']].drop_duplicates().values.tolist()}."
            )
        return measure(frame).set_index("pair")

    area = (
        per_pair(robust, auddc)["auddc"]
        .to_frame("a")
        .join(per_pair(reference, auddc)["auddc"].rename("b"))
    )
    area = area.dropna()
    reach = [per_pair(f, lambda g: minimal_distortion(g, eps)) for f in (robust, reference)]
    dist = reach[0][["distortion"]].join(reach[1]["distortion"].rename("ref")).dropna()
    censored = int((~reach[0]["reached"]).sum() + (~reach[1]["reached"]).sum())
    return (
        paired_comparison(
            f"envelope AUDDC difference, {label}",
            area["a"],
            area["b"],
            scale="difference",
            null=0.0,
            direction="greater",
            level=level,
        ),
        paired_comparison(
            f"minimal distortion ratio (eps {eps:g}, {censored} censored), {label}",
            dist["distortion"],
            dist["ref"],
            scale="ratio",
            null=1.0,
            direction="greater",
            level=level,
        ),
    )


@dataclass(frozen=True)
class ClaimCheck:
    """One chapter's verdict on one claim: ``effect`` decides; ``context`` shows beside it.

    ``context`` holds measurements that qualify the verdict (e.g. the λ-free measures of
    :func:`lambda_free_context` beside the paper's raw metric) without changing it: the paper's
    metric decides, as the paper defines it. ``requires`` holds premises the claim's reading depends
    on (a ratio of slopes says "declines more slowly" only if the reference declines): without them
    the check is inconclusive. ``out_of_reach``, when given, is why this profile cannot test the
    claim (the status then says so, whatever the interval). ``chapter`` is the chapter's name
    (``intro`` for ``book/intro.ipynb``) and ``section`` the anchor of the section that measured it
    (a MyST label ``(claim-c3)=`` above its heading gives the anchor ``claim-c3``): the scorecard
    links the claim there.

    How far the verdict reaches: ``dataset`` (the one measured), ``seeds`` (training seeds behind
    the effect; 1 means its interval covers pairs or images only), ``training_images`` (per model)
    and ``paper_training_images`` (per model at the paper profile); :func:`seatbelt.zoo.reach`
    fills the last three from the recipes.
    """

    claim: str
    effect: Effect
    context: tuple[Effect, ...] = ()
    requires: tuple[Effect, ...] = ()
    chapter: str = ""
    profile: str = ""
    note: str = ""
    section: str = ""
    out_of_reach: str = ""
    dataset: str = ""
    seeds: int = 1
    training_images: int = 0
    paper_training_images: int = 0
    schema: int = field(default=SCHEMA)

    def __post_init__(self):
        if self.claim not in CLAIMS:
            raise ValueError(f"Unknown claim {self.claim!r}; the registry has {', '.join(CLAIMS)}.")
        if self.seeds < 1:
            raise ValueError(
                f"{self.claim}: seeds counts training runs, at least 1 (got {self.seeds})."
            )

    @property
    def status(self) -> Status:
        """Out of reach when the chapter said why; otherwise held when ``effect`` and every
        premise are supported, contradicted when every premise is and the effect's whole interval
        lies on the other side, and inconclusive in every other case."""
        if self.out_of_reach:
            return "out of reach"
        if all(e.supported for e in self.requires):
            return self.effect.verdict
        return "inconclusive"

    @property
    def link(self) -> str:
        """Where the check was measured, relative to the scorecard's page (chapters are its
        siblings in ``book/``): ``intro.html#claim-c3``; empty without a chapter."""
        if not self.chapter:
            return ""
        return f"{self.chapter}.html" + (f"#{self.section}" if self.section else "")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ClaimCheck:
        if d.get("schema") != SCHEMA:
            raise ValueError(
                f"Claim check schema {d.get('schema')!r} is not {SCHEMA}; re-run the chapter that "
                "wrote it."
            )
        d = dict(d)
        d["effect"] = Effect(**d["effect"])
        d["context"] = tuple(Effect(**e) for e in d.get("context", ()))
        d["requires"] = tuple(Effect(**e) for e in d.get("requires", ()))
        return cls(**d)

    def save(self, results_dir: str | Path) -> Path:
        path = Path(results_dir) / "claims" / f"{self.claim}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=1) + "\n")
        return path


def load_checks(results_dir: str | Path) -> dict[str, ClaimCheck]:
    """Every claim check under ``results_dir/claims``, by claim id (an absent folder is no
    checks)."""
    folder = Path(results_dir) / "claims"
    checks = {}
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else ():
        check = ClaimCheck.from_dict(json.loads(path.read_text()))
        if path.stem != check.claim:
            raise ValueError(f"{path} holds claim {check.claim}; its file name says {path.stem}.")
        checks[check.claim] = check
    return checks


def _names(datasets: str) -> set[str]:
    return {"".join(ch for ch in d.lower() if ch.isalnum()) for d in datasets.split(",")}


def on_paper_data(check: ClaimCheck, claim: Claim) -> bool:
    """Whether the check measured one of the datasets the paper shows the claim on (an identity
    holds on any; where the source names none, the question does not arise)."""
    if claim.paper_data in ("", "any"):
        return True
    return bool(_names(check.dataset) & _names(claim.paper_data))


def reach(check: ClaimCheck, claim: Claim) -> str:
    """How far a verdict reaches, in words: the dataset against the paper's, the seeds, and the
    training images per model against the paper profile's."""
    parts = []
    if check.dataset:
        paper = f" (paper: {claim.paper_data})" if claim.paper_data else ""
        parts.append(f"{check.dataset}{paper}")
    parts.append(f"{check.seeds} seed{'s' if check.seeds > 1 else ''}")
    if check.training_images and check.paper_training_images:
        share = 100 * check.training_images / check.paper_training_images
        parts.append(
            f"{check.training_images / 1e3:,.0f}k training images per model, {share:.2g}% of the "
            "paper profile's"
        )
    if check.out_of_reach:
        parts.append(f"out of reach: {check.out_of_reach}")
    return "; ".join(parts)


def scorecard(checks: dict[str, ClaimCheck]) -> pd.DataFrame:
    """One row per registered claim, in registry order; claims without a check are "not run".

    ``estimate``, ``low``, ``high``, ``null``, ``margin`` and ``direction`` are the deciding
    effect's (for a forest plot); ``reach`` says in words how far the verdict reaches; ``link``
    is the section that measured the claim, relative to the scorecard's page.
    """
    rows = []
    for claim in CLAIMS.values():
        check = checks.get(claim.id)
        effect = check.effect if check else None
        rows.append(
            {
                "claim": claim.id,
                "kind": claim.kind,
                "statement": claim.statement,
                "paper": claim.paper,
                "status": check.status if check else "not run",
                "measured": "; ".join(str(e) for e in (check.effect, *check.requires))
                if check
                else "",
                "also measured": "; ".join(str(e) for e in check.context) if check else "",
                "effect": effect.name if effect else "",
                "estimate": effect.estimate if effect else np.nan,
                "low": effect.low if effect else np.nan,
                "high": effect.high if effect else np.nan,
                "null": effect.null if effect else np.nan,
                "margin": effect.margin if effect else np.nan,
                "direction": effect.direction if effect else "",
                "reach": reach(check, claim) if check else "",
                "out_of_reach": check.out_of_reach if check else "",
                "dataset": (
                    f"{check.dataset} (paper: {claim.paper_data})"
                    if check and check.dataset and claim.paper_data
                    else (check.dataset if check else "")
                ),
                "on_paper_data": on_paper_data(check, claim) if check else False,
                "seeds": check.seeds if check else 0,
                "training_images": check.training_images if check else 0,
                "paper_training_images": check.paper_training_images if check else 0,
                "chapter": check.chapter if check else "",
                "profile": check.profile if check else "",
                "link": check.link if check else "",
            }
        )
    return pd.DataFrame(rows)


def reach_summary(table: pd.DataFrame) -> str:
    """One paragraph a reader takes in at a glance: how many claims got each status, and how far
    the measured verdicts reach (the training images against the paper profile's, the seeds, the
    datasets that stand in for the paper's)."""
    measured = table[table["status"] != "not run"]
    counts = table["status"].value_counts()
    parts = [
        ", ".join(f"{int(counts[s])} {s}" for s in STATUSES if counts.get(s, 0))
        + f" of {len(table)} claims."
    ]
    shares = (
        measured["training_images"] / measured["paper_training_images"].replace(0, np.nan)
    ).dropna()
    if len(shares):
        low, high = 100 * shares.min(), 100 * shares.max()
        span = f"{low:.2g}%" if np.isclose(low, high) else f"{low:.2g}% to {high:.2g}%"
        parts.append(
            f"The models behind them saw {span} of the training images the paper profile gives "
            "each model."
        )
    if len(measured):
        several = measured[measured["seeds"] > 1]["claim"].tolist()
        parts.append(
            "Every verdict rests on one training seed per model."
            if not several
            else f"{', '.join(several)} rest{'s' if len(several) == 1 else ''} on several training "
            "seeds per model; the others on one, so their intervals cover pairs or images, not "
            "training runs."
        )
        stand_in = measured.loc[~measured["on_paper_data"], "claim"].tolist()
        if stand_in:
            verb = "is" if len(stand_in) == 1 else "are"
            parts.append(
                f"{', '.join(stand_in)} {verb} measured on datasets other than the paper's."
            )
    return " ".join(parts)


def budget_table(
    claim: str, effects: dict[int, Effect], seeds: int | dict[int, int] = 1
) -> pd.DataFrame:
    """A claim's effect at several training budgets (training images per model -> effect), as
    the rows of ``results/reach/budget.csv``: claim, training_images, estimate, low, high, seeds,
    and the null, direction and verdict that read them."""
    if claim not in CLAIMS:
        raise ValueError(f"Unknown claim {claim!r}; the registry has {', '.join(CLAIMS)}.")
    rows = [
        {
            "claim": claim,
            "training_images": int(images),
            "estimate": e.estimate,
            "low": e.low,
            "high": e.high,
            "seeds": seeds.get(images, 1) if isinstance(seeds, dict) else seeds,
            "null": e.null,
            "direction": e.direction,
            "verdict": e.verdict,
        }
        for images, e in sorted(effects.items())
    ]
    return pd.DataFrame(rows)


def budget_reach(table: pd.DataFrame, recipe_images: int) -> str:
    """Why a verdict taken at the recipe's budget is out of reach, or "" when it is not: when the
    verdict at the largest budget measured differs from the verdict at the recipe's budget, the
    verdict moves with the training budget and has not settled by the largest one, so the recipe's
    verdict is not evidence for or against the paper."""
    if recipe_images not in set(table["training_images"]):
        raise ValueError(
            f"the budget table has no row at the recipe's {recipe_images} training images; it has "
            f"{sorted(table['training_images'])}."
        )
    at = table.set_index("training_images")
    largest = int(at.index.max())
    here, there = at.loc[recipe_images, "verdict"], at.loc[largest, "verdict"]
    if largest <= recipe_images or here == there:
        return ""
    return (
        f"the verdict moves with the training budget: {here} at {recipe_images:,} training images "
        f"per model, {there} at {largest:,}"
    )


def budget_trend(table: pd.DataFrame) -> str:
    """One sentence: whether the effect moved towards the paper's direction as training grew,
    from the smallest budget to the largest ("did not move" when each end's estimate lies inside
    the other's interval)."""
    first, last = table.iloc[0], table.iloc[-1]
    span = f"from {first.training_images:,} to {last.training_images:,} training images"
    if first.low <= last.estimate <= first.high and last.low <= first.estimate <= last.high:
        return f"{span} the effect did not move beyond its intervals"
    rising = last.estimate > first.estimate
    if first.direction == "within":
        towards = abs(last.estimate - first.null) < abs(first.estimate - first.null)
    else:
        towards = rising == (first.direction == "greater")
    return (
        f"{span} the effect moved {'towards' if towards else 'away from'} the paper's direction "
        f"({first.estimate:.3g} to {last.estimate:.3g})"
    )


def load_budgets(results_dir: str | Path) -> pd.DataFrame:
    """Every claim's training-budget rows under ``results_dir/reach/<claim>.csv`` (written by
    :meth:`seatbelt.page.Chapter.save_budget`), in registry order; empty when there are none."""
    folder = Path(results_dir) / "reach"
    frames = [
        pd.read_csv(folder / f"{claim}.csv")
        for claim in CLAIMS
        if (folder / f"{claim}.csv").exists()
    ]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
