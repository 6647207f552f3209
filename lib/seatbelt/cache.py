"""Checkpoints and the cache of trained models.

A checkpoint is a directory holding ``model.pt`` (the state dict), ``history.csv`` and
``meta.json`` (the model config, the run config, the data identity and the sha256 of
``model.pt``). The cache names each checkpoint by a hash of everything that determines the
trained weights, so chapters asking for the same model share one training run. Entries are
written to a temporary directory and renamed into place, so an interrupted write never looks
complete; an entry whose files are missing, unreadable, of another config or of another
checksum is reported and retrained, never used.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from .data.base import Data
from .models import ModelConfig, VAE, build_model


class CorruptCheckpoint(RuntimeError):
    """A checkpoint that cannot be trusted: missing files, bad checksum, or another config."""


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """``cache_dir``, else $SEATBELT_CACHE, else ~/.cache/seatbelt."""
    if cache_dir is not None:
        return Path(cache_dir)
    return Path(os.environ.get("SEATBELT_CACHE", Path.home() / ".cache" / "seatbelt"))


def data_identity(data: Data) -> dict[str, Any]:
    """What identifies a dataset's content: its name, loader parameters, shape and a hash of its items."""
    digest = hashlib.sha256(data.x.contiguous().cpu().numpy().tobytes()).hexdigest()
    return {"name": data.name, "meta": data.meta, "n": len(data), "item_shape": list(data.item_shape),
            "levels": data.levels, "sha256": digest}


def config_key(payload: dict[str, Any]) -> str:
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass
class Checkpoint:
    model: VAE
    history: pd.DataFrame
    meta: dict[str, Any]
    path: Path


def save_checkpoint(path: str | os.PathLike, model: VAE, history: pd.DataFrame, meta: dict[str, Any]) -> Path:
    """Write a checkpoint directory atomically (temporary directory, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        torch.save(model.state_dict(), tmp / "model.pt")
        history.to_csv(tmp / "history.csv", index=False)
        full = {**meta, "model_config": model.config.to_dict(), "model_sha256": _file_sha256(tmp / "model.pt")}
        (tmp / "meta.json").write_text(json.dumps(full, indent=2, sort_keys=True, default=str))
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return path


def load_checkpoint(path: str | os.PathLike, expected_meta: dict[str, Any] | None = None,
                    device: torch.device | str = "cpu") -> Checkpoint:
    """Read and verify a checkpoint; raise :class:`CorruptCheckpoint` if it cannot be trusted."""
    path = Path(path)
    try:
        meta = json.loads((path / "meta.json").read_text())
        if _file_sha256(path / "model.pt") != meta["model_sha256"]:
            raise CorruptCheckpoint(f"{path}/model.pt does not match the checksum recorded in meta.json")
        if expected_meta is not None:
            recorded = {k: meta.get(k) for k in expected_meta}
            if json.loads(json.dumps(expected_meta, default=str)) != recorded:
                raise CorruptCheckpoint(f"{path} was written for another configuration")
        config = ModelConfig.from_dict(meta["model_config"])
        model = build_model(config)
        model.load_state_dict(torch.load(path / "model.pt", map_location=device, weights_only=True))
        history = pd.read_csv(path / "history.csv")
    except CorruptCheckpoint:
        raise
    except (OSError, KeyError, ValueError, RuntimeError) as e:
        raise CorruptCheckpoint(f"{path} is unreadable: {e}") from e
    return Checkpoint(model.to(device), history, meta, path)


def cached(path: Path, expected_meta: dict[str, Any], device) -> Checkpoint | None:
    """The verified checkpoint at ``path``, or None (after a warning) if it is missing or corrupt."""
    if not path.exists():
        return None
    try:
        return load_checkpoint(path, expected_meta, device)
    except CorruptCheckpoint as e:
        warnings.warn(f"discarding cached model: {e}; it will be retrained.", stacklevel=3)
        shutil.rmtree(path, ignore_errors=True)
        return None
