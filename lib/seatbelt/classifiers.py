"""Downstream classifiers on a VAE's outputs (Section 5.3, Table 1), trained once and cached.

Table 1 asks what an attack on a VAE does to a task built on top of it. Three classifiers are
trained on the VAE's outputs for the clean training images, then shown the outputs for attacked
inputs:

* ``mlp_recon``, p_MLP(y | x_hat): a 2-layer MLP (two linear layers, one hidden ReLU layer) on
  the flattened reconstruction;
* ``conv_recon``, p_Conv(y | x_hat): a fully convolutional net on the reconstruction: stride-2
  convolutions with BatchNorm and ReLU, a 1x1 convolution to one map per class, and global
  average pooling to the logits (no dense layer);
* ``mlp_latent``, p_MLP(y | z): the same 2-layer MLP on the latent representation.

Representations (:func:`represent`): ``"recon"`` is the likelihood mean at the posterior means,
recon(x) = decode(E_q[z | x]), what an attack battery stores as ``adversarial_recons``;
``"latent"`` is the posterior means E_q[z_i | x] of every layer, bottom first, concatenated (for
the Seatbelt-VAE, whose likelihood reads all layers (Eq 3), the code that determines the
reconstruction; for a one-layer VAE simply the mean of q(z | x)).

The cache (like the model cache of :func:`seatbelt.training.fit`): a classifier's entry is
keyed by the classifier config, the run config, the identity of its training features (the
VAE's cache key, the representation and the identity of the images; or any description a
caller gives) and the digest of the sources that determine its weights (the VAE's plus this
module), so a classifier is trained once per (model, classifier, data, code).
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from scipy import stats
from torch import Tensor, nn
from tqdm import tqdm

from . import cache, claims, progress
from .attacks.results import AttackResults
from .data.base import Data
from .device import resolve, seed_everything
from .training import TrainConfig, Trained

NETS = ("mlp", "conv")
REPRESENTATIONS = ("recon", "latent")
# The paper's three classifiers: name -> (net, representation).
TASKS: dict[str, tuple[str, str]] = {
    "mlp_recon": ("mlp", "recon"),
    "conv_recon": ("conv", "recon"),
    "mlp_latent": ("mlp", "latent"),
}
TASK_LABELS = {"mlp_recon": "p_MLP(y|x)", "conv_recon": "p_Conv(y|x)", "mlp_latent": "p_MLP(y|z)"}
SOURCES = cache.WEIGHT_SOURCES + ("classifiers",)
_CHUNK = 512  # items per no-grad pass


@dataclass(frozen=True)
class ClassifierConfig:
    """A classifier's architecture: ``net`` "mlp" (hidden: its one hidden layer's width) or "conv"
    (channels: the stride-2 convolutions' filters) on inputs of ``input_shape``."""

    net: str
    input_shape: tuple[int, ...]
    n_classes: int
    hidden: int = 512
    channels: tuple[int, ...] = (32, 64, 128)

    def __post_init__(self):
        object.__setattr__(self, "input_shape", tuple(int(v) for v in self.input_shape))
        object.__setattr__(self, "channels", tuple(int(v) for v in self.channels))
        if self.net not in NETS:
            raise ValueError(f"ClassifierConfig.net={self.net!r} is not one of {NETS}.")
        if self.n_classes < 2 or self.hidden < 1 or not self.channels or min(self.channels) < 1:
            raise ValueError(f"need n_classes >= 2 and positive hidden/channels sizes; got {self}.")
        if not self.input_shape or min(self.input_shape) < 1:
            raise ValueError(f"input_shape must be positive sizes, got {self.input_shape}.")
        if self.net == "conv" and len(self.input_shape) != 3:
            raise ValueError(
                f"a conv classifier takes (C, H, W) images, got input_shape {self.input_shape}; "
                "use net='mlp' for vectors such as latent codes."
            )
        if self.net == "conv" and min(self.input_shape[1:]) < 2 ** len(self.channels):
            raise ValueError(
                f"{len(self.channels)} stride-2 convolutions need images of side >= "
                f"{2 ** len(self.channels)}, got {self.input_shape}; give fewer channels."
            )


class Classifier(nn.Module):
    """Logits (B, n_classes) of a batch of inputs (B, *input_shape)."""

    def __init__(self, config: ClassifierConfig):
        super().__init__()
        self.config = config
        if config.net == "mlp":
            self.body = nn.Sequential(
                nn.Flatten(),
                nn.Linear(math.prod(config.input_shape), config.hidden),
                nn.ReLU(),
                nn.Linear(config.hidden, config.n_classes),
            )
        else:
            layers: list[nn.Module] = []
            width = config.input_shape[0]
            for filters in config.channels:  # k4 s2 p1 halves the side, as in the VAE's encoder
                layers += [nn.Conv2d(width, filters, 4, 2, 1), nn.BatchNorm2d(filters), nn.ReLU()]
                width = filters
            layers += [nn.Conv2d(width, config.n_classes, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten()]
            self.body = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        if tuple(x.shape[1:]) != self.config.input_shape:
            raise ValueError(
                f"classifier for inputs {self.config.input_shape} got a batch of shape "
                f"{tuple(x.shape)}."
            )
        return self.body(x)


@dataclass
class Fitted:
    net: Classifier
    history: pd.DataFrame
    path: Path | None
    cached: bool


def train_step(
    net: Classifier, optimiser: torch.optim.Optimizer, x: Tensor, y: Tensor
) -> tuple[float, float]:
    """One Adam step on the cross-entropy of a batch; returns (loss, batch accuracy) before the
    step."""
    logits = net(x)
    loss = F.cross_entropy(logits, y)
    optimiser.zero_grad(set_to_none=True)
    loss.backward()
    optimiser.step()
    return float(loss.detach()), float((logits.argmax(-1) == y).float().mean())


def train(
    net: Classifier,
    x: Tensor,
    y: Tensor,
    config: TrainConfig,
    *,
    device=None,
    show_progress: bool = True,
) -> pd.DataFrame:
    """Train ``net`` in place on features ``x`` and labels ``y`` (Adam, cosine decay as the VAEs);
    one row of batch means per epoch."""
    config.validate()
    if len(x) != len(y) or len(x) < config.batch_size:
        raise ValueError(
            f"need as many labels as inputs ({len(x)} vs {len(y)}) and at least one batch of "
            f"{config.batch_size}."
        )
    if int(y.min()) < 0 or int(y.max()) >= net.config.n_classes:
        raise ValueError(
            f"labels must be in 0..{net.config.n_classes - 1}, got [{int(y.min())}, "
            f"{int(y.max())}]."
        )
    device = resolve(device)
    generator = seed_everything(config.seed)
    net.to(device).train()
    optimiser = torch.optim.Adam(net.parameters(), lr=config.lr)
    total = config.total_steps(len(x))
    schedule = (
        (lambda s: 0.5 * (1 + math.cos(math.pi * s / total)))
        if config.schedule == "cosine"
        else (lambda s: 1.0)
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimiser, schedule)
    out = progress.stream() if show_progress else None
    bar = tqdm(
        total=total,
        disable=out is None,
        file=out,
        mininterval=1.0,
        unit="step",
        desc=f"classifier {net.config.net} on {net.config.input_shape}",
    )
    rows, step, started = [], 0, time.perf_counter()
    while step < total:
        order = torch.randperm(len(x), generator=generator)
        losses, accuracies = [], []
        for start in range(
            0, len(x) - config.batch_size + 1, config.batch_size
        ):  # whole batches (BatchNorm)
            batch = order[start : start + config.batch_size]
            loss, accuracy = train_step(net, optimiser, x[batch].to(device), y[batch].to(device))
            if not math.isfinite(loss):
                raise FloatingPointError(
                    f"non-finite classifier loss at step {step}; try a smaller lr than {config.lr}."
                )
            scheduler.step()
            losses.append(loss)
            accuracies.append(accuracy)
            step += 1
            bar.update()
            if step == total:
                break
        rows.append(
            {
                "epoch": len(rows),
                "step": step,
                "loss": float(np.mean(losses)),
                "train_accuracy": float(np.mean(accuracies)),
                "seconds": time.perf_counter() - started,
            }
        )
    bar.close()
    net.eval()
    return pd.DataFrame(rows)


def cache_entry(
    config: ClassifierConfig,
    train_config: TrainConfig,
    source: dict[str, Any],
    cache_dir: str | os.PathLike | None = None,
) -> tuple[Path, dict[str, Any]]:
    """Where :func:`fit` caches this classifier, and the meta its entry must match."""
    meta = {
        "classifier_config": asdict(config),
        "train_config": asdict(train_config),
        "source": source,
        "code": cache.code_digest(SOURCES),
    }
    return cache.cache_root(cache_dir) / "classifiers" / cache.config_key(meta), meta


def fit(
    config: ClassifierConfig,
    features: Callable[[], tuple[Tensor, Tensor]],
    train_config: TrainConfig,
    *,
    source: dict[str, Any],
    cache_dir: str | os.PathLike | None = None,
    use_cache: bool = True,
    device=None,
    progress: bool = True,
) -> Fitted:
    """The classifier trained on ``features()`` (inputs, labels), or the one cached for the same
    ``source``.

    ``source`` identifies the training features (e.g. the VAE's cache key, the representation and
    the images' identity); ``features`` is only called on a cache miss, so a hit costs no VAE pass.
    The entry holds the state dict and the history, no pickle (:func:`seatbelt.cache.through`).
    """

    def run() -> tuple[Classifier, pd.DataFrame]:
        x, y = features()
        seed_everything(train_config.seed)  # the initial weights too
        net = Classifier(config)
        return net, train(net, x, y, train_config, device=device, show_progress=progress)

    if not use_cache:
        return Fitted(*run(), None, cached=False)
    path, meta = cache_entry(config, train_config, source, cache_dir)

    def load(entry: Path) -> tuple[Classifier, pd.DataFrame]:
        stored = cache.load_entry(entry, meta)  # the config is in meta, checked against ours
        net = Classifier(config)
        net.load_state_dict(stored.tensors)
        return net, stored.frames["history"]

    def write(directory: Path, result: tuple[Classifier, pd.DataFrame]) -> None:
        net, history = result
        cache.write_entry(directory, cache.Entry(net.state_dict(), {"history": history}), meta)

    (net, history), hit = cache.through(path, load, run, write)
    return Fitted(net.to(resolve(device)).eval(), history, path, cached=hit)


@torch.no_grad()
def represent(model, x: Tensor, representation: str, batch_size: int = _CHUNK) -> Tensor:
    """The VAE's ``representation`` of images ``x`` (module docstring), on the CPU, in eval mode."""
    if representation not in REPRESENTATIONS:
        raise ValueError(
            f"representation must be one of {REPRESENTATIONS}, got {representation!r}."
        )
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    out = []
    try:
        for chunk in x.split(batch_size):
            means = model.encode(chunk.to(device), sample=False).z
            out.append(
                (
                    model.decode(means) if representation == "recon" else torch.cat(means, dim=-1)
                ).cpu()
            )
    finally:
        model.train(was_training)
    return torch.cat(out)


def fit_tasks(
    trained: Trained,
    data: Data,
    train_config: TrainConfig,
    tasks: tuple[str, ...] = tuple(TASKS),
    *,
    hidden: int = 512,
    channels: tuple[int, ...] = (32, 64, 128),
    cache_dir=None,
    device=None,
    progress: bool = True,
) -> dict[str, Fitted]:
    """The paper's classifiers (``tasks``, names of :data:`TASKS`) on a trained VAE's outputs for
    ``data``.

    Each representation of the training images is computed at most once, and only when one of
    its classifiers is not cached. ``data`` needs labels.
    """
    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        raise ValueError(f"unknown classifier tasks {unknown}; the paper's are {tuple(TASKS)}.")
    if data.labels is None:
        raise ValueError(f"{data.name} has no labels: classifiers need a labelled training set.")
    if trained.path is None:
        raise ValueError(
            "the VAE has no cache entry (trained with use_cache=False): its classifiers cannot be "
            "keyed."
        )
    n_classes = int(data.labels.max()) + 1
    shapes = {"recon": tuple(data.item_shape), "latent": (sum(trained.model.latent_sizes),)}
    computed: dict[str, Tensor] = {}

    def features(representation: str) -> Callable[[], tuple[Tensor, Tensor]]:
        def compute() -> tuple[Tensor, Tensor]:
            if representation not in computed:
                computed[representation] = represent(
                    trained.model, data.get(slice(None)), representation
                )
            return computed[representation], data.labels

        return compute

    fitted = {}
    for task in tasks:
        net, representation = TASKS[task]
        config = ClassifierConfig(
            net, shapes[representation], n_classes, hidden=hidden, channels=channels
        )
        source = {
            "model": trained.path.name,
            "representation": representation,
            "data": cache.data_identity(data),
        }
        fitted[task] = fit(
            config,
            features(representation),
            train_config,
            source=source,
            cache_dir=cache_dir,
            device=device,
            progress=progress,
        )
    return fitted


@torch.no_grad()
def predict(net: Classifier, x: Tensor, batch_size: int = _CHUNK) -> Tensor:
    """Predicted labels (on the CPU) of inputs ``x``, in eval mode."""
    net.eval()
    device = next(net.parameters()).device
    return torch.cat([net(chunk.to(device)).argmax(-1).cpu() for chunk in x.split(batch_size)])


def proportion(successes: int, n: int, level: float = 0.95) -> tuple[float, float, float]:
    """(k / n, low, high): a proportion with its Wilson score interval (it stays inside [0, 1]
    and keeps its level near 0 and 1, where the normal approximation does not)."""
    if n < 1 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n and n >= 1, got {successes} of {n}.")
    interval = stats.binomtest(int(successes), int(n)).proportion_ci(
        confidence_level=level, method="wilson"
    )
    return successes / n, float(interval.low), float(interval.high)


def evaluate_attacks(
    model, battery: AttackResults, labels: Tensor, fitted: dict[str, Fitted]
) -> pd.DataFrame:
    """Each classifier on the clean and the attacked outputs of every attack of ``battery``.

    ``labels``: the class of every item of the attacked dataset (the battery's ``source`` and
    ``target`` columns index it). One row per (task, battery row): source_label, target_label,
    clean (the prediction on the clean source's output), attacked (on the attacked input's
    output), and clean_correct, attacked_correct (== source_label) and attacker_success
    (attacked == target_label). Recon tasks read the battery's stored reconstructions; latent
    tasks encode its stored inputs (sources, adversarial inputs) with ``model``.
    """
    frame = battery.frame
    if len(battery.adversarial) != len(frame):
        raise ValueError(
            "the battery kept no images; run it with keep_images=True to classify its outputs."
        )
    if frame["source"].isna().any():
        raise ValueError(
            "the battery's pairs were given as tensors: without dataset indices there are no "
            "labels."
        )
    pair = torch.as_tensor(frame["pair"].to_numpy(dtype=np.int64, copy=True))
    source_label = labels[torch.as_tensor(frame["source"].to_numpy(dtype=np.int64))]
    target_label = labels[torch.as_tensor(frame["target"].to_numpy(dtype=np.int64))]
    inputs = {
        "recon": (battery.source_recons[pair], battery.adversarial_recons),
        "latent": (
            represent(model, battery.sources, "latent")[pair],
            represent(model, battery.adversarial, "latent"),
        ),
    }
    parts = []
    for task, classifier in fitted.items():
        clean, attacked = (predict(classifier.net, x) for x in inputs[TASKS[task][1]])
        parts.append(
            pd.DataFrame(
                {
                    "task": task,
                    "row": frame.index,
                    "pair": frame["pair"].to_numpy(),
                    "lambda": frame["lambda"].to_numpy(),
                    "source_label": source_label.numpy(),
                    "target_label": target_label.numpy(),
                    "clean": clean.numpy(),
                    "attacked": attacked.numpy(),
                }
            )
        )
    out = pd.concat(parts, ignore_index=True)
    out["clean_correct"] = out["clean"] == out["source_label"]
    out["attacked_correct"] = out["attacked"] == out["source_label"]
    out["attacker_success"] = out["attacked"] == out["target_label"]
    return out


def summarise(evaluated: pd.DataFrame, level: float = 0.95) -> pd.DataFrame:
    """Per model and task of an :func:`evaluate_attacks` frame (with a ``model`` column): the clean
    accuracy, the accuracy under attack and the attacker's success, each with its Wilson interval,
    and the drop (attacked - clean accuracy over the same images: a paired Student-t interval)."""
    rows = []
    for (model, task), g in evaluated.groupby(["model", "task"], sort=False):
        row: dict[str, Any] = {"model": model, "task": task, "images": len(g)}
        for key, column in (
            ("clean", "clean_correct"),
            ("attacked", "attacked_correct"),
            ("success", "attacker_success"),
        ):
            row[key], row[f"{key}_low"], row[f"{key}_high"] = proportion(
                int(g[column].sum()), len(g), level
            )
        drop = claims.paired_comparison(
            "drop",
            g["attacked_correct"].astype(float),
            g["clean_correct"].astype(float),
            scale="difference",
            null=0.0,
            direction="less",
            level=level,
        )
        row.update(drop=drop.estimate, drop_low=drop.low, drop_high=drop.high)
        rows.append(row)
    return pd.DataFrame(rows)


def ranking(
    evaluated: pd.DataFrame, order: tuple[str, ...], level: float = 0.95, *, drop: bool = False
) -> list[claims.Effect]:
    """For each task, the paired differences between consecutive models of ``order`` over the same
    attacked images (the battery rows), each with a Student-t interval, positive when the ranking
    holds: of the accuracy under attack, the later model minus the earlier; with ``drop``, of the
    drop in accuracy the attack causes (clean minus attacked, Table 1's parentheses), the earlier
    model's minus the later's. With a ``seed`` column (the models of several training seeds,
    attacked on the same images), the interval resamples the seeds as well as the images
    (:func:`seatbelt.claims.paired_comparison`)."""
    rows = ["seed", "row"] if "seed" in evaluated.columns else "row"
    effects = []
    for task, g in evaluated.groupby("task", sort=False):
        score = g["attacked_correct"].astype(float)
        if drop:  # the negated drop: larger is better, as for the accuracy
            score = score - g["clean_correct"].astype(float)
        wide = g.assign(score=score).pivot(index=rows, columns="model", values="score")
        missing = [m for m in order if m not in wide.columns]
        if missing or wide.isna().any().any():
            raise ValueError(
                f"task {task}: every model of {order} needs the same attacked rows; "
                f"missing models {missing} or rows."
            )
        label = TASK_LABELS.get(task, task)
        for worse, better in zip(order, order[1:]):
            name = (
                f"accuracy drop under attack, {label}: {worse} - {better}"
                if drop
                else f"accuracy under attack, {label}: {better} - {worse}"
            )
            effects.append(
                claims.paired_comparison(
                    name,
                    wide[better],
                    wide[worse],
                    scale="difference",
                    null=0.0,
                    direction="greater",
                    level=level,
                )
            )
    return effects
