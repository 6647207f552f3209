"""Training: Adam with cosine decay (Appendix G), per-epoch metrics, and the model cache.

``fit`` is what chapters call: it returns the cached model when the same model config, run
config and data were trained before, and trains (then caches) it otherwise.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import pandas as pd
import torch
from tqdm import tqdm

from . import cache, progress
from .data.base import Data
from .device import keep_freed_memory, resolve, seed_everything
from .models import VAE, ModelConfig, build_model

SCHEDULES = ("cosine", "constant")


@dataclass(frozen=True)
class TrainConfig:
    """How to train. Give ``steps`` or ``epochs``, not both."""

    steps: int | None = None
    epochs: int | None = None
    batch_size: int = 1024
    lr: float = 1e-3
    schedule: str = "cosine"
    seed: int = 0

    def validate(self) -> None:
        if (self.steps is None) == (self.epochs is None):
            raise ValueError(
                f"give exactly one of TrainConfig.steps and .epochs, got steps={self.steps}, "
                f"epochs={self.epochs}."
            )
        if (self.steps or self.epochs) < 1 or self.batch_size < 1 or self.lr <= 0:
            raise ValueError(f"steps/epochs, batch_size and lr must be positive; got {self}.")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"TrainConfig.schedule={self.schedule!r} is not one of {SCHEDULES}.")

    def total_steps(self, n_items: int) -> int:
        return self.steps if self.steps is not None else self.epochs * (n_items // self.batch_size)


@dataclass
class Trained:
    """A trained model; ``path`` is its cache entry (named by its key, so results computed from the
    model are keyed by it even where the cache could not be written), None with use_cache=False."""

    model: VAE
    history: pd.DataFrame
    path: Path | None
    cached: bool


def complete_config(model_config: ModelConfig, data: Data) -> ModelConfig:
    """The model config with the dataset size the TC estimator needs, checked against the data."""
    if tuple(model_config.data_shape) != data.item_shape:
        raise ValueError(
            f"ModelConfig.data_shape={model_config.data_shape} but {data.name} items have shape "
            f"{data.item_shape}."
        )
    if model_config.dataset_size is None:
        return replace(model_config, dataset_size=len(data))
    return model_config


def train(
    model: VAE,
    data: Data,
    config: TrainConfig,
    device=None,
    show_progress: bool = True,
    channels_last: bool = True,
) -> pd.DataFrame:
    """Train ``model`` in place; return one row of batch-mean metrics per epoch (or partial epoch).

    Progress (steps and images/s) goes to :func:`seatbelt.progress.stream`, never into a page.
    Images train channels-last unless ``channels_last=False`` (1.1x to 1.4x faster convolutions
    on a CPU); the model is handed back in the default layout, so a model fresh from training and
    one loaded from the cache compute the same numbers.
    """
    config.validate()
    if config.batch_size > len(data):
        raise ValueError(
            f"batch_size={config.batch_size} exceeds the {len(data)} items of {data.name}."
        )
    device = resolve(device)
    if device.type == "cpu":
        keep_freed_memory()
    layout = (
        torch.channels_last
        if channels_last and len(data.item_shape) == 3
        else torch.contiguous_format
    )
    generator = seed_everything(config.seed)
    model.to(device, memory_format=layout).train()
    optimiser = torch.optim.Adam(model.parameters(), lr=config.lr)
    total = config.total_steps(len(data))
    schedule = (
        (lambda s: 0.5 * (1 + math.cos(math.pi * s / total)))
        if config.schedule == "cosine"
        else (lambda s: 1.0)
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimiser, schedule)

    rows, sums, count, step, epoch = [], {}, 0, 0, 0
    started = time.perf_counter()
    out = progress.stream() if show_progress else None
    bar = tqdm(
        total=total,
        disable=out is None,
        file=out,
        mininterval=1.0,
        unit="step",
        desc=f"training {model.config.kind} {model.config.objective} beta={model.config.beta:g}",
    )
    while step < total:
        for x in data.batches(config.batch_size, generator=generator, device=device):
            loss = model.loss(x.contiguous(memory_format=layout))
            if not torch.isfinite(loss.total):
                raise FloatingPointError(
                    f"non-finite loss at step {step} (terms {_floats(loss.terms)}) training "
                    f"{model.config} with {config}; try a smaller lr or a larger likelihood_std."
                )
            optimiser.zero_grad(set_to_none=True)
            loss.total.backward()
            optimiser.step()
            scheduler.step()
            for name, value in {"loss": loss.total, **loss.terms}.items():
                sums[name] = sums.get(name, 0.0) + float(value.detach())
            count += 1
            step += 1
            bar.update()
            if step % 25 == 0:
                bar.set_postfix_str(
                    f"{step * config.batch_size / (time.perf_counter() - started):,.0f} img/s",
                    refresh=False,
                )
            if step == total:
                break
        elapsed = time.perf_counter() - started
        rows.append(
            {
                "epoch": epoch,
                "step": step,
                **{k: v / count for k, v in sums.items()},
                "lr": scheduler.get_last_lr()[0],
                "seconds": elapsed,
                "images_per_s": step * config.batch_size / elapsed,
            }
        )
        sums, count, epoch = {}, 0, epoch + 1
    bar.close()
    model.to(memory_format=torch.contiguous_format).eval()
    return pd.DataFrame(rows)


def cache_entry(
    model_config: ModelConfig,
    data: Data,
    train_config: TrainConfig,
    cache_dir: str | os.PathLike | None = None,
) -> tuple[Path, dict]:
    """Where :func:`fit` caches this model, and the meta the entry must match.

    The key covers the model config, the run config, the data's identity (its name, loader
    parameters and a hash of its items) and the sources that determine the weights
    (:func:`seatbelt.cache.code_digest`).
    """
    model_config = complete_config(model_config, data)
    meta = {
        "train_config": asdict(train_config),
        "data": cache.data_identity(data),
        "model_config": model_config.to_dict(),
        "code": cache.code_digest(),
    }
    return cache.cache_root(cache_dir) / "models" / cache.config_key(meta), meta


def fit(
    model_config: ModelConfig,
    data: Data,
    train_config: TrainConfig,
    *,
    cache_dir: str | os.PathLike | None = None,
    use_cache: bool = True,
    device=None,
    progress: bool = True,
) -> Trained:
    """Train a model for ``data``, or load the identical model trained before (:func:`cache_entry`).

    Corrupt or mismatched cache entries are retrained; concurrent calls for one model train it
    once; a cache that cannot be written costs a warning, not the model
    (:func:`seatbelt.cache.through`).
    """
    model_config = complete_config(model_config, data)
    train_config.validate()
    device = resolve(device)

    def run() -> tuple[VAE, pd.DataFrame]:
        seed_everything(train_config.seed)  # the initial weights too
        model = build_model(model_config)
        return model, train(model, data, train_config, device=device, show_progress=progress)

    if not use_cache:
        return Trained(*run(), None, cached=False)
    path, meta = cache_entry(model_config, data, train_config, cache_dir)
    model, history, hit = cache.trained(path, meta, device, run)
    return Trained(model, history, path, cached=hit)


def _floats(terms: dict[str, torch.Tensor]) -> dict[str, float]:
    return {k: float(v.detach()) for k, v in terms.items()}
