"""The mutual information gap (MIG) of Chen et al. (2018, Section 5), estimated from posteriors.

A dataset of N points with encoder posteriors q(z | x_n) = N(mu_n, diag exp(logvar_n)) and K
discrete ground-truth factors v_k(n). With p(n) = 1/N and p(v) = N_v / N, N_v the number of points
whose factor v_k takes the value v:

    q(z_j)          = (1/N)   sum_n              q(z_j | x_n)      (aggregate posterior of latent j)
    q(z_j | v_k=v)  = (1/N_v) sum_{n: v_k(n)=v}  q(z_j | x_n)      (the same within one value)
    H(z_j)          = -E_n E_{q(z_j|x_n)} log q(z_j)
    H(z_j | v_k)    = -E_n E_{q(z_j|x_n)} log q(z_j | v_k(n))
    I(z_j; v_k)     = H(z_j) - H(z_j | v_k)
                    =  E_n E_{q(z_j|x_n)} [log q(z_j | v_k(n)) - log q(z_j)]               (1)
    H(v_k)          = -sum_v p(v) log p(v)                                                 (2)
    MIG             = (1/K) sum_k [I(z_{j(k)}; v_k) - max_{j != j(k)} I(z_j; v_k)] / H(v_k),
                      j(k) = argmax_j I(z_j; v_k)                                          (3)

Estimator. S = min(n_samples, N) points n_1..n_S are drawn without replacement (Chen et al. draw
10,000 on dSprites), with one z_s ~ q(z | x_{n_s}) each, and every mixture keeps ALL of its
posteriors (all N for q(z_j), all N_v for q(z_j | v)):

    I^(z_j; v_k) = (1/S) sum_s [log q(z_sj | v_k(n_s)) - log q(z_sj)]                     (1^)
    H^(v_k)      = (1/S) sum_s -log p(v_k(n_s))                                           (2^)

Each summand of (1^) is at most the matching summand of (2^), because q(z) >= p(v) q(z | v), so
0 <= I^ / H^ <= 1 holds exactly (after clamping I^ at 0 as Chen et al. do); with S = N, (2^) is
the plug-in entropy (2), and on a uniform grid such as dSprites it is log(number of values) at any
S.

Two departures from Chen et al.'s code, neither changing what is estimated: they draw a separate
subset of up to n_samples points for H(z_j) and for each H(z_j | v_k = v) and weight the values
equally (their grid is uniform); here one set of samples serves every term (common random numbers:
the sampling errors of the two entropies cancel and (1^) <= (2^) holds), and values weigh p(v).

Cost: S N D one-dimensional log-densities for the marginals and S N D sum_v p(v)^2 more per factor,
1.59 S N D in all on dSprites (Chen et al.'s per-value subsets cost S N D per factor, 5 S N D in
all), computed in blocks on the inputs' device (bench/mig.py: about 1.8 ns per log-density on one
CPU thread, so 3.5 minutes for all 737,280 dSprites points at S = 10,000; S sets the time linearly).

The data layout is the classic trap: the posteriors are (N, D) and the per-latent mixtures need
(D, N); a public MIG that reshaped instead of transposing scores near 0 on perfect codes.
``tests/test_metrics.py`` plants that bug in :func:`_per_latent` and checks the tests catch it.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor

LOG_2PI = math.log(2 * math.pi)
# One (D, samples, components) block: about 4 MB of float32 keeps the CPU's chain of elementwise
# passes in cache; a GPU wants big launches. Components per block, then samples to fill it.
_BLOCK = {"cpu": 2**20, "cuda": 2**26}
_COMPONENTS = {"cpu": 4096, "cuda": 2**16}


def mig(
    mu,
    logvar,
    factors,
    factor_sizes: Sequence[int] | None = None,
    n_samples: int = 10_000,
    seed: int = 0,
    *,
    names: Sequence[str] | None = None,
    exclude: Sequence[str | int] = (),
) -> float:
    """MIG (3) in [0, 1] of posteriors ``mu``, ``logvar`` (N, D) against integer ``factors`` (N, K).

    ``exclude`` names factors (by ``names`` or index) left out of the mean, e.g. ``("shape",)``
    for dSprites as in Chen et al.; to report MIG with and without some factors, compute
    :func:`mig_table` once and call :func:`mig_from_table` on it twice.
    """
    table = mig_table(mu, logvar, factors, factor_sizes, n_samples, seed, names=names)
    return mig_from_table(table, exclude)


def mig_from_table(table: pd.DataFrame, exclude: Sequence[str | int] = ()) -> float:
    """The mean normalised gap over the factors of a :func:`mig_table` not in ``exclude``."""
    if isinstance(exclude, (str, int)):
        exclude = (exclude,)
    names = list(table.index)
    drop = set()
    for e in exclude:
        if isinstance(e, (int, np.integer)) and not isinstance(e, bool):
            if not 0 <= e < len(names):
                raise ValueError(
                    f"exclude: factor index {e} is out of range for {len(names)} factors {names}."
                )
            drop.add(names[e])
        elif e in names:
            drop.add(e)
        else:
            raise ValueError(
                f"exclude: unknown factor {e!r}; the factors are {names} (or their indices)."
            )
    kept = [n for n in names if n not in drop]
    if not kept:
        raise ValueError(f"exclude removes every factor {names}: MIG averages over at least one.")
    return float(table.loc[kept, "gap"].mean())


def mig_table(
    mu,
    logvar,
    factors,
    factor_sizes: Sequence[int] | None = None,
    n_samples: int = 10_000,
    seed: int = 0,
    *,
    names: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Per-factor mutual informations and gaps, one row per factor (all K of them).

    Columns: ``z0 .. z{D-1}`` hold I^(z_j; v_k) of (1^) in nats (clamped at 0); ``H`` is H^(v_k)
    of (2^); ``top`` and ``second`` name the latents with the largest and second-largest I;
    ``gap`` is (I_top - I_second) / H, the summand of (3).

    mu, logvar:   (N, D) posterior parameters, torch or numpy; the work runs on their device.
    factors:      (N, K) integer factor values (any integers: each factor's distinct values are
                  its classes).
    factor_sizes: optional number of values of each factor; when given, every value must lie in
                  [0, size), which catches factor columns passed in the wrong order.
    n_samples:    the number S of sample points (all N when N <= n_samples).
    seed:         seeds the choice of points and the draws z_s ~ q(z | x_{n_s}) (on the CPU, so
                  CPU and CUDA give the same draws).
    names:        the K factor names (default v0, v1, ...).
    """
    mu, logvar, codes, counts, names = _check(mu, logvar, factors, factor_sizes, n_samples, names)
    n, d = mu.shape
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randperm(n, generator=gen)[:n_samples] if n_samples < n else torch.arange(n)
    eps = torch.randn(len(idx), d, generator=gen, dtype=torch.float64).to(mu.device, mu.dtype)
    # Latent-major layout (D, .): each latent's mixture is a row. The transpose is the step the
    # public bug got wrong; it lives in one function so the tests can break it on purpose.
    mu_t, logvar_t = _per_latent(mu), _per_latent(logvar)
    idx = idx.to(mu.device)
    eps_t = _per_latent(eps)
    z = mu_t[:, idx] + torch.exp(0.5 * logvar_t[:, idx]) * eps_t  # (D, S)
    # log q(z_s | x_{n_s}) of each sample under its own posterior: the shift that keeps every
    # log-sum-exp finite without a max pass (the own term is exp(0) = 1 in every mixture).
    own = -0.5 * (LOG_2PI + logvar_t[:, idx] + eps_t**2)

    log_qz = _log_mixture(z, own, mu_t, logvar_t) - math.log(n)  # (D, S)
    mi, h = [], []
    for c, cnt in zip(codes, counts):
        c_s = c[idx]
        log_qz_v = torch.empty_like(log_qz)  # log q(z_sj | v_k(n_s)), filled one value at a time
        for v in range(len(cnt)):
            members, at = (c == v).nonzero().squeeze(1), (c_s == v).nonzero().squeeze(1)
            if len(at):
                mixture = _log_mixture(z[:, at], own[:, at], mu_t[:, members], logvar_t[:, members])
                log_qz_v[:, at] = mixture - math.log(int(cnt[v]))
        mi.append((log_qz_v - log_qz).mean(1).clamp(min=0).cpu())  # (1^)
        h.append(float(-(cnt.double() / n).log()[c_s.cpu()].mean()))  # (2^)
    latents = [f"z{j}" for j in range(d)]
    table = pd.DataFrame(
        torch.stack(mi).numpy(), index=pd.Index(names, name="factor"), columns=latents
    )
    info = table.to_numpy()
    order = np.argsort(-info, axis=1, kind="stable")
    first, second = np.take_along_axis(info, order[:, :2], axis=1).T
    table["H"] = h
    table["top"] = [latents[j] for j in order[:, 0]]
    table["second"] = [latents[j] for j in order[:, 1]]
    table["gap"] = np.clip(
        (first - second) / np.asarray(h), 0.0, 1.0
    )  # the clip absorbs float rounding only
    return table


def _per_latent(x: Tensor) -> Tensor:
    """(N, D) data-major to (D, N) latent-major: a transpose (a reshape would mix latents and
    points)."""
    return x.T.contiguous()


def _log_mixture(z: Tensor, own: Tensor, mu: Tensor, logvar: Tensor) -> Tensor:
    """log sum_m N(z_js; mu_jm, exp(logvar_jm)) for samples z (D, S) and components (D, M) -> (D, S)
    float64.

    Computed as own + log sum_m exp(log N(z_js; mu_jm, .) - own_js), blocked over samples and
    components so memory stays bounded. ``own`` is each sample's log-density under one of the
    components, so the sum is >= 1: no underflow, and no max pass over the block.
    """
    d, s = z.shape
    m = mu.shape[1]
    inv_sd = torch.exp(-0.5 * logvar) * math.sqrt(0.5)  # ((z - mu) * inv_sd)^2 = chi^2 / 2
    log_norm = -0.5 * (LOG_2PI + logvar)
    kind = "cpu" if z.device.type == "cpu" else "cuda"
    per_m = min(m, _COMPONENTS[kind])
    per_s = max(1, _BLOCK[kind] // (d * per_m))
    total = torch.zeros(d, s, dtype=torch.float64, device=z.device)
    for i in range(0, s, per_s):
        zi, oi = z[:, i : i + per_s, None], own[:, i : i + per_s, None]
        for j in range(0, m, per_m):
            diff = zi - mu[:, None, j : j + per_m]
            diff.mul_(inv_sd[:, None, j : j + per_m])
            terms = log_norm[:, None, j : j + per_m] - oi
            terms.addcmul_(diff, diff, value=-1.0).exp_()
            total[:, i : i + per_s] += terms.sum(-1)
    out = own.to(torch.float64) + total.log()
    if not torch.isfinite(out).all():
        raise FloatingPointError(
            "MIG: a mixture density overflowed: a sample's density under another posterior exceeds "
            f"its own by more than {z.dtype} can hold, because one latent's posterior "
            "log-variances span too wide a range. Clamp the encoder's logvar, or pass float64 "
            "posteriors."
        )
    return out


def _check(mu, logvar, factors, factor_sizes, n_samples, names):
    """Validate and convert the inputs; return mu, logvar, per-factor codes and counts, names."""
    mu, logvar = (
        torch.as_tensor(mu).detach(),
        torch.as_tensor(logvar).detach(),
    )  # no autograd graph over N^2 terms
    for what, t in (("mu", mu), ("logvar", logvar)):
        if t.ndim != 2:
            raise ValueError(
                f"MIG: {what} must be (N, D) posterior parameters, got shape {tuple(t.shape)}."
            )
        if not t.is_floating_point():
            raise TypeError(f"MIG: {what} must be floating point, got {t.dtype}.")
        if not torch.isfinite(t).all():
            bad = (~torch.isfinite(t)).any(1).nonzero().flatten()
            raise ValueError(
                f"MIG: {what} has NaN or infinite entries in {len(bad)} rows (first: "
                f"{bad[:5].tolist()}); drop those points or fix the encoder."
            )
    if mu.shape != logvar.shape:
        raise ValueError(
            f"MIG: mu {tuple(mu.shape)} and logvar {tuple(logvar.shape)} must have the same (N, D) "
            "shape."
        )
    if mu.shape[1] < 2:
        raise ValueError(
            f"MIG needs at least 2 latents for a gap between the top two, got D = {mu.shape[1]}."
        )
    dtype = torch.promote_types(torch.promote_types(mu.dtype, logvar.dtype), torch.float32)
    logvar = logvar.to(mu.device, dtype)
    mu = mu.to(dtype)
    if not (
        torch.isfinite(torch.exp(-0.5 * logvar)).all()
        and torch.isfinite(torch.exp(0.5 * logvar)).all()
    ):
        span = f"[{float(logvar.min()):.4g}, {float(logvar.max()):.4g}]"
        raise ValueError(
            f"MIG: logvar spans {span}, where exp(logvar / 2) or its inverse overflows {dtype}; "
            "clamp the encoder's logvar or pass float64."
        )

    f = torch.as_tensor(factors)
    if f.ndim == 1:
        raise ValueError(
            "MIG: factors must be (N, K); for one factor pass factors[:, None] (got "
            f"{tuple(f.shape)})."
        )
    if f.ndim != 2 or f.shape[0] != mu.shape[0]:
        raise ValueError(
            f"MIG: factors must be (N, K) with N = {mu.shape[0]} rows like mu, got "
            f"{tuple(f.shape)}."
        )
    if f.is_floating_point():
        if not torch.isfinite(f).all():
            raise ValueError(
                "MIG: factors has NaN or infinite entries; factors must be integer class values."
            )
        raise TypeError(
            "MIG: factors must be integers (class indices), got floats; "
            "convert values with np.unique(column, return_inverse=True)[1]."
        )
    if f.dtype == torch.bool:
        f = f.long()
    k = f.shape[1]
    names = [f"v{i}" for i in range(k)] if names is None else [str(x) for x in names]
    if len(names) != k or len(set(names)) != k:
        raise ValueError(
            f"MIG: names must be {k} distinct factor names, one per column of factors, got {names}."
        )
    if factor_sizes is not None:
        if len(factor_sizes) != k:
            raise ValueError(f"MIG: factor_sizes has {len(factor_sizes)} entries for {k} factors.")
        for name, col, size in zip(names, f.T, factor_sizes):
            lo, hi = int(col.min()), int(col.max())
            if lo < 0 or hi >= size:
                raise ValueError(
                    f"MIG: factor {name!r} has values in [{lo}, {hi}], outside [0, {size}) of "
                    "factor_sizes; are the factor columns in the order of factor_sizes?"
                )
    codes, counts = [], []
    for name, col in zip(names, f.T):
        values, code, count = torch.unique(col, return_inverse=True, return_counts=True)
        if len(values) < 2:
            raise ValueError(
                f"MIG: factor {name!r} takes the single value {int(values[0])} on all {len(col)} "
                "points; its entropy H(v) is 0, so its gap is undefined. Drop that column from "
                "factors."
            )
        codes.append(code.to(mu.device))
        counts.append(count.cpu())
    if isinstance(n_samples, bool) or not isinstance(n_samples, (int, np.integer)) or n_samples < 1:
        raise ValueError(f"MIG: n_samples must be a positive integer, got {n_samples!r}.")
    return mu, logvar, codes, counts, names
