"""Checkpoints and the cache of trained models.

A checkpoint is a directory holding ``model.pt`` (the state dict), ``history.csv`` and
``meta.json`` (the model config, the run config, the data identity and the sha256 of
``model.pt``). The cache names each checkpoint by a hash of everything that determines the
trained weights (the configs, the data, and the library sources of :data:`WEIGHT_SOURCES`), so
chapters asking for the same model share one training run, and a fix to a loss is never
answered with a model trained by the old one. Entries are
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
import weakref
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from . import digest
from .data.base import Data
from .models import ModelConfig, VAE, build_model


class CorruptCheckpoint(RuntimeError):
    """A checkpoint that cannot be trusted: missing files, bad checksum, or another config."""


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """``cache_dir``, else $SEATBELT_CACHE, else ~/.cache/seatbelt."""
    if cache_dir is not None:
        return Path(cache_dir)
    return Path(os.environ.get("SEATBELT_CACHE", Path.home() / ".cache" / "seatbelt"))


_identities: dict[int, tuple[weakref.ref, dict[str, Any]]] = {}


def data_identity(data: Data) -> dict[str, Any]:
    """What identifies a dataset's content: its name, loader parameters, shape and a hash of its items.

    Remembered per Data object (they are frozen), so many models of one dataset hash it once.
    """
    known = _identities.get(id(data))
    if known is not None and known[0]() is data:
        return known[1]
    digest = hashlib.sha256(data.x.contiguous().cpu().numpy().tobytes()).hexdigest()
    identity = {"name": data.name, "meta": data.meta, "n": len(data), "item_shape": list(data.item_shape),
                "levels": data.levels, "sha256": digest}
    _identities[id(data)] = (weakref.ref(data), identity)
    return identity


# The modules that determine trained weights. Chapters, plots, attacks and the book machine are
# not among them: editing those must not retrain anything.
WEIGHT_SOURCES = ("models", "nets", "tc", "gaussian", "training", "device", "data")


def code_digest(sources: tuple[str, ...] = WEIGHT_SOURCES, package: str | os.PathLike | None = None) -> str:
    """A hash of the modules named by ``sources`` (modules or subpackages of seatbelt), blind to
    comments and docstrings (:mod:`seatbelt.digest`)."""
    root = Path(package) if package is not None else digest.PACKAGE
    return digest.digest(digest.modules(sources, root))


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


@contextmanager
def atomic_dir(path: str | os.PathLike):
    """Yield a temporary directory that replaces ``path`` whole when the block ends without error."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        yield tmp
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def save_checkpoint(path: str | os.PathLike, model: VAE, history: pd.DataFrame, meta: dict[str, Any]) -> Path:
    """Write a checkpoint directory atomically (temporary directory, then rename)."""
    with atomic_dir(path) as tmp:
        torch.save(model.state_dict(), tmp / "model.pt")
        history.to_csv(tmp / "history.csv", index=False)
        full = {**meta, "model_config": model.config.to_dict(), "model_sha256": _file_sha256(tmp / "model.pt")}
        (tmp / "meta.json").write_text(json.dumps(full, indent=2, sort_keys=True, default=str))
    return Path(path)


def save_object(path: str | os.PathLike, obj: Any, meta: dict[str, Any]) -> Path:
    """Cache any picklable result (an attack battery, a classifier) with its meta and checksum, atomically."""
    with atomic_dir(path) as tmp:
        torch.save(obj, tmp / "object.pt")
        full = {**meta, "object_sha256": _file_sha256(tmp / "object.pt")}
        (tmp / "meta.json").write_text(json.dumps(full, indent=2, sort_keys=True, default=str))
    return Path(path)


def load_object(path: str | os.PathLike, expected_meta: dict[str, Any] | None = None) -> Any:
    """Read and verify what :func:`save_object` wrote; raise :class:`CorruptCheckpoint` if it cannot be trusted."""
    path = Path(path)
    try:
        _verified_meta(path, "object", expected_meta)
        # our own cache (the checksum above guards against damage); results hold DataFrames, so not weights-only
        return torch.load(path / "object.pt", map_location="cpu", weights_only=False)
    except CorruptCheckpoint:
        raise
    except (OSError, KeyError, ValueError, RuntimeError, EOFError, AttributeError) as e:
        raise CorruptCheckpoint(f"{path} is unreadable: {e}") from e


def cached_object(path: Path, expected_meta: dict[str, Any]) -> Any | None:
    """The verified object at ``path``, or None (after a warning) if it is missing or corrupt."""
    if not path.exists():
        return None
    try:
        return load_object(path, expected_meta)
    except CorruptCheckpoint as e:
        warnings.warn(f"discarding cached result: {e}; it will be recomputed.", stacklevel=3)
        shutil.rmtree(path, ignore_errors=True)
        return None


def _verified_meta(path: Path, stem: str, expected_meta: dict[str, Any] | None) -> dict[str, Any]:
    """meta.json of an entry whose ``<stem>.pt`` matches its recorded checksum and whose meta matches."""
    meta = json.loads((path / "meta.json").read_text())
    if _file_sha256(path / f"{stem}.pt") != meta[f"{stem}_sha256"]:
        raise CorruptCheckpoint(f"{path}/{stem}.pt does not match the checksum recorded in meta.json")
    if expected_meta is not None:
        recorded = {k: meta.get(k) for k in expected_meta}
        if json.loads(json.dumps(expected_meta, default=str)) != recorded:
            raise CorruptCheckpoint(f"{path} was written for another configuration")
    return meta


def load_checkpoint(path: str | os.PathLike, expected_meta: dict[str, Any] | None = None,
                    device: torch.device | str = "cpu") -> Checkpoint:
    """Read and verify a checkpoint; raise :class:`CorruptCheckpoint` if it cannot be trusted."""
    path = Path(path)
    try:
        meta = _verified_meta(path, "model", expected_meta)
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
