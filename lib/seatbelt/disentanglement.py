"""Disentanglement of trained models, and whether it tracks robustness (Appendix E.1, Fig E.11).

Two steps the MIG chapter needs around :mod:`seatbelt.metrics`:

* :func:`model_mig_table`: encode a dataset with a trained model, then MIG's per-factor table
  (Chen et al. 2018) of its posteriors q(z | x_n) = N(mu_n, diag exp(logvar_n)) against the
  data's ground-truth factors.
* :func:`rank_correlation`: Spearman's rank correlation between two per-model measures (MIG and
  an attained attack loss) as a :class:`seatbelt.claims.Effect`, with a percentile bootstrap
  interval over the models. The models are few (a grid of beta x d_z), so the bootstrap skips
  resamples in which either measure is constant (their rank correlation is undefined) and, with
  fewer than 3 distinct models, reports the uninformative interval [-1, 1].
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch
from scipy import stats

from .claims import Direction, Effect
from .data.base import Data
from .metrics import mig_table


def posterior_codes(
    model, data: Data, *, n_images: int | None = None, layer: int = 0, batch_size: int = 1024
) -> tuple[torch.Tensor, torch.Tensor]:
    """(mu, logvar), each (N, D_layer), of q(z_layer | x) for the first ``n_images`` items of
    ``data``.

    The model runs in eval mode without gradients (its mode is restored); the codes stay on its
    device, where :func:`seatbelt.metrics.mig_table` then runs.
    """
    n = len(data) if n_images is None else n_images
    if not 1 <= n <= len(data):
        raise ValueError(
            f"n_images={n_images}: choose 1..{len(data)} (the items of {data.name}) or None for "
            "all."
        )
    device = next(model.parameters()).device
    mus, logvars = [], []
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for start in range(0, n, batch_size):
                q = model.encode(
                    data.get(slice(start, min(start + batch_size, n)), device)
                ).posteriors[layer]
                mus.append(q.mu)
                logvars.append(q.logvar)
    finally:
        model.train(was_training)
    return torch.cat(mus), torch.cat(logvars)


def model_mig_table(
    model, data: Data, *, n_images: int | None = None, n_samples: int = 10_000, seed: int = 0
) -> pd.DataFrame:
    """:func:`seatbelt.metrics.mig_table` of the model's posteriors on ``data`` (which must carry
    factors, e.g. ``zoo.data("dsprites", ...)``), rows named by ``data.factor_names``."""
    if data.factors is None:
        raise ValueError(
            f"{data.name} has no ground-truth factors: MIG needs data such as dSprites."
        )
    mu, logvar = posterior_codes(model, data, n_images=n_images)
    return mig_table(
        mu,
        logvar,
        data.factors[: len(mu)],
        n_samples=n_samples,
        seed=seed,
        names=data.factor_names or None,
    )


def rank_correlation(
    name: str,
    x,
    y,
    *,
    groups=None,
    null: float = 0.0,
    direction: Direction = "within",
    margin: float = 0.5,
    level: float = 0.95,
    n_resamples: int = 4000,
    seed: int = 0,
) -> Effect:
    """Spearman's rho of paired per-unit measures ``x``, ``y`` with a percentile bootstrap interval.

    Units (models) are resampled with replacement, x and y together; a resample in which x or y
    is constant has no defined rank correlation and is skipped. With fewer than 3 distinct
    units the interval is [-1, 1]: two points always rank-correlate perfectly, which says nothing.
    The default claim is an equivalence: |rho| <= ``margin`` over the whole interval.

    ``groups`` (one label per unit, e.g. the latent size) makes it a stratified rank correlation:
    ranks are taken and centred within each group, and units are resampled within their group,
    so that what the groups differ by (d_z moves Delta's scale) cannot make a correlation.
    """
    x, y = np.asarray(x, dtype=float).ravel(), np.asarray(y, dtype=float).ravel()
    if len(x) != len(y) or len(x) < 2:
        raise ValueError(
            f"Effect {name!r}: needs paired x and y of equal size >= 2, got {len(x)} and {len(y)}."
        )
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError(
            f"Effect {name!r}: x or y contains NaN or inf; drop or explain those units first."
        )
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        raise ValueError(
            f"Effect {name!r}: x or y is constant over the units; a rank correlation is undefined."
        )
    labels = np.zeros(len(x)) if groups is None else np.asarray(groups).ravel()
    if len(labels) != len(x):
        raise ValueError(f"Effect {name!r}: groups needs one label per unit, got {len(labels)}.")
    members = [np.flatnonzero(labels == g) for g in np.unique(labels)]
    n = len(x)

    def rho(idx: np.ndarray) -> np.ndarray:
        """Pearson of ranks (= Spearman), the ranks taken and centred within each group's block of
        columns of ``idx`` (units in ``members`` order)."""
        rx, ry = np.empty(idx.shape), np.empty(idx.shape)
        start = 0
        for m in members:
            block = slice(start, start + len(m))
            for ranks, values in ((rx, x), (ry, y)):
                r = stats.rankdata(values[idx[:, block]], axis=1)
                ranks[:, block] = r - r.mean(1, keepdims=True)
            start += len(m)
        denominator = np.sqrt((rx**2).sum(1) * (ry**2).sum(1))
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(denominator > 0, (rx * ry).sum(1) / denominator, np.nan)

    estimate = float(rho(np.concatenate(members)[None, :])[0])
    if not np.isfinite(estimate):
        raise ValueError(
            f"Effect {name!r}: x or y is constant within every group; a rank correlation is "
            "undefined."
        )
    method = "percentile bootstrap over units" + (" within groups" if groups is not None else "")
    if len({(a, b) for a, b in zip(x, y)}) < 3 or max(len(m) for m in members) < 2:
        return Effect(
            name,
            estimate,
            -1.0,
            1.0,
            null=null,
            direction=direction,
            margin=margin,
            level=level,
            n=n,
            method=f"{method} (too few units: no information)",
        )
    rng = np.random.default_rng(seed)
    draws = np.concatenate(
        [m[rng.integers(0, len(m), size=(n_resamples, len(m)))] for m in members], axis=1
    )
    spread = rho(draws)
    defined = np.isfinite(spread)
    low, high = np.quantile(spread[defined], [(1 - level) / 2, (1 + level) / 2])
    return Effect(
        name,
        estimate,
        float(low),
        float(high),
        null=null,
        direction=direction,
        margin=margin,
        level=level,
        n=n,
        method=f"{method} ({int(defined.sum())} of {n_resamples} resamples defined)",
    )


def units_for_equivalence(margin: float, level: float = 0.95, groups: int = 1) -> int:
    """How many units a rank correlation needs before its interval can fit inside ±``margin``
    even where the true correlation is 0: the smallest n with z sqrt(1.06 / (n - 3)) <
    atanh(margin) (Fisher's z with Bonett and Wright's 2000 variance for Spearman's rho), plus one
    unit per further group of a stratified correlation. Fewer units than this put an equivalence
    claim out of reach whatever the data."""
    if not 0 < margin < 1:
        raise ValueError(f"margin must be in (0, 1), got {margin}.")
    z = stats.norm.ppf(0.5 + level / 2)
    return int(math.floor(3 + 1.06 * (z / math.atanh(margin)) ** 2)) + 1 + (groups - 1)
