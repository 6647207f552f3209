"""Inference-time defence: Hamiltonian Monte Carlo on the true posterior, and attacks through it.

Kuzina, Welling and Tomczak (2022), "Alleviating adversarial attacks on variational autoencoders
with MCMC", keep a trained VAE as it is and replace the encoder's sample by a short HMC chain
targeting the true posterior p(z | x) ∝ p(x | z) p(z), started at the encoder's output. Here:

* :func:`log_joint`: log p(x | z) + log p(z), from the model's own ``log_likelihood`` and
  ``prior``. For the Seatbelt and chain hierarchies (models.py, Eq 3) p(z) is the generative
  prior over every layer, log N(z_L; 0, I) + sum_{i<L} log p(z_i | z_{i+1}), and the chain runs
  over all layers jointly.
* :func:`run_hmc`: batched HMC (Neal 2011, "MCMC using Hamiltonian dynamics": leapfrog Eqs
  5.18-5.20, Metropolis acceptance Eq 5.22 / Sec 3.2), unit mass, with the step size of each input
  adapted towards a target acceptance rate during a warm-up and fixed afterwards, and the step
  jittered by a random factor at each iteration (Neal 2011, Sec 5.4.2.2) so that no step size
  and length resonate with the target's periods.
* :class:`DefendedModel`: the seatbelt.models interface (``encode``, ``decode``,
  ``log_likelihood``, ``elbo``, ``reconstruct``, ``n_layers``), so every attack and metric runs
  on a defended model unchanged. Its posterior per layer is the diagonal Gaussian fitted to the
  chain's samples; its latent code is that Gaussian's mean. With ``adaptive=True`` gradients flow
  through every leapfrog step (the adaptive attack, averaged over the chain draws: EOT).
* :class:`Replay` and :func:`non_adaptive`: the evaluation of Kuzina et al., the battery solved
  on the plain model and its distortions measured on the defended one.
* :func:`chain_cost`: decoder passes and wall time per input.

Choices, and why:

* **Start**: at an encoder sample z_0 = mu + sigma * eps, as Kuzina et al. A sample rather than
  the mean: HMC leaves p(z | x) invariant, so when q(z | x) is close to it the chain's draws are
  close to p(z | x) from the first step, whereas a chain started at the mean starts from a point
  mass and needs to mix before its spread means anything. For a hierarchy the start is
  mu_i + sigma_i * eps_i with each conditional q(z_{i+1} | z_i, x) evaluated at the lower layer's
  mean (``encode(sample=False)``), not ancestrally: the start only needs to sit in the
  posterior's mass, and this keeps every draw a fixed function of eps (below).
* **Preconditioning** (``precondition=True``): the chain runs in whitened coordinates
  u = (z - mu) / sigma of the encoder, i.e. HMC with the mass matrix diag(1 / sigma^2) (Neal 2011,
  Sec 4.1), so one step size serves layers and units of very different posterior widths and the
  start is u_0 = eps. The Jacobian of this map is constant in z, so the target is unchanged. An
  attacker can move sigma(x + d) too; the adaptive attack differentiates through it.
* **Common random numbers**: ``encode(x, sample=False)`` draws every random number of the chain
  (start, momenta, jitter, acceptance uniforms) from a CPU generator seeded with ``hmc.seed``, the
  same for every input of the batch (broadcast). Each problem's defended objective is then a
  fixed function of its own input, whatever else is in the batch (and on every device, up to
  float rounding), which the attack solvers need (their line searches and subsets of the stack
  assume it). Inputs in one
  batch share momenta; each chain is still a valid HMC chain for its own input. ``encode(x,
  sample=True, generator=g)`` instead draws independent numbers per input from ``g``.
* **Accept/reject under gradients**: the accepted state is ``where(accept, proposal, current)``,
  so the gradient flows through whichever state was kept; the decision itself, a step function
  of the input once the uniforms are drawn, has zero derivative almost everywhere and is not
  differentiated (no score-function term). The warm-up's step sizes depend smoothly on the input
  through the acceptance probabilities min(1, e^(-Delta H)), and are differentiated too: the
  gradient is then the exact derivative of the seeded defence wherever no decision flips (a
  test checks it against finite differences).
* **Defended posterior**: the diagonal Gaussian with the mean and variance of the chain's states
  after the warm-up, over all draws (the moment-matched Gaussian, the KL(p || q)-closest one to
  what the defence outputs). Latent attacks compare these; the decoder reconstructs from its
  mean. A latent attack on the encoder's own posterior would not see the defence at all.
  With few samples the fitted variances are noisy, which puts a floor under the KL between
  two defended posteriors (the battery's ``divergence0`` includes it): more draws or more
  post-warm-up steps lower it, at their cost.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace

import numpy as np
import torch
from torch import Tensor, nn

from .attacks import Attack, AttackKind, AttackProtocol, AttackResults, SolveResult, run_battery
from .attacks.objectives import AttackObjective
from .gaussian import DiagGaussian, kl, standard_log_density
from .models import KINDS, LOGVAR_BOUND, Encoding

# Robbins-Monro gain of the warm-up: log eps += GAIN (mean acceptance - target) / sqrt(t + 1).
# At t = 0 a chain that rejects everything shrinks its step 4.5x, one that accepts everything
# grows it 1.6x; the gain then decays so the step settles.
ADAPT_GAIN = 2.0


@dataclass(frozen=True)
class HMC:
    """The chain's settings; frozen, so ``asdict`` can key a cache.

    step_size:     initial leapfrog step, in units of the encoder's posterior std when
                   ``precondition`` (else in latent units); adapted per input during the warm-up.
    n_leapfrog:    leapfrog steps per HMC iteration (L of Neal 2011).
    n_steps:       HMC iterations per chain, warm-up included (the chain's length).
    n_warmup:      the first iterations, during which the step size adapts; their states are not
                   samples. 0 <= n_warmup < n_steps.
    target_accept: the mean acceptance probability the warm-up steers each input's step towards.
    jitter:        each iteration's step is the step size times U(1 - jitter, 1 + jitter).
    n_draws:       independent chains per input; the defended posterior is fitted to the states
                   of all of them (the EOT average of the adaptive attack).
    precondition:  run in the encoder's whitened coordinates (module docstring).
    seed:          the seed of the common random numbers of ``encode(sample=False)``.
    """

    step_size: float = 0.2
    n_leapfrog: int = 5
    n_steps: int = 10
    n_warmup: int = 5
    target_accept: float = 0.75
    jitter: float = 0.2
    n_draws: int = 4
    precondition: bool = True
    seed: int = 0

    def __post_init__(self):
        if not (math.isfinite(self.step_size) and self.step_size > 0):
            raise ValueError(
                f"HMC step_size must be a positive number, got {self.step_size}; a typical start "
                "is 0.1 to 0.5 with precondition=True (it adapts during the warm-up)."
            )
        for name in ("n_leapfrog", "n_steps", "n_draws"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(
                    f"HMC {name} (a chain length) must be a positive integer, got {value!r}."
                )
        if (
            isinstance(self.n_warmup, bool)
            or not isinstance(self.n_warmup, int)
            or not (0 <= self.n_warmup < self.n_steps)
        ):
            raise ValueError(
                f"HMC n_warmup must be an integer in [0, n_steps) = [0, {self.n_steps}), got "
                f"{self.n_warmup!r}: the iterations after the warm-up are the samples."
            )
        if self.n_draws * (self.n_steps - self.n_warmup) < 2:
            raise ValueError(
                "the defended posterior's variance needs at least 2 samples per input: raise "
                f"n_draws ({self.n_draws}) or n_steps - n_warmup ({self.n_steps - self.n_warmup})."
            )
        if not 0 < self.target_accept < 1:
            raise ValueError(
                f"HMC target_accept must be in (0, 1), e.g. 0.75; got {self.target_accept}."
            )
        if not 0 <= self.jitter < 1:
            raise ValueError(f"HMC jitter must be in [0, 1), e.g. 0.2; got {self.jitter}.")

    @property
    def gradient_evaluations(self) -> int:
        """Gradients of log p(x, z) per chain: one at the start, then one per leapfrog step. Each
        is one decoder forward and one backward pass."""
        return 1 + self.n_steps * self.n_leapfrog


@dataclass
class Chain:
    """What :func:`run_hmc` returns, for C draws of B inputs in D dimensions.

    samples:     (S, C, B, D), the states after each of the S = n_steps - n_warmup iterations
                 that follow the warm-up; ``samples[-1]`` is the chain's final state.
    accept_rate: (B,), the mean acceptance probability after the warm-up, over draws.
    step_size:   (B,), each input's step size after the warm-up.
    """

    samples: Tensor
    accept_rate: Tensor
    step_size: Tensor


# --- the sampler -----------------------------------------------------------------------------


def _kick(p: Tensor, grad: Tensor, eps: Tensor) -> Tensor:
    """Momentum update p <- p + eps * grad log pi(z) (Neal 2011, Eqs 5.18 and 5.20).

    Its own function so that a test can plant a wrong sign and see the known-answer tests fail.
    """
    return p + eps * grad


def _accept(log_ratio: Tensor, uniform: Tensor) -> Tensor:
    """The Metropolis decision u < min(1, exp(-Delta H)) (Neal 2011, Eq 5.22); a non-finite energy
    rejects. Its own function so that a test can remove the correction."""
    return torch.log(uniform) < torch.nan_to_num(log_ratio, nan=-math.inf)


def _leapfrog(
    z: Tensor,
    p: Tensor,
    grad: Tensor,
    eps: Tensor,
    n: int,
    value_and_grad: Callable[[Tensor], tuple[Tensor, Tensor]],
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """n leapfrog steps of size eps from (z, p), grad = grad log pi(z) (Neal 2011, Eqs 5.18-5.20),
    half-steps of the momentum merged between steps. Returns (z, p, log pi(z), grad) at the end."""
    p = _kick(p, grad, eps / 2)
    for step in range(n):
        z = z + eps * p
        log_pi, grad = value_and_grad(z)
        p = _kick(p, grad, eps if step < n - 1 else eps / 2)
    return z, p, log_pi, grad


def _draw(
    shape: tuple[int, ...],
    generator: torch.Generator | None,
    like: Tensor,
    uniform: bool = False,
) -> Tensor:
    """Standard normal (or uniform) numbers from ``generator``, on its own device, then moved to
    ``like``'s: a CPU generator gives the same numbers on every device."""
    device = generator.device if generator is not None else like.device
    draw = torch.rand if uniform else torch.randn
    return draw(shape, generator=generator, device=device, dtype=like.dtype).to(like.device)


def run_hmc(
    log_prob: Callable[[Tensor], Tensor],
    z0: Tensor,
    hmc: HMC,
    generator: torch.Generator | None = None,
    *,
    shared: bool = False,
    differentiable: bool = False,
) -> Chain:
    """HMC with unit mass on C draws of B targets, z0 of shape (C, B, D).

    log_prob: (C, B, D) -> (C, B), log pi(z) of each input's target up to a constant.
    shared:   draw the momenta, jitter and uniforms once per draw and broadcast them over the B
              inputs (common random numbers: each input's chain then does not depend on the
              others in the batch); otherwise independently per input.
    differentiable: keep the graph through every leapfrog step (``create_graph``), so the samples
              are differentiable in whatever ``log_prob`` depends on. Otherwise every state is
              detached.

    The step size of each input adapts during the first ``hmc.n_warmup`` iterations by
    log eps <- log eps + ADAPT_GAIN (a - target) / sqrt(t + 1), a the acceptance probability
    averaged over the input's draws; after the warm-up it is fixed, so the chain from there on is
    a valid Markov chain for pi. Runs under ``torch.enable_grad`` whatever the caller's mode: HMC
    needs grad log pi even when the caller wants no gradient.
    """
    if z0.dim() != 3:
        raise ValueError(f"z0 must be (draws, inputs, dims), got shape {tuple(z0.shape)}.")
    n_draws, n_inputs, dims = z0.shape
    noise = (n_draws, 1 if shared else n_inputs)

    def value_and_grad(z: Tensor) -> tuple[Tensor, Tensor]:
        if not differentiable:
            z = z.detach().requires_grad_(True)
        log_pi = log_prob(z)
        (grad,) = torch.autograd.grad(log_pi.sum(), z, create_graph=differentiable)
        return (log_pi, grad) if differentiable else (log_pi.detach(), grad)

    log_eps = torch.full((n_inputs,), math.log(hmc.step_size), dtype=z0.dtype, device=z0.device)
    samples, accepted = [], []
    with torch.enable_grad():
        if not differentiable:
            z = z0.detach()
        else:  # the start may depend on the input (an encoder sample): keep that path
            z = z0 if z0.requires_grad else z0.detach().requires_grad_(True)
        log_pi, grad = value_and_grad(z)
        if log_pi.shape != z0.shape[:2]:
            # e.g. a start broadcast over the inputs: its gradient would sum theirs
            raise ValueError(
                f"log_prob must give one value per draw and input, {tuple(z0.shape[:2])}; got "
                f"{tuple(log_pi.shape)}: pass z0 with every input's own row."
            )
        for t in range(hmc.n_steps):
            p = _draw((*noise, dims), generator, z0)
            jitter = 1 + hmc.jitter * (2 * _draw((*noise, 1), generator, z0, uniform=True) - 1)
            uniform = _draw(noise, generator, z0, uniform=True)
            eps = torch.exp(log_eps).view(1, -1, 1) * jitter
            z_new, p_new, log_pi_new, grad_new = _leapfrog(
                z, p, grad, eps, hmc.n_leapfrog, value_and_grad
            )
            # -Delta H = H(z, p) - H(z', p'), H = -log pi(z) + |p|^2 / 2 (Neal 2011, Eq 5.22)
            log_ratio = log_pi_new - log_pi - 0.5 * (p_new.pow(2) - p.pow(2)).sum(-1)
            keep = _accept(log_ratio.detach(), uniform)
            z = torch.where(keep.unsqueeze(-1), z_new, z)
            log_pi = torch.where(keep, log_pi_new, log_pi)
            grad = torch.where(keep.unsqueeze(-1), grad_new, grad)
            # min(1, e^(-Delta H)); a non-finite energy accepts with probability 0
            accept_prob = torch.exp(torch.clamp(torch.nan_to_num(log_ratio, nan=-math.inf), max=0))
            if t < hmc.n_warmup:
                # the adapted step is a smooth function of the input: differentiated with the rest
                log_eps = log_eps + ADAPT_GAIN * (accept_prob.mean(0) - hmc.target_accept) / (
                    math.sqrt(t + 1)
                )
            else:
                samples.append(z)
                accepted.append(accept_prob.mean(0).detach())
    return Chain(torch.stack(samples), torch.stack(accepted).mean(0), torch.exp(log_eps).detach())


# --- the model's posterior -------------------------------------------------------------------


def log_joint(model, x: Tensor, zs: list[Tensor]) -> Tensor:
    """log p(x | z) + log p(z) per item, from the model's own likelihood and prior.

    p(z) = N(z_L; 0, I) prod_{i<L} p(z_i | z_{i+1}) (models.py, Eq 3), ``model.prior(i, z_{i+1})``
    giving each conditional; for one layer, N(z; 0, I).
    """
    log_p = model.log_likelihood(x, zs) + standard_log_density(zs[-1])
    for i in range(len(zs) - 1):
        log_p = log_p + model.prior(i, zs[i + 1]).log_prob(zs[i])
    return log_p


def check_defendable(model) -> None:
    """Raise, before any work, unless ``model`` has what the chain needs: the seatbelt.models
    interface (a VAE, beta-VAE, beta-TCVAE, Seatbelt or chain hierarchy)."""
    if isinstance(model, DefendedModel):
        raise TypeError("this model is already defended; wrap the plain model once.")
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"HMC defends a trained seatbelt model (an nn.Module such as zoo.get(point).model), "
            f"got {type(model).__name__} {model!r:.60}."
        )
    kind = getattr(getattr(model, "config", None), "kind", None)
    if kind is not None and kind not in KINDS:
        raise ValueError(
            f"unknown model family kind={kind!r}: HMC knows the families {KINDS} (one-layer VAEs "
            "and the Seatbelt/chain hierarchies)."
        )
    needed = ["encode", "decode", "log_likelihood", "n_layers", "latent_sizes"]
    if getattr(model, "n_layers", 1) > 1:
        needed += ["prior", "lower_log_ratios"]
    missing = [name for name in needed if not hasattr(model, name)]
    if missing:
        raise TypeError(
            f"HMC needs a model with {needed} (the seatbelt.models interface, p(z_i | z_(i+1)) "
            f"from prior() for a hierarchy); {type(model).__name__} lacks {missing}."
        )


class DefendedModel(nn.Module):
    """A trained model whose encoder is followed by HMC on p(z | x); the models interface.

    ``encode(x, sample=False)``: the defended posterior of every layer (the Gaussian fitted to the
    chain's samples) and its mean as the latent code, with the seeded common random numbers.
    ``encode(x, sample=True, generator=g)``: fresh chains from ``g``; the code is the final state
    of the first draw, a genuine sample of the defence. ``decode``, ``log_likelihood``, ``prior``
    are the model's: the defence changes inference only.

    adaptive: True, gradients flow through the chain (the adaptive attack: Delta averaged over
              the ``n_draws`` chains, EOT). False, the chain is a constant for autograd and the
              gradient passes through it as the identity to the encoder's start (BPDA, Athalye
              et al. 2018), so a solver still runs; the non-adaptive attack of Kuzina et al. is
              :func:`non_adaptive`, which never differentiates the defended model.
    """

    def __init__(self, model: nn.Module, hmc: HMC = HMC(), *, adaptive: bool = False):
        check_defendable(model)
        super().__init__()
        self.model = model
        self.hmc = hmc
        self.adaptive = adaptive
        self.train(model.training)  # a new Module trains; this one is in its model's mode

    @property
    def n_layers(self) -> int:
        return self.model.n_layers

    @property
    def latent_sizes(self) -> tuple[int, ...]:
        return tuple(self.model.latent_sizes)

    @property
    def config(self):
        return self.model.config

    def decode(self, zs: list[Tensor]) -> Tensor:
        return self.model.decode(zs)

    def log_likelihood(self, x: Tensor, zs: list[Tensor]) -> Tensor:
        return self.model.log_likelihood(x, zs)

    def prior(self, i: int, z_above: Tensor) -> DiagGaussian:
        return self.model.prior(i, z_above)

    def lower_log_ratios(self, enc: Encoding) -> list[Tensor]:
        return self.model.lower_log_ratios(enc)

    def chain(
        self, x: Tensor, generator: torch.Generator | None = None, shared: bool = False
    ) -> tuple[Chain, Tensor]:
        """Run the defence on ``x``: (the chain in latent units, the start z_0 of shape
        (C, B, D)). Layers are concatenated bottom first along D."""
        if self.model.training:
            raise RuntimeError(
                "HMC needs the model in eval mode (BatchNorm would couple the chains): call "
                ".eval() on the defended model."
            )
        enc = self.model.encode(x, sample=False)
        mu = torch.cat([q.mu for q in enc.posteriors], -1)
        sigma = torch.cat([q.std for q in enc.posteriors], -1)
        n_draws, n_inputs = self.hmc.n_draws, len(x)
        eps = _draw((n_draws, 1 if shared else n_inputs, mu.shape[-1]), generator, mu)
        z0 = mu + sigma * eps
        differentiable = self.adaptive and torch.is_grad_enabled()
        if not differentiable:
            mu, sigma = mu.detach(), sigma.detach()
        shift, scale = (mu, sigma) if self.hmc.precondition else (0.0, 1.0)
        repeated = x.unsqueeze(0).expand(n_draws, *x.shape).reshape(-1, *x.shape[1:])
        sizes = [q.mu.shape[-1] for q in enc.posteriors]

        def log_prob(u: Tensor) -> Tensor:
            # the Jacobian of z = shift + scale * u is constant in u: the target is unchanged
            zs = list((shift + scale * u).reshape(-1, u.shape[-1]).split(sizes, dim=-1))
            return log_joint(self.model, repeated, zs).view(n_draws, n_inputs)

        u0 = eps.expand_as(z0) if self.hmc.precondition else z0
        chain = run_hmc(
            log_prob, u0, self.hmc, generator, shared=shared, differentiable=differentiable
        )
        chain.samples = shift + scale * chain.samples
        return chain, z0

    def encode(
        self, x: Tensor, sample: bool = False, generator: torch.Generator | None = None
    ) -> Encoding:
        """The defended posterior per layer and a latent code (class docstring)."""
        if sample:
            chain, z0 = self.chain(x, generator, shared=False)
        else:
            seeded = torch.Generator().manual_seed(self.hmc.seed)
            chain, z0 = self.chain(x, seeded, shared=True)
        samples = chain.samples
        if not (self.adaptive and torch.is_grad_enabled()):
            # BPDA: the values of the chain, the gradient of its start
            samples = z0.unsqueeze(0) + (samples - z0.unsqueeze(0)).detach()
        flat = samples.flatten(0, 1)  # (S * C, B, D)
        mean = flat.mean(0)
        logvar = torch.log(flat.var(0)).clamp(-LOGVAR_BOUND, LOGVAR_BOUND)
        sizes = self.latent_sizes
        posteriors = [
            DiagGaussian(m, v) for m, v in zip(mean.split(sizes, -1), logvar.split(sizes, -1))
        ]
        code = samples[-1, 0] if sample else mean
        return Encoding(posteriors, list(code.split(sizes, -1)))

    def reconstruct(self, x: Tensor) -> Tensor:
        """The likelihood mean at the defended posterior's mean."""
        return self.decode(self.encode(x).z)

    def elbo(
        self,
        x: Tensor,
        target: Tensor | None = None,
        sample: bool = True,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """The model's beta = 1 ELBO expression with the defended posterior q_H of ``x``:
        log p(target | z) - KL(q_H(z_L) || N(0, I)) - sum_{i<L} log q_H(z_i) / p(z_i | z_{i+1}),
        at z the defended code (``sample=False``: the mean, as the output attack evaluates it)."""
        enc = self.encode(x, sample=sample, generator=generator)
        target = x if target is None else target
        top = enc.posteriors[-1]
        divergence = kl(top.mu, top.logvar)
        if self.n_layers > 1:
            divergence = divergence + sum(r.sum(-1) for r in self.lower_log_ratios(enc))
        return self.log_likelihood(target, enc.z) - divergence


# --- the non-adaptive attack, and the cost ---------------------------------------------------


class Replay:
    """A battery "solver" that returns the distortions another battery found.

    ``run_battery(defended, ..., solver=Replay(plain))`` measures the plain model's attacks on the
    defended model: the non-adaptive attack of Kuzina et al., with every column of a battery.
    Problems are matched by the attack's kind and layers, then checked: the same sources and
    lambdas in the same order, so a mismatch is an error rather than a silent misalignment.
    """

    name = "replay"

    def __init__(self, results: AttackResults):
        if len(results.distortions) != len(results.frame):
            raise ValueError(
                "Replay needs the distortions of the battery: run it with keep_images=True."
            )
        self.results = results

    def solve(self, objective: AttackObjective, d0: Tensor) -> SolveResult:
        frame, attack = self.results.frame, objective.attack
        rows = frame[(frame["attack"] == attack.kind) & (frame["layers"] == attack.layers_label)]
        if len(rows) != len(objective):
            raise ValueError(
                f"the replayed battery has {len(rows)} problems of the {attack.kind} attack on "
                f"layers {attack.layers_label}, this battery {len(objective)}: use the same "
                "protocol, pairs and attacks as the battery being replayed (one attack of each "
                "kind and layers)."
            )
        device = objective.sources.device
        sources = self.results.sources[torch.tensor(rows["pair"].to_numpy())].to(device)
        lambdas = torch.tensor(rows["lambda"].to_numpy(), device=device)
        if not torch.equal(sources, objective.sources) or not torch.allclose(
            lambdas.to(objective.lambdas), objective.lambdas
        ):
            raise ValueError(
                "the replayed battery attacked other sources or lambdas: use the same pairs and "
                "protocol."
            )
        d = self.results.distortions[torch.tensor(rows.index.to_numpy())].to(d0)
        n = len(objective)
        zeros = np.zeros(n, dtype=np.int64)
        return SolveResult(d, zeros, zeros.copy(), np.zeros(n), ["replayed"] * n)


class ReplayBudget:
    """A "solver" for :func:`seatbelt.attacks.budget.run_budgeted` that returns given distortions,
    one per input (repeated over the restarts): a budgeted attack solved on the plain model,
    measured on the defended one (the non-adaptive attack of Kuzina et al.)."""

    name = "replay"

    def __init__(self, distortions: Tensor):
        self.distortions = distortions

    def solve(self, objective: AttackObjective, d0: Tensor) -> SolveResult:
        n, m = len(objective), len(self.distortions)
        if m == 0 or n % m or self.distortions.shape[1:] != d0.shape[1:]:
            raise ValueError(
                f"ReplayBudget holds {m} distortions of shape {tuple(self.distortions.shape[1:])};"
                f" the attack has {n} problems of shape {tuple(d0.shape[1:])}: replay the plain "
                "attack of the same inputs."
            )
        d = self.distortions.to(d0).repeat(n // m, *([1] * (d0.dim() - 1)))
        zeros = np.zeros(n, dtype=np.int64)
        return SolveResult(d, zeros, zeros.copy(), np.zeros(n), ["replayed"] * n)


def non_adaptive(
    defended: DefendedModel,
    plain: AttackResults,
    protocol: AttackProtocol = AttackProtocol(),
    *,
    attacks: tuple[Attack | AttackKind, ...] | None = None,
    name: str = "defended",
) -> AttackResults:
    """The battery ``plain`` (solved on the undefended model) measured on ``defended``.

    ``protocol`` and ``attacks`` must be those of ``plain``. Its controls that re-solve problems
    (cap and reference checks) are switched off: nothing is solved here. As in every battery,
    copying the target is kept where it is lower on the defended model. The frame's ``source`` and
    ``target`` columns are copied from ``plain`` (same pair numbers).
    """
    quiet = replace(protocol, cap_check=0, reference_check=0)
    results = run_battery(
        defended,
        (plain.sources, plain.targets),
        quiet,
        attacks=attacks,
        solver=Replay(plain),
        name=name,
    )
    by_pair = plain.frame.groupby("pair")[["source", "target"]].first()
    for column in ("source", "target"):
        results.frame[column] = results.frame["pair"].map(by_pair[column]).astype("Int64")
    return results


@dataclass(frozen=True)
class Cost:
    """The defence's clean cost per input.

    decoder_passes:    decoder forward passes per input (each also has a backward pass, for the
                       gradient of log p(x, z)): n_draws x (1 + n_steps x n_leapfrog).
    seconds_per_input: wall time of one defended encoding per input, measured.
    seconds_plain:     the same for the plain encoder and one decoder pass, for scale.
    inputs, device:    the batch it was measured on (time per input falls with the batch size).
    """

    decoder_passes: int
    seconds_per_input: float
    seconds_plain: float
    inputs: int
    device: str

    def to_dict(self) -> dict:
        return asdict(self)


def chain_cost(defended: DefendedModel, x: Tensor, repeats: int = 3) -> Cost:
    """Measure the defence on the batch ``x``: the best of ``repeats`` timed runs (after one
    warm-up run) of ``reconstruct`` on the defended and on the plain model, without gradients."""
    if repeats < 1:
        raise ValueError(f"repeats must be positive, got {repeats}.")

    def best(reconstruct: Callable[[Tensor], Tensor]) -> float:
        times = []
        with torch.no_grad():
            for i in range(repeats + 1):
                if x.is_cuda:
                    torch.cuda.synchronize(x.device)
                began = time.perf_counter()
                reconstruct(x)
                if x.is_cuda:
                    torch.cuda.synchronize(x.device)
                times.append(time.perf_counter() - began)
        return min(times[1:]) / len(x)

    plain = defended.model
    return Cost(
        decoder_passes=defended.hmc.n_draws * defended.hmc.gradient_evaluations,
        seconds_per_input=best(defended.reconstruct),
        seconds_plain=best(lambda v: plain.decode(plain.encode(v, sample=False).z)),
        inputs=len(x),
        device=str(x.device),
    )


def clean_log_likelihood(model, x: Tensor, batch: int = 64) -> np.ndarray:
    """log p(x | z) per clean image ``x`` at the model's latent code (the posterior mean; for a
    :class:`DefendedModel`, the mean of the chain's samples): how well the model, defended or
    not, reconstructs inputs nobody attacked (nats per image)."""
    device = next(iter(model.parameters())).device
    out = []
    with torch.no_grad():
        for chunk in x.split(batch):
            chunk = chunk.to(device)
            out.append(model.log_likelihood(chunk, model.encode(chunk, sample=False).z).cpu())
    return torch.cat(out).double().numpy()
