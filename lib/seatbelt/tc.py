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

import torch
from torch import Tensor

from .gaussian import log_density

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
    # (k, j, d): log q(z_k,d | x_j)
    pairwise = log_density(z[:, None, :], mu[None, :, :], logvar[None, :, :])
    if estimator == "mws":
        log_w = torch.full((batch, batch), -math.log(dataset_size * batch), device=z.device, dtype=z.dtype)
    else:
        log_w = mss_log_weights(batch, dataset_size, device=z.device, dtype=z.dtype)
    log_joint = torch.logsumexp(pairwise.sum(-1) + log_w, dim=1)
    log_marginals = torch.logsumexp(pairwise + log_w[:, :, None], dim=1).sum(-1)
    return log_joint, log_marginals
