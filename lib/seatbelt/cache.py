"""Checkpoints, and the cache of trained models and results.

The cache names each entry by a hash of everything that determines its content (the configs, the
data, and the library sources of :data:`WEIGHT_SOURCES`), so chapters asking for the same model
share one training run, and a fix to a loss is never answered with a model trained by the old
one. An entry is a directory:

* a checkpoint (a trained model): ``model.pt`` (the state dict), ``history.csv`` and
  ``meta.json`` (the model config, the run config, the data identity and the sha256 of
  ``model.pt``);
* an entry of results (an attack battery, a classifier), :class:`Entry`: ``tensors.pt`` (named
  tensors, and the numeric columns of its tidy frames), ``content.json`` (the frames' schemas and
  text columns, and any JSON) and ``meta.json`` (the key's meta and the sha256 of both files).

Reading an entry runs no pickled code: tensors are loaded with ``torch.load(weights_only=True)``
and the rest is JSON, so whoever can write to a shared cache cannot run code in a build, and a
pandas or numpy upgrade cannot make an entry unreadable. An entry that fails to load for any
reason (missing files, a bad checksum, another config, a file the loader refuses) is reported
and recomputed, never used and never a crash.

Builds may share a cache (Dask workers, sweep points, two terminals). :func:`through` computes a
key under a per-key lock, after looking again, so N workers compute it once. Entries are written
to a temporary directory and renamed into place, so a reader sees nothing or a whole entry. A
complete entry is never replaced or deleted: a key names its content, so when two writers race,
the rename that loses keeps the winner's. Only the lock's holder discards a corrupt entry, by
moving it aside under a unique name first. A cache that cannot be written (a full disk, a
read-only or another user's cache) is read through: hits are used, misses computed, and a failed
save costs a warning, never the result.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import tempfile
import uuid
import warnings
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from . import digest
from .data.base import Data
from .models import VAE, ModelConfig, build_model

T = TypeVar("T")
CHECKPOINT_FILES = ("model.pt",)  # the files of an entry whose checksums meta.json records
ENTRY_FILES = ("tensors.pt", "content.json")
# pandas arrays with a missing-value mask (Int64, boolean, Float64): values and mask stored apart
_MASKED = (pd.arrays.IntegerArray, pd.arrays.BooleanArray, pd.arrays.FloatingArray)


class CorruptCheckpoint(RuntimeError):
    """A checkpoint that cannot be trusted: missing files, bad checksum, or another config."""


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """``cache_dir``, else $SEATBELT_CACHE, else ~/.cache/seatbelt; ``~`` expanded and made
    absolute, so kernels started in other directories share one cache."""
    root = cache_dir if cache_dir is not None else os.environ.get("SEATBELT_CACHE")
    return Path(os.path.abspath(Path(root or Path.home() / ".cache" / "seatbelt").expanduser()))


_identities: dict[int, tuple[weakref.ref, dict[str, Any]]] = {}


def data_identity(data: Data) -> dict[str, Any]:
    """What identifies a dataset's content: its name, loader parameters, shape and a hash of its
    items.

    Remembered per Data object (they are frozen), so many models of one dataset hash it once.
    """
    known = _identities.get(id(data))
    if known is not None and known[0]() is data:
        return known[1]
    digest = hashlib.sha256(data.x.contiguous().cpu().numpy().tobytes()).hexdigest()
    identity = {
        "name": data.name,
        "meta": data.meta,
        "n": len(data),
        "item_shape": list(data.item_shape),
        "levels": data.levels,
        "sha256": digest,
    }
    _identities[id(data)] = (weakref.ref(data), identity)
    return identity


# The modules that determine trained weights. Chapters, plots, attacks and the book machine are
# not among them: editing those must not retrain anything. Of the data package only `data.base`
# (how items become tensors) counts: what the loaders produce is keyed by its content, the hash of
# every item in :func:`data_identity`, so a loader edit that changes no pixel retrains nothing.
WEIGHT_SOURCES = ("models", "nets", "tc", "gaussian", "training", "device", "data.base")


def code_digest(
    sources: tuple[str, ...] = WEIGHT_SOURCES, package: str | os.PathLike | None = None
) -> str:
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


# ---------------------------------------------------------------------------------------------
# concurrency: the key lock, publishing and discarding entries


@contextmanager
def key_lock(path: Path) -> Iterator[bool]:
    """Hold the lock of the entry ``path`` (the file ``.<key>.lock`` beside it) for the block, and
    yield whether it is held: where the lock cannot be created (a read-only cache) the block runs
    anyway, since a twin computation costs time, not correctness."""
    fd, held = None, False
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # read-only suffices for flock, so a lock file another user created works too
        fd = os.open(path.parent / f".{path.name}.lock", os.O_RDONLY | os.O_CREAT, 0o666)
        fcntl.flock(fd, fcntl.LOCK_EX)
        held = True
    except OSError:
        pass
    try:
        yield held
    finally:
        if fd is not None:
            os.close(fd)  # releases the lock


@contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary directory that becomes ``path`` when the block ends without error.

    If ``path`` exists by then (another writer of the key won), theirs is kept and ours dropped:
    a key names its content, and replacing a complete entry would pull it from under its readers.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        yield tmp
        try:
            os.rename(tmp, path)  # fails on a non-empty directory: never replaces an entry
        except OSError:
            if not path.is_dir():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def save(path: Path, write: Callable[[Path], None]) -> bool:
    """Write an entry with ``write(directory)`` and publish it (:func:`atomic_dir`); whatever
    stops the save (a full disk, a read-only cache, content it cannot store) is a warning and
    False, never the loss of what the caller computed."""
    try:
        with atomic_dir(path) as tmp:
            write(tmp)
    except Exception as e:  # noqa: BLE001 (a cache is never worth a result)
        warnings.warn(f"not cached: {path}: {e}", stacklevel=2)
        return False
    return True


def _discard(path: Path) -> None:
    """Move a corrupt entry aside under a unique name, then delete the moved copy: readers see the
    entry whole or gone, never half deleted, and what is published at ``path`` next is never
    touched. Nothing happens where it cannot be moved (a read-only cache)."""
    aside = path.parent / f".{path.name}.corrupt-{uuid.uuid4().hex}"
    try:
        os.rename(path, aside)
    except OSError:
        return
    shutil.rmtree(aside, ignore_errors=True)


def through(
    path: Path,
    load: Callable[[Path], T],
    compute: Callable[[], T],
    write: Callable[[Path, T], None],
    redo: str = "recomputed",
) -> tuple[T, bool]:
    """``(load(path), True)`` if the entry loads, else ``(compute(), False)`` after saving it with
    ``write(directory, value)``; all under the key's lock, so concurrent builds compute it once.

    Any exception of ``load`` marks the entry corrupt: it is reported and, by the lock's holder,
    discarded. A save that fails is a warning (:func:`save`). ``redo`` words the report.
    """
    with key_lock(path) as held:
        if path.exists():
            try:
                return load(path), True
            except Exception as e:  # noqa: BLE001 (whatever the reason, the entry is not used)
                action = "discarding" if held else "not using"
                warnings.warn(
                    f"{action} cached entry {path}: {e}; it will be {redo}.", stacklevel=2
                )
                if held:
                    _discard(path)
        value = compute()
        save(path, lambda directory: write(directory, value))
        return value, False


def is_complete(path: Path, expected_meta: dict[str, Any], files: tuple[str, ...]) -> bool:
    """Whether ``path`` holds an entry whose ``files`` match their checksums and whose meta
    matches, checked read-only (for the plan: nothing is moved or deleted); a damaged entry is
    reported in a warning."""
    if not path.exists():
        return False
    try:
        _verified_meta(path, files, expected_meta)
    except Exception as e:  # noqa: BLE001 (unreadable in any way is not cached)
        warnings.warn(f"cached entry {path} is unusable: {e}; it will be recomputed.", stacklevel=2)
        return False
    return True


def _write_meta(directory: Path, meta: dict[str, Any], files: tuple[str, ...]) -> None:
    sums = {f"{name.split('.')[0]}_sha256": _file_sha256(directory / name) for name in files}
    text = json.dumps({**meta, **sums}, indent=2, sort_keys=True, default=str)
    (directory / "meta.json").write_text(text)


def _verified_meta(
    path: Path, files: tuple[str, ...], expected_meta: dict[str, Any] | None
) -> dict[str, Any]:
    """meta.json of an entry whose ``files`` match their recorded checksums and meta matches."""
    meta = json.loads((path / "meta.json").read_text())
    for name in files:
        if _file_sha256(path / name) != meta[f"{name.split('.')[0]}_sha256"]:
            raise CorruptCheckpoint(
                f"{path}/{name} does not match the checksum recorded in meta.json"
            )
    if expected_meta is not None:
        recorded = {k: meta.get(k) for k in expected_meta}
        if json.loads(json.dumps(expected_meta, default=str)) != recorded:
            raise CorruptCheckpoint(f"{path} was written for another configuration")
    return meta


def _torch_save(obj: Any, path: Path) -> None:
    """torch.save through a Python file, so a full disk raises OSError (not a RuntimeError)."""
    with open(path, "wb") as f:
        torch.save(obj, f)


# ---------------------------------------------------------------------------------------------
# checkpoints


@dataclass
class Checkpoint:
    model: VAE
    history: pd.DataFrame
    meta: dict[str, Any]
    path: Path


def write_checkpoint(
    directory: Path, model: VAE, history: pd.DataFrame, meta: dict[str, Any]
) -> None:
    """Write a checkpoint's files into ``directory`` (publish it with :func:`save`)."""
    _torch_save(model.state_dict(), directory / "model.pt")
    history.to_csv(directory / "history.csv", index=False)
    _write_meta(directory, {**meta, "model_config": model.config.to_dict()}, CHECKPOINT_FILES)


def load_checkpoint(
    path: str | os.PathLike,
    expected_meta: dict[str, Any] | None = None,
    device: torch.device | str = "cpu",
) -> Checkpoint:
    """Read and verify a checkpoint; raise :class:`CorruptCheckpoint` if it cannot be trusted."""
    path = Path(path)
    try:
        meta = _verified_meta(path, CHECKPOINT_FILES, expected_meta)
        config = ModelConfig.from_dict(meta["model_config"])
        model = build_model(config)
        model.load_state_dict(torch.load(path / "model.pt", map_location=device, weights_only=True))
        history = pd.read_csv(path / "history.csv")
    except CorruptCheckpoint:
        raise
    except Exception as e:  # noqa: BLE001 (any failure to load means the entry cannot be used)
        raise CorruptCheckpoint(f"{path} is unreadable: {e}") from e
    return Checkpoint(model.to(device), history, meta, path)


def trained(
    path: Path,
    meta: dict[str, Any],
    device: torch.device | str,
    train: Callable[[], tuple[VAE, pd.DataFrame]],
) -> tuple[VAE, pd.DataFrame, bool]:
    """(model, history, hit): the model cached at ``path`` for ``meta``, else ``train()``'s, saved
    there (:func:`through`)."""

    def load(entry: Path) -> tuple[VAE, pd.DataFrame]:
        checkpoint = load_checkpoint(entry, meta, device)
        return checkpoint.model.eval(), checkpoint.history

    def write(directory: Path, result: tuple[VAE, pd.DataFrame]) -> None:
        write_checkpoint(directory, *result, meta)

    (model, history), hit = through(path, load, train, write, redo="retrained")
    return model, history, hit


# ---------------------------------------------------------------------------------------------
# entries of results: tensors, tidy frames and JSON, nothing pickled


@dataclass
class Entry:
    """What an entry of results holds: named tensors, tidy frames (with a RangeIndex, text or
    numeric columns) and JSON-able content."""

    tensors: dict[str, Tensor] = field(default_factory=dict)
    frames: dict[str, pd.DataFrame] = field(default_factory=dict)
    content: dict[str, Any] = field(default_factory=dict)


def write_entry(directory: Path, entry: Entry, meta: dict[str, Any]) -> None:
    """Write ``entry`` and ``meta`` into ``directory`` (publish it with :func:`save`)."""
    columns, schemas = {}, {}
    for name, frame in entry.frames.items():
        schemas[name], columns[name] = encode_frame(frame)
    # cloned: a view would save the whole storage it looks into
    tensors = {k: v.detach().cpu().clone() for k, v in entry.tensors.items()}
    _torch_save({"tensors": tensors, "columns": columns}, directory / "tensors.pt")
    text = json.dumps({"frames": schemas, "content": entry.content}, default=str)
    (directory / "content.json").write_text(text)
    _write_meta(directory, meta, ENTRY_FILES)


def load_entry(path: Path, expected_meta: dict[str, Any] | None = None) -> Entry:
    """Read and verify what :func:`write_entry` wrote, running no pickled code; raises if it
    cannot (a caller of :func:`through` recomputes the entry then)."""
    _verified_meta(path, ENTRY_FILES, expected_meta)
    stored = torch.load(path / "tensors.pt", map_location="cpu", weights_only=True)
    content = json.loads((path / "content.json").read_text())
    frames = {
        name: decode_frame(schema, stored["columns"][name])
        for name, schema in content["frames"].items()
    }
    return Entry(stored["tensors"], frames, content["content"])


def encode_frame(frame: pd.DataFrame) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """A tidy frame as (a JSON schema holding its text columns, its numeric columns as tensors).

    Numbers travel as their bytes, so they come back bit for bit (NaN, -0.0 and all); text as
    JSON strings, so no value is mistaken for a missing one. Raises TypeError for what it cannot
    store exactly (an index other than a RangeIndex, non-text names, mixed or categorical columns).
    """
    if not isinstance(frame.index, pd.RangeIndex):
        raise TypeError(
            f"cannot store a frame indexed by {type(frame.index).__name__}; reset_index() first."
        )
    if frame.columns.has_duplicates or not all(isinstance(c, str) for c in frame.columns):
        raise TypeError(
            f"cannot store a frame whose column names are not distinct strings: "
            f"{list(frame.columns)}."
        )
    specs, tensors = [], {}
    for i, (name, series) in enumerate(frame.items()):
        spec: dict[str, Any] = {"name": name, "dtype": str(series.dtype)}
        if isinstance(series.array, _MASKED):
            tensors[str(i)] = _tensor(series.to_numpy(series.dtype.numpy_dtype, na_value=0))
            tensors[f"{i}/missing"] = _tensor(series.isna().to_numpy())
        elif isinstance(series.dtype, np.dtype) and series.dtype.kind in "biuf":
            tensors[str(i)] = _tensor(series.to_numpy())
        else:
            text = series.astype(object).where(series.notna(), None).tolist()
            textual = isinstance(series.dtype, pd.StringDtype) or series.dtype == np.dtype(object)
            if not textual or not all(v is None or isinstance(v, str) for v in text):
                raise TypeError(
                    f"cannot store column {name!r} of dtype {series.dtype}: "
                    "neither numbers nor text."
                )
            spec["text"] = text
        specs.append(spec)
    index = frame.index
    return {"index": [index.start, index.stop, index.step], "columns": specs}, tensors


def _tensor(values: np.ndarray) -> Tensor:
    return torch.from_numpy(np.array(values))  # a writable copy, of the same dtype


def decode_frame(schema: dict[str, Any], tensors: dict[str, Tensor]) -> pd.DataFrame:
    """The frame :func:`encode_frame` stored; ValueError if a column comes back as another dtype."""
    index = pd.RangeIndex(*schema["index"])
    data = {}
    for i, spec in enumerate(schema["columns"]):
        dtype = pd.api.types.pandas_dtype(spec["dtype"])
        if "text" in spec:
            values = spec["text"]
        elif f"{i}/missing" in tensors:
            masked = dtype.construct_array_type()
            values = masked(tensors[str(i)].numpy(), tensors[f"{i}/missing"].numpy())
        else:
            values = tensors[str(i)].numpy()
        series = pd.Series(values, index=index, dtype=dtype)
        if series.dtype != dtype:
            raise ValueError(f"column {spec['name']!r} came back as {series.dtype}, not {dtype}.")
        data[spec["name"]] = series
    return pd.DataFrame(data, index=index)
