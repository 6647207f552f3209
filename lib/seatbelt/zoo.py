"""The book's model zoo: every model a chapter uses, as a point of a named family, trained once per
profile.

A chapter, or a user's own notebook, asks for a model by what it is::

    from seatbelt import zoo
    trained = zoo.model("beta-tcvae", "dsprites", beta=4, latent=16, profile="cpu")
    test = zoo.data("dsprites", profile="cpu", split="test")
    point = zoo.Point("beta-tcvae", "dsprites", beta=4, latent=16)
    battery = zoo.battery(point, protocol, profile="cpu")

Every request for the same point of the same profile gets the same cached model (the model
cache of :func:`seatbelt.training.fit`, keyed by the configs, the data and the library code
that determines the weights), and every request for the same battery the same cached attack
results (keyed by the model, the protocol, the attacks, the solver and its settings, the
attacked data and the code).

Families (the model each one builds is in :func:`model_config`):

* ``vae``: the VAE. It is the beta-TCVAE objective at beta = 1, which is exactly the
  single-sample ELBO, so ``vae``, ``beta-vae`` at beta = 1 and ``beta-tcvae`` at beta = 1 are
  one model of the zoo, trained once.
* ``beta-vae``: the KL term multiplied by beta (Higgins et al. 2017).
* ``beta-tcvae``: the TC term multiplied by beta (Chen et al. 2018), minibatch weighted sampling.
* ``seatbelt``: L stochastic layers, the likelihood on every layer, the top layer's TC
  multiplied by beta (Eq 9), free bits; L = 1 is the beta-TCVAE of the top layer's size.
* ``chain``: the same with the likelihood on z_1 only (the DLGM baseline of Section 4).

Grid parameters: ``beta``; ``latent`` (the latent size, for one-layer families) or ``layers``
(the depth L, for seatbelt and chain, whose sizes are the last L of the recipe's list, as in
Appendix G); ``dataset``; ``seed`` (initial weights and batch order; the data sample is fixed);
and, for studies of training length only, ``steps`` (None: the recipe's).

The training recipe of a profile and dataset (image size, how many images, steps, batch,
learning rate, default sizes) lives in ``params/<profile>/zoo.yaml`` with its reasons.
"""

from __future__ import annotations

import functools
import json
import math
import os
from dataclasses import asdict, dataclass, field, is_dataclass, replace
from pathlib import Path
from typing import Any, Sequence, get_args, get_origin, get_type_hints

import numpy as np
import torch
import yaml

from . import cache
from .attacks import AttackProtocol, AttackResults, run_battery
from .attacks.battery import SOLVERS
from .attacks.budget import BudgetResults, run_budgeted
from .attacks.objectives import Attack
from .data import Data, celeba, cifar10, dsprites, svhn, swiss_roll
from .defences import HMC, DefendedModel, ReplayBudget, non_adaptive
from .models import ModelConfig, seatbelt_sizes
from .training import TrainConfig, Trained, cache_entry, fit

FAMILIES = ("vae", "beta-vae", "beta-tcvae", "seatbelt", "chain")
DATASETS = ("dsprites", "celeba", "cifar10", "svhn", "swissroll")
SPLITS = ("train", "test")
LAYERED = ("seatbelt", "chain")
DATA_SEED = 0  # one data sample per profile, whatever the model's seed
ATTACK_SOURCES = cache.WEIGHT_SOURCES + ("attacks",)
PARAMS_ENV = "SEATBELT_PARAMS"


class ZooError(ValueError):
    """A request the zoo cannot serve: an unknown family, dataset, grid point or profile."""


@dataclass(frozen=True)
class Recipe:
    """How one profile trains on one dataset, and what its training costs (for the plan)."""

    dataset: str
    n_train: int
    n_test: int
    steps: int
    batch_size: int
    lr: float = 1e-3
    image_size: int | None = None
    latent: int = 10
    seatbelt_latents: tuple[int, ...] = (96, 48, 24, 12, 6)
    seatbelt_hidden: tuple[int, ...] = (1024, 512, 256, 128, 64)
    free_bits: float = 0.0
    likelihood_std: float = 0.1
    mlp_hidden: int = 256
    tc_estimator: str = "mws"
    images_per_s: float = 1000.0
    attack_eval_ms: float = 1.0

    def __post_init__(self):
        for name in ("seatbelt_latents", "seatbelt_hidden"):
            object.__setattr__(self, name, tuple(int(v) for v in getattr(self, name)))
        if self.dataset not in DATASETS:
            raise ZooError(
                f"recipe for unknown dataset {self.dataset!r}; the zoo knows {DATASETS}."
            )
        if (
            min(self.n_train, self.n_test, self.steps, self.batch_size, self.latent) < 1
            or self.lr <= 0
            or not self.likelihood_std > 0
        ):
            raise ZooError(
                f"recipe for {self.dataset}: sizes, steps, lr and likelihood_std must be positive, "
                f"got {self}."
            )
        if self.batch_size > self.n_train:
            raise ZooError(
                f"recipe for {self.dataset}: batch_size {self.batch_size} exceeds "
                f"n_train {self.n_train}."
            )
        if len(self.seatbelt_hidden) != len(self.seatbelt_latents):
            raise ZooError(
                f"recipe for {self.dataset}: seatbelt_hidden needs one size per entry of "
                "seatbelt_latents."
            )

    def train_config(self, point: "Point") -> TrainConfig:
        steps = point.steps if point.steps is not None else self.steps
        return TrainConfig(steps=steps, batch_size=self.batch_size, lr=self.lr, seed=point.seed)


@dataclass(frozen=True)
class Point:
    """One model of the zoo. ``latent``/``layers`` None means the recipe's default (resolved by
    :meth:`resolve`)."""

    family: str
    dataset: str
    beta: float = 1.0
    latent: int | None = None
    layers: int | None = None
    seed: int = 0
    steps: int | None = None

    def __post_init__(self):
        object.__setattr__(self, "beta", float(self.beta))
        if self.family not in FAMILIES:
            raise ZooError(f"unknown family {self.family!r}; the zoo's families are {FAMILIES}.")
        if self.dataset not in DATASETS:
            raise ZooError(f"unknown dataset {self.dataset!r}; the zoo's datasets are {DATASETS}.")
        if not self.beta >= 0:
            raise ZooError(f"{self.family}: beta must be >= 0, got {self.beta}.")
        if self.family == "vae" and self.beta != 1.0:
            raise ZooError(
                f"the VAE is beta = 1, got beta={self.beta:g}; ask for 'beta-vae' or "
                "'beta-tcvae' at that beta."
            )
        if self.family in LAYERED and self.latent is not None:
            raise ZooError(
                f"{self.family} takes layers=L (its sizes come from the recipe), "
                f"not latent={self.latent}."
            )
        if self.family not in LAYERED and self.layers is not None:
            raise ZooError(
                f"{self.family} has one latent layer: give latent=, not layers={self.layers}; "
                "use family 'seatbelt' or 'chain' for depth."
            )
        for name in ("latent", "layers", "steps"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ZooError(f"{name} must be a positive integer, got {value!r}.")

    def resolve(self, recipe: Recipe) -> "Point":
        """The canonical point: defaults filled in, and aliases of one model made one point.

        The VAE (any family at beta = 1 with one layer) is the beta-TCVAE at beta = 1; a one-layer
        Seatbelt or chain is the beta-TCVAE of the top layer's size; ``steps`` equal to the
        recipe's is the recipe's model.
        """
        if self.steps == recipe.steps:
            return replace(self, steps=None).resolve(recipe)
        if self.family in LAYERED:
            layers = self.layers if self.layers is not None else 4
            if not 1 <= layers <= len(recipe.seatbelt_latents):
                raise ZooError(
                    f"{self.family}: layers must be in 1..{len(recipe.seatbelt_latents)} for the "
                    f"{recipe.dataset} recipe's sizes {recipe.seatbelt_latents}, got {layers}."
                )
            if layers == 1:
                return Point(
                    "beta-tcvae",
                    self.dataset,
                    self.beta,
                    recipe.seatbelt_latents[-1],
                    None,
                    self.seed,
                    self.steps,
                ).resolve(recipe)
            return replace(self, layers=layers)
        latent = self.latent if self.latent is not None else recipe.latent
        if self.family == "vae" or self.beta == 1.0:
            return Point("beta-tcvae", self.dataset, 1.0, latent, None, self.seed, self.steps)
        return replace(self, latent=latent)

    @property
    def label(self) -> str:
        name = {
            "vae": "VAE",
            "beta-vae": "beta-VAE",
            "beta-tcvae": "beta-TCVAE",
            "seatbelt": "Seatbelt",
            "chain": "chain",
        }[self.family]
        if self.family == "beta-tcvae" and self.beta == 1.0:
            name = "VAE"
        letter, size = ("L", self.layers) if self.family in LAYERED else ("d", self.latent)
        size = (
            "recipe" if size is None else size
        )  # unresolved: Point.resolve takes it from the recipe
        steps = f" steps={self.steps}" if self.steps is not None else ""
        return f"{name} beta={self.beta:g} {letter}={size} seed={self.seed}{steps}"


@dataclass(frozen=True)
class BatteryRequest:
    """An attack battery against one zoo model, on held-out (``split="test"``) or training images.

    ``pairs``: explicit (source, target) indices into the split (e.g. a heart and the same heart
    rotated, Fig 4), else the protocol draws them. ``solver``: a name of
    :data:`seatbelt.attacks.battery.SOLVERS` (the chapters use ``"batched"``;
    ``"batched-two-starts"`` also starts every problem at the target). ``solver_options``:
    (name, value) pairs that configure the solver (e.g. ``(("max_iter", 200),)``).
    """

    point: Point
    protocol: AttackProtocol
    solver: str = "batched"
    attacks: tuple[str | Attack, ...] | None = None
    split: str = "test"
    keep_images: bool = True
    solver_options: tuple[tuple[str, Any], ...] = ()
    pairs: tuple[tuple[int, int], ...] | None = None

    def __post_init__(self):
        if self.pairs is not None:
            object.__setattr__(self, "pairs", tuple((int(s), int(t)) for s, t in self.pairs))
        object.__setattr__(self, "solver_options", tuple(tuple(o) for o in self.solver_options))
        if self.split not in SPLITS:
            raise ZooError(f"split must be one of {SPLITS}, got {self.split!r}.")
        if self.solver not in SOLVERS:
            raise ZooError(f"unknown solver {self.solver!r}; choose one of {tuple(SOLVERS)}.")
        if self.attacks is not None:
            object.__setattr__(self, "attacks", tuple(Attack.coerce(a) for a in self.attacks))


@dataclass
class Needs:
    """What a chapter asks of the zoo: models to train and batteries to run (both deduplicated)."""

    models: list[Point] = field(default_factory=list)
    batteries: list[BatteryRequest] = field(default_factory=list)

    def __post_init__(self):
        self.models = list(dict.fromkeys([*self.models, *(b.point for b in self.batteries)]))
        self.batteries = list(dict.fromkeys(self.batteries))


# ---------------------------------------------------------------------------------------------
# recipes and data


def params_root() -> Path:
    """The ``params/`` folder: $SEATBELT_PARAMS, else the one of the repository this package sits
    in."""
    if os.environ.get(PARAMS_ENV):
        return Path(os.environ[PARAMS_ENV])
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "params").is_dir() and (parent / "_toc.yml").exists():
            return parent / "params"
    raise ZooError(
        f"no params/ folder found above {here}; set ${PARAMS_ENV} to the book's params directory."
    )


@functools.lru_cache(maxsize=None)
def _recipes(path: Path, mtime: int) -> dict[str, Recipe]:
    """Every recipe of a zoo.yaml, each value read as its :class:`Recipe` field's type; an error
    names the file, the recipe and the key (before anything trains)."""
    content = yaml.safe_load(path.read_text()) or {}
    datasets = content.get("datasets") if isinstance(content, dict) else None
    if not isinstance(datasets, dict):
        raise ZooError(f"{path}: needs a mapping `datasets:` of dataset name to recipe.")
    hints = get_type_hints(Recipe)
    known = set(hints) - {"dataset"}
    shared = {k: v for k, v in content.items() if k != "datasets"}
    recipes = {}
    for name, values in datasets.items():
        if not isinstance(values, dict):
            raise ZooError(f"{path}: the recipe for {name} must be a mapping of keys to values.")
        unknown = (set(values) | set(shared)) - known
        if unknown:
            raise ZooError(
                f"{path}: unknown recipe keys {sorted(unknown)} for {name}; known: {sorted(known)}."
            )
        read = {}
        for key, value in {**shared, **values}.items():
            try:
                read[key] = _recipe_value(value, hints[key])
            except ValueError as e:
                raise ZooError(f"{path}: recipe {name}, key {key}: {e}.") from None
        try:
            recipes[name] = Recipe(dataset=name, **read)
        except ZooError as e:
            raise ZooError(f"{path}: {e}") from None
    return recipes


def _recipe_value(value: Any, hint: Any) -> Any:
    """``value`` as a field of type ``hint`` (int, float, str, ``X | None``, ``tuple[X, ...]``);
    ValueError if it is not one. Numbers written as strings are read as numbers: YAML 1.1 reads
    ``1e-3`` as a string."""
    if type(None) in get_args(hint):
        if value is None:
            return None
        (hint,) = [a for a in get_args(hint) if a is not type(None)]
    if get_origin(hint) is tuple:
        if type(value) not in (list, tuple):
            raise ValueError(f"expected a list, got {value!r}")
        return tuple(_recipe_value(v, get_args(hint)[0]) for v in value)
    if hint is str:
        if type(value) is not str:
            raise ValueError(f"expected a string, got {value!r}")
        return value
    if type(value) not in (int, float, str):  # a bool is not a number here
        raise ValueError(f"expected {hint.__name__}, got {value!r}")
    if type(value) is int:
        return hint(value)
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"expected {hint.__name__}, got {value!r}") from None
    if not math.isfinite(number) or (hint is int and not number.is_integer()):
        expected = "an integer" if hint is int else "a finite number"
        raise ValueError(f"expected {expected}, got {value!r}")
    return hint(number)


def recipe(profile: str, dataset: str) -> Recipe:
    """The training recipe of ``dataset`` at ``profile`` (``params/<profile>/zoo.yaml``)."""
    path = params_root() / profile / "zoo.yaml"
    if not path.exists():
        available = sorted(p.parent.name for p in params_root().glob("*/zoo.yaml"))
        raise ZooError(
            f"profile {profile!r} has no zoo recipe ({path} is missing); "
            f"profiles with one: {available}."
        )
    recipes = _recipes(path, path.stat().st_mtime_ns)
    if dataset not in recipes:
        raise ZooError(f"{path} has no recipe for {dataset!r}; it has {sorted(recipes)}.")
    return recipes[dataset]


def reach(
    datasets: str | Sequence[str], profile: str, *, steps: int | None = None
) -> dict[str, Any]:
    """How far a verdict on models of ``datasets`` reaches, as the fields of a claim check
    (:class:`seatbelt.claims.ClaimCheck`): the dataset(s), and the training images per model at
    ``profile`` (``steps`` for points trained to another length) and at the paper profile. Of
    several datasets, the one whose models saw the smallest share of the paper's images speaks."""
    names = [datasets] if isinstance(datasets, str) else list(datasets)
    shares = []
    for name in names:
        own, paper = recipe(profile, name), recipe("paper", name)
        images = (steps or own.steps) * own.batch_size
        shares.append((images / (paper.steps * paper.batch_size), images, paper))
    _, images, paper = min(shares, key=lambda share: share[0])
    return {
        "dataset": ", ".join(names),
        "training_images": images,
        "paper_training_images": paper.steps * paper.batch_size,
    }


def beta_scale(dataset: str, profile: str) -> float:
    """How much more every KL and TC term weighs against the likelihood at ``profile`` than at the
    paper profile: (pixels / std^2 at the paper profile) / (the same at ``profile``). The Gaussian
    likelihood sums one term of weight 1 / std^2 per pixel while the KL and TC terms do not grow
    with the image, so a profile's beta acts as beta times this at the paper's resolution (1 when
    the recipes keep pixels / std^2 equal, as params/cpu/zoo.yaml does)."""

    def weight(r: Recipe) -> float:
        side = r.image_size or 1  # None: the data's own size, the same at every profile
        return side**2 / r.likelihood_std**2

    return weight(recipe("paper", dataset)) / weight(recipe(profile, dataset))


# Most problems converge long before a large cap: at cpu, the two-start solver at a cap of 1,000
# ended after 150 to 185 iterations a row on average, and a layerwise battery with its controls took
# about 34 s where this estimate gives 37 s (bench/solver_threads.py, bench/zoo_parallel.py).
CONVERGED_EVALUATIONS = 250

REFERENCE_EVAL_COST = (
    10.0  # one scipy evaluation in units of the batched solver's (bench/attacks.py)
)
COST_FIELDS = ("images_per_s", "attack_eval_ms")  # estimates for the plan; they change no result


def recipes_digest(profile: str) -> str:
    """A hash of what ``params/<profile>/zoo.yaml`` sets that changes results (not the cost
    estimates)."""
    path = params_root() / profile / "zoo.yaml"
    if not path.exists():
        return ""
    recipes = _recipes(path, path.stat().st_mtime_ns)
    payload = {
        name: {k: v for k, v in asdict(r).items() if k not in COST_FIELDS}
        for name, r in recipes.items()
    }
    return cache.config_key(payload)


@functools.lru_cache(maxsize=8)
def _dataset(r: Recipe) -> tuple[Data, Data]:
    """(train, test) for a recipe: a seeded random split without overlap (CIFAR-10, SVHN: the
    official splits)."""
    n = r.n_train + r.n_test
    if r.dataset in ("cifar10", "svhn"):
        load = cifar10 if r.dataset == "cifar10" else svhn
        return _sample(load("train"), r.n_train), _sample(load("test"), r.n_test)
    if r.dataset == "dsprites":
        full = dsprites(
            size=r.image_size or 64, n=n, seed=DATA_SEED
        )  # stored in index order: shuffle below
    elif r.dataset == "swissroll":
        full = swiss_roll(n=n, seed=DATA_SEED)
    else:
        full = celeba(size=r.image_size or 64)
    if len(full) < n:
        raise ZooError(f"the {r.dataset} recipe wants {n} images, the data has {len(full)}.")
    order = torch.randperm(len(full), generator=torch.Generator().manual_seed(DATA_SEED))
    return full.subset(order[: r.n_train]), full.subset(order[r.n_train : n])


def _sample(data: Data, n: int) -> Data:
    if n > len(data):
        raise ZooError(
            f"the recipe wants {n} {data.name} images of split {data.meta.get('split')}, "
            f"there are {len(data)}."
        )
    if n == len(data):
        return data
    return data.subset(
        torch.randperm(len(data), generator=torch.Generator().manual_seed(DATA_SEED))[:n]
        .sort()
        .values
    )


def data(dataset: str, profile: str = "cpu", split: str = "train") -> Data:
    """The images the zoo trains on (``split="train"``) or holds out for evaluation and attacks
    (``"test"``)."""
    if split not in SPLITS:
        raise ZooError(f"split must be one of {SPLITS}, got {split!r}.")
    train, test = _dataset(recipe(profile, dataset))
    return train if split == "train" else test


# ---------------------------------------------------------------------------------------------
# models


def model_config(point: Point, r: Recipe, data_shape: tuple[int, ...]) -> ModelConfig:
    """The architecture and objective of a (resolved) zoo point."""
    net = "mlp" if len(data_shape) == 1 else "conv"
    common = dict(
        beta=point.beta,
        data_shape=data_shape,
        net=net,
        likelihood_std=r.likelihood_std,
        mlp_hidden=r.mlp_hidden,
        tc_estimator=r.tc_estimator,
    )
    if point.family in LAYERED:
        latents, hidden = seatbelt_sizes(point.layers, r.seatbelt_latents, r.seatbelt_hidden)
        return ModelConfig(
            kind="seatbelt",
            objective="beta_tcvae",
            latent_sizes=latents,
            hidden_sizes=hidden,
            likelihood_layers="all" if point.family == "seatbelt" else "bottom",
            free_bits=r.free_bits,
            **common,
        )
    objective = "beta_vae" if point.family == "beta-vae" else "beta_tcvae"
    return ModelConfig(kind="vae", objective=objective, latent_sizes=(point.latent,), **common)


def _prepare(point: Point, profile: str) -> tuple[Point, Recipe, ModelConfig, Data]:
    r = recipe(profile, point.dataset)
    point = point.resolve(r)
    train = data(point.dataset, profile, "train")
    return point, r, model_config(point, r, train.item_shape), train


def get(point: Point, profile: str = "cpu", *, device=None, cache_dir=None) -> Trained:
    """The trained model of ``point`` at ``profile``: from the cache, or trained (then cached)."""
    point, r, config, train = _prepare(point, profile)
    return fit(config, train, r.train_config(point), cache_dir=cache_dir, device=device)


def model(
    family: str,
    dataset: str,
    *,
    beta: float = 1.0,
    latent: int | None = None,
    layers: int | None = None,
    seed: int = 0,
    profile: str = "cpu",
    device=None,
    cache_dir=None,
) -> Trained:
    """``get(Point(family, dataset, beta, latent, layers, seed), profile)``."""
    return get(
        Point(family, dataset, beta, latent, layers, seed),
        profile,
        device=device,
        cache_dir=cache_dir,
    )


def _model_entry(point: Point, profile: str, cache_dir) -> tuple[Path, dict[str, Any]]:
    """Where ``point``'s model is cached, and the meta its entry must match (nothing is trained)."""
    point, r, config, train = _prepare(point, profile)
    return cache_entry(config, train, r.train_config(point), cache_dir)


def is_cached(point: Point, profile: str = "cpu", *, cache_dir=None) -> bool:
    """Whether ``point``'s model is cached and sound. Read-only, for the plan: it trains, moves and
    deletes nothing; a damaged entry is reported in a warning (and retrained by :func:`get`)."""
    path, meta = _model_entry(point, profile, cache_dir)
    return cache.is_complete(path, meta, cache.CHECKPOINT_FILES)


# ---------------------------------------------------------------------------------------------
# attack batteries


def _battery_entry(
    request: BatteryRequest, profile: str, cache_dir
) -> tuple[Path, dict[str, Any], Data]:
    """Where a (resolved) request's battery is cached, its meta, and the attacked data; keyed by
    the model's key, so neither a hit nor the plan needs the model."""
    attacked = data(request.point.dataset, profile, request.split)
    solver = _solver(request)
    meta = {
        "model": _model_entry(request.point, profile, cache_dir)[0].name,
        "protocol": asdict(request.protocol),
        "attacks": [asdict(a) for a in (request.attacks or request.protocol.attacks)],
        "solver": solver.name,
        "solver_config": asdict(solver) if is_dataclass(solver) else {},
        "data": cache.data_identity(attacked),
        "keep_images": request.keep_images,
        "pairs": request.pairs,
        "code": cache.code_digest(ATTACK_SOURCES),
    }
    meta = json.loads(json.dumps(meta, default=str))
    return cache.cache_root(cache_dir) / "batteries" / cache.config_key(meta), meta, attacked


def _solver(request: BatteryRequest):
    return SOLVERS[request.solver](**dict(request.solver_options))


def battery(
    point_or_request: Point | BatteryRequest,
    protocol: AttackProtocol | None = None,
    *,
    profile: str = "cpu",
    solver: str = "batched",
    attacks=None,
    split: str = "test",
    keep_images: bool = True,
    solver_options: dict[str, Any] | None = None,
    device=None,
    cache_dir=None,
) -> AttackResults:
    """The attack results of a battery against a zoo model: from the cache, or run (then cached).

    Give a :class:`BatteryRequest`, or a :class:`Point` and a protocol with the request's options.
    The frame's ``model`` column is the point's label.
    """
    if isinstance(point_or_request, BatteryRequest):
        request = point_or_request
    else:
        if protocol is None:
            raise ZooError("battery(point, protocol): give the AttackProtocol to run.")
        request = BatteryRequest(
            point_or_request,
            protocol,
            solver,
            attacks,
            split,
            keep_images,
            tuple(sorted((solver_options or {}).items())),
        )
    r = recipe(profile, request.point.dataset)
    request = replace(request, point=request.point.resolve(r))
    path, meta, attacked = _battery_entry(request, profile, cache_dir)

    def run() -> AttackResults:
        trained = get(request.point, profile, device=device, cache_dir=cache_dir)
        pairs = np.asarray(request.pairs, dtype=np.int64) if request.pairs is not None else None
        return run_battery(
            trained.model,
            attacked,
            request.protocol,
            attacks=request.attacks,
            solver=_solver(request),
            name=request.point.label,
            pairs=pairs,
            keep_images=request.keep_images,
        )

    def load(entry: Path) -> AttackResults:
        stored = cache.load_entry(entry, meta)
        return AttackResults.from_parts(
            stored.frames["frame"], stored.tensors, stored.content["meta"]
        )

    def write(directory: Path, results: AttackResults) -> None:
        frame, images, battery_meta = results.to_parts()
        entry = cache.Entry(images, {"frame": frame}, {"meta": battery_meta})
        cache.write_entry(directory, entry, meta)

    return cache.through(path, load, run, write)[0]


def battery_is_cached(request: BatteryRequest, profile: str = "cpu", *, cache_dir=None) -> bool:
    """Whether a battery is cached and sound; read-only like :func:`is_cached`, and a cached
    battery needs no model."""
    r = recipe(profile, request.point.dataset)
    request = replace(request, point=request.point.resolve(r))
    path, meta, _ = _battery_entry(request, profile, cache_dir)
    return cache.is_complete(path, meta, cache.ENTRY_FILES)


# ---------------------------------------------------------------------------------------------
# cost estimates (the plan)


def training_minutes(point: Point, profile: str) -> float:
    """Estimated minutes to train ``point``: images seen over the recipe's measured images/s."""
    r = recipe(profile, point.dataset)
    point = point.resolve(r)
    depth = 1 + 0.09 * (
        point.layers or 1
    )  # 32x32: a Seatbelt of L = 4 costs about +35% (bench/train_throughput.py)
    return r.train_config(point).steps * r.batch_size / r.images_per_s * depth / 60


def battery_minutes(request: BatteryRequest, profile: str) -> float:
    """Estimated minutes of a battery: problems x evaluations per problem x the recipe's cost of
    one."""
    r = recipe(profile, request.point.dataset)
    protocol = request.protocol
    attacks = request.attacks or protocol.attacks
    n_pairs = len(request.pairs) if request.pairs is not None else protocol.n_pairs
    problems = n_pairs * len(protocol.lambda_values()) * len(attacks)
    solver = _solver(request)
    capped = min(getattr(solver, "max_evals", 1000), 1.2 * getattr(solver, "max_iter", 1000))
    evaluations = min(capped, CONVERGED_EVALUATIONS)
    # The controls: the cap check runs up to 10x as long; the reference solves one problem at a
    # time (about 10x the batched cost of an evaluation, bench/attacks.py) for about 300
    # evaluations at the chapters' settings.
    controls = len(attacks) * (
        protocol.cap_check * min(10 * capped, 4 * CONVERGED_EVALUATIONS)
        + protocol.reference_check * 300 * REFERENCE_EVAL_COST
    )
    return (problems * evaluations + controls) * r.attack_eval_ms / 1000 / 60


# ---------------------------------------------------------------------------------------------
# fixed-budget attacks (book/threat_models.ipynb) and attacks on defended models
# (book/defences.ipynb), cached beside the batteries


@dataclass(frozen=True)
class BudgetRequest:
    """A fixed-budget attack (:func:`seatbelt.attacks.budget.run_budgeted`) against one zoo model.

    ``attack`` carries the budget (norm and eps, in the data's units: images in [-1, 1]).
    ``protocol`` draws the inputs as a battery draws its pairs (``n_pairs`` and ``seed``; the
    pair's target for a targeted attack, the source alone for an untargeted one) and seeds the
    random starts; its lambdas are not used. ``restarts``: random starts per input, the worst case
    kept. ``solver`` and ``solver_options`` as in :class:`BatteryRequest`.
    """

    point: Point
    attack: Attack
    protocol: AttackProtocol
    restarts: int = 10
    solver: str = "batched"
    solver_options: tuple[tuple[str, Any], ...] = ()
    split: str = "test"

    def __post_init__(self):
        object.__setattr__(self, "attack", Attack.coerce(self.attack))
        object.__setattr__(self, "solver_options", tuple(tuple(o) for o in self.solver_options))
        if self.attack.eps is None:
            raise ZooError(
                f"a BudgetRequest needs a budget: Attack({self.attack.kind!r}, norm=..., eps=...); "
                "the penalised attack is a BatteryRequest."
            )
        if (
            isinstance(self.restarts, bool)
            or not isinstance(self.restarts, int)
            or (self.restarts < 1)
        ):
            raise ZooError(f"restarts must be a positive integer, got {self.restarts!r}.")
        if self.split not in SPLITS:
            raise ZooError(f"split must be one of {SPLITS}, got {self.split!r}.")
        if self.solver not in SOLVERS:
            raise ZooError(f"unknown solver {self.solver!r}; choose one of {tuple(SOLVERS)}.")


@dataclass(frozen=True)
class DefendedRequest:
    """A battery or budgeted attack against a zoo model defended by HMC
    (:class:`seatbelt.defences.DefendedModel`).

    ``adaptive`` False: the attack of ``request`` solved on the plain model (the cached plain
    result) and its distortions measured on the defended one (Kuzina et al.'s evaluation);
    True: solved through the chain, gradients through every leapfrog step averaged over the
    chain's draws (EOT). ``hmc`` None measures the plain model itself (no defence).
    """

    request: BatteryRequest | BudgetRequest
    hmc: HMC | None
    adaptive: bool = False

    def __post_init__(self):
        if not isinstance(self.request, (BatteryRequest, BudgetRequest)):
            raise ZooError(
                f"a DefendedRequest wraps a BatteryRequest or BudgetRequest, got "
                f"{type(self.request).__name__}."
            )
        if self.hmc is None and self.adaptive:
            raise ZooError("adaptive=True attacks through a chain: give the HMC settings.")
        if self.request.solver == "scipy" and self.adaptive:
            raise ZooError("the adaptive attack needs a batched solver, not scipy's reference.")

    @property
    def point(self) -> Point:
        return self.request.point


def _inputs(request: BudgetRequest, attacked: Data) -> tuple[np.ndarray, torch.Tensor, Any]:
    """The (n, 2) source/target indices, the sources and the targets (None when untargeted)."""
    labels = attacked.labels.numpy() if attacked.labels is not None else None
    pairs = request.protocol.draw_pairs(len(attacked), labels)
    sources = attacked.get(torch.as_tensor(pairs[:, 0]))
    targets = None if request.attack.untargeted else attacked.get(torch.as_tensor(pairs[:, 1]))
    return pairs, sources, targets


def _budget_entry(
    request: BudgetRequest, profile: str, cache_dir
) -> tuple[Path, dict[str, Any], Data]:
    attacked = data(request.point.dataset, profile, request.split)
    solver = _solver(request)
    meta = {
        "kind": "budgeted",
        "model": _model_entry(request.point, profile, cache_dir)[0].name,
        "attack": asdict(request.attack),
        "protocol": asdict(request.protocol),
        "restarts": request.restarts,
        "solver": solver.name,
        "solver_config": asdict(solver) if is_dataclass(solver) else {},
        "data": cache.data_identity(attacked),
        "code": cache.code_digest(ATTACK_SOURCES),
    }
    meta = json.loads(json.dumps(meta, default=str))
    return cache.cache_root(cache_dir) / "batteries" / cache.config_key(meta), meta, attacked


def resolved(request, profile: str):
    """``request`` with its point (or its wrapped request's point) resolved to the canonical one."""
    if isinstance(request, DefendedRequest):
        return replace(request, request=resolved(request.request, profile))
    r = recipe(profile, request.point.dataset)
    return replace(request, point=request.point.resolve(r))


def _label_budget(results: BudgetResults, label: str, pairs: np.ndarray) -> BudgetResults:
    frame = results.frame
    frame.insert(0, "model", label)
    frame["source"] = pairs[frame["input"].to_numpy(), 0]
    frame["target"] = pairs[frame["input"].to_numpy(), 1] if results.targets.numel() else -1
    results.meta["pairs"] = pairs.tolist()
    return results


def budgeted(
    request: BudgetRequest, profile: str = "cpu", *, device=None, cache_dir=None
) -> BudgetResults:
    """The results of a fixed-budget attack against a zoo model: from the cache, or run (then
    cached). The frame gains ``model`` (the point's label), ``source`` and ``target`` (indices
    into the split; -1 when untargeted)."""
    request = resolved(request, profile)
    path, meta, attacked = _budget_entry(request, profile, cache_dir)

    def run() -> BudgetResults:
        trained = get(request.point, profile, device=device, cache_dir=cache_dir)
        pairs, sources, targets = _inputs(request, attacked)
        results = run_budgeted(
            trained.model,
            request.attack,
            sources,
            targets,
            restarts=request.restarts,
            solver=_solver(request),
            seed=request.protocol.seed,
        )
        return _label_budget(results, request.point.label, pairs)

    def write(directory: Path, results: BudgetResults) -> None:
        _write_budget(directory, results, meta)

    return cache.through(path, lambda entry: _load_budget(entry, meta), run, write)[0]


def _load_budget(entry: Path, meta: dict[str, Any]) -> BudgetResults:
    stored = cache.load_entry(entry, meta)
    return BudgetResults.from_parts(stored.frames["frame"], stored.tensors, stored.content["meta"])


def _write_budget(directory: Path, results: BudgetResults, meta: dict[str, Any]) -> None:
    frame, images, budget_meta = results.to_parts()
    entry = cache.Entry(images, {"frame": frame}, {"meta": budget_meta})
    cache.write_entry(directory, entry, meta)


def budget_is_cached(request: BudgetRequest, profile: str = "cpu", *, cache_dir=None) -> bool:
    """Whether a budgeted attack is cached and sound; read-only, and needs no model."""
    path, meta, _ = _budget_entry(resolved(request, profile), profile, cache_dir)
    return cache.is_complete(path, meta, cache.ENTRY_FILES)


def budget_minutes(request: BudgetRequest, profile: str) -> float:
    """Estimated minutes: inputs x restarts x evaluations per problem x the recipe's cost of one."""
    r = recipe(profile, request.point.dataset)
    solver = _solver(request)
    evaluations = min(getattr(solver, "max_evals", 1000), 1.2 * getattr(solver, "max_iter", 1000))
    problems = request.protocol.n_pairs * request.restarts
    return problems * evaluations * r.attack_eval_ms / 1000 / 60


DEFENCE_SOURCES = ATTACK_SOURCES + ("defences",)


def _defended_entry(
    request: DefendedRequest, profile: str, cache_dir
) -> tuple[Path, dict[str, Any], Data]:
    base = request.request
    entry = _budget_entry if isinstance(base, BudgetRequest) else _battery_entry
    _, base_meta, attacked = entry(base, profile, cache_dir)
    meta = {
        "kind": "defended",
        "attack": base_meta,
        "hmc": asdict(request.hmc) if request.hmc is not None else None,
        "adaptive": request.adaptive,
        "code": cache.code_digest(DEFENCE_SOURCES),
    }
    meta = json.loads(json.dumps(meta, default=str))
    return cache.cache_root(cache_dir) / "batteries" / cache.config_key(meta), meta, attacked


def defended(
    request: DefendedRequest, profile: str = "cpu", *, device=None, cache_dir=None
) -> AttackResults | BudgetResults:
    """The results of an attack on a zoo model defended by HMC (:class:`DefendedRequest`): from
    the cache, or run (then cached). ``hmc`` None is the plain model's result (:func:`battery` or
    :func:`budgeted`). The ``model`` column is the point's label with " + HMC" when defended."""
    request = resolved(request, profile)
    base = request.request
    budget = isinstance(base, BudgetRequest)
    if request.hmc is None:
        run_plain = budgeted if budget else battery
        return run_plain(base, profile=profile, device=device, cache_dir=cache_dir)
    path, meta, attacked = _defended_entry(request, profile, cache_dir)
    label = f"{base.point.label} + HMC"

    def run() -> AttackResults | BudgetResults:
        model = get(base.point, profile, device=device, cache_dir=cache_dir).model
        model.eval()
        defence = DefendedModel(model, request.hmc, adaptive=request.adaptive)
        if budget:
            pairs, sources, targets = _inputs(base, attacked)
            if request.adaptive:
                solver, restarts = _solver(base), base.restarts
            else:  # the plain model's worst case, measured on the defended one
                plain = budgeted(base, profile, device=device, cache_dir=cache_dir)
                solver, restarts = ReplayBudget(plain.distortions), 1
            results = run_budgeted(
                defence,
                base.attack,
                sources,
                targets,
                restarts=restarts,
                solver=solver,
                seed=base.protocol.seed,
            )
            return _label_budget(results, label, pairs)
        if not request.adaptive:
            plain = battery(
                replace(base, keep_images=True), profile=profile, device=device, cache_dir=cache_dir
            )
            return non_adaptive(defence, plain, base.protocol, attacks=base.attacks, name=label)
        pairs = np.asarray(base.pairs, dtype=np.int64) if base.pairs is not None else None
        return run_battery(
            defence,
            attacked,
            base.protocol,
            attacks=base.attacks,
            solver=_solver(base),
            name=label,
            pairs=pairs,
            keep_images=base.keep_images,
        )

    def load(entry: Path) -> AttackResults | BudgetResults:
        if budget:
            return _load_budget(entry, meta)
        stored = cache.load_entry(entry, meta)
        return AttackResults.from_parts(
            stored.frames["frame"], stored.tensors, stored.content["meta"]
        )

    def write(directory: Path, results) -> None:
        if budget:
            return _write_budget(directory, results, meta)
        frame, images, battery_meta = results.to_parts()
        entry = cache.Entry(images, {"frame": frame}, {"meta": battery_meta})
        cache.write_entry(directory, entry, meta)

    return cache.through(path, load, run, write)[0]


def attack(request, profile: str = "cpu", *, device=None, cache_dir=None):
    """The results of any attack request (battery, budgeted, defended): from the cache, or run."""
    if isinstance(request, BatteryRequest):
        return battery(request, profile=profile, device=device, cache_dir=cache_dir)
    if isinstance(request, BudgetRequest):
        return budgeted(request, profile, device=device, cache_dir=cache_dir)
    if isinstance(request, DefendedRequest):
        return defended(request, profile, device=device, cache_dir=cache_dir)
    raise ZooError(f"not an attack request: {request!r}")


def attack_is_cached(request, profile: str = "cpu", *, cache_dir=None) -> bool:
    """Whether any attack request (battery, budgeted, defended) is cached; read-only."""
    if isinstance(request, BatteryRequest):
        return battery_is_cached(request, profile, cache_dir=cache_dir)
    if isinstance(request, BudgetRequest):
        return budget_is_cached(request, profile, cache_dir=cache_dir)
    if request.hmc is None:
        return attack_is_cached(request.request, profile, cache_dir=cache_dir)
    path, meta, _ = _defended_entry(resolved(request, profile), profile, cache_dir)
    return cache.is_complete(path, meta, cache.ENTRY_FILES)


def attack_minutes(request, profile: str) -> float:
    """Estimated minutes of any attack request (the plan). Through a chain, every evaluation
    costs the chain's decoder passes, each with its backward pass and, when adaptive, a second
    order pass (measured at the cpu recipe's sizes: 16 to 20 ms per problem and evaluation
    through a chain of 26 passes, against 0.31 to 0.36 ms without, so about 2 plain
    evaluations per pass); measured on the plain model, it costs one pass per draw."""
    if isinstance(request, BatteryRequest):
        return battery_minutes(request, profile)
    if isinstance(request, BudgetRequest):
        return budget_minutes(request, profile)
    plain = attack_minutes(request.request, profile)
    if request.hmc is None:
        return plain
    passes = request.hmc.n_draws * request.hmc.gradient_evaluations
    if request.adaptive:
        return plain * passes * 2
    base = request.request
    problems = (
        base.protocol.n_pairs
        * len(base.protocol.lambda_values())
        * len(base.attacks or base.protocol.attacks)
        if isinstance(base, BatteryRequest)
        else base.protocol.n_pairs
    )
    return problems * passes * 2 * recipe(profile, base.point.dataset).attack_eval_ms / 60000


def attack_label(request) -> str:
    """A line naming an attack request, for the plan."""
    if isinstance(request, DefendedRequest):
        how = (
            "no defence"
            if request.hmc is None
            else (
                f"HMC {request.hmc.n_steps}x{request.hmc.n_leapfrog}x{request.hmc.n_draws}, "
                + ("adaptive" if request.adaptive else "non-adaptive")
            )
        )
        return f"{attack_label(request.request)} [{how}]"
    if isinstance(request, BudgetRequest):
        return (
            f"{request.attack.kind} {request.attack.norm} eps={request.attack.eps:g} x "
            f"{request.protocol.n_pairs} inputs x {request.restarts} restarts: "
            f"{request.point.label}"
        )
    attacks = ",".join(
        a.kind + ("" if a.layers == "all" else f"[{a.layers}]")
        for a in (request.attacks or request.protocol.attacks)
    )
    n_pairs = len(request.pairs) if request.pairs is not None else request.protocol.n_pairs
    return (
        f"{attacks} x {n_pairs} pairs x {len(request.protocol.lambda_values())} lambdas: "
        f"{request.point.label}"
    )
