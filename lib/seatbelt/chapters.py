"""What each chapter of the book asks of the model zoo, as a function of the chapter's parameters.

A chapter builds its models and batteries from this list, and ``python -m seatbelt.book plan``
estimates the build from the same list before anything runs, so the plan cannot drift from
what the chapters do. Each function takes the chapter's parameters as keywords (the ones of its
``parameters`` cell, after the profile's overrides) and ignores those it does not use::

    needs = chapters.needs("intro", **parameters)   # a zoo.Needs: models and batteries
    trained = {point: zoo.get(point, profile) for point in needs.models}
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from . import zoo
from .attacks import AttackProtocol
from .attacks.objectives import Attack
from .data import Data
from .data.dsprites import FACTOR_NAMES, FACTOR_VALUES, SHAPE_NAMES
from .zoo import BatteryRequest, Needs, Point

NEEDS: dict[str, Callable[..., Needs]] = {}


def chapter(name: str):
    """Register the needs of the chapter ``book/<name>.ipynb``."""

    def register(function: Callable[..., Needs]) -> Callable[..., Needs]:
        NEEDS[name] = function
        return function

    return register


def needs(name: str, **parameters: Any) -> Needs:
    """The models and batteries chapter ``name`` needs with these parameters (nothing, if unregistered)."""
    function = NEEDS.get(name)
    return function(**parameters) if function is not None else Needs()


@chapter("intro")
def intro(*, beta_tc: float, latent_size: int, seed: int, n_pairs: int, n_lambdas: int,
          log2_lambda_min: float, log2_lambda_max: float, max_iter: int, **_: Any) -> Needs:
    """A VAE and one beta-TCVAE on dSprites, both attacked with the latent KL attack."""
    protocol = AttackProtocol(n_pairs=n_pairs, n_lambdas=n_lambdas, log2_lambda_range=(log2_lambda_min, log2_lambda_max),
                              attacks=("kl",), seed=seed)
    options = (("max_evals", 2 * max_iter), ("max_iter", max_iter))
    models = [Point("vae", "dsprites", 1.0, latent_size, seed=seed),
              Point("beta-tcvae", "dsprites", beta_tc, latent_size, seed=seed)]
    return Needs(models, [BatteryRequest(p, protocol, solver_options=options) for p in models])


@chapter("layerwise")
def layerwise(*, betas: list[float], depths: list[int], depth: int, latent_size: int, celeba_beta: float,
              celeba_pair: list[int], seed: int, n_pairs: int, n_lambdas: int, log2_lambda_min: float,
              log2_lambda_max: float, max_iter: int, **_: Any) -> Needs:
    """Attacks on Seatbelt-VAEs (Section 5), one battery per model and attack:

    * every Seatbelt of ``betas`` x ``depths`` under the KL attack on all layers, z_1 and z_L (Figs D.8, D.9);
    * the Seatbelt of depth ``depth`` and the beta-TCVAE of ``latent_size`` (the VAE at beta = 1) at
      every beta under the KL, W2 and output attacks (Fig 5, C4, C5); the VAE is always attacked;
    * the chain of depth ``depth`` at the largest beta, on all layers and on z_1 (C13);
    * one held-out CelebA pair against a VAE, a beta-TCVAE and a Seatbelt at ``celeba_beta`` (Fig 1).

    The protocol has the introduction's form with one attack each, so an equal protocol shares a battery.
    """
    if not betas or not depths or min(depths) < 1 or min(betas) < 1:
        raise ValueError(f"layerwise needs betas >= 1 and depths >= 1, got betas={betas}, depths={depths}.")
    options = (("max_evals", 2 * max_iter), ("max_iter", max_iter))
    batteries: list[BatteryRequest] = []

    def add(point: Point, *attacks: Attack | str, pairs=None) -> None:
        for attack in attacks:
            protocol = AttackProtocol(n_pairs=n_pairs, n_lambdas=n_lambdas, attacks=(attack,), seed=seed,
                                      log2_lambda_range=(log2_lambda_min, log2_lambda_max))
            batteries.append(BatteryRequest(point, protocol, solver_options=options, pairs=pairs))

    layer_attacks = (Attack("kl", "bottom"), Attack("kl", "top"))
    add(Point("vae", "dsprites", 1.0, latent_size, seed=seed), "kl")
    for beta in betas:
        family = "vae" if beta == 1 else "beta-tcvae"
        add(Point(family, "dsprites", beta, latent_size, seed=seed), "kl", "w2", "output")
        add(Point("seatbelt", "dsprites", beta, layers=depth, seed=seed), "kl", "w2", "output")
        for layers in depths:
            add(Point("seatbelt", "dsprites", beta, layers=layers, seed=seed), "kl", *(layer_attacks if layers > 1 else ()))
    add(Point("chain", "dsprites", max(betas), layers=depth, seed=seed), "kl", Attack("kl", "bottom"))
    pair = (tuple(int(i) for i in celeba_pair),)
    for point in (Point("vae", "celeba", 1.0, seed=seed), Point("beta-tcvae", "celeba", celeba_beta, seed=seed),
                  Point("seatbelt", "celeba", celeba_beta, seed=seed)):
        add(point, "kl", pairs=pair)
    return Needs([], batteries)


@chapter("denoising")
def denoising(*, datasets: list[str], betas_tc: list[float], betas_seatbelt: list[float], layers: int, seed: int,
              **_: Any) -> Needs:
    """beta-TCVAEs (the recipe's latent size) and Seatbelt-VAEs of ``layers`` layers over beta, per
    dataset; no battery (noise, not attacks: seatbelt.denoising)."""
    models = [Point("beta-tcvae", d, b, seed=seed) for d in datasets for b in betas_tc]
    models += [Point("seatbelt", d, b, layers=layers, seed=seed) for d in datasets for b in betas_seatbelt]
    return Needs(models)


# ---------------------------------------------------------------------------------------------
# attacking beta-TCVAEs (book/tcvae_attacks.ipynb); the grid is the MIG chapter's too


def tcvae_grid(betas: Sequence[float], latents: Sequence[int], seed: int = 0, steps: int | None = None) -> list[Point]:
    """The beta x d_z grid of dSprites beta-TCVAEs of Fig 3 (beta = 1 is the VAE), latent-major.

    The chapters that attack these models (tcvae_attacks, mig) call it with the same values, so
    they share every model.
    """
    if not betas or not latents or min(betas) < 1:
        raise ValueError(f"the beta-TCVAE grid needs betas >= 1 and at least one latent size; got betas={betas}, "
                         f"latents={latents}.")
    return [Point("beta-tcvae", "dsprites", float(beta), int(latent), seed=seed, steps=steps)
            for latent in latents for beta in betas]


def heart_rotation_pair(data: Data, turn: float = math.pi / 2) -> tuple[int, int]:
    """(source, target) indices into dSprites ``data``: a heart, and the same heart rotated (Fig 4).

    The target has the source's shape (heart), scale and position; only its orientation differs,
    by the angle closest to ``turn`` (radians, either way round) among the pairs ``data`` holds.
    Ties go to the larger heart (more pixels to rotate), then to the lower indices.
    """
    if data.factors is None or data.factors.shape[1] != len(FACTOR_NAMES):
        raise ValueError("heart_rotation_pair needs dSprites data with its factors (zoo.data('dsprites', ...)).")
    factors = data.factors.numpy()
    shape, scale, orientation, pos_x, pos_y = factors.T
    hearts = np.flatnonzero(shape == SHAPE_NAMES.index("heart"))
    angles = FACTOR_VALUES[2].numpy()
    key = (scale[hearts] * 32 + pos_x[hearts]) * 32 + pos_y[hearts]
    order = np.argsort(key, kind="stable")
    groups = np.split(hearts[order], np.flatnonzero(np.diff(key[order])) + 1)
    best = None  # (angle error, -scale, source, target)
    for group in (g for g in groups if len(g) > 1):
        gap = np.abs(angles[orientation[group]][:, None] - angles[orientation[group]][None, :]) % (2 * math.pi)
        error = np.abs(np.minimum(gap, 2 * math.pi - gap) - turn)
        np.fill_diagonal(error, np.inf)
        i, j = np.unravel_index(np.argmin(error), error.shape)
        candidate = (round(float(error[i, j]), 9), -int(scale[group[i]]), int(group[i]), int(group[j]))
        best = candidate if best is None else min(best, candidate)
    if best is None:
        raise ValueError(f"no two hearts of {len(data)} {data.name} images share scale and position; use a larger "
                         "split (split='train').")
    return best[2], best[3]


@dataclass(frozen=True)
class TcvaeAttacks:
    """The batteries of the chapter, by role: the grid under the KL and the output attack (Figs 3,
    E.10), the training-length study (the KL attack at one beta pair, one model per length) and
    the heart rotation (Fig 4)."""

    grid: list[Point]
    kl: list[BatteryRequest]
    output: list[BatteryRequest]
    training: dict[int, list[BatteryRequest]]
    heart: list[BatteryRequest]

    @property
    def needs(self) -> Needs:
        return Needs([], [*self.kl, *self.output, *(b for bs in self.training.values() for b in bs), *self.heart])


def tcvae_attack_plan(*, profile: str, betas: Sequence[float], latents: Sequence[int], seed: int, n_pairs: int,
                      n_lambdas: int, log2_lambda_min: float, log2_lambda_max: float, max_iter: int,
                      training_steps: Sequence[int], steps_beta: float, steps_latent: int,
                      heart_betas: Sequence[float], heart_latent: int, seatbelt_beta: float, seatbelt_layers: int,
                      **_: Any) -> TcvaeAttacks:
    """What book/tcvae_attacks.ipynb runs (see :class:`TcvaeAttacks`); one attack per protocol, in
    the introduction's form, so equal settings share a battery with the introduction and the layerwise chapter."""
    options = (("max_evals", 2 * max_iter), ("max_iter", max_iter))

    def request(point: Point, attack: str, pairs=None, n: int = n_pairs) -> BatteryRequest:
        protocol = AttackProtocol(n_pairs=n, n_lambdas=n_lambdas, log2_lambda_range=(log2_lambda_min, log2_lambda_max),
                                  attacks=(attack,), seed=seed)
        return BatteryRequest(point, protocol, solver_options=options, pairs=pairs,
                              split="test" if pairs is None else "train")

    grid = tcvae_grid(betas, latents, seed)
    training = {int(steps): [request(p, "kl") for p in tcvae_grid((1.0, steps_beta), (steps_latent,), seed, int(steps))]
                for steps in training_steps}
    pair = (heart_rotation_pair(zoo.data("dsprites", profile, split="train")),)
    hearts = [Point("beta-tcvae", "dsprites", float(b), heart_latent, seed=seed) for b in heart_betas]
    hearts.append(Point("seatbelt", "dsprites", seatbelt_beta, layers=seatbelt_layers, seed=seed))
    return TcvaeAttacks(grid, [request(p, "kl") for p in grid], [request(p, "output") for p in grid], training,
                        [request(p, "kl", pairs=pair, n=1) for p in hearts])


@chapter("tcvae_attacks")
def tcvae_attacks(**parameters: Any) -> Needs:
    """beta-TCVAEs on dSprites over a beta x d_z grid under the KL and output attacks (Figs 3, E.10),
    a training-length study at one beta pair, and the heart rotation of Fig 4 (with a Seatbelt-VAE)."""
    return tcvae_attack_plan(**parameters).needs


@chapter("downstream")
def downstream(*, beta: float, layers: int, n_pairs: int, max_iter: int, seed: int, **_: Any) -> Needs:
    """Table 1 on CIFAR-10: a VAE, a beta-TCVAE and a Seatbelt-VAE, each attacked with the latent KL
    attack at lambda = 1 on the same held-out pairs whose target has another label."""
    protocol = AttackProtocol(n_pairs=n_pairs, lambdas=(1.0,), attacks=("kl",), pairing="different_label", seed=seed)
    options = (("max_evals", 2 * max_iter), ("max_iter", max_iter))
    models = [Point("vae", "cifar10", seed=seed), Point("beta-tcvae", "cifar10", beta=beta, seed=seed),
              Point("seatbelt", "cifar10", beta=beta, layers=layers, seed=seed)]
    return Needs(models, [BatteryRequest(p, protocol, split="test", keep_images=True, solver_options=options)
                          for p in models])


# ---------------------------------------------------------------------------------------------
# overlap and posterior widths (book/overlap.ipynb)


@dataclass(frozen=True)
class OverlapModels:
    """The models of book/overlap.ipynb, by role: the Swiss roll of Fig A.7 (the VAE, then the
    beta-VAE and the beta-TCVAE at each beta), CelebA of Fig 2a (VAE, beta-VAE, beta-TCVAE at one
    beta) and the curves of Fig 2b/2c (the VAE and both families at each beta > 1, per seed)."""

    swissroll: list[Point]
    celeba: list[Point]
    curves: list[Point]

    @property
    def needs(self) -> Needs:
        return Needs([*self.swissroll, *self.celeba, *self.curves])


def overlap_models(*, swiss_betas: Sequence[float], celeba_beta: float, curve_dataset: str,
                   curve_betas: Sequence[float], model_seeds: Sequence[int], **_: Any) -> OverlapModels:
    """The models of the overlap chapter; Fig A.7 and Fig 2a use the first seed. With
    ``curve_dataset="swissroll"`` and the Swiss roll's betas, the curves reuse Fig A.7's models."""
    if not model_seeds or 1.0 not in [float(b) for b in curve_betas] or min(curve_betas) < 1:
        raise ValueError(f"the overlap chapter needs at least one seed and curve betas >= 1 that include 1 (the VAE, "
                         f"where both curves start); got model_seeds={model_seeds}, curve_betas={curve_betas}.")

    def family_grid(dataset: str, betas: Sequence[float], seed: int) -> list[Point]:
        grid = [Point("vae", dataset, seed=seed)]
        grid += [Point(f, dataset, float(b), seed=seed) for b in betas if b != 1 for f in ("beta-vae", "beta-tcvae")]
        return grid

    first = int(model_seeds[0])
    return OverlapModels(family_grid("swissroll", swiss_betas, first), family_grid("celeba", [celeba_beta], first),
                         [p for s in model_seeds for p in family_grid(curve_dataset, curve_betas, int(s))])


@chapter("overlap")
def overlap(**parameters: Any) -> Needs:
    """Swiss-roll models with a 2-D latent (Fig A.7), CelebA models at one beta (Fig 2a) and the
    models of the likelihood and ELBO curves against beta (Fig 2b/2c); no battery."""
    return overlap_models(**parameters).needs


@chapter("mig")
def mig_robustness(*, betas: Sequence[float], latents: Sequence[int], seed: int, n_pairs: int, n_lambdas: int,
                   log2_lambda_min: float, log2_lambda_max: float, max_iter: int, **_: Any) -> Needs:
    """MIG against the attack loss (Fig E.11): the beta-TCVAE grid of book/tcvae_attacks.ipynb and
    its KL batteries, requested exactly as that chapter requests them (one cache serves both)."""
    protocol = AttackProtocol(n_pairs=n_pairs, n_lambdas=n_lambdas, log2_lambda_range=(log2_lambda_min, log2_lambda_max),
                              attacks=("kl",), seed=seed)
    options = (("max_evals", 2 * max_iter), ("max_iter", max_iter))
    grid = tcvae_grid(betas, latents, seed)
    return Needs(grid, [BatteryRequest(p, protocol, solver_options=options) for p in grid])


# ---------------------------------------------------------------------------------------------
# the Seatbelt-VAE, Theorem 1 and training (book/seatbelt.ipynb)


@dataclass(frozen=True)
class SeatbeltModels:
    """The models of book/seatbelt.ipynb, by role: Fig 6's Seatbelts (depth ``layers``) and
    beta-TCVAEs (each latent size) at each beta, the chain at the largest beta, Fig 6c's CelebA pair
    and the small Swiss-roll Seatbelt on which Theorem 1 is checked."""

    seatbelts: list[Point]
    tcvaes: dict[int, list[Point]]
    chain: Point
    celeba: tuple[Point, Point]
    theorem: Point

    @property
    def needs(self) -> Needs:
        return Needs([*self.seatbelts, *(p for ps in self.tcvaes.values() for p in ps), self.chain, *self.celeba,
                      self.theorem])


def seatbelt_models(*, betas: Sequence[float], tcvae_latents: Sequence[int], layers: int, celeba_beta: float,
                    theorem_layers: int, seed: int, **_: Any) -> SeatbeltModels:
    """The models of the Seatbelt chapter (see :class:`SeatbeltModels`); beta = 1 is the VAE for the
    beta-TCVAE and the hierarchical VAE for the Seatbelt."""
    betas = [float(b) for b in betas]
    if len(set(betas)) < 2 or min(betas) < 1 or 1.0 not in betas or not tcvae_latents or layers < 2:
        raise ValueError(f"the Seatbelt chapter needs at least two betas >= 1 including 1, a latent size and "
                         f"layers >= 2; got betas={betas}, tcvae_latents={tcvae_latents}, layers={layers}.")
    return SeatbeltModels(
        seatbelts=[Point("seatbelt", "dsprites", b, layers=layers, seed=seed) for b in betas],
        tcvaes={int(d): [Point("beta-tcvae", "dsprites", b, int(d), seed=seed) for b in betas] for d in tcvae_latents},
        chain=Point("chain", "dsprites", max(betas), layers=layers, seed=seed),
        celeba=(Point("beta-tcvae", "celeba", celeba_beta, seed=seed),
                Point("seatbelt", "celeba", celeba_beta, layers=layers, seed=seed)),
        theorem=Point("seatbelt", "swissroll", 1.0, layers=theorem_layers, seed=seed),
    )


@chapter("seatbelt")
def seatbelt(**parameters: Any) -> Needs:
    """Seatbelt-VAEs and beta-TCVAEs over beta on dSprites (Fig 6, C6), the chain baseline, a CelebA
    beta-TCVAE and Seatbelt at one large beta (Fig 6c) and a Swiss-roll Seatbelt (Theorem 1, C12); no battery."""
    return seatbelt_models(**parameters).needs
