"""VAE, beta-VAE, beta-TCVAE and the Seatbelt-VAE, behind one interface.

Generative model (Eq 3): p(x | z_1, ..., z_L) prod_{i<L} p(z_i | z_{i+1}) p(z_L), with
p(z_L) = N(0, I) and the likelihood a Gaussian of fixed std (0.1, Appendix G). The Seatbelt
likelihood sees every layer; the chain (DLGM) baseline, ``likelihood_layers="bottom"``, sees
z_1 only.
Inference (Eq 4): q(z_1 | x) prod_{i<L} q(z_{i+1} | z_i, x); the x-dependence of the upper
conditionals enters through the encoder's features of x.

Objectives, written as a loss to minimise per batch:

* ``elbo``:       -log p(x|z) + sum_i KL_i                        (beta ignored)
* ``beta_vae``:   -log p(x|z) + beta KL(q(z|x) || p(z))            (L = 1 only)
* ``beta_tcvae``: -log p(x|z) + sum_{i<L} KL_i + MI + beta TC + dim-wise KL of the top layer:
  the beta-TCVAE for L = 1 (Chen et al. 2018) and the Seatbelt objective of Eq 9 for L > 1,
  whose TC is that of the top layer's aggregate posterior (Theorem 1), estimated by Eq 43.
  beta = 1 gives back the (single-sample) ELBO exactly.

KL_i for a lower layer is the single-sample log-ratio
log q(z_i | z_{i-1}, x) - log p(z_i | z_{i+1}): z_{i+1} is drawn from a posterior that depends on
z_i, so the closed-form KL given z_{i+1} would be biased. The top layer's KL to N(0, I) is in
closed form. Free bits (Kingma et al. 2016) clamp each latent unit's batch-averaged KL from below
at ``free_bits`` nats, on every layer that has a KL term (not on the decomposed top layer of the
TC objective).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal, get_args

import torch
from torch import Tensor, nn

from . import tc
from .gaussian import DiagGaussian, log_density, standard_log_density
from .nets import MLP, ConvDecoder, ConvEncoder, MLPEncoder

# The categorical options of ModelConfig: the Literal types annotate the fields, and the tuples
# derived from them are what ModelConfig.validate checks at run time.
Objective = Literal["elbo", "beta_vae", "beta_tcvae"]
Net = Literal["conv", "mlp"]
LikelihoodLayers = Literal["all", "bottom"]
ModelKind = Literal["vae", "seatbelt"]

OBJECTIVES: tuple[Objective, ...] = get_args(Objective)
NETS: tuple[Net, ...] = get_args(Net)
LIKELIHOOD_LAYERS: tuple[LikelihoodLayers, ...] = get_args(LikelihoodLayers)
KINDS: tuple[ModelKind, ...] = get_args(ModelKind)

# Appendix G, Eqs 44-50: a model of L layers takes the last L latent sizes.
PAPER_LATENT_SIZES = {
    "dsprites": (96, 48, 24, 12, 6),
    "chairs": (96, 48, 24, 12, 6),
    "faces3d": (96, 48, 24, 12, 6),
    "celeba": (256, 128, 64, 32),
}
PAPER_HIDDEN_SIZES = (1024, 512, 256, 128, 64)


def seatbelt_sizes(
    n_layers: int, latent_sizes=PAPER_LATENT_SIZES["dsprites"], hidden_sizes=PAPER_HIDDEN_SIZES
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(latent_sizes, hidden_sizes) of an L-layer Seatbelt-VAE, Appendix G.

    The last L latent sizes; the MLPs between z_i and z_{i+1} take the hidden size listed at
    the position of z_i, so hidden sizes shrink with the latents they connect.
    """
    if not 1 <= n_layers <= len(latent_sizes):
        raise ValueError(
            f"n_layers must be in 1..{len(latent_sizes)} for latent sizes {latent_sizes}, got "
            f"{n_layers}."
        )
    start = len(latent_sizes) - n_layers
    return tuple(latent_sizes[start:]), tuple(hidden_sizes[start : start + n_layers - 1])


@dataclass(frozen=True)
class ModelConfig:
    """Everything that defines a model's architecture and objective."""

    kind: ModelKind = "vae"
    objective: Objective = "beta_tcvae"
    beta: float = 1.0
    latent_sizes: tuple[int, ...] = (10,)
    hidden_sizes: tuple[int, ...] = ()
    data_shape: tuple[int, ...] = (1, 64, 64)
    net: Net = "conv"
    mlp_hidden: int = 256
    likelihood_std: float = 0.1
    likelihood_layers: LikelihoodLayers = "all"
    tc_estimator: tc.Estimator = "mws"
    dataset_size: int | None = None
    free_bits: float = 0.0

    def __post_init__(self):
        for name in ("latent_sizes", "hidden_sizes", "data_shape"):
            object.__setattr__(self, name, tuple(int(v) for v in getattr(self, name)))
        self.validate()

    @property
    def n_layers(self) -> int:
        return len(self.latent_sizes)

    def validate(self) -> None:
        def choice(name, options):
            if getattr(self, name) not in options:
                raise ValueError(
                    f"ModelConfig.{name}={getattr(self, name)!r} is not one of {options}."
                )

        choice("kind", KINDS)
        choice("objective", OBJECTIVES)
        choice("net", NETS)
        choice("likelihood_layers", LIKELIHOOD_LAYERS)
        choice("tc_estimator", tc.ESTIMATORS)
        if not self.latent_sizes or min(self.latent_sizes) < 1:
            raise ValueError(
                "ModelConfig.latent_sizes must be positive sizes, bottom layer first; got "
                f"{self.latent_sizes}."
            )
        if self.kind == "vae" and self.n_layers != 1:
            raise ValueError(
                f"a VAE has one latent layer, got latent_sizes={self.latent_sizes}; use "
                "kind='seatbelt'."
            )
        if len(self.hidden_sizes) != self.n_layers - 1:
            raise ValueError(
                f"hidden_sizes needs one entry per pair of adjacent layers ({self.n_layers - 1}), "
                f"got {self.hidden_sizes}; seatbelt_sizes(L) gives the paper's."
            )
        if self.objective == "beta_vae" and self.n_layers != 1:
            raise ValueError(
                "objective='beta_vae' is defined for one latent layer; use 'beta_tcvae' for "
                "Seatbelt."
            )
        if self.beta < 0 or self.likelihood_std <= 0 or self.free_bits < 0:
            raise ValueError(
                f"need beta >= 0, likelihood_std > 0, free_bits >= 0; got {self.beta}, "
                f"{self.likelihood_std}, {self.free_bits}."
            )
        if self.dataset_size is not None and self.dataset_size < 1:
            raise ValueError(
                "dataset_size must be the (positive) size of the training set, got "
                f"{self.dataset_size}."
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(
                f"unknown ModelConfig keys {sorted(unknown)}; known keys are {sorted(known)}."
            )
        return cls(**d)


@dataclass
class Encoding:
    """Per-layer posteriors, bottom first, and the latents passed up the chain."""

    posteriors: list[DiagGaussian]
    z: list[Tensor]


@dataclass
class Loss:
    """The training objective (a scalar to minimise) and its named batch-mean terms."""

    total: Tensor
    terms: dict[str, Tensor] = field(default_factory=dict)


LOGVAR_BOUND = 10.0


def _split(params: Tensor) -> DiagGaussian:
    """A Gaussian from a net's output, its log-variance softly bounded to (-10, 10).

    Unbounded, a conditional of the hierarchy can shrink its variance without limit, and the
    single-sample log ratios of the lower layers then overflow: the CelebA and CIFAR-10 Seatbelts
    at the Appendix G sizes diverged within 10 to 100 steps at the cpu recipe. Every
    log-variance in (-10, 10), standard deviations from e^-5 to e^5, stays reachable; the bound
    only removes the overflow.
    """
    mu, logvar = params.chunk(2, dim=-1)
    return DiagGaussian(mu, LOGVAR_BOUND * torch.tanh(logvar / LOGVAR_BOUND))


class VAE(nn.Module):
    """A (beta-, beta-TC-) VAE; with kind='seatbelt' the same code runs L stochastic layers."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        config.validate()
        self.config = config
        sizes = config.latent_sizes
        if config.net == "conv":
            self.encoder = ConvEncoder(config.data_shape)
        else:
            if len(config.data_shape) != 1:
                raise ValueError(
                    f"net='mlp' takes vector data, got item shape {config.data_shape}; use "
                    "net='conv'."
                )
            self.encoder = MLPEncoder(config.data_shape[0], config.mlp_hidden)
        features = self.encoder.out_features
        self.posterior_heads = nn.ModuleList([nn.Linear(features, 2 * sizes[0])])
        self.posterior_heads.extend(
            MLP(sizes[i] + features, config.hidden_sizes[i], 2 * sizes[i + 1])
            for i in range(len(sizes) - 1)
        )
        self.prior_nets = nn.ModuleList(
            MLP(sizes[i + 1], config.hidden_sizes[i], 2 * sizes[i]) for i in range(len(sizes) - 1)
        )
        decoder_in = sum(sizes) if config.likelihood_layers == "all" else sizes[0]
        if config.net == "conv":
            self.decoder = ConvDecoder(decoder_in, config.data_shape)
        else:
            self.decoder = MLP(decoder_in, config.mlp_hidden, config.data_shape[0])

    @property
    def n_layers(self) -> int:
        return self.config.n_layers

    @property
    def latent_sizes(self) -> tuple[int, ...]:
        return self.config.latent_sizes

    def encode(
        self, x: Tensor, sample: bool = False, generator: torch.Generator | None = None
    ) -> Encoding:
        """q(z_1 | x), q(z_2 | z_1, x), ...; upper layers condition on samples (``sample``) or
        means."""
        self._check_input(x)
        h = self.encoder(x)
        posteriors, zs = [], []
        for i, head in enumerate(self.posterior_heads):
            q = _split(head(h if i == 0 else torch.cat([zs[-1], h], dim=-1)))
            posteriors.append(q)
            zs.append(q.sample(generator) if sample else q.mu)
        return Encoding(posteriors, zs)

    def prior(self, i: int, z_above: Tensor) -> DiagGaussian:
        """p(z_i | z_{i+1}) for a lower layer i (0-based, i < L - 1)."""
        return _split(self.prior_nets[i](z_above))

    def decode(self, zs: list[Tensor]) -> Tensor:
        """The mean of p(x | z) from every layer's latents (Eq 3), or z_1 alone for the chain
        baseline."""
        if len(zs) != self.n_layers:
            raise ValueError(f"decode needs one latent per layer ({self.n_layers}), got {len(zs)}.")
        z = torch.cat(zs, dim=-1) if self.config.likelihood_layers == "all" else zs[0]
        return self.decoder(z)

    def log_likelihood(self, x: Tensor, zs: list[Tensor]) -> Tensor:
        """log p(x | z) per item: a Gaussian of std ``likelihood_std`` over every pixel."""
        sigma = self.config.likelihood_std
        resid = (x - self.decode(zs)) / sigma
        per_pixel = -0.5 * resid**2 - math.log(sigma) - 0.5 * math.log(2 * math.pi)
        return per_pixel.flatten(1).sum(-1)

    def reconstruct(self, x: Tensor) -> Tensor:
        """The likelihood mean at the posterior means."""
        return self.decode(self.encode(x).z)

    def lower_log_ratios(self, enc: Encoding) -> list[Tensor]:
        """log q(z_i | z_{i-1}, x) - log p(z_i | z_{i+1}) per unit, (B, d_i), for each layer below
        the top."""
        out = []
        for i in range(self.n_layers - 1):
            q, p = enc.posteriors[i], self.prior(i, enc.z[i + 1])
            out.append(
                log_density(enc.z[i], q.mu, q.logvar) - log_density(enc.z[i], p.mu, p.logvar)
            )
        return out

    def elbo(
        self,
        x: Tensor,
        target: Tensor | None = None,
        sample: bool = True,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """The beta = 1 ELBO of ``target`` (default ``x``) with the posterior of ``x``, per item.

        ``sample=True``: the single-sample estimate. ``sample=False``: the same expression at the
        posterior means, a deterministic surrogate (the output attack of Eq 2 minimises its
        negative).
        """
        enc = self.encode(x, sample=sample, generator=generator)
        target = x if target is None else target
        if target.shape != x.shape:
            raise ValueError(
                f"target shape {tuple(target.shape)} differs from input shape {tuple(x.shape)}."
            )
        top = enc.posteriors[-1]
        kl = sum((r.sum(-1) for r in self.lower_log_ratios(enc)), start=_kl_to_prior(top).sum(-1))
        return self.log_likelihood(target, enc.z) - kl

    def loss(self, x: Tensor, generator: torch.Generator | None = None) -> Loss:
        """The training objective of the module docstring, on one batch."""
        cfg = self.config
        enc = self.encode(x, sample=True, generator=generator)
        recon = -self.log_likelihood(x, enc.z).mean()
        terms = {"recon": recon}
        total = recon
        for i, ratio in enumerate(self.lower_log_ratios(enc)):
            terms[f"kl_{i + 1}"] = ratio.sum(-1).mean()
            total = total + self._free_bits(ratio)
        top, z_top = enc.posteriors[-1], enc.z[-1]
        if cfg.objective == "beta_tcvae":
            if cfg.dataset_size is None:
                raise ValueError(
                    "the TC estimator needs the training-set size: set "
                    "ModelConfig(dataset_size=len(data))."
                )
            log_q_zx = top.log_prob(z_top)
            log_qz, log_prod_qzj = tc.log_qz(
                z_top, top.mu, top.logvar, cfg.dataset_size, cfg.tc_estimator
            )
            terms["mi"] = (log_q_zx - log_qz).mean()
            terms["tc"] = (log_qz - log_prod_qzj).mean()
            terms["dwkl"] = (log_prod_qzj - standard_log_density(z_top)).mean()
            total = total + terms["mi"] + cfg.beta * terms["tc"] + terms["dwkl"]
        else:
            per_unit = _kl_to_prior(top)
            terms[f"kl_{self.n_layers}"] = per_unit.sum(-1).mean()
            weight = cfg.beta if cfg.objective == "beta_vae" else 1.0
            total = total + weight * self._free_bits(per_unit)
        return Loss(total, terms)

    def _free_bits(self, per_unit: Tensor) -> Tensor:
        """sum over units of max(free_bits, batch-mean KL of the unit)."""
        mean = per_unit.mean(0)
        if self.config.free_bits > 0:
            mean = torch.clamp(mean, min=self.config.free_bits)
        return mean.sum()

    def _check_input(self, x: Tensor) -> None:
        if tuple(x.shape[1:]) != self.config.data_shape:
            raise ValueError(
                f"input items have shape {tuple(x.shape[1:])}, the model was built for "
                f"{self.config.data_shape}."
            )


class SeatbeltVAE(VAE):
    """The Seatbelt-VAE (Definition 1): L layers, likelihood on all of them, TC on the top layer."""

    def __init__(self, config: ModelConfig):
        if config.kind != "seatbelt":
            raise ValueError(
                f"SeatbeltVAE needs ModelConfig(kind='seatbelt'), got kind={config.kind!r}."
            )
        super().__init__(config)


def _kl_to_prior(q: DiagGaussian) -> Tensor:
    """KL(q || N(0, I)) per unit, in closed form."""
    return 0.5 * (q.mu**2 + torch.exp(q.logvar) - 1 - q.logvar)


def build_model(config: ModelConfig) -> VAE:
    return SeatbeltVAE(config) if config.kind == "seatbelt" else VAE(config)
