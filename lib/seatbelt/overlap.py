"""Overlap between per-datapoint posteriors (Mathieu et al. 2019; Section 3.1, Appendix A.2).

The aggregate posterior q(z) = (1/N) sum_n q(z | x_n) has holes where its components do not
overlap; Section 3.1 argues that an attacker exploits them. This module measures overlap with
closed forms for diagonal Gaussians q = N(mu, diag s^2), and evaluates a model over a dataset.

Bhattacharyya distance and coefficient, per latent unit d and summed (diagonal covariances
factorise, so the D-dimensional coefficient is the product of the 1-D ones):

    D_B = sum_d [ (mu1_d - mu2_d)^2 / (4 (s1_d^2 + s2_d^2))
                  + 1/2 log( (s1_d^2 + s2_d^2) / (2 s1_d s2_d) ) ]                    (1)
    BC  = integral sqrt(q1(z) q2(z)) dz = exp(-D_B)  in (0, 1]                        (2)

BC = 1 exactly when q1 = q2; it is symmetric; for equal means it is
prod_d sqrt(2 s1_d s2_d / (s1_d^2 + s2_d^2)).

Overlap of a dataset's posteriors:

* :func:`neighbour_overlap`: BC between q(z | x_n) and q(z | x_m(n)), m(n) the nearest other
  point to x_n in data space (Euclidean). High: nearby inputs share codes (no holes between them).
* :func:`aggregate_log_density`: log q(z) of the exact finite mixture on a grid of z (the density
  panels of Fig A.7).
* ``sigma_norm`` of :class:`Evaluation`: ||sigma(x)||_2, the norm of the encoder's standard
  deviation (Fig 2, left).

:func:`evaluate` runs a model over a dataset once: posteriors, the Monte Carlo reconstruction
log-likelihood E_q(z|x)[log p(x|z)] and the beta = 1 ELBO (Fig 2, right).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from .data.base import Data
from .device import resolve
from .models import VAE

LOG_2PI = math.log(2 * math.pi)


def _check_pair(mu1: Tensor, logvar1: Tensor, mu2: Tensor, logvar2: Tensor) -> None:
    shapes = {tuple(t.shape) for t in (mu1, logvar1, mu2, logvar2)}
    if len(shapes) != 1:
        raise ValueError(
            f"mu1, logvar1, mu2, logvar2 must have one shape (..., D), got "
            f"{[tuple(t.shape) for t in (mu1, logvar1, mu2, logvar2)]}; index both posteriors "
            "alike."
        )


def bhattacharyya_distance(mu1: Tensor, logvar1: Tensor, mu2: Tensor, logvar2: Tensor) -> Tensor:
    """D_B of Eq (1) between N(mu1, exp(logvar1)) and N(mu2, exp(logvar2)), summed over the last
    dim."""
    _check_pair(mu1, logvar1, mu2, logvar2)
    v1, v2 = torch.exp(logvar1), torch.exp(logvar2)
    var_sum = v1 + v2  # twice the averaged variance, so the textbook's 1/8 becomes 1/4
    # log((v1 + v2) / (2 s1 s2)) = log(v1 + v2) - log 2 - (logvar1 + logvar2) / 2: no sqrt of tiny
    # variances
    spread = torch.log(var_sum) - math.log(2) - 0.5 * (logvar1 + logvar2)
    return ((mu1 - mu2) ** 2 / (4 * var_sum) + 0.5 * spread).sum(-1)


def bhattacharyya(mu1: Tensor, logvar1: Tensor, mu2: Tensor, logvar2: Tensor) -> Tensor:
    """BC = exp(-D_B) of Eq (2), in (0, 1]: 1 for identical Gaussians, toward 0 for disjoint
    ones."""
    return torch.exp(-bhattacharyya_distance(mu1, logvar1, mu2, logvar2))


def nearest_neighbours(x: Tensor, block: int = 1024) -> Tensor:
    """For each of the N items of ``x`` (N, ...), the index of its nearest *other* item (Euclidean).

    Distances are computed ``block`` rows at a time, so memory stays O(block N). Ties go to the
    lowest index; an exact duplicate is a neighbour at distance 0.
    """
    if x.ndim < 2 or len(x) < 2:
        raise ValueError(
            f"nearest_neighbours needs at least 2 items as (N, ...), got shape {tuple(x.shape)}."
        )
    flat = x.flatten(1).double()
    out = torch.empty(len(flat), dtype=torch.long, device=x.device)
    for start in range(0, len(flat), block):
        rows = flat[start : start + block]
        dist = torch.cdist(rows, flat)
        dist[torch.arange(len(rows)), torch.arange(start, start + len(rows))] = (
            math.inf
        )  # not itself
        out[start : start + len(rows)] = dist.argmin(1)
    return out


def neighbour_overlap(x: Tensor, mu: Tensor, logvar: Tensor) -> Tensor:
    """BC (Eq 2) between each item's posterior and its nearest neighbour's in data space, (N,)."""
    if not (len(x) == len(mu) == len(logvar)):
        raise ValueError(
            f"x, mu and logvar need one row per item, got {len(x)}, {len(mu)}, {len(logvar)} rows."
        )
    nn = nearest_neighbours(x.to(mu.device))
    return bhattacharyya(mu, logvar, mu[nn], logvar[nn])


def random_pairs(n: int, count: int, seed: int = 0) -> np.ndarray:
    """``count`` (i, j) index pairs with i != j drawn uniformly from range(n): source-target
    pairs."""
    if n < 2 or count < 1:
        raise ValueError(
            f"random_pairs needs n >= 2 items and count >= 1, got n={n}, count={count}."
        )
    rng = np.random.default_rng(seed)
    i = rng.integers(0, n, count)
    j = (i + rng.integers(1, n, count)) % n  # uniform over the n - 1 others
    return np.stack([i, j], 1)


def aggregate_log_density(z: Tensor, mu: Tensor, logvar: Tensor, block: int = 4096) -> Tensor:
    """log q(z) = log (1/N) sum_n N(z; mu_n, diag exp(logvar_n)) at each of G points z (G, D) ->
    (G,).

    The exact mixture of the N posteriors (N, D), in blocks of ``block`` evaluation points.
    """
    if z.ndim != 2 or mu.ndim != 2 or mu.shape != logvar.shape or z.shape[1] != mu.shape[1]:
        raise ValueError(
            f"aggregate_log_density wants z (G, D), mu and logvar (N, D) with one D, got "
            f"{tuple(z.shape)}, {tuple(mu.shape)}, {tuple(logvar.shape)}."
        )
    mu, logvar = mu.double(), logvar.double()
    const = -0.5 * (LOG_2PI * mu.shape[1] + logvar.sum(1))  # (N,)
    inv_var = torch.exp(-logvar)
    out = []
    for start in range(0, len(z), block):
        zb = z[start : start + block].to(mu)
        sq = ((zb[:, None, :] - mu[None]) ** 2 * inv_var[None]).sum(-1)  # (G_b, N)
        out.append(torch.logsumexp(const[None] - 0.5 * sq, 1) - math.log(len(mu)))
    return torch.cat(out)


@dataclass(frozen=True)
class Evaluation:
    """A model evaluated on a dataset: per-item posteriors (on the CPU) and a tidy per-item frame.

    ``frame`` columns: ``item`` (row in the data), ``log_likelihood`` (Monte Carlo
    E_q(z|x)[log p(x|z)] over ``n_samples`` draws, nats), ``elbo`` (the beta = 1 ELBO, the same
    draws), ``kl`` (= log_likelihood - elbo), ``sigma_norm`` (||sigma(x)||_2 of layer ``layer``).
    """

    mu: Tensor
    logvar: Tensor
    frame: pd.DataFrame

    @property
    def sigma(self) -> Tensor:
        return torch.exp(0.5 * self.logvar)


@torch.no_grad()
def evaluate(
    model: VAE,
    data: Data,
    *,
    n: int | None = None,
    n_samples: int = 1,
    layer: int = 0,
    batch_size: int = 500,
    seed: int = 0,
    device=None,
) -> Evaluation:
    """Evaluate ``model`` on the first ``n`` items of ``data`` (all if None), in eval mode.

    Each draw encodes with a sample z ~ q(z|x) and scores the same z twice (the generator is
    re-seeded per batch and draw), so ``kl = log_likelihood - elbo`` is the model's own KL term.
    """
    n = len(data) if n is None else n
    if not 1 <= n <= len(data):
        raise ValueError(
            f"n={n} items asked of {data.name}, which has {len(data)}; ask for 1..{len(data)}."
        )
    if n_samples < 1:
        raise ValueError(f"n_samples must be at least 1, got {n_samples}.")
    if not -model.n_layers <= layer < model.n_layers:
        raise ValueError(f"layer={layer} for a model of {model.n_layers} latent layer(s).")
    device = resolve(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.to(device).eval()
    mus, logvars, ll, elbo = [], [], [], []
    for b, start in enumerate(range(0, n, batch_size)):
        x = data.get(torch.arange(start, min(start + batch_size, n)), device)
        q = model.encode(x).posteriors[layer]
        mus.append(q.mu.cpu())
        logvars.append(q.logvar.cpu())
        ll_b, elbo_b = (
            torch.zeros(len(x), dtype=torch.float64),
            torch.zeros(len(x), dtype=torch.float64),
        )
        for s in range(n_samples):
            key = (
                seed * 1_000_003 + b
            ) * 1_009 + s  # distinct, reproducible draws per batch and sample
            enc = model.encode(x, sample=True, generator=torch.Generator(device).manual_seed(key))
            ll_b += model.log_likelihood(x, enc.z).double().cpu()
            elbo_b += (
                model.elbo(x, generator=torch.Generator(device).manual_seed(key)).double().cpu()
            )
        ll.append(ll_b / n_samples)
        elbo.append(elbo_b / n_samples)
    model.train(was_training)
    mu, logvar = torch.cat(mus), torch.cat(logvars)
    ll, elbo = torch.cat(ll).numpy(), torch.cat(elbo).numpy()
    frame = pd.DataFrame(
        {
            "item": np.arange(n),
            "log_likelihood": ll,
            "elbo": elbo,
            "kl": ll - elbo,
            "sigma_norm": torch.exp(0.5 * logvar.double()).norm(dim=1).numpy(),
        }
    )
    return Evaluation(mu, logvar, frame)
