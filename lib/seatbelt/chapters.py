"""What each chapter of the book asks of the model zoo, as a function of the chapter's parameters.

A chapter builds its models and batteries from this list, and ``python -m seatbelt.book plan``
estimates the build from the same list before anything runs, so the plan cannot drift from
what the chapters do. Each function takes the chapter's parameters as keywords (the ones of its
``parameters`` cell, after the profile's overrides) and ignores those it does not use::

    needs = chapters.needs("intro", **parameters)   # a zoo.Needs: models and batteries
    trained = {point: zoo.get(point, profile) for point in needs.models}

The parameters a chapter cannot run with are refused here, once: :func:`validate` runs the
chapter's check (registered with :func:`checks`), :func:`needs` runs it before anything else,
and so does each chapter's first cell, so a bad value fails the plan and the page alike with
a message that names it. :func:`data_missing` says when a dataset's files are not there, so a
page can mark the sections that need them and the plan can leave their models out.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from . import zoo
from .attacks import SOLVERS, AttackProtocol
from .attacks.objectives import ATTACK_KINDS, Attack
from .data import Data
from .data import missing as dataset_missing
from .data.dsprites import FACTOR_NAMES, FACTOR_VALUES, SHAPE_NAMES
from .zoo import BatteryRequest, Needs, Point

NEEDS: dict[str, Callable[..., Needs]] = {}
CHECKS: dict[str, Callable[..., None]] = {}


def chapter(name: str):
    """Register the needs of the chapter ``book/<name>.ipynb``."""

    def register(function: Callable[..., Needs]) -> Callable[..., Needs]:
        NEEDS[name] = function
        return function

    return register


def checks(name: str):
    """Register the parameter check of the chapter ``book/<name>.ipynb`` (see :func:`validate`)."""

    def register(function: Callable[..., None]) -> Callable[..., None]:
        CHECKS[name] = function
        return function

    return register


def validate(name: str, **parameters: Any) -> None:
    """Raise ValueError, naming the parameter and what it must be, when chapter ``name`` cannot
    run with ``parameters`` (keywords of its parameters cell; those its check does not read are
    ignored). A chapter without a registered check accepts anything its types allow; every
    chapter that attacks (one with a ``solver`` parameter) is also checked by
    :func:`check_attacker`."""
    if "solver" in parameters:
        check_attacker(**parameters)
    function = CHECKS.get(name)
    if function is not None:
        function(**parameters)


def needs(name: str, **parameters: Any) -> Needs:
    """The models and batteries chapter ``name`` needs with these parameters (nothing, if
    unregistered), after :func:`validate`."""
    validate(name, **parameters)
    function = NEEDS.get(name)
    return function(**parameters) if function is not None else Needs()


def data_missing(dataset: str) -> str | None:
    """Why the zoo's ``dataset`` cannot be had (every split the zoo reads): one line saying what to
    get and where, with the data directory written $SEATBELT_DATA, never this machine's path (a
    page may show it); None when it can. Asks :func:`seatbelt.data.missing`, which reads no data.
    """
    splits = ("train", "test") if dataset in ("svhn", "mnist") else (None,)
    for split in splits:
        reason = dataset_missing(dataset, split=split) if split else dataset_missing(dataset)
        if reason is not None:
            return _without_paths(" ".join(reason.split()))
    return None


def _without_paths(text: str) -> str:
    """``text`` with the data directory and the cache written as their environment variables."""
    places = {
        "SEATBELT_DATA": os.environ.get("SEATBELT_DATA"),
        "SEATBELT_CACHE": os.environ.get("SEATBELT_CACHE"),
    }
    for name, place in places.items():
        if place:
            text = text.replace(str(Path(place).expanduser()), f"${name}")
    return text.replace(str(Path.home()), "~")


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


def _attacker(solver: str, max_iter: int) -> dict[str, Any]:
    """A battery's solver and its iteration cap (evaluations: twice that), as keywords of
    :class:`~seatbelt.zoo.BatteryRequest`."""
    check_attacker(solver=solver, max_iter=max_iter)
    return {
        "solver": solver,
        "solver_options": (("max_evals", 2 * max_iter), ("max_iter", max_iter)),
    }


def check_attacker(*, solver: str, max_iter: int, **_: Any) -> None:
    """The checks every attacking chapter shares: a known solver and a positive cap."""
    _require(
        solver in SOLVERS,
        f"solver={solver!r}: choose one of {', '.join(SOLVERS)} "
        "(bench/attack_families.py measures each against the scipy reference).",
    )
    _require(max_iter >= 1, f"max_iter={max_iter}: the solver needs at least one iteration.")


@checks("intro")
def check_intro(*, beta_tc: float, **_: Any) -> None:
    _require(
        beta_tc > 1,
        f"beta_tc={beta_tc}: the introduction compares beta = 1 with a beta-TCVAE of beta > 1.",
    )


@checks("layerwise")
def check_layerwise(
    *,
    betas: Sequence[float],
    depths: Sequence[int],
    depth: int,
    c5_factor: float,
    c7_margin: float,
    fig5_latents: Sequence[int] | None = None,
    model_seeds: Sequence[int] = (0,),
    training_steps: Sequence[int] | None = None,
    **_: Any,
) -> None:
    _check_seeds(model_seeds)
    _require(
        training_steps is None
        or len(set(training_steps)) >= 2
        and all(isinstance(s, int) and s >= 1 for s in training_steps),
        f"training_steps={training_steps}: give two or more training lengths in steps, integers "
        ">= 1, the recipe's own length among them (C5 against the training budget).",
    )
    _require(
        bool(betas) and bool(depths) and min(depths) >= 1 and min(betas) >= 1,
        f"layerwise needs betas >= 1 and depths >= 1, got betas={betas}, depths={depths}.",
    )
    _require(
        max(betas) > 1 and depth >= 2,
        f"betas={sorted(betas)}, depth={depth}: the claims compare at a beta above 1 and a "
        "Seatbelt of depth >= 2; add a larger beta or a deeper depth.",
    )
    _require(
        max(depths) > 1,
        f"depths={sorted(depths)}: Fig D.8 needs a depth >= 2 (one layer has no choice).",
    )
    _require(
        c5_factor >= 1 and 0 < c7_margin < 1,
        f"c5_factor={c5_factor} must be >= 1 and c7_margin={c7_margin} in (0, 1).",
    )
    _require(
        fig5_latents is None or (bool(fig5_latents) and min(fig5_latents) >= 1),
        f"fig5_latents={fig5_latents}: give at least one latent size d_z >= 1 for Fig 5's "
        "beta-TCVAEs (the paper pools 4 to 128).",
    )


@checks("denoising")
def check_denoising(
    *, betas_tc: Sequence[float], betas_seatbelt: Sequence[float], scales: Sequence[float], **_: Any
) -> None:
    for name, betas in (("betas_tc", betas_tc), ("betas_seatbelt", betas_seatbelt)):
        _require(
            1.0 in betas and len(betas) >= 2,
            f"{name}={betas}: C10 compares beta > 1 with beta = 1; give 1 and at least one "
            "larger beta.",
        )
    _require(
        bool(scales) and min(scales) > 0,
        f"scales={scales}: give noise scales > 0; a = 0 is added as the reference.",
    )


@checks("downstream")
def check_downstream(
    *,
    profile: str,
    beta: float,
    layers: int,
    classifier_images: int,
    model_seeds: Sequence[int] = (0,),
    **_: Any,
) -> None:
    _check_seeds(model_seeds)
    _require(
        beta > 1 and layers >= 2,
        f"beta={beta}, layers={layers}: this chapter compares a VAE with TC-penalised models "
        "(beta > 1) and a hierarchical Seatbelt-VAE (layers >= 2).",
    )
    n_train = zoo.recipe(profile, "cifar10").n_train
    _require(
        1 <= classifier_images <= n_train,
        f"classifier_images={classifier_images}: the {profile} recipe has {n_train} "
        "training images; choose a number from 1 to that.",
    )


@checks("tcvae_attacks")
def check_tcvae_attacks(
    *, betas: Sequence[float], steps_beta: float, model_seeds: Sequence[int] = (0,), **_: Any
) -> None:
    _require(
        bool(betas) and min(betas) == 1 and max(betas) > 1 and steps_beta > 1,
        f"betas={betas}, steps_beta={steps_beta}: the chapter compares beta = 1 (the VAE) "
        "with beta > 1, so betas needs 1 and a larger value, and steps_beta > 1.",
    )
    _check_seeds(model_seeds)


def _check_seeds(model_seeds: Sequence[int]) -> None:
    _require(
        bool(model_seeds)
        and all(isinstance(s, int) and s >= 0 for s in model_seeds)
        and len(set(model_seeds)) == len(model_seeds),
        f"model_seeds={model_seeds}: give one or more distinct training seeds (integers >= 0), "
        "e.g. [0, 1, 2].",
    )


@checks("overlap")
def check_overlap(*, curve_betas: Sequence[float], model_seeds: Sequence[int], **_: Any) -> None:
    _require(
        bool(model_seeds) and 1.0 in [float(b) for b in curve_betas] and min(curve_betas) >= 1,
        f"the overlap chapter needs at least one seed and curve betas >= 1 that include 1 "
        f"(the VAE, where both curves start); got model_seeds={model_seeds}, "
        f"curve_betas={curve_betas}.",
    )


@checks("seatbelt")
def check_seatbelt(
    *,
    betas: Sequence[float],
    tcvae_latents: Sequence[int],
    layers: int,
    band_layers: Sequence[int] | None = None,
    model_seeds: Sequence[int] = (0,),
    **_: Any,
) -> None:
    _check_seeds(model_seeds)
    betas = [float(b) for b in betas]
    _require(
        len(set(betas)) >= 2
        and min(betas) >= 1
        and 1.0 in betas
        and bool(tcvae_latents)
        and layers >= 2,
        f"the Seatbelt chapter needs at least two betas >= 1 including 1, a latent size and "
        f"layers >= 2; got betas={betas}, tcvae_latents={tcvae_latents}, layers={layers}.",
    )
    _require(
        band_layers is None or (bool(band_layers) and min(band_layers) >= 2),
        f"band_layers={band_layers}: Fig 6's Seatbelt band needs at least one depth, each >= 2 "
        "(a one-layer Seatbelt is the beta-TCVAE).",
    )


@chapter("intro")
def intro(
    *,
    beta_tc: float,
    latent_size: int,
    seed: int,
    n_pairs: int,
    n_lambdas: int,
    log2_lambda_min: float,
    log2_lambda_max: float,
    max_iter: int,
    solver: str,
    **_: Any,
) -> Needs:
    """A VAE and one beta-TCVAE on dSprites, both attacked with the latent KL attack."""
    protocol = AttackProtocol(
        n_pairs=n_pairs,
        n_lambdas=n_lambdas,
        attacks=("kl",),
        seed=seed,
        log2_lambda_range=(log2_lambda_min, log2_lambda_max),
    )
    attacker = _attacker(solver, max_iter)
    models = [
        Point("vae", "dsprites", 1.0, latent_size, seed=seed),
        Point("beta-tcvae", "dsprites", beta_tc, latent_size, seed=seed),
    ]
    return Needs(models, [BatteryRequest(p, protocol, **attacker) for p in models])


@chapter("layerwise")
def layerwise(
    *,
    betas: list[float],
    depths: list[int],
    depth: int,
    fig5_latents: list[int],
    celeba_beta: float,
    celeba_pair: list[int],
    seed: int,
    model_seeds: list[int],
    training_steps: list[int],
    n_pairs: int,
    n_lambdas: int,
    log2_lambda_min: float,
    log2_lambda_max: float,
    max_iter: int,
    solver: str,
    **_: Any,
) -> Needs:
    """Attacks on Seatbelt-VAEs (Section 5), one battery per model and attack:

    * every Seatbelt of ``betas`` x ``depths`` under the KL attack on all layers, z_1 and z_L
      (Figs D.8, D.9);
    * the Seatbelt of depth ``depth`` and the beta-TCVAEs of every d_z in ``fig5_latents`` (the VAEs
      at beta = 1; Fig 5 pools them) at every beta under the KL, W2 and output attacks (Fig 5, C4,
      C5); the VAEs are always attacked;
    * the chain of depth ``depth`` at the largest beta, on all layers and on z_1, and at beta = 1
      on all layers (C13);
    * for every further seed of ``model_seeds``, the models that decide C4, C5 and C13 under the
      attacks that decide them, so that their intervals cover training runs;
    * C5's pair (the Seatbelt of depth ``depth`` at the largest beta and the VAEs) trained for
      each of ``training_steps`` under the KL attack: the verdict against the training budget;
    * one held-out CelebA pair against a VAE, a beta-TCVAE and a Seatbelt at ``celeba_beta``
      (Fig 1), when CelebA's files are there (:func:`data_missing`).

    The protocol has the introduction's form with one attack each, so an equal protocol shares a
    battery. ``seed`` draws the pairs and the attack starts, the same for every model; the first of
    ``model_seeds`` trains every model of the figures.
    """
    attacker = _attacker(solver, max_iter)
    first, *more = (int(s) for s in model_seeds)
    batteries: list[BatteryRequest] = []

    def add(point: Point, *attacks: Attack | str, pairs=None) -> None:
        for attack in attacks:
            protocol = AttackProtocol(
                n_pairs=n_pairs,
                n_lambdas=n_lambdas,
                attacks=(attack,),
                seed=seed,
                log2_lambda_range=(log2_lambda_min, log2_lambda_max),
            )
            batteries.append(BatteryRequest(point, protocol, **attacker, pairs=pairs))

    layer_attacks = (Attack("kl", "bottom"), Attack("kl", "top"))
    top = max(betas)
    for model_seed in (first, *more):
        extra = model_seed != first  # a further seed: only what decides C4, C5 and C13
        for latent in fig5_latents:
            add(Point("vae", "dsprites", 1.0, latent, seed=model_seed), "kl")
        for beta in betas if not extra else sorted({top}):
            family = "vae" if beta == 1 else "beta-tcvae"
            for latent in fig5_latents:
                add(Point(family, "dsprites", beta, latent, seed=model_seed), "kl", "w2", "output")
            add(
                Point("seatbelt", "dsprites", beta, layers=depth, seed=model_seed),
                "kl",
                "w2",
                "output",
            )
            for layers in depths if not extra else ():
                add(
                    Point("seatbelt", "dsprites", beta, layers=layers, seed=model_seed),
                    "kl",
                    *(layer_attacks if layers > 1 else ()),
                )
        add(
            Point("chain", "dsprites", top, layers=depth, seed=model_seed),
            "kl",
            *(() if extra else (Attack("kl", "bottom"),)),
        )
        if top > 1:  # C13 as the paper states it: what beta does to the chain
            add(Point("chain", "dsprites", 1.0, layers=depth, seed=model_seed), "kl")
    for steps in training_steps:  # C5 against the training budget (one seed)
        add(Point("seatbelt", "dsprites", top, layers=depth, seed=first, steps=int(steps)), "kl")
        for latent in fig5_latents:
            add(Point("vae", "dsprites", 1.0, latent, seed=first, steps=int(steps)), "kl")
    pair = (tuple(int(i) for i in celeba_pair),)
    faces = (
        Point("vae", "celeba", 1.0, seed=seed),
        Point("beta-tcvae", "celeba", celeba_beta, seed=seed),
        Point("seatbelt", "celeba", celeba_beta, seed=seed),
    )
    for point in faces if data_missing("celeba") is None else ():
        add(point, "kl", pairs=pair)
    return Needs([], batteries)


@chapter("denoising")
def denoising(
    *,
    datasets: list[str],
    betas_tc: list[float],
    betas_seatbelt: list[float],
    layers: int,
    seed: int,
    **_: Any,
) -> Needs:
    """beta-TCVAEs (the recipe's latent size) and Seatbelt-VAEs of ``layers`` layers over beta, per
    dataset whose files are there (:func:`data_missing`); no battery (noise, not attacks:
    seatbelt.denoising)."""
    datasets = [d for d in datasets if data_missing(d) is None]
    models = [Point("beta-tcvae", d, b, seed=seed) for d in datasets for b in betas_tc]
    models += [
        Point("seatbelt", d, b, layers=layers, seed=seed) for d in datasets for b in betas_seatbelt
    ]
    return Needs(models)


# ---------------------------------------------------------------------------------------------
# attacking beta-TCVAEs (book/tcvae_attacks.ipynb); the grid is the MIG chapter's too


def tcvae_grid(
    betas: Sequence[float], latents: Sequence[int], seed: int = 0, steps: int | None = None
) -> list[Point]:
    """The beta x d_z grid of dSprites beta-TCVAEs of Fig 3 (beta = 1 is the VAE), latent-major.

    The chapters that attack these models (tcvae_attacks, mig) call it with the same values, so
    they share every model.
    """
    if not betas or not latents or min(betas) < 1:
        raise ValueError(
            f"the beta-TCVAE grid needs betas >= 1 and at least one latent size; got "
            f"betas={betas}, latents={latents}."
        )
    return [
        Point("beta-tcvae", "dsprites", float(beta), int(latent), seed=seed, steps=steps)
        for latent in latents
        for beta in betas
    ]


def heart_rotation_pair(data: Data, turn: float = math.pi / 2) -> tuple[int, int]:
    """(source, target) indices into dSprites ``data``: a heart, and the same heart rotated (Fig 4).

    The target has the source's shape (heart), scale and position; only its orientation differs,
    by the angle closest to ``turn`` (radians, either way round) among the pairs ``data`` holds.
    Ties go to the larger heart (more pixels to rotate), then to the lower indices.
    """
    if data.factors is None or data.factors.shape[1] != len(FACTOR_NAMES):
        raise ValueError(
            "heart_rotation_pair needs dSprites data with its factors (zoo.data('dsprites', ...))."
        )
    factors = data.factors.numpy()
    shape, scale, orientation, pos_x, pos_y = factors.T
    hearts = np.flatnonzero(shape == SHAPE_NAMES.index("heart"))
    angles = FACTOR_VALUES[2].numpy()
    key = (scale[hearts] * 32 + pos_x[hearts]) * 32 + pos_y[hearts]
    order = np.argsort(key, kind="stable")
    groups = np.split(hearts[order], np.flatnonzero(np.diff(key[order])) + 1)
    best = None  # (angle error, -scale, source, target)
    for group in (g for g in groups if len(g) > 1):
        turned = angles[orientation[group]]
        gap = np.abs(turned[:, None] - turned[None, :]) % (2 * math.pi)
        error = np.abs(np.minimum(gap, 2 * math.pi - gap) - turn)
        np.fill_diagonal(error, np.inf)
        i, j = np.unravel_index(np.argmin(error), error.shape)
        candidate = (
            round(float(error[i, j]), 9),
            -int(scale[group[i]]),
            int(group[i]),
            int(group[j]),
        )
        best = candidate if best is None else min(best, candidate)
    if best is None:
        raise ValueError(
            f"no two hearts of {len(data)} {data.name} images share scale and "
            "position; use a larger split (split='train')."
        )
    return best[2], best[3]


@dataclass(frozen=True)
class TcvaeAttacks:
    """The batteries of the chapter, by role: the grid under the KL attack, the output attack and
    the reconstruction attack of Gondim-Ribeiro et al. (Figs 3, E.10), the grid of every further
    training seed under the KL attack (C3's interval covers seeds), the training-budget study (the
    KL attack at one beta pair, one model per length) and the heart rotation (Fig 4)."""

    grid: list[Point]
    kl: list[BatteryRequest]
    kl_seeds: list[BatteryRequest]
    output: list[BatteryRequest]
    recon: list[BatteryRequest]
    training: dict[int, list[BatteryRequest]]
    heart: list[BatteryRequest]

    @property
    def needs(self) -> Needs:
        studied = (b for bs in self.training.values() for b in bs)
        return Needs(
            [], [*self.kl, *self.kl_seeds, *self.output, *self.recon, *studied, *self.heart]
        )


def tcvae_attack_plan(
    *,
    profile: str,
    betas: Sequence[float],
    latents: Sequence[int],
    seed: int,
    model_seeds: Sequence[int],
    n_pairs: int,
    n_lambdas: int,
    log2_lambda_min: float,
    log2_lambda_max: float,
    max_iter: int,
    solver: str,
    training_steps: Sequence[int],
    steps_beta: float,
    steps_latent: int,
    heart_betas: Sequence[float],
    heart_latent: int,
    seatbelt_beta: float,
    seatbelt_layers: int,
    **_: Any,
) -> TcvaeAttacks:
    """What book/tcvae_attacks.ipynb runs (see :class:`TcvaeAttacks`); one attack per protocol, in
    the introduction's form, so equal settings share a battery with the introduction and the
    layerwise chapter. ``seed`` draws the pairs and the attack starts, the same for every model;
    the models are trained with ``model_seeds``, the first of which serves every figure."""
    attacker = _attacker(solver, max_iter)

    def request(point: Point, attack: str, pairs=None, n: int = n_pairs) -> BatteryRequest:
        protocol = AttackProtocol(
            n_pairs=n,
            n_lambdas=n_lambdas,
            attacks=(attack,),
            seed=seed,
            log2_lambda_range=(log2_lambda_min, log2_lambda_max),
        )
        return BatteryRequest(
            point, protocol, **attacker, pairs=pairs, split="test" if pairs is None else "train"
        )

    first, *more = (int(s) for s in model_seeds)
    grid = tcvae_grid(betas, latents, first)
    training = {
        int(steps): [
            request(p, "kl")
            for p in tcvae_grid((1.0, steps_beta), (steps_latent,), first, int(steps))
        ]
        for steps in training_steps
    }
    pair = (heart_rotation_pair(zoo.data("dsprites", profile, split="train")),)
    hearts = [
        Point("beta-tcvae", "dsprites", float(b), heart_latent, seed=first) for b in heart_betas
    ]
    hearts.append(Point("seatbelt", "dsprites", seatbelt_beta, layers=seatbelt_layers, seed=first))
    return TcvaeAttacks(
        grid,
        [request(p, "kl") for p in grid],
        [request(p, "kl") for s in more for p in tcvae_grid(betas, latents, s)],
        [request(p, "output") for p in grid],
        [request(p, "recon") for p in grid],
        training,
        [request(p, "kl", pairs=pair, n=1) for p in hearts],
    )


@chapter("tcvae_attacks")
def tcvae_attacks(**parameters: Any) -> Needs:
    """beta-TCVAEs on dSprites over a beta x d_z grid under the KL, output and reconstruction
    attacks (Figs 3, E.10), a training-length study at one beta pair, and the heart rotation of
    Fig 4 (with a Seatbelt-VAE)."""
    return tcvae_attack_plan(**parameters).needs


TABLE1_DATASETS = ("cifar10", "svhn")  # Table 1's datasets, in the page's order


@dataclass(frozen=True)
class Downstream:
    """The models of Table 1 per dataset, each list (VAE, beta-TCVAE, Seatbelt-VAE), and their
    batteries in the same order; a dataset whose files are missing is left out (``missing``
    holds why). ``seed_batteries``: CIFAR-10's three batteries again for every further training
    seed, keyed by it (claim C11 over training runs)."""

    models: dict[str, list[Point]]
    batteries: dict[str, list[BatteryRequest]]
    missing: dict[str, str] = field(default_factory=dict)
    seed_batteries: dict[int, list[BatteryRequest]] = field(default_factory=dict)

    @property
    def needs(self) -> Needs:
        further = [b for bs in self.seed_batteries.values() for b in bs]
        return Needs(
            [*(p for ps in self.models.values() for p in ps), *(b.point for b in further)],
            [*(b for bs in self.batteries.values() for b in bs), *further],
        )


def downstream_plan(
    *,
    beta: float,
    layers: int,
    n_pairs: int,
    max_iter: int,
    solver: str = "batched",
    seed: int,
    model_seeds: Sequence[int] = (0,),
    datasets: Sequence[str] = TABLE1_DATASETS,
    **_: Any,
) -> Downstream:
    """What book/downstream.ipynb runs on each of ``datasets`` it can have (see
    :class:`Downstream`): a VAE, a beta-TCVAE and a Seatbelt-VAE, each attacked with the latent
    KL attack at lambda = 1 on the same held-out pairs whose target has another label. The models
    are trained with the first of ``model_seeds``; CIFAR-10's are also trained and attacked (on
    the same pairs, drawn with ``seed``) with every further one."""
    protocol = AttackProtocol(
        n_pairs=n_pairs, lambdas=(1.0,), attacks=("kl",), pairing="different_label", seed=seed
    )
    attacker = _attacker(solver, max_iter)

    def table1_models(dataset: str, model_seed: int) -> list[Point]:
        return [
            Point("vae", dataset, seed=model_seed),
            Point("beta-tcvae", dataset, beta=beta, seed=model_seed),
            Point("seatbelt", dataset, beta=beta, layers=layers, seed=model_seed),
        ]

    def attacked(points: list[Point]) -> list[BatteryRequest]:
        return [
            BatteryRequest(p, protocol, split="test", keep_images=True, **attacker) for p in points
        ]

    first, *more = (int(s) for s in model_seeds)
    models, batteries, missing = {}, {}, {}
    for dataset in datasets:
        reason = data_missing(dataset) if dataset != "cifar10" else None
        if reason is not None:  # CIFAR-10 is the chapter itself: its loader says what is missing
            missing[dataset] = reason
            continue
        models[dataset] = table1_models(dataset, first)
        batteries[dataset] = attacked(models[dataset])
    further = {s: attacked(table1_models("cifar10", s)) for s in more}
    return Downstream(models, batteries, missing, further)


@chapter("downstream")
def downstream(**parameters: Any) -> Needs:
    """Table 1 on CIFAR-10 and, where its files are present, SVHN (see :func:`downstream_plan`)."""
    return downstream_plan(**parameters).needs


# ---------------------------------------------------------------------------------------------
# overlap and posterior widths (book/overlap.ipynb)


@dataclass(frozen=True)
class OverlapModels:
    """The models of book/overlap.ipynb, by role: the Swiss roll of Fig A.7 (the VAE, then the
    beta-VAE and the beta-TCVAE at each beta), CelebA of Fig 2a (VAE, beta-VAE, beta-TCVAE at one
    beta; none when CelebA's files are missing), the beta-VAE and beta-TCVAE of Fig 2a at every
    further seed (claim C1 over training runs) and the curves of Fig 2b/2c (the VAE and both
    families at each beta > 1, per seed)."""

    swissroll: list[Point]
    celeba: list[Point]
    curves: list[Point]
    celeba_seeds: list[Point] = field(default_factory=list)

    @property
    def needs(self) -> Needs:
        return Needs([*self.swissroll, *self.celeba, *self.celeba_seeds, *self.curves])


def overlap_models(
    *,
    swiss_betas: Sequence[float],
    celeba_beta: float,
    curve_dataset: str,
    curve_betas: Sequence[float],
    model_seeds: Sequence[int],
    **_: Any,
) -> OverlapModels:
    """The models of the overlap chapter; Fig A.7 and Fig 2a use the first seed, and C1 compares
    Fig 2a's beta-VAE and beta-TCVAE at every seed. With ``curve_dataset="swissroll"`` and the
    Swiss roll's betas, the curves reuse Fig A.7's models."""

    def family_grid(dataset: str, betas: Sequence[float], seed: int) -> list[Point]:
        grid = [Point("vae", dataset, seed=seed)]
        grid += [
            Point(f, dataset, float(b), seed=seed)
            for b in betas
            if b != 1
            for f in ("beta-vae", "beta-tcvae")
        ]
        return grid

    first = int(model_seeds[0])
    celeba = family_grid("celeba", [celeba_beta], first) if data_missing("celeba") is None else []
    return OverlapModels(
        family_grid("swissroll", swiss_betas, first),
        celeba,
        [p for s in model_seeds for p in family_grid(curve_dataset, curve_betas, int(s))],
        # C1 compares only these two: the VAE stays at the first seed (Fig 2a's reference)
        [
            Point(f, "celeba", float(celeba_beta), seed=int(s))
            for s in model_seeds[1:]
            for f in ("beta-vae", "beta-tcvae")
        ]
        if celeba
        else [],
    )


@chapter("overlap")
def overlap(**parameters: Any) -> Needs:
    """Swiss-roll models with a 2-D latent (Fig A.7), CelebA models at one beta (Fig 2a) and the
    models of the likelihood and ELBO curves against beta (Fig 2b/2c); no battery."""
    return overlap_models(**parameters).needs


@chapter("mig")
def mig_robustness(
    *,
    betas: Sequence[float],
    latents: Sequence[int],
    seed: int,
    n_pairs: int,
    n_lambdas: int,
    log2_lambda_min: float,
    log2_lambda_max: float,
    max_iter: int,
    solver: str,
    **_: Any,
) -> Needs:
    """MIG against the attack loss (Fig E.11): the beta-TCVAE grid of book/tcvae_attacks.ipynb and
    its KL batteries, requested exactly as that chapter requests them (one cache serves both)."""
    protocol = AttackProtocol(
        n_pairs=n_pairs,
        n_lambdas=n_lambdas,
        attacks=("kl",),
        seed=seed,
        log2_lambda_range=(log2_lambda_min, log2_lambda_max),
    )
    attacker = _attacker(solver, max_iter)
    grid = tcvae_grid(betas, latents, seed)
    return Needs(grid, [BatteryRequest(p, protocol, **attacker) for p in grid])


# ---------------------------------------------------------------------------------------------
# the Seatbelt-VAE, Theorem 1 and training (book/seatbelt.ipynb)


@dataclass(frozen=True)
class SeatbeltModels:
    """The models of book/seatbelt.ipynb, by role: the Seatbelts of depth ``layers`` at each beta
    (the estimator study, free bits, the chain's comparison), Fig 6's Seatbelts (each depth of
    ``band_layers``; the band spans them) and beta-TCVAEs (each latent size) at each beta, the
    chain at the largest beta, Fig 6c's CelebA pair (beta-TCVAE, Seatbelt; empty when CelebA's
    files are missing) and the small Swiss-roll Seatbelt on which Theorem 1 is checked.
    ``curve_seeds``: for every further training seed, Fig 6's two curves again, (the band's
    Seatbelts, the beta-TCVAEs), keyed by the seed (claim C6 over training runs)."""

    seatbelts: list[Point]
    band: dict[int, list[Point]]
    tcvaes: dict[int, list[Point]]
    chain: Point
    celeba: tuple[Point, ...]
    theorem: Point
    curve_seeds: dict[int, tuple[list[Point], list[Point]]] = field(default_factory=dict)

    @property
    def needs(self) -> Needs:
        band = (p for ps in self.band.values() for p in ps)
        tcvaes = (p for ps in self.tcvaes.values() for p in ps)
        further = (p for curves in self.curve_seeds.values() for ps in curves for p in ps)
        return Needs(
            [*self.seatbelts, *band, *tcvaes, self.chain, *self.celeba, self.theorem, *further]
        )


def seatbelt_models(
    *,
    betas: Sequence[float],
    tcvae_latents: Sequence[int],
    layers: int,
    celeba_beta: float,
    theorem_layers: int,
    seed: int,
    band_layers: Sequence[int] | None = None,
    model_seeds: Sequence[int] = (),
    **_: Any,
) -> SeatbeltModels:
    """The models of the Seatbelt chapter (see :class:`SeatbeltModels`); beta = 1 is the VAE for the
    beta-TCVAE and the hierarchical VAE for the Seatbelt. ``band_layers`` None is ``[layers]``.
    The first of ``model_seeds`` (empty: ``seed``) trains every model; each further one trains
    Fig 6's curves again."""
    first, *more = (int(s) for s in (model_seeds or [seed]))
    betas = [float(b) for b in betas]
    depths = [int(L) for L in (band_layers if band_layers is not None else [layers])]

    def band(s: int) -> dict[int, list[Point]]:
        return {
            L: [Point("seatbelt", "dsprites", b, layers=L, seed=s) for b in betas] for L in depths
        }

    def tcvaes(s: int) -> dict[int, list[Point]]:
        return {
            int(d): [Point("beta-tcvae", "dsprites", b, int(d), seed=s) for b in betas]
            for d in tcvae_latents
        }

    def flat(grid: dict[int, list[Point]]) -> list[Point]:
        return [p for ps in grid.values() for p in ps]

    return SeatbeltModels(
        seatbelts=[Point("seatbelt", "dsprites", b, layers=layers, seed=first) for b in betas],
        band=band(first),
        tcvaes=tcvaes(first),
        chain=Point("chain", "dsprites", max(betas), layers=layers, seed=first),
        celeba=(
            Point("beta-tcvae", "celeba", celeba_beta, seed=first),
            Point("seatbelt", "celeba", celeba_beta, layers=layers, seed=first),
        )
        if data_missing("celeba") is None
        else (),
        theorem=Point("seatbelt", "swissroll", 1.0, layers=theorem_layers, seed=first),
        curve_seeds={s: (flat(band(s)), flat(tcvaes(s))) for s in more},
    )


@chapter("seatbelt")
def seatbelt(**parameters: Any) -> Needs:
    """Seatbelt-VAEs (over the depths of Fig 6's band) and beta-TCVAEs over beta on dSprites (Fig 6,
    C6), the chain baseline, a CelebA beta-TCVAE and Seatbelt at one large beta (Fig 6c) and a
    Swiss-roll Seatbelt (Theorem 1, C12); no battery."""
    return seatbelt_models(**parameters).needs


# ---------------------------------------------------------------------------------------------
# today's threat models: fixed budgets, untargeted attacks, restarts (book/threat_models.ipynb)

THREAT_FAMILIES = ("VAE", "beta-TCVAE", "Seatbelt")  # the page's order, least robust first


def budget_request(
    point: Point, attack: Attack, n: int, seed: int, restarts: int, attacker: dict[str, Any]
) -> zoo.BudgetRequest:
    """The budgeted attack on ``n`` held-out inputs (the protocol's seed draws them and, for a
    targeted attack, their targets) from ``restarts`` random starts in the ball. No lambda sweep,
    so the penalised batteries' controls do not apply; the chapters run their own."""
    protocol = AttackProtocol(
        n_pairs=n, n_lambdas=0, attacks=(attack,), seed=seed, cap_check=0, reference_check=0
    )
    return zoo.BudgetRequest(point, attack, protocol, restarts, **attacker)


def budget_attack(kind: str, norm: Any, eps: Any, *, target: bool | None = None) -> Attack:
    """The budgeted attack ``kind`` within ||d||_norm <= eps, checked before any work: a known
    kind and norm, eps finite and >= 0 in the data's units (images in [-1, 1]), a norm with every
    eps, and no target for an untargeted attack (``target`` True: the caller gives one)."""
    _require(
        norm is not None,
        f"eps={eps!r} without a norm: write each budget as [norm, eps], norm 'linf' or 'l2'.",
    )
    _require(
        isinstance(eps, (int, float))
        and not isinstance(eps, bool)
        and math.isfinite(eps)
        and eps >= 0,
        f"eps={eps!r}: a budget is a finite number >= 0, in the data's units (images in [-1, 1]: "
        "a peer's 0.1 on [0, 1] is 0.2 here).",
    )
    _require(norm in ("linf", "l2"), f"unknown norm {norm!r}: use 'linf' or 'l2'.")
    attack = Attack(kind, norm=norm, eps=float(eps))
    _require(
        not (attack.untargeted and target),
        f"the {kind} attack is untargeted (it pushes away from the source's own encoding) and "
        "takes no target; use a targeted kind such as 'kl' to attack towards a target.",
    )
    return attack


def _budget_pairs(budgets: Sequence[Sequence[Any]], name: str) -> list[tuple[str, float]]:
    out = []
    for budget in budgets:
        _require(
            isinstance(budget, (list, tuple)) and len(budget) in (1, 2),
            f"{name}: each budget is [norm, eps], e.g. ['linf', 0.2]; got {budget!r}.",
        )
        norm, eps = (None, budget[0]) if len(budget) == 1 else budget
        if isinstance(norm, (int, float)) and not isinstance(eps, str):
            norm, eps = None, norm  # [eps] alone, or [eps, eps]: no norm
        budget_attack("kl", norm, eps)
        out.append((norm, float(eps)))
    return out


@checks("threat_models")
def check_threat_models(
    *,
    attacks: Sequence[str],
    budgets: Sequence[Sequence[Any]],
    decide_budget: Sequence[Any],
    n_inputs: int,
    restarts: int,
    beta: float,
    layers: int,
    ssim_threshold: float = 0.5,
    datasets: Sequence[str] = ("dsprites",),
    profile: str | None = None,
    classifier_images: int | None = None,
    classifier_epochs: int = 1,
    cap_factor: int = 4,
    **_: Any,
) -> None:
    _require(
        "dsprites" in datasets and set(datasets) <= set(zoo.DATASETS),
        f"datasets={list(datasets)}: the claims are measured on dSprites; give it, and only "
        f"datasets of the zoo ({', '.join(zoo.DATASETS)}).",
    )
    _require(bool(attacks), "attacks: give at least one attack kind, e.g. ['kl'].")
    pairs = _budget_pairs(budgets, "budgets")
    _require(bool(pairs), "budgets: give at least one [norm, eps].")
    (decide,) = _budget_pairs([decide_budget], "decide_budget")
    _require(
        decide[0] == "linf" and decide[1] > 0,
        f"decide_budget={decide_budget}: N1 is about a fixed L-infinity budget; give "
        "['linf', eps] with eps > 0.",
    )
    for kind in attacks:
        _require(
            isinstance(kind, str) and kind in ATTACK_KINDS,
            f"attacks: unknown attack {kind!r}; choose from {ATTACK_KINDS}.",
        )
    _require(
        "kl" in attacks and "untargeted-recon" in attacks,
        f"attacks={list(attacks)}: the claims need 'kl' (N1) and 'untargeted-recon' (N2).",
    )
    _require(n_inputs >= 2, f"n_inputs={n_inputs}: the paired intervals need at least 2 inputs.")
    _require(restarts >= 2, f"restarts={restarts}: N3 compares restarts, give at least 2.")
    _require(
        isinstance(cap_factor, int) and cap_factor >= 2,
        f"cap_factor={cap_factor!r}: the cap control runs an integer >= 2 times the iterations.",
    )
    _require(beta > 1 and layers >= 2, f"beta={beta}, layers={layers}: need beta > 1, layers >= 2.")
    _require(0 < ssim_threshold < 1, f"ssim_threshold={ssim_threshold}: give a value in (0, 1).")
    _check_classifier(profile, classifier_images, classifier_epochs)


def _check_classifier(profile: str | None, images: int | None, epochs: int) -> None:
    """The latent shape classifier's sample: 1 to the recipe's dSprites training images."""
    if images is None or profile is None:
        return
    n_train = zoo.recipe(profile, "dsprites").n_train
    _require(
        1 <= images <= n_train and epochs >= 1,
        f"classifier_images={images}, classifier_epochs={epochs}: the {profile} recipe has "
        f"{n_train} dSprites training images; choose 1 to that, and at least one epoch.",
    )


@dataclass(frozen=True)
class ThreatModels:
    """The budgeted attacks of book/threat_models.ipynb, keyed (dataset, family, kind, norm,
    eps), the families the display names of :data:`THREAT_FAMILIES`; ``penalised``, the paper's
    latent KL attack on the dSprites VAE and Seatbelt on the same pairs (N1's premise);
    ``missing`` holds why a dataset was left out."""

    models: dict[tuple[str, str], Point]
    requests: dict[tuple[str, str, str, str, float], zoo.BudgetRequest]
    penalised: dict[str, BatteryRequest] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)
    capped: dict[str, zoo.BudgetRequest] = field(default_factory=dict)

    @property
    def needs(self) -> Needs:
        return Needs(
            list(self.models.values()),
            [*self.requests.values(), *self.penalised.values(), *self.capped.values()],
        )


def threat_models_plan(
    *,
    datasets: Sequence[str],
    beta: float,
    latent: int,
    layers: int,
    attacks: Sequence[str],
    budgets: Sequence[Sequence[Any]],
    decide_budget: Sequence[Any],
    n_inputs: int,
    restarts: int,
    max_iter: int,
    solver: str,
    seed: int,
    n_lambdas: int = 3,
    log2_lambda_min: float = -10.0,
    log2_lambda_max: float = 10.0,
    penalised_max_iter: int = 50,
    penalised_solver: str = "batched",
    cap_factor: int = 4,
    **_: Any,
) -> ThreatModels:
    """The VAE, the beta-TCVAE and the Seatbelt of the layerwise chapter (dSprites: d_z
    ``latent``; other datasets: the recipe's, as the Seatbelt chapter's CelebA pair), each
    attacked by every kind of ``attacks`` within every budget, and by the untargeted latent
    attack within ``decide_budget``. One protocol draws the inputs (and targets) of every model,
    so the families are compared on the same inputs."""
    attacker = _attacker(solver, max_iter)
    budget_list = _budget_pairs([*budgets, decide_budget], "budgets")
    decide = budget_list.pop()
    models, requests, missing = {}, {}, {}
    for dataset in datasets:
        reason = data_missing(dataset) if dataset != "dsprites" else None
        if reason is not None:
            missing[dataset] = reason
            continue
        size = latent if dataset == "dsprites" else None
        points = {
            "VAE": Point("vae", dataset, 1.0, size, seed=seed),
            "beta-TCVAE": Point("beta-tcvae", dataset, beta, size, seed=seed),
            "Seatbelt": Point("seatbelt", dataset, beta, layers=layers, seed=seed),
        }
        runs = [(kind, b) for kind in attacks for b in budget_list]
        runs += [(kind, decide) for kind in (*attacks, "untargeted-kl")]
        for family, point in points.items():
            models[dataset, family] = point
            for kind, (norm, eps) in runs:
                requests[dataset, family, kind, norm, eps] = budget_request(
                    point, budget_attack(kind, norm, eps), n_inputs, seed, restarts, attacker
                )
    # the paper's attack in the layerwise chapter's form: at equal settings, its batteries
    penalty = AttackProtocol(
        n_pairs=n_inputs,
        n_lambdas=n_lambdas,
        attacks=("kl",),
        seed=seed,
        log2_lambda_range=(log2_lambda_min, log2_lambda_max),
    )
    penalised = {
        family: BatteryRequest(
            models["dsprites", family],
            penalty,
            **_attacker(penalised_solver, penalised_max_iter),
        )
        for family in ("VAE", "Seatbelt")
        if ("dsprites", family) in models
    }
    # the control on the iteration cap: the untargeted output attack at the claims' budget with
    # cap_factor times the iterations, per dSprites family
    capped = {
        family: replace(
            requests[("dsprites", family, "untargeted-recon", *decide)],
            **_attacker(solver, cap_factor * max_iter),
        )
        for family in THREAT_FAMILIES
        if ("dsprites", family, "untargeted-recon", *decide) in requests
    }
    return ThreatModels(models, requests, penalised, missing, capped)


@chapter("threat_models")
def threat_models(**parameters: Any) -> Needs:
    """Budgeted, targeted and untargeted attacks with restarts against the layerwise chapter's
    VAE, beta-TCVAE and Seatbelt (see :func:`threat_models_plan`)."""
    return threat_models_plan(**parameters).needs


# ---------------------------------------------------------------------------------------------
# defences compared under one protocol (book/defences.ipynb)

DEFENCE_FAMILIES = {"vae": "VAE", "beta-tcvae": "beta-TCVAE", "seatbelt": "Seatbelt"}
DEFENCE_ATTACKS = ("kl", "output", "budget-kl", "budget-untargeted")
CONDITIONS = ("none", "non-adaptive", "adaptive")  # no defence; HMC, attacked without / through it


def _hmc(step_size: float, n_leapfrog: int, n_steps: int, n_warmup: int, n_draws: int, seed: int):
    """The chain's settings, the warm-up shortened to leave at least one sample on short chains."""
    from .defences import HMC

    return HMC(
        step_size=step_size,
        n_leapfrog=n_leapfrog,
        n_steps=n_steps,
        n_warmup=min(n_warmup, n_steps - 1),
        n_draws=n_draws,
        seed=seed,
    )


@checks("defences")
def check_defences(
    *,
    families: Sequence[str],
    step_size: float,
    n_leapfrog: int,
    n_steps: int,
    n_warmup: int,
    n_draws: int,
    chain_lengths: Sequence[int],
    chain_family: str,
    budget: Sequence[Any],
    n_pairs: int,
    restarts: int,
    beta: float,
    layers: int,
    d3_margin: float,
    profile: str | None = None,
    classifier_images: int | None = None,
    classifier_epochs: int = 1,
    **_: Any,
) -> None:
    _check_classifier(profile, classifier_images, classifier_epochs)
    for family in [*families, chain_family]:
        _require(
            family in DEFENCE_FAMILIES,
            f"unknown family {family!r}: the defences chapter compares {list(DEFENCE_FAMILIES)}.",
        )
    _require(
        "seatbelt" in families and len(families) >= 2,
        f"families={list(families)}: D4 compares the Seatbelt with another family; give both.",
    )
    _require(
        isinstance(step_size, (int, float)) and math.isfinite(step_size) and step_size > 0,
        f"step_size={step_size!r}: the leapfrog step must be a positive number (it adapts from "
        "there during the warm-up; 0.1 to 0.5 is typical).",
    )
    for name, value in (("n_leapfrog", n_leapfrog), ("n_steps", n_steps), ("n_draws", n_draws)):
        _require(
            isinstance(value, int) and value >= 1,
            f"{name}={value!r}: a chain length must be a positive integer.",
        )
    _require(
        bool(chain_lengths) and all(isinstance(n, int) and n >= 1 for n in chain_lengths),
        f"chain_lengths={chain_lengths}: give HMC iterations per chain, positive integers.",
    )
    for length in {n_steps, *chain_lengths}:
        try:
            _hmc(step_size, n_leapfrog, length, n_warmup, n_draws, 0)
        except ValueError as e:
            raise ValueError(f"HMC with n_steps={length}: {e}") from None
    _budget_pairs([budget], "budget")
    _require(n_pairs >= 2, f"n_pairs={n_pairs}: the paired intervals need at least 2 pairs.")
    _require(restarts >= 1, f"restarts={restarts}: give at least one start per input.")
    _require(beta > 1 and layers >= 2, f"beta={beta}, layers={layers}: need beta > 1, layers >= 2.")
    _require(0 <= d3_margin < 1, f"d3_margin={d3_margin}: a fraction in [0, 1).")


@dataclass(frozen=True)
class Defences:
    """What book/defences.ipynb runs: per family (display name) its zoo point; per (family,
    attack, condition) the attack request (:data:`DEFENCE_ATTACKS`, :data:`CONDITIONS`; a
    :class:`~seatbelt.zoo.DefendedRequest`, ``hmc`` None for no defence); and the chain-length
    study, per (HMC iterations, condition), the untargeted budgeted attack on ``chain_family``."""

    models: dict[str, Point]
    hmc: Any
    requests: dict[tuple[str, str, str], zoo.DefendedRequest]
    chain: dict[tuple[int, str], zoo.DefendedRequest]

    @property
    def needs(self) -> Needs:
        every = [*self.requests.values(), *self.chain.values()]
        return Needs(list(self.models.values()), [r.request if r.hmc is None else r for r in every])


def defences_plan(
    *,
    families: Sequence[str],
    beta: float,
    latent: int,
    layers: int,
    n_pairs: int,
    n_lambdas: int,
    log2_lambda_min: float,
    log2_lambda_max: float,
    budget: Sequence[Any],
    restarts: int,
    max_iter: int,
    solver: str,
    step_size: float,
    n_leapfrog: int,
    n_steps: int,
    n_warmup: int,
    n_draws: int,
    chain_lengths: Sequence[int],
    chain_family: str,
    seed: int,
    **_: Any,
) -> Defences:
    """The zoo's dSprites VAE, beta-TCVAE (d_z ``latent``) and Seatbelt (``layers``) at ``beta``,
    as the threat_models chapter's, each attacked by the paper's latent KL and output attacks
    (penalised, a lambda path) and by the targeted and untargeted attacks within ``budget``, each
    on the plain model, on the defended one without differentiating the chain (the plain attack's
    distortions) and through the chain. The protocols skip the battery's cap and reference
    controls: through a chain each re-solve costs the chain's decoder passes."""
    attacker = _attacker(solver, max_iter)
    hmc = _hmc(step_size, n_leapfrog, n_steps, n_warmup, n_draws, seed)
    ((norm, eps),) = _budget_pairs([budget], "budget")
    points = {
        "vae": Point("vae", "dsprites", 1.0, latent, seed=seed),
        "beta-tcvae": Point("beta-tcvae", "dsprites", beta, latent, seed=seed),
        "seatbelt": Point("seatbelt", "dsprites", beta, layers=layers, seed=seed),
    }

    def base(point: Point, attack: str):
        if attack in ("kl", "output"):
            protocol = AttackProtocol(
                n_pairs=n_pairs,
                n_lambdas=n_lambdas,
                attacks=(attack,),
                seed=seed,
                log2_lambda_range=(log2_lambda_min, log2_lambda_max),
                cap_check=0,
                reference_check=0,
            )
            return BatteryRequest(point, protocol, **attacker)
        kind = "kl" if attack == "budget-kl" else "untargeted-recon"
        return budget_request(
            point, budget_attack(kind, norm, eps), n_pairs, seed, restarts, attacker
        )

    def conditions(request, chain_hmc):
        return {
            "none": zoo.DefendedRequest(request, None),
            "non-adaptive": zoo.DefendedRequest(request, chain_hmc, adaptive=False),
            "adaptive": zoo.DefendedRequest(request, chain_hmc, adaptive=True),
        }

    models, requests, chain = {}, {}, {}
    for family in families:
        name = DEFENCE_FAMILIES[family]
        models[name] = points[family]
        for attack in DEFENCE_ATTACKS:
            for condition, r in conditions(base(points[family], attack), hmc).items():
                requests[name, attack, condition] = r
    study = base(points[chain_family], "budget-untargeted")
    for length in chain_lengths:
        chain_hmc = _hmc(step_size, n_leapfrog, length, n_warmup, n_draws, seed)
        for condition, r in conditions(study, chain_hmc).items():
            chain[length, condition] = r
    return Defences(models, hmc, requests, chain)


@chapter("defences")
def defences(**parameters: Any) -> Needs:
    """The zoo's VAE, beta-TCVAE and Seatbelt on dSprites with and without HMC, under the paper's
    attacks and the budgeted ones, each non-adaptive and adaptive (see :func:`defences_plan`)."""
    return defences_plan(**parameters).needs
