"""The held-out beta = 1 ELBO of a trained model: per image, per layer and unit, and its decline
with beta (Fig 6).

A model trained with beta (any family) is judged by the plain ELBO, without the beta it was
trained with (Section 5, Fig 6). For one image x and S draws of the chain z ~ q(. | x) (Eq 4):

    ELBO(x) = (1/S) sum_s [ log p(x | z^s) - sum_{i<L} r_i(z^s)
                            - KL(q(z_L | z_{L-1}^s, x) || p(z_L)) ]

with r_i = log q(z_i | z_{i-1}, x) - log p(z_i | z_{i+1}) the single-sample log ratio of a lower
layer (:meth:`VAE.lower_log_ratios`) and the top layer's KL in closed form, exactly as
:meth:`VAE.elbo` computes it; :func:`per_image` keeps the parts apart.

**Active units.** :func:`unit_kl` averages each latent unit's share of those KL terms over
images and draws. Under free bits (Kingma et al. 2016) a unit whose batch-mean KL is below the
threshold costs the objective nothing, so a unit above it is one the model pays to use; a
layer whose every unit sits below it has collapsed onto its prior.

**Decline with beta (claim C6).** :func:`slope` is the least-squares slope of a family's mean
held-out ELBO against log2(beta); :func:`ratio_of_slopes` divides one family's slope by
another's, vectorised over resamples for :func:`seatbelt.claims.crossed_means`, whose bootstrap
over training seeds crossed with the same held-out images gives its interval. A ratio below 1
(both slopes negative) is a slower decline.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from .models import VAE


def _parts(model: VAE, x: Tensor, generator: torch.Generator) -> tuple[Tensor, list[Tensor]]:
    """log p(x | z) per item and the per-unit KL terms of every layer, bottom first, for one
    draw."""
    enc = model.encode(x, sample=True, generator=generator)
    top = enc.posteriors[-1]
    kl_top = 0.5 * (top.mu**2 + torch.exp(top.logvar) - 1 - top.logvar)
    return model.log_likelihood(x, enc.z), [*model.lower_log_ratios(enc), kl_top]


def _draws(model: VAE, x: Tensor, samples: int, seed: int, batch_size: int):
    """Yield (batch index range, log-likelihood (S, b), per-layer unit KLs [(S, b, d_i)]) in eval
    mode."""
    if x.ndim < 2 or tuple(x.shape[1:]) != model.config.data_shape or len(x) < 1:
        raise ValueError(
            f"x must be items of shape {model.config.data_shape}, (N, ...) with N >= 1; "
            f"got shape {tuple(x.shape)}."
        )
    if samples < 1 or batch_size < 1:
        raise ValueError(f"samples and batch_size must be >= 1, got {samples} and {batch_size}.")
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed)
    was_training = model.training
    model.eval()  # BatchNorm on running statistics: q(z | x) depends on x alone
    try:
        with torch.no_grad():
            for start in range(0, len(x), batch_size):
                xb = x[start : start + batch_size].to(device)
                draws = [_parts(model, xb, generator) for _ in range(samples)]
                ll = torch.stack([d[0] for d in draws])
                kls = [torch.stack([d[1][i] for d in draws]) for i in range(model.n_layers)]
                yield start, ll, kls
    finally:
        model.train(was_training)


def per_image(
    model: VAE, x: Tensor, samples: int = 8, seed: int = 0, batch_size: int = 256
) -> pd.DataFrame:
    """The beta = 1 ELBO of each image of ``x`` and its parts, each averaged over ``samples`` draws.

    Columns: ``image`` (row of ``x``), ``elbo``, ``log_likelihood`` (the reconstruction term
    E[log p(x|z)]), ``kl`` (the sum of the KL terms) and ``kl_1`` .. ``kl_L`` (bottom to top; the
    top one in closed form), in nats; elbo = log_likelihood - kl.
    """
    rows = []
    for start, ll, kls in _draws(model, x, samples, seed, batch_size):
        layer = [k.sum(-1).double().mean(0) for k in kls]  # (b,) per layer
        total = torch.stack(layer).sum(0)
        mean_ll = ll.double().mean(0)
        frame = pd.DataFrame(
            {
                "image": np.arange(start, start + len(mean_ll)),
                "elbo": (mean_ll - total).cpu().numpy(),
                "log_likelihood": mean_ll.cpu().numpy(),
                "kl": total.cpu().numpy(),
            }
        )
        for i, values in enumerate(layer):
            frame[f"kl_{i + 1}"] = values.cpu().numpy()
        rows.append(frame)
    return pd.concat(rows, ignore_index=True)


def unit_kl(
    model: VAE, x: Tensor, samples: int = 8, seed: int = 0, batch_size: int = 256
) -> pd.DataFrame:
    """Each latent unit's KL term averaged over the images of ``x`` and ``samples`` draws (nats).

    One row per (``layer``, ``unit``), layers numbered 1 (bottom) .. L (top), with ``kl``. A lower
    layer's unit carries its share of the log ratio r_i, the top layer's the closed-form
    KL(q(z_Lj | .) || N(0, 1)); per layer they sum to the ``kl_i`` of :func:`per_image`.
    """
    sums = [torch.zeros(d, dtype=torch.float64) for d in model.latent_sizes]
    for _, _, kls in _draws(model, x, samples, seed, batch_size):
        for i, k in enumerate(kls):
            sums[i] += k.double().sum((0, 1)).cpu()
    count = samples * len(x)
    return pd.DataFrame(
        [
            {"layer": i + 1, "unit": j, "kl": float(s[j]) / count}
            for i, s in enumerate(sums)
            for j in range(len(s))
        ]
    )


def active_units(units: pd.DataFrame, threshold: float) -> pd.DataFrame:
    """Per layer: units, how many have a mean KL above ``threshold`` nats, and the layer's total
    KL."""
    if threshold < 0:
        raise ValueError(f"threshold must be >= 0 nats, got {threshold}.")
    grouped = units.groupby("layer")["kl"]
    return pd.DataFrame(
        {
            "units": grouped.size(),
            "active": grouped.apply(lambda k: int((k > threshold).sum())),
            "kl": grouped.sum(),
        }
    ).reset_index()


def _log2(betas: Sequence[float]) -> np.ndarray:
    b = np.asarray(betas, dtype=float)
    if b.ndim != 1 or len(b) < 2 or (b <= 0).any() or len(np.unique(b)) < 2:
        raise ValueError(f"a slope needs at least two distinct positive betas, got {list(betas)}.")
    return np.log2(b)


def slope(values: np.ndarray, betas: Sequence[float]) -> np.ndarray:
    """Least-squares slope of ``values`` (..., k), one per beta along the last axis, against
    log2(beta)."""
    t = _log2(betas)
    values = np.asarray(values, dtype=float)
    if values.shape[-1] != len(t):
        raise ValueError(
            f"values have {values.shape[-1]} entries along the last axis, betas {len(t)}."
        )
    centred = t - t.mean()
    return (values - values.mean(-1, keepdims=True)) @ centred / (centred @ centred)


def ratio_of_slopes(means: np.ndarray, betas: Sequence[float]) -> np.ndarray:
    """slope(A) / slope(B) against log2(beta) (:func:`slope`), from ``means`` (..., 2k): family A's
    mean at each of the k betas, then family B's."""
    means = np.asarray(means, dtype=float)
    k = len(_log2(betas))
    if means.shape[-1] != 2 * k:
        raise ValueError(
            f"ratio_of_slopes over {k} betas takes {2 * k} means (A then B), got {means.shape[-1]}."
        )
    return slope(means[..., :k], betas) / slope(means[..., k:], betas)
