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
from typing import Literal, get_args

import torch
from torch import Tensor

from .gaussian import LOG_2PI

Estimator = Literal["mws", "mss"]
ESTIMATORS: tuple[Estimator, ...] = get_args(Estimator)


def mss_log_weights(batch_size: int, dataset_size: int, device=None, dtype=torch.float32) -> Tensor:
    """log W for minibatch stratified sampling, a ``(B, B)`` matrix whose rows sum to 1 in W.

    With M = B - 1: W_kk = 1/N; W_k,k+1 = (N - M) / (N M) (the last row wraps to column 0);
    every other entry 1/M. Row sum: 1/N + (N - M)/(N M) + (M - 1)/M = 1.
    """
    if batch_size < 2:
        raise ValueError(
            f"MSS needs a batch of at least 2 points, got batch_size={batch_size}; use "
            "estimator='mws'."
        )
    m = batch_size - 1
    if dataset_size < m:
        raise ValueError(
            f"MSS needs dataset_size >= batch_size - 1, got dataset_size={dataset_size}, "
            f"batch_size={batch_size}: pass the size of the whole training set, not of the batch."
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
    estimator: Estimator = "mws",
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
            f"dataset_size={dataset_size} is smaller than the batch ({batch}): pass the size of "
            "the whole training set."
        )
    if estimator == "mws":
        log_w = torch.full(
            (batch, batch), -math.log(dataset_size * batch), device=z.device, dtype=z.dtype
        )
    else:
        log_w = mss_log_weights(batch, dataset_size, device=z.device, dtype=z.dtype)
    return _Joint.apply(z, mu, logvar, log_w), _Marginals.apply(z, mu, logvar, log_w).sum(-1)


class _Joint(torch.autograd.Function):
    """logsumexp_j [w_kj + sum_d log q(z_k,d | x_j)], with the sum over d as matrix products.

    sum_d (z_kd - mu_jd)^2 / sigma_jd^2
        = (z^2) (1/sigma^2)^T - 2 z (mu/sigma^2)^T + sum_d mu_jd^2/sigma_jd^2,
    so no (B, B, D) tensor is formed, in the forward or in the hand-written backward. The
    expansion cancels large terms (a precision of e^10 times a mean of a few units), so it is
    computed in float64. With a_kj = grad_k p_kj (p the softmax over j) and precision P = 1/sigma^2:
    dL/dz_kd = -sum_j a_kj (z_kd - mu_jd) P_jd, dL/dmu_jd = sum_k a_kj (z_kd - mu_jd) P_jd, and
    dL/dlogvar_jd = sum_k a_kj ((z_kd - mu_jd)^2 P_jd - 1) / 2, each expanded the same way.
    """

    @staticmethod
    def forward(ctx, z: Tensor, mu: Tensor, logvar: Tensor, log_w: Tensor) -> Tensor:
        z64, mu64, logvar64 = z.double(), mu.double(), logvar.double()
        precision = torch.exp(-logvar64)
        mu_precision = mu64 * precision
        quad = z64.square() @ precision.T - 2 * z64 @ mu_precision.T + (mu64 * mu_precision).sum(-1)
        logits = log_w.double() - 0.5 * (quad + logvar64.sum(-1) + z.shape[1] * LOG_2PI)
        lse = torch.logsumexp(logits, dim=1)
        ctx.save_for_backward(z64, mu64, precision, mu_precision, logits, lse)
        return lse.to(z.dtype)

    @staticmethod
    def backward(ctx, grad: Tensor):
        z64, mu64, precision, mu_precision, logits, lse = ctx.saved_tensors
        a = grad.double()[:, None] * torch.exp(logits - lse[:, None])
        grad_z = a @ mu_precision - z64 * (a @ precision)
        by_j, a_z = a.sum(0)[:, None], a.T @ z64
        grad_mu = a_z * precision - mu_precision * by_j
        squares = (
            a.T @ z64.square() - 2 * mu64 * a_z + mu64.square() * by_j
        )  # sum_k a_kj (z_kd - mu_jd)^2
        grad_logvar = 0.5 * (squares * precision - by_j)
        dtype = grad.dtype
        return grad_z.to(dtype), grad_mu.to(dtype), grad_logvar.to(dtype), None


# The marginals need log q(z_k,d | x_j) for every (k, j, d), a (B, B, D) tensor that is the
# estimator's whole cost. Each loop below is one sum over a single index, laid out innermost, and
# torch.compile fuses it into one pass over (k, j, d) that never forms the tensor; where compiling
# is off or fails, they run eagerly a few rows at a time, so each block stays in cache. On CPU,
# inductor stores the tensor when one exp feeds two sums, so each loop has one: the forward is a
# plain sum shifted by the diagonal term j = k (not a max over j, a second sum), and the backward
# sums over k for mu and for logvar in two loops. In all of them log q(z_k,d | x_j) =
# h_jd - u_kjd^2 / 2 - log(2 pi) / 2, with h = -logvar / 2, s = exp(h) = 1/sigma and
# u_kjd = (z_kd - mu_jd) s_jd; arguments ending in T are (D, B), transposed.


# A term more than e^60 below the shift counts as e^-60 of it: 1e-26 of the largest term,
# invisible in float32 (eps 1.2e-7) even over a million points. Its exact exp would be a
# subnormal number, which costs x86 CPUs a microcode assist (the loops ran 2x slower). A clamp,
# not a select: inductor stores a tensor that an expression reads twice.
def _exp_floored(x: Tensor) -> Tensor:
    return torch.exp(x.clamp_min(-60.0))


def _shifted_sum(
    z: Tensor, log_w: Tensor, shift: Tensor, muT: Tensor, sT: Tensor, hT: Tensor
) -> Tensor:
    """log sum_j exp(w_kj + h_jd - u_kjd^2 / 2 - shift_kd) for the rows k of ``z``: shape (rows,
    D)."""
    u = (z[:, :, None] - muT) * sT
    return torch.log(_exp_floored(log_w[:, None, :] + hT - 0.5 * u * u - shift[:, :, None]).sum(-1))


def _logsumexp(z: Tensor, log_w: Tensor, muT: Tensor, sT: Tensor, hT: Tensor) -> Tensor:
    """logsumexp_j [w_kj + h_jd - u_kjd^2 / 2], shifted by its max: the fallback of
    :func:`_shifted_sum`."""
    u = (z[:, :, None] - muT) * sT
    return torch.logsumexp(log_w[:, None, :] + hT - 0.5 * u * u, dim=-1)


def _grad_z(
    z: Tensor, log_w: Tensor, lse: Tensor, grad: Tensor, muT: Tensor, sT: Tensor, hT: Tensor
) -> Tensor:
    """dL/dz_kd = -grad_kd sum_j p_kjd u_kjd s_jd, p the softmax over j rebuilt from ``lse``."""
    u = (z[:, :, None] - muT) * sT
    p = _exp_floored(log_w[:, None, :] + hT - 0.5 * u * u - lse[:, :, None])
    return -grad * (p * u * sT).sum(-1)


def _weighted_p(
    mu: Tensor, s: Tensor, h: Tensor, log_wT: Tensor, zT: Tensor, lseT: Tensor, gradT: Tensor
) -> tuple[Tensor, Tensor]:
    """(g p, u) laid out (j, d, k) for the rows j of ``mu``: the terms of the sums over k."""
    u = (zT - mu[:, :, None]) * s[:, :, None]
    return _exp_floored(log_wT[:, None, :] + h[:, :, None] - 0.5 * u * u - lseT) * gradT, u


def _grad_mu_sum(*args: Tensor) -> Tensor:
    """sum_k g_kd p_kjd u_kjd, shape (rows j, D): dL/dmu_jd over s_jd."""
    gp, u = _weighted_p(*args)
    return (gp * u).sum(-1)


def _grad_logvar_sum(*args: Tensor) -> Tensor:
    """sum_k g_kd p_kjd (u_kjd^2 - 1): twice dL/dlogvar_jd."""
    gp, u = _weighted_p(*args)
    return (gp * (u * u - 1)).sum(-1)


def compile_enabled() -> bool:
    """Whether the estimator's loops are compiled: on unless ``SEATBELT_COMPILE=0`` or compiling
    failed."""
    return _COMPILE["enabled"]


_COMPILE = {"enabled": os.environ.get("SEATBELT_COMPILE", "1") != "0"}
_COMPILED: dict = {}


def _compiled(fn, *args: Tensor) -> Tensor | None:
    """``fn(*args)`` compiled, or None where compiling is off or has failed (it then warns once)."""
    if not _COMPILE["enabled"]:
        return None
    try:
        if fn not in _COMPILED:
            _COMPILED[fn] = torch.compile(fn, dynamic=True)
        return _COMPILED[fn](*args)
    except Exception as error:  # no C++ compiler or triton, an unsupported platform
        _COMPILE["enabled"] = False
        warnings.warn(
            f"torch.compile failed ({type(error).__name__}: {error}); the TC estimator runs "
            "eagerly, about 5x slower. Set SEATBELT_COMPILE=0 to skip the attempt.",
            stacklevel=3,
        )
        return None


def _run(kernel, rows: tuple[Tensor, ...], shared: tuple[Tensor, ...]) -> Tensor:
    """``kernel(*rows, *shared)`` over all rows: compiled in one call, or eagerly in blocks of
    rows."""
    out = _compiled(kernel, *rows, *shared)
    if out is not None:
        return out
    step = _row_chunk(*rows[0].shape, rows[0].device)
    return torch.cat(
        [
            kernel(*(r[i : i + step] for r in rows), *shared)
            for i in range(0, rows[0].shape[0], step)
        ]
    )


def _row_chunk(batch: int, latent: int, device: torch.device) -> int:
    """Rows per eager pass: a (rows, D, B) block small enough to stay in a CPU cache, large on a
    GPU."""
    budget = 2**24 if device.type == "cuda" else 2**18
    return max(1, budget // (batch * latent))


class _Marginals(torch.autograd.Function):
    """log q(z_k,d) ~= logsumexp_j [w_kj + log q(z_k,d | x_j)] per (k, d), with a hand-written
    backward.

    The forward shifts the sum over j by its diagonal term j = k (z_k was drawn from q(z | x_k),
    so that term is rarely far from the largest): the sum is then at least 1 and cannot
    underflow. Where a term exceeds the diagonal one by more than float32 can hold (a z far
    from its own posterior), the sum overflows and that batch is summed again shifted by the
    max. The gradient with respect to log q(z_k,d | x_j) is the softmax weight p_kjd over j,
    rebuilt from the saved logsumexp; and d/dz log q(z_k,d | x_j) = -u s, d/dmu = u s,
    d/dlogvar = (u^2 - 1) / 2.
    """

    @staticmethod
    def forward(ctx, z: Tensor, mu: Tensor, logvar: Tensor, log_w: Tensor) -> Tensor:
        h = -0.5 * logvar
        s = torch.exp(h)
        shared = (mu.T.contiguous(), s.T.contiguous(), h.T.contiguous())
        diagonal = log_w.diagonal()[:, None] + h - 0.5 * ((z - mu) * s).square()
        lse = diagonal + _run(_shifted_sum, (z, log_w, diagonal), shared)
        if not torch.isfinite(lse).all():
            lse = _run(_logsumexp, (z, log_w), shared)
        ctx.save_for_backward(z, mu, logvar, log_w, lse)
        return lse - 0.5 * LOG_2PI

    @staticmethod
    def backward(ctx, grad: Tensor):
        z, mu, logvar, log_w, lse = ctx.saved_tensors
        h = -0.5 * logvar
        s = torch.exp(h)
        grad_z = _run(
            _grad_z, (z, log_w, lse, grad), (mu.T.contiguous(), s.T.contiguous(), h.T.contiguous())
        )
        by_j = (mu, s, h, log_w.T.contiguous())
        by_k = (z.T.contiguous(), lse.T.contiguous(), grad.T.contiguous())
        grad_mu = s * _run(_grad_mu_sum, by_j, by_k)
        return grad_z, grad_mu, 0.5 * _run(_grad_logvar_sum, by_j, by_k), None
