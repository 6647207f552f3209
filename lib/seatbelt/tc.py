"""Minibatch estimators of the aggregate posterior, for the total-correlation penalty (Appendix C).

For a batch of B posteriors q(z | x_j) and one sample z_k ~ q(z | x_k) per element, both
estimators approximate

    log q(z_k)          = log (1/N) sum_n q(z_k | x_n)
    log prod_d q(z_k,d) = sum_d log (1/N) sum_n q(z_k,d | x_n)

from the batch alone, N being the size of the whole dataset.

* MWS, minibatch weighted sampling (Chen et al. 2018; the paper's Eqs 35 and 43):
  log q(z_k) ~= logsumexp_j log q(z_k | x_j) - log(N M), with M = B. It is a stochastic lower
  bound, not an unbiased estimate: with the whole dataset as the batch (M = N) it equals
  log q(z_k) - log N exactly, and each marginal likewise, so the implied TC carries an offset
  of (D - 1) log N. The offset has no gradient.
* MSS, minibatch stratified sampling (Chen et al. 2018): the uniform 1/(N M) is replaced by the
  importance weights of :func:`mss_log_weights`.

For the Seatbelt-VAE top layer (Eq 43) pass the parameters of q(z_L | z_{L-1}^j, x_j), where
z_{L-1}^j was sampled ancestrally from the chain of x_j, and z_k ~ q(z_L | z_{L-1}^k, x_k):
the estimator is the same function of those tensors.
"""

from __future__ import annotations

import math
import os
import warnings

import torch
from torch import Tensor

from .gaussian import LOG_2PI

ESTIMATORS = ("mws", "mss")


def mss_log_weights(batch_size: int, dataset_size: int, device=None, dtype=torch.float32) -> Tensor:
    """log W for minibatch stratified sampling, a ``(B, B)`` matrix whose rows sum to 1 in W.

    With M = B - 1: W_kk = 1/N; W_k,k+1 = (N - M) / (N M) (the last row wraps to column 0);
    every other entry 1/M. Row sum: 1/N + (N - M)/(N M) + (M - 1)/M = 1.
    """
    if batch_size < 2:
        raise ValueError(f"MSS needs a batch of at least 2 points, got batch_size={batch_size}; use estimator='mws'.")
    m = batch_size - 1
    if dataset_size < m:
        raise ValueError(
            f"MSS needs dataset_size >= batch_size - 1, got dataset_size={dataset_size}, batch_size={batch_size}: "
            "pass the size of the whole training set, not of the batch."
        )
    w = torch.full((batch_size, batch_size), 1.0 / m, dtype=torch.float64)
    idx = torch.arange(batch_size)
    w[idx, idx] = 1.0 / dataset_size
    w[idx, (idx + 1) % batch_size] = (dataset_size - m) / (dataset_size * m)
    return w.log().to(device=device, dtype=dtype)


def log_qz(
    z: Tensor,
    mu: Tensor,
    logvar: Tensor,
    dataset_size: int,
    estimator: str = "mws",
) -> tuple[Tensor, Tensor]:
    """Per-sample estimates of (log q(z_k), log prod_d q(z_k,d)), each of shape ``(B,)``.

    ``z``, ``mu`` and ``logvar`` are ``(B, D)``: row k of ``z`` is a sample from the posterior
    whose parameters are row k of ``mu`` and ``logvar``.
    """
    if estimator not in ESTIMATORS:
        raise ValueError(f"unknown TC estimator {estimator!r}; choose one of {ESTIMATORS}.")
    if z.ndim != 2 or z.shape != mu.shape or mu.shape != logvar.shape:
        raise ValueError(
            f"z, mu and logvar must all be (batch, latent) of one shape, got {tuple(z.shape)}, "
            f"{tuple(mu.shape)}, {tuple(logvar.shape)}."
        )
    batch = z.shape[0]
    if dataset_size < batch and estimator == "mws":
        raise ValueError(
            f"dataset_size={dataset_size} is smaller than the batch ({batch}): pass the size of the whole training set."
        )
    if estimator == "mws":
        log_w = torch.full((batch, batch), -math.log(dataset_size * batch), device=z.device, dtype=z.dtype)
    else:
        log_w = mss_log_weights(batch, dataset_size, device=z.device, dtype=z.dtype)
    return _joint(z, mu, logvar, log_w), _Marginals.apply(z, mu, logvar, log_w).sum(-1)


def _joint(z: Tensor, mu: Tensor, logvar: Tensor, log_w: Tensor) -> Tensor:
    """logsumexp_j [w_kj + sum_d log q(z_k,d | x_j)], with the sum over d as matrix products.

    sum_d (z_kd - mu_jd)^2 / sigma_jd^2 = (z^2) (1/sigma^2)^T - 2 z (mu/sigma^2)^T + sum_d mu_jd^2/sigma_jd^2,
    so no (B, B, D) tensor is formed. The expansion cancels large terms (a precision of e^10
    times a mean of a few units), so it is computed in float64.
    """
    z64, mu64, logvar64 = z.double(), mu.double(), logvar.double()
    precision = torch.exp(-logvar64)
    quad = z64.square() @ precision.T - 2 * z64 @ (mu64 * precision).T + (mu64.square() * precision).sum(-1)
    log_density = -0.5 * (quad + logvar64.sum(-1) + z.shape[1] * LOG_2PI)
    return torch.logsumexp(log_density + log_w.double(), dim=1).to(z.dtype)


# The marginals need log q(z_k,d | x_j) for every (k, j, d), a (B, B, D) tensor that is the
# estimator's whole cost. The three loops below never form it: torch.compile fuses each into one
# pass over (k, j, d) (5x to 8x faster than eager PyTorch at B = 1024 on 2 CPU cores); where
# compiling is off or fails, they run eagerly a few rows k at a time, so each block stays in cache.
# In all three, log q(z_k,d | x_j) = h_jd - u_kjd^2 / 2 - log(2 pi) / 2, with h = -logvar / 2,
# s = exp(h) = 1/sigma and u_kjd = (z_kd - mu_jd) s_jd.


def _marginal_lse(z: Tensor, log_w: Tensor, mu: Tensor, s: Tensor, h: Tensor) -> Tensor:
    """logsumexp_j [w_kj + h_jd - u_kjd^2 / 2] for the rows k of ``z``: shape (rows, D)."""
    u = (z[:, None, :] - mu) * s
    return torch.logsumexp(log_w[:, :, None] + h - 0.5 * u * u, dim=1)


def _grad_z(z: Tensor, log_w: Tensor, lse: Tensor, grad: Tensor, mu: Tensor, s: Tensor, h: Tensor) -> Tensor:
    """dL/dz_kd = -grad_kd sum_j p_kjd u_kjd s_jd, p the softmax over j saved as ``lse``."""
    u = (z[:, None, :] - mu) * s
    p = torch.exp(log_w[:, :, None] + h - 0.5 * u * u - lse[:, None, :])
    return -grad * (p * u * s).sum(1)


def _grad_params(z: Tensor, log_w: Tensor, lse: Tensor, grad: Tensor, mu: Tensor, s: Tensor,
                 h: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """sum over the rows k of g p, g p u and g p u^2 (g = grad_kd), laid out (j, k, d): each (B, D)."""
    u = (z - mu[:, None, :]) * s[:, None, :]
    gp = torch.exp(log_w.T[:, :, None] + h[:, None, :] - 0.5 * u * u - lse) * grad
    gpu = gp * u
    return gp.sum(1), gpu.sum(1), (gpu * u).sum(1)


def compile_enabled() -> bool:
    """Whether the estimator's loops are compiled: on unless ``SEATBELT_COMPILE=0`` or compiling failed."""
    return _COMPILE["enabled"]


_COMPILE = {"enabled": os.environ.get("SEATBELT_COMPILE", "1") != "0"}
_COMPILED: dict = {}


def _run(kernel, rows: tuple[Tensor, ...], shared: tuple[Tensor, ...], reduce: bool = False):
    """``kernel(*rows, *shared)`` over all rows k: compiled in one call, or eagerly in blocks of rows
    (outputs concatenated, or summed when ``reduce``)."""
    if _COMPILE["enabled"]:
        try:
            if kernel not in _COMPILED:
                _COMPILED[kernel] = torch.compile(kernel, dynamic=True)
            return _COMPILED[kernel](*rows, *shared)
        except Exception as error:  # no C++ compiler or triton, an unsupported platform
            _COMPILE["enabled"] = False
            warnings.warn(f"torch.compile failed ({type(error).__name__}: {error}); the TC estimator runs "
                          "eagerly, about 5x slower. Set SEATBELT_COMPILE=0 to skip the attempt.", stacklevel=2)
    step = _row_chunk(*rows[0].shape, rows[0].device)
    blocks = [kernel(*(r[i : i + step] for r in rows), *shared) for i in range(0, rows[0].shape[0], step)]
    if not reduce:
        return torch.cat(blocks)
    return tuple(sum(parts) for parts in zip(*blocks))


def _row_chunk(batch: int, latent: int, device: torch.device) -> int:
    """Rows k per eager pass: a (rows, B, D) block small enough to stay in a CPU cache, large on a GPU."""
    budget = 2**24 if device.type == "cuda" else 2**18
    return max(1, budget // (batch * latent))


class _Marginals(torch.autograd.Function):
    """log q(z_k,d) ~= logsumexp_j [w_kj + log q(z_k,d | x_j)] per (k, d), with a hand-written backward.

    The gradient with respect to log q(z_k,d | x_j) is the softmax weight p_kjd over j, rebuilt
    from the saved logsumexp; and d/dz log q(z_k,d | x_j) = -u s, d/dmu = u s,
    d/dlogvar = (u^2 - 1) / 2.
    """

    @staticmethod
    def forward(ctx, z: Tensor, mu: Tensor, logvar: Tensor, log_w: Tensor) -> Tensor:
        h = -0.5 * logvar
        lse = _run(_marginal_lse, (z, log_w), (mu, torch.exp(h), h))
        ctx.save_for_backward(z, mu, logvar, log_w, lse)
        return lse - 0.5 * LOG_2PI

    @staticmethod
    def backward(ctx, grad: Tensor):
        z, mu, logvar, log_w, lse = ctx.saved_tensors
        h = -0.5 * logvar
        shared = (mu, torch.exp(h), h)
        grad_z = _run(_grad_z, (z, log_w, lse, grad), shared)
        sum_p, sum_pu, sum_pu2 = _run(_grad_params, (z, log_w, lse, grad), shared, reduce=True)
        return grad_z, torch.exp(h) * sum_pu, 0.5 * (sum_pu2 - sum_p), None
