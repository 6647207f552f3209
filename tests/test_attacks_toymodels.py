"""Linear Gaussian models with the seatbelt.models interface, whose attacks have closed forms.

Encoder: mu_1 = A_1 x + b_1, mu_{i+1} = A_{i+1} z_i + b_{i+1} (z_i the mean passed up when not
sampling), log-variances fixed or linear in x. Decoder: the likelihood mean W [z_1, ..., z_L] + c.
The tests in this file check the toys against seatbelt.gaussian; the other attack tests import them.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from torch import Tensor, nn

from seatbelt.attacks import Attack, AttackObjective, BatchedLBFGSB
from seatbelt.gaussian import DiagGaussian, kl, w2
from seatbelt.models import Encoding


class LinearGaussian(nn.Module):
    """A toy VAE: linear Gaussian encoder chain, linear Gaussian decoder, N(0, I) prior on every
    layer."""

    def __init__(
        self,
        shape=(1, 4, 4),
        latent_sizes=(3,),
        *,
        seed=0,
        logvar=-1.0,
        linear_logvar=False,
        diagonal=False,
        likelihood_std=0.5,
    ):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        n = math.prod(shape)
        self.shape = tuple(shape)
        self.config = SimpleNamespace(likelihood_std=likelihood_std, data_shape=self.shape)
        sizes = (n,) + tuple(latent_sizes)
        if diagonal:
            assert latent_sizes == (n,), "a diagonal encoder maps each pixel to its own latent"
            self.A = nn.ParameterList([nn.Parameter(torch.diag(0.5 + torch.rand(n, generator=g)))])
        else:
            self.A = nn.ParameterList(
                nn.Parameter(torch.randn(sizes[i + 1], sizes[i], generator=g) / math.sqrt(sizes[i]))
                for i in range(len(latent_sizes))
            )
        self.b = nn.ParameterList(
            nn.Parameter(0.1 * torch.randn(k, generator=g)) for k in latent_sizes
        )
        self.c = nn.ParameterList(
            nn.Parameter(torch.full((k,), logvar) + 0.2 * torch.randn(k, generator=g))
            for k in latent_sizes
        )
        self.C = (
            nn.Parameter(0.3 * torch.randn(latent_sizes[0], n, generator=g) / math.sqrt(n))
            if linear_logvar
            else None
        )
        self.W = nn.Parameter(
            torch.randn(n, sum(latent_sizes), generator=g) / math.sqrt(sum(latent_sizes))
        )
        self.w0 = nn.Parameter(0.1 * torch.randn(n, generator=g))

    @property
    def n_layers(self) -> int:
        return len(self.A)

    @property
    def latent_sizes(self) -> tuple[int, ...]:
        return tuple(len(b) for b in self.b)

    def encode(self, x: Tensor, sample: bool = False, generator=None) -> Encoding:
        h = x.flatten(1)
        posteriors, zs = [], []
        for i, (A, b, c) in enumerate(zip(self.A, self.b, self.c)):
            mu = h @ A.T + b
            logvar = c.expand_as(mu)
            if i == 0 and self.C is not None:
                logvar = logvar + x.flatten(1) @ self.C.T
            q = DiagGaussian(mu, logvar)
            posteriors.append(q)
            h = q.sample(generator) if sample else q.mu
            zs.append(h)
        return Encoding(posteriors, zs)

    def decode(self, zs: list[Tensor]) -> Tensor:
        return (torch.cat(zs, -1) @ self.W.T + self.w0).view(-1, *self.shape)

    def log_likelihood(self, x: Tensor, zs: list[Tensor]) -> Tensor:
        s = self.config.likelihood_std
        resid = ((x - self.decode(zs)) / s).flatten(1)
        return (-0.5 * resid**2 - math.log(s) - 0.5 * math.log(2 * math.pi)).sum(-1)

    def elbo(
        self, x: Tensor, target: Tensor | None = None, sample: bool = True, generator=None
    ) -> Tensor:
        enc = self.encode(x, sample=sample, generator=generator)
        target = x if target is None else target
        return self.log_likelihood(target, enc.z) - sum(kl(q.mu, q.logvar) for q in enc.posteriors)


def random_pairs(
    n_pairs: int, shape=(1, 4, 4), seed: int = 1, spread: float = 0.5, step: float = 0.05
):
    """Sources well inside [-1, 1] and targets near them, so attack optima stay inside the box."""
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(n_pairs, *shape, generator=g) * 2 - 1) * spread
    return x, x + step * torch.randn(n_pairs, *shape, generator=g)


def test_latent_objective_is_the_closed_form_of_seatbelt_gaussian():
    model = LinearGaussian(latent_sizes=(3, 2), linear_logvar=True).eval()
    x, x_t = random_pairs(4)
    d = 0.1 * torch.randn_like(x)
    lambdas = torch.tensor([0.0, 0.5, 2.0, 8.0])
    q, qt = model.encode(x + d).posteriors, model.encode(x_t).posteriors
    penalty = lambdas * d.flatten(1).pow(2).sum(-1)
    for kind, r in (("kl", kl), ("w2", w2)):
        per_layer = [r(q[i].mu, q[i].logvar, qt[i].mu, qt[i].logvar) for i in range(2)]
        for layers, expected in (
            ("all", per_layer[0] + per_layer[1]),
            ("bottom", per_layer[0]),
            ("top", per_layer[1]),
            ((2,), per_layer[1]),
            ((1, 2), per_layer[0] + per_layer[1]),
        ):
            delta, divergence = AttackObjective(model, Attack(kind, layers), x, x_t, lambdas)(d)
            torch.testing.assert_close(divergence, expected)
            torch.testing.assert_close(delta, expected + penalty)


def test_output_objective_is_the_negative_elbo_of_the_target():
    model = LinearGaussian().eval()
    x, x_t = random_pairs(3)
    d = 0.1 * torch.randn_like(x)
    lambdas = torch.tensor([0.0, 1.0, 4.0])
    q = model.encode(x + d).posteriors[0]
    s = model.config.likelihood_std
    recon = (q.mu @ model.W.T + model.w0).view_as(x)
    nll = (
        (0.5 * ((x_t - recon) / s) ** 2 + math.log(s) + 0.5 * math.log(2 * math.pi))
        .flatten(1)
        .sum(-1)
    )
    expected = nll + kl(q.mu, q.logvar)
    delta, divergence = AttackObjective(model, Attack("output"), x, x_t, lambdas)(d)
    torch.testing.assert_close(divergence, expected)
    torch.testing.assert_close(delta, expected + lambdas * d.flatten(1).pow(2).sum(-1))


def test_recon_attack_is_the_l2_output_attack_and_reaches_its_closed_form_optimum():
    # recon(x + d) = M (x + d) + c with M = W A and c = W b + w0, so the optimum of
    # ||M (x + d) + c - x_t||^2 + lambda ||d||^2 solves (M'M + lambda I) d = -M'(M x + c - x_t)
    model = LinearGaussian().double().eval()
    x, x_t = (t.double() for t in random_pairs(3, step=0.02))
    lambdas = torch.tensor([0.25, 1.0, 4.0], dtype=torch.float64)
    M = (model.W @ model.A[0]).detach()
    c = (model.W @ model.b[0] + model.w0).detach()
    d = 0.1 * torch.randn_like(x)
    delta, divergence = AttackObjective(model, Attack("recon"), x, x_t, lambdas)(d)
    expected = ((x + d).flatten(1) @ M.T + c - x_t.flatten(1)).pow(2).sum(-1)
    torch.testing.assert_close(divergence, expected)
    torch.testing.assert_close(delta, expected + lambdas * d.flatten(1).pow(2).sum(-1))
    n = x[0].numel()
    optimum = []
    for p in range(3):
        r = M @ x[p].flatten() + c - x_t[p].flatten()
        d_star = torch.linalg.solve(M.T @ M + lambdas[p] * torch.eye(n, dtype=M.dtype), -M.T @ r)
        optimum.append((M @ d_star + r).pow(2).sum() + lambdas[p] * d_star.pow(2).sum())
    objective = AttackObjective(model, Attack("recon"), x, x_t, lambdas)
    solved = BatchedLBFGSB().solve(objective, torch.zeros_like(x))
    torch.testing.assert_close(objective(solved.d)[0], torch.stack(optimum), rtol=1e-6, atol=1e-9)
    with pytest.raises(ValueError, match="the recon attack uses every layer"):
        Attack("recon", "top")


def test_objective_gradient_matches_finite_differences():
    model = LinearGaussian(latent_sizes=(3, 2), linear_logvar=True).double().eval()
    x, x_t = (t.double() for t in random_pairs(2))
    objective = AttackObjective(
        model, Attack("kl"), x, x_t, torch.tensor([0.3, 3.0], dtype=torch.float64)
    )
    d = 0.1 * torch.randn_like(x)
    _, _, grad = objective.value_and_grad(d)
    direction = torch.randn_like(d)
    h = 1e-6
    numeric = (objective(d + h * direction)[0] - objective(d - h * direction)[0]) / (2 * h)
    torch.testing.assert_close((grad * direction).flatten(1).sum(-1), numeric, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("kind", ["kl", "w2"])
def test_layer_selection_changes_which_terms_are_summed(kind):
    model = LinearGaussian(latent_sizes=(3, 2)).eval()
    x, x_t = random_pairs(2)
    lambdas = torch.zeros(2)
    d = 0.1 * torch.randn_like(x)
    bottom = AttackObjective(model, Attack(kind, "bottom"), x, x_t, lambdas).divergence(d)
    top = AttackObjective(model, Attack(kind, "top"), x, x_t, lambdas).divergence(d)
    both = AttackObjective(model, Attack(kind, "all"), x, x_t, lambdas).divergence(d)
    assert bool((bottom > 0).all() and (top > 0).all())
    assert not torch.allclose(bottom, top)
    torch.testing.assert_close(both, bottom + top)
