"""HMC in latent space (seatbelt.defences) against known answers.

* A 2-D correlated Gaussian: independent chains started far from the target end with its mean
  and covariance, within Monte Carlo error.
* A linear-Gaussian VAE, one layer and a two-layer hierarchy with a linear prior p(z_1 | z_2): the
  exact posterior is Gaussian and known, and the defended chains' moments match it.
* As the step size goes to 0, the acceptance rate goes to 1.
* Planted bugs (a wrong sign in the momentum update, no Metropolis correction) fail these checks.
* Seeds, bad input, the defended model in an existing battery, a tiny Seatbelt, the cost.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn

import seatbelt.defences as defences
from seatbelt.attacks import Attack, AttackObjective, AttackProtocol, BatchedLBFGSB, run_battery
from seatbelt.defences import HMC, DefendedModel, chain_cost, log_joint, non_adaptive, run_hmc
from seatbelt.gaussian import DiagGaussian, log_density
from seatbelt.models import Encoding, ModelConfig, build_model

# --- known answers ---------------------------------------------------------------------------

GAUSS_MEAN = torch.tensor([0.5, -1.0], dtype=torch.float64)
GAUSS_COV = torch.tensor([[1.0, 0.9], [0.9, 1.0]], dtype=torch.float64)
GAUSS_HMC = HMC(step_size=0.3, n_leapfrog=10, n_steps=30, n_warmup=15, n_draws=1)
UNADJUSTED = HMC(step_size=0.6, n_leapfrog=3, n_steps=40, n_warmup=0, jitter=0.0, n_draws=1)


def gaussian_log_prob(z: Tensor) -> Tensor:
    r = z - GAUSS_MEAN
    return -0.5 * torch.einsum("...i,ij,...j->...", r, torch.linalg.inv(GAUSS_COV), r)


def assert_moments(draws: Tensor, mean: Tensor, cov: Tensor, z: float = 4.5) -> None:
    """Sample mean and covariance of independent ``draws`` (N, D) within ``z`` standard errors:
    se(mean_i) = sqrt(S_ii / N), se(S_ij) = sqrt((S_ii S_jj + S_ij^2) / N) for Gaussian draws."""
    n = len(draws)
    diag = torch.diagonal(cov)
    se_mean = (diag / n).sqrt()
    se_cov = ((diag[:, None] * diag[None, :] + cov**2) / n).sqrt()
    mean_err = (draws.mean(0) - mean).abs() / se_mean
    cov_err = (torch.cov(draws.T) - cov).abs() / se_cov
    assert bool(torch.isfinite(draws).all()), "non-finite draws"
    assert float(mean_err.max()) < z, f"mean off by {float(mean_err.max()):.1f} standard errors"
    assert float(cov_err.max()) < z, f"covariance off by {float(cov_err.max()):.1f} standard errors"


def check_gaussian(n_chains: int = 3000) -> float:
    """Chains from (3, -3), far out along the target's narrow direction; their final states must
    have the target's moments. Returns the acceptance rate."""
    g = torch.Generator().manual_seed(1)
    start = torch.tensor([3.0, -3.0], dtype=torch.float64)
    z0 = start + 0.1 * torch.randn(n_chains, 1, 2, generator=g, dtype=torch.float64)
    chain = run_hmc(gaussian_log_prob, z0, GAUSS_HMC, g)
    assert_moments(chain.samples[-1, :, 0], GAUSS_MEAN, GAUSS_COV)
    return float(chain.accept_rate)


class LinearGaussianVAE(nn.Module):
    """x ~ N(W [z_1, .., z_L] + w0, s^2 I); p(z_L) = N(0, I); p(z_1 | z_2) = N(A z_2 + a, diag(v)).

    The encoder is deliberately wrong (shifted means, too narrow), so the chain must move to the
    exact posterior, computed in closed form by :meth:`exact_posterior`.
    """

    def __init__(self, latent_sizes=(3, 2), n=6, std=0.5, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        d = sum(latent_sizes)
        self.latent_sizes = tuple(latent_sizes)
        self.std = std
        self.W = torch.randn(n, d, generator=g, dtype=torch.float64) / math.sqrt(d)
        self.w0 = 0.1 * torch.randn(n, generator=g, dtype=torch.float64)
        self.E = torch.randn(d, n, generator=g, dtype=torch.float64) / math.sqrt(n)
        if len(latent_sizes) == 2:
            self.A = 0.7 * torch.randn(latent_sizes[0], latent_sizes[1], generator=g).double()
            self.a = 0.3 * torch.randn(latent_sizes[0], generator=g, dtype=torch.float64)
            self.v_log = torch.log(0.3 + torch.rand(latent_sizes[0], generator=g).double())

    @property
    def n_layers(self) -> int:
        return len(self.latent_sizes)

    def encode(self, x: Tensor, sample: bool = False, generator=None) -> Encoding:
        mu = x @ self.E.T + 0.5  # wrong on purpose
        qs = [DiagGaussian(m, torch.full_like(m, -3.0)) for m in mu.split(self.latent_sizes, -1)]
        return Encoding(qs, [q.sample(generator) if sample else q.mu for q in qs])

    def decode(self, zs: list[Tensor]) -> Tensor:
        return torch.cat(zs, -1) @ self.W.T + self.w0

    def log_likelihood(self, x: Tensor, zs: list[Tensor]) -> Tensor:
        return log_density(x, self.decode(zs), torch.full_like(x, 2 * math.log(self.std))).sum(-1)

    def prior(self, i: int, z_above: Tensor) -> DiagGaussian:
        mu = z_above @ self.A.T + self.a
        return DiagGaussian(mu, self.v_log.expand_as(mu))

    def lower_log_ratios(self, enc: Encoding) -> list[Tensor]:
        q, p = enc.posteriors[0], self.prior(0, enc.z[1])
        return [log_density(enc.z[0], q.mu, q.logvar) - log_density(enc.z[0], p.mu, p.logvar)]

    def exact_posterior(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(mean (B, D), covariance (D, D)) of p(z | x), z = [z_1, z_2], by Gaussian algebra."""
        if self.n_layers == 1:
            d = self.W.shape[1]
            prior_mean, prior_cov = torch.zeros(d).double(), torch.eye(d).double()
        else:
            k = self.latent_sizes[1]
            cov1 = self.A @ self.A.T + torch.diag(self.v_log.exp())
            prior_cov = torch.cat(
                [torch.cat([cov1, self.A], 1), torch.cat([self.A.T, torch.eye(k).double()], 1)]
            )
            prior_mean = torch.cat([self.a, torch.zeros(k).double()])
        prior_prec = torch.linalg.inv(prior_cov)
        cov = torch.linalg.inv(prior_prec + self.W.T @ self.W / self.std**2)
        mean = (prior_prec @ prior_mean + (x - self.w0) @ self.W / self.std**2) @ cov
        return mean, cov


# --- the sampler -----------------------------------------------------------------------------


def test_chain_matches_a_correlated_gaussian():
    assert 0.6 < check_gaussian() < 0.9  # adapted towards target_accept = 0.75


@pytest.mark.parametrize("latent_sizes", [(3,), (3, 2)])
def test_defended_chain_matches_the_exact_posterior_of_a_linear_gaussian_vae(latent_sizes):
    model = LinearGaussianVAE(latent_sizes).eval()
    x = torch.randn(2, 6, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    mean, cov = model.exact_posterior(x)
    hmc = HMC(step_size=0.5, n_leapfrog=8, n_steps=30, n_warmup=15, n_draws=2000)
    defended = DefendedModel(model, hmc)
    chain, z0 = defended.chain(x, torch.Generator().manual_seed(0))
    for b in range(2):
        assert_moments(chain.samples[-1, :, b], mean[b], cov)
        start_err = (z0[:, b].mean(0) - mean[b]).abs().max()
        assert start_err > 0.3  # the encoder was wrong: the chain did the work
    # the defended posterior the attacks see: moments of all post-warm-up states
    enc = defended.encode(x)
    mu = torch.cat([q.mu for q in enc.posteriors], -1)
    var = torch.cat([q.logvar.exp() for q in enc.posteriors], -1)
    torch.testing.assert_close(mu, mean, atol=0.05, rtol=0)
    torch.testing.assert_close(var, torch.diagonal(cov).expand_as(var), atol=0, rtol=0.15)
    torch.testing.assert_close(torch.cat(enc.z, -1), mu)


def test_acceptance_goes_to_one_as_the_step_shrinks():
    z0 = torch.randn(500, 1, 2, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    rejected = []
    for step in (0.3, 0.03, 0.003):
        hmc = HMC(step_size=step, n_leapfrog=10, n_steps=3, n_warmup=0, jitter=0.0, n_draws=1)
        chain = run_hmc(gaussian_log_prob, z0, hmc, None)
        rejected.append(1 - float(chain.accept_rate))
    # leapfrog's energy error is O(eps^2): each 10x smaller step rejects about 100x less
    assert rejected[0] > 1e-3 and rejected[1] < rejected[0] / 30 and rejected[2] < 1e-5


def test_planted_bugs_fail_the_known_answers(monkeypatch):
    with monkeypatch.context() as m:
        m.setattr(defences, "_kick", lambda p, grad, eps: p - eps * grad)
        with pytest.raises(AssertionError, match="standard errors|non-finite"):
            check_gaussian()
    with monkeypatch.context() as m:
        m.setattr(defences, "_accept", lambda log_ratio, uniform: torch.ones_like(uniform) > 0)
        with pytest.raises(AssertionError, match="standard errors|non-finite"):
            check_gaussian()
        # a stable but long step (1.9 sd of the narrow direction; leapfrog diverges from 2):
        # without the correction that direction's variance grows by 1 / (1 - (eps / sd)^2 / 4)
        with pytest.raises(AssertionError, match="standard errors"):
            check_unadjusted()
    check_gaussian()  # and the real sampler passes both again
    check_unadjusted()


def check_unadjusted(n_chains: int = 3000) -> None:
    z0 = torch.zeros(n_chains, 1, 2, dtype=torch.float64) + GAUSS_MEAN
    chain = run_hmc(gaussian_log_prob, z0, UNADJUSTED, torch.Generator().manual_seed(4))
    assert_moments(chain.samples[-1, :, 0], GAUSS_MEAN, GAUSS_COV)


def test_adaptive_gradient_flows_through_the_leapfrog_steps():
    """The seeded defended code is a fixed function of x: autograd's derivative through the chain
    equals a finite difference (no acceptance flips at this scale in float64)."""
    model = LinearGaussianVAE((3, 2)).eval()
    hmc = HMC(step_size=0.3, n_leapfrog=4, n_steps=6, n_warmup=2, n_draws=3)
    adaptive, bpda = DefendedModel(model, hmc, adaptive=True), DefendedModel(model, hmc)
    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 6, generator=g, dtype=torch.float64).requires_grad_(True)
    v = torch.randn(2, 6, generator=g, dtype=torch.float64)

    def code(m, inp):
        return torch.cat(m.encode(inp).z, -1).pow(2).sum()

    (grad,) = torch.autograd.grad(code(adaptive, x), x)
    (grad_bpda,) = torch.autograd.grad(code(bpda, x), x)
    h = 1e-5
    with torch.no_grad():
        numeric = (code(adaptive, x + h * v) - code(adaptive, x - h * v)) / (2 * h)
    assert float((grad * v).sum()) == pytest.approx(float(numeric), rel=1e-5)
    # the identity through the chain (BPDA) is another, wrong, derivative
    assert float((grad_bpda * v).sum()) != pytest.approx(float(numeric), rel=1e-2)


# --- seeds and errors ------------------------------------------------------------------------


def tiny(kind: str = "vae") -> nn.Module:
    torch.manual_seed(0)
    config = ModelConfig(
        kind=kind,
        latent_sizes=(3,) if kind == "vae" else (4, 2),
        hidden_sizes=() if kind == "vae" else (16,),
        data_shape=(8,),
        net="mlp",
        mlp_hidden=16,
        dataset_size=10,
    )
    return build_model(config).eval()


def test_same_seed_same_chain_and_batch_independent():
    model = tiny("seatbelt")
    x = torch.rand(3, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    a, b = DefendedModel(model, HMC(seed=1)), DefendedModel(model, HMC(seed=2))
    first, again = a.encode(x), a.encode(x)
    for u, v in zip(first.z + first.posteriors, again.z + again.posteriors):
        torch.testing.assert_close(
            vars(u) if not torch.is_tensor(u) else u,
            vars(v) if not torch.is_tensor(v) else v,
            rtol=0,
            atol=0,
        )
    assert not torch.equal(first.z[0], b.encode(x).z[0])
    # the seeded numbers are shared by the batch: one input alone gets its own chain back
    torch.testing.assert_close(a.encode(x[1:2]).z[0], first.z[0][1:2], rtol=1e-4, atol=1e-5)
    # sample=True: the caller's generator decides
    s1 = a.encode(x, sample=True, generator=torch.Generator().manual_seed(7)).z[1]
    s2 = a.encode(x, sample=True, generator=torch.Generator().manual_seed(7)).z[1]
    torch.testing.assert_close(s1, s2, rtol=0, atol=0)


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"step_size": 0.0}, "step_size must be a positive"),
        ({"step_size": -0.1}, "step_size must be a positive"),
        ({"step_size": math.nan}, "step_size must be a positive"),
        ({"n_steps": 0}, "n_steps .* positive integer"),
        ({"n_leapfrog": -2}, "n_leapfrog .* positive integer"),
        ({"n_steps": True}, "n_steps .* positive integer"),
        ({"n_draws": 0}, "n_draws .* positive integer"),
        ({"n_warmup": 10, "n_steps": 10}, r"n_warmup must be an integer in \[0, n_steps\)"),
        ({"n_draws": 1, "n_steps": 5, "n_warmup": 4}, "at least 2 samples"),
        ({"target_accept": 1.0}, "target_accept must be in"),
        ({"jitter": 1.0}, "jitter must be in"),
    ],
)
def test_bad_settings_are_refused_with_the_fix(settings, message):
    with pytest.raises(ValueError, match=message):
        HMC(**settings)


def test_unknown_family_or_non_model_is_refused_before_any_work():
    model = tiny()
    model.config = type("Config", (), {"kind": "resnet"})()
    with pytest.raises(ValueError, match="unknown model family kind='resnet'"):
        DefendedModel(model)
    with pytest.raises(TypeError, match="trained seatbelt model"):
        DefendedModel("seatbelt")
    with pytest.raises(TypeError, match=r"lacks \['encode'"):
        DefendedModel(nn.Linear(2, 2))
    with pytest.raises(TypeError, match="already defended"):
        DefendedModel(DefendedModel(tiny()))
    training = DefendedModel(tiny()).train()
    with pytest.raises(RuntimeError, match="eval mode"):
        training.encode(torch.zeros(1, 8))


# --- in the library's attacks ----------------------------------------------------------------

SMALL = HMC(step_size=0.2, n_leapfrog=2, n_steps=3, n_warmup=1, n_draws=2)


@pytest.mark.parametrize("kind", ["vae", "seatbelt"])
def test_an_existing_battery_runs_on_the_defended_model(kind):
    model = tiny(kind)
    g = torch.Generator().manual_seed(4)
    sources, targets = torch.rand(2, 2, 8, generator=g) * 1.6 - 0.8
    protocol = AttackProtocol(
        n_pairs=2, lambdas=(0.0, 1.0), attacks=("kl", "output"), cap_check=0, reference_check=0
    )
    solver = BatchedLBFGSB(max_iter=5, max_evals=10)
    plain = run_battery(model, (sources, targets), protocol, solver=solver, name="plain")
    adaptive = DefendedModel(model, SMALL, adaptive=True)
    attacked = run_battery(adaptive, (sources, targets), protocol, solver=solver, name="adaptive")
    replayed = non_adaptive(DefendedModel(model, SMALL), plain, protocol)
    for results in (attacked, replayed):
        frame = results.frame
        assert len(frame) == 2 * 2 * 2 and bool(frame[["delta", "nll_sample"]].notna().all().all())
        assert (frame["delta"] <= frame["copy_bound"] + 1e-4).all()
    # the solver descends through the chain: below the defended objective at d = 0
    solved = attacked.frame
    assert (solved["delta_solver"] < solved["divergence0"] + solved["lambda"] * 1e-12).all()
    # the replay keeps the plain attack's distortions (or copies the target where that is lower
    # on the defence), and measures them on the defended model
    frame = replayed.frame
    solver_rows = torch.tensor((frame["kept"] == "solver").to_numpy())
    assert bool(solver_rows.any())
    torch.testing.assert_close(
        replayed.distortions[solver_rows], plain.distortions[solver_rows], rtol=0, atol=0
    )
    kl_rows = frame.query("attack == 'kl'")
    pair = torch.tensor(kl_rows["pair"].to_numpy())
    objective = AttackObjective(
        DefendedModel(model, SMALL),
        Attack("kl"),
        sources[pair],
        targets[pair],
        torch.tensor(kl_rows["lambda"].to_numpy()).float(),
    )
    with torch.no_grad():
        delta, _ = objective(replayed.distortions[torch.tensor(kl_rows.index.to_numpy())])
    torch.testing.assert_close(torch.tensor(kl_rows["delta"].to_numpy()).float(), delta)


def test_a_tiny_seatbelt_defends_all_layers_jointly():
    model = tiny("seatbelt")
    x = torch.rand(5, 8, generator=torch.Generator().manual_seed(1)) * 2 - 1
    defended = DefendedModel(model, SMALL)
    chain, z0 = defended.chain(x, torch.Generator().manual_seed(0))
    assert chain.samples.shape == (2, 2, 5, 6) and z0.shape == (2, 5, 6)
    moved = (chain.samples[-1] - z0).abs().amax(dim=(0, 1))
    assert bool((moved[:4] > 0).any()) and bool((moved[4:] > 0).any())  # both layers move
    enc = defended.encode(x)
    assert [q.mu.shape for q in enc.posteriors] == [(5, 4), (5, 2)]
    assert defended.reconstruct(x).shape == x.shape
    assert defended.elbo(x, sample=False).shape == (5,)
    zs = model.encode(x).z
    manual = (
        model.log_likelihood(x, zs)
        + model.prior(0, zs[1]).log_prob(zs[0])
        + (-0.5 * (math.log(2 * math.pi) + zs[1] ** 2)).sum(-1)
    )
    torch.testing.assert_close(log_joint(model, x, zs), manual)


def test_the_cost_counts_every_decoder_pass():
    model = tiny()
    calls = []
    model.decoder.register_forward_hook(lambda module, args, out: calls.append(len(out)))
    x = torch.zeros(4, 8)
    cost = chain_cost(DefendedModel(model, SMALL), x, repeats=1)
    assert cost.decoder_passes == SMALL.n_draws * SMALL.gradient_evaluations
    # two timed runs each: the chain's passes plus one to reconstruct, and one plain pass
    assert sum(calls) == 2 * len(x) * (cost.decoder_passes + 1) + 2 * len(x)
    assert cost.seconds_per_input > cost.seconds_plain > 0
