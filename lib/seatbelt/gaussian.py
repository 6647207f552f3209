"""Diagonal Gaussians: densities, divergences and the reparameterised sample.

Every function is batched and sums over the last dimension (the latent units), so a
posterior of shape ``(B, D)`` gives one value per batch element. Variances are carried
as log-variances, as the encoders output them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

LOG_2PI = math.log(2 * math.pi)


@dataclass(frozen=True)
class DiagGaussian:
    """N(mu, diag(exp(logvar))), batched over leading dimensions."""

    mu: Tensor
    logvar: Tensor

    @property
    def std(self) -> Tensor:
        return torch.exp(0.5 * self.logvar)

    def sample(self, generator: torch.Generator | None = None) -> Tensor:
        """Reparameterised draw mu + sigma * eps, differentiable in mu and logvar."""
        eps = torch.randn(
            self.mu.shape, generator=generator, device=self.mu.device, dtype=self.mu.dtype
        )
        return self.mu + self.std * eps

    def log_prob(self, z: Tensor) -> Tensor:
        """log N(z; mu, sigma^2), summed over the last dimension."""
        return log_density(z, self.mu, self.logvar).sum(-1)

    def detach(self) -> "DiagGaussian":
        return DiagGaussian(self.mu.detach(), self.logvar.detach())

    def __getitem__(self, idx) -> "DiagGaussian":
        return DiagGaussian(self.mu[idx], self.logvar[idx])


def log_density(z: Tensor, mu: Tensor, logvar: Tensor) -> Tensor:
    """Elementwise log N(z; mu, exp(logvar)); no sum, so callers can form marginals."""
    return -0.5 * (LOG_2PI + logvar + (z - mu) ** 2 * torch.exp(-logvar))


def standard_log_density(z: Tensor) -> Tensor:
    """log N(z; 0, I) summed over the last dimension: the prior p(z)."""
    return (-0.5 * (LOG_2PI + z**2)).sum(-1)


def kl(
    mu1: Tensor, logvar1: Tensor, mu2: Tensor | None = None, logvar2: Tensor | None = None
) -> Tensor:
    """KL(N(mu1, s1^2) || N(mu2, s2^2)) in closed form, summed over the last dimension.

    With ``mu2``/``logvar2`` omitted the second Gaussian is the standard normal prior.
    KL = 1/2 sum_d [ log s2^2/s1^2 + (s1^2 + (mu1 - mu2)^2) / s2^2 - 1 ].
    """
    if mu2 is None:
        mu2 = torch.zeros_like(mu1)
    if logvar2 is None:
        logvar2 = torch.zeros_like(logvar1)
    return 0.5 * (
        logvar2 - logvar1 + (torch.exp(logvar1) + (mu1 - mu2) ** 2) * torch.exp(-logvar2) - 1
    ).sum(-1)


def kl_parts(mu1: Tensor, logvar1: Tensor, mu2: Tensor, logvar2: Tensor) -> tuple[Tensor, Tensor]:
    """KL(N(mu1, s1^2) || N(mu2, s2^2)) split into its mean-difference and its variance term.

    mean term     = 1/2 sum_d (mu1 - mu2)^2 / s2^2
    variance term = 1/2 sum_d [ s1^2/s2^2 - 1 - log(s1^2/s2^2) ]   (>= 0, zero iff s1 = s2)

    They sum to :func:`kl`. The mean term is a squared distance measured in units of the second
    Gaussian's width: widening every posterior by a factor c divides it by c^2, while the
    variance term depends only on the ratio of the widths. So a model with wider posteriors has
    smaller KLs between them even when its means are just as far apart.
    """
    mean = 0.5 * ((mu1 - mu2) ** 2 * torch.exp(-logvar2)).sum(-1)
    ratio = logvar1 - logvar2  # log(s1^2 / s2^2)
    variance = 0.5 * (torch.exp(ratio) - 1 - ratio).sum(-1)
    return mean, variance


def w2(mu1: Tensor, logvar1: Tensor, mu2: Tensor, logvar2: Tensor) -> Tensor:
    """Squared 2-Wasserstein distance between diagonal Gaussians, summed over the last dimension.

    W2^2 = ||mu1 - mu2||^2 + ||s1 - s2||^2 (the paper's r = W2 in Eqs 1 and 10).
    """
    s1, s2 = torch.exp(0.5 * logvar1), torch.exp(0.5 * logvar2)
    return ((mu1 - mu2) ** 2 + (s1 - s2) ** 2).sum(-1)
