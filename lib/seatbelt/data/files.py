"""Where datasets live on disk: the data root, downloads, and the cache of decoded arrays.

- The data root is the ``root`` argument of a loader, else the ``SEATBELT_DATA`` environment
  variable; nothing is ever read from a path written into the code. A root that is unset or
  absent holds nothing: generated data never needs it, and the real-image loaders say what
  to get.
- Datasets with an official checksummed download (CIFAR-10, MNIST) are fetched on first use into
  :func:`cache_dir`, which is searched after the data root. Never into the data root itself: it
  may be shared or meant read-only, which permission bits do not enforce for root (as in many
  containers). ``SEATBELT_DOWNLOAD=0`` (or ``download=False``) turns downloading off.
- Decoded arrays are cached under ``$SEATBELT_CACHE/data`` (default ``~/.cache/seatbelt/data``),
  keyed by the identity of the source files (resolved path, size, modification time) and
  whatever else the loader says determines them; each entry carries a manifest of its arrays'
  shapes, dtypes and SHA-256, so a damaged entry is noticed, reported and rebuilt.
- Every write is atomic (a temporary name, then a rename), and nothing is ever deleted: an
  interrupted run never leaves a half-written entry or download behind, and processes filling
  the cache at once never see each other's partial files.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import urllib.request
import warnings
from pathlib import Path
from typing import BinaryIO, Callable, Mapping

import numpy as np

DATA_ENV = "SEATBELT_DATA"
CACHE_ENV = "SEATBELT_CACHE"
DOWNLOAD_ENV = "SEATBELT_DOWNLOAD"
MANIFEST = "manifest.json"

_OFF, _ON = ("0", "false", "no", "off"), ("", "1", "true", "yes", "on")


class DatasetNotFoundError(FileNotFoundError):
    """A dataset's files are not where the loader looked; the message says what to get and where."""


class DamagedFileError(ValueError):
    """A data file or archive member cannot be read as what it should hold; the message names it."""


def existing_root(root: str | os.PathLike | None = None) -> Path | None:
    """The data directory (``root``, else ``$SEATBELT_DATA``) if set and existing, else None."""
    root = root if root is not None else os.environ.get(DATA_ENV)
    path = Path(root).expanduser() if root else None
    return path if path is not None and path.is_dir() else None


def describe_root(root: str | os.PathLike | None = None) -> str:
    """The data directory as an error message should name it, saying when it is unset or absent."""
    given = root if root is not None else os.environ.get(DATA_ENV)
    if not given:
        return f"the data directory (none set: pass root= or set {DATA_ENV})"
    path = Path(given).expanduser()
    return str(path) if path.is_dir() else f"{path} (which does not exist)"


def downloads_on(download: bool | None = None) -> bool:
    """``download`` if given, else ``$SEATBELT_DOWNLOAD`` (on unless 0, false, no or off)."""
    if download is not None:
        return download
    value = os.environ.get(DOWNLOAD_ENV, "").strip().lower()
    if value not in _OFF + _ON:
        raise ValueError(f"{DOWNLOAD_ENV}={value!r}: set it to 1 to download datasets or 0 not to.")
    return value not in _OFF


def cache_dir() -> Path:
    """``$SEATBELT_CACHE/data`` (default ``~/.cache/seatbelt/data``): decoded arrays, downloads."""
    base = os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "seatbelt"
    return Path(base).expanduser() / "data"


def source_key(sources: list[Path], **params) -> str:
    """A short hash of the sources' identity (resolved path, size, mtime) and the loader's
    parameters.

    Directories are identified by every file below them, so adding or touching one file changes the
    key.
    """
    ident = []
    for src in sources:
        files = sorted(p for p in src.rglob("*") if p.is_file()) if src.is_dir() else [src]
        for f in files:
            st = f.stat()
            ident.append((str(f.resolve()), st.st_size, st.st_mtime_ns))
    blob = json.dumps({"sources": ident, "params": params}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def cached(
    name: str, key: str, build: Callable[[], Mapping[str, np.ndarray]]
) -> dict[str, np.ndarray]:
    """The arrays stored under ``name``-``key`` in the cache, built (once) by ``build`` when absent.

    An entry is a directory of ``.npy`` files and a manifest, written under a temporary name and
    renamed into place, so readers see either nothing or a complete entry; when two processes
    build it at once, the second rename loses and its copy is discarded. An entry that fails its
    manifest (unreadable, wrong shape or dtype, wrong checksum) is rebuilt with a warning, file by
    file through atomic replaces, so a concurrent reader still never sees a partial file.
    """
    entry = cache_dir() / f"{name}-{key}"
    if entry.is_dir():
        try:
            return _read_entry(entry)
        except (OSError, EOFError, ValueError, KeyError, TypeError) as e:  # what damage can raise
            warnings.warn(
                f"Decoded-data cache entry {entry} is damaged ({e}); rebuilding it.", stacklevel=2
            )
            arrays = _contiguous(build())
            _write_entry(entry, arrays)
            return arrays
    arrays = _contiguous(build())
    entry.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{entry.name}-", dir=entry.parent))
    try:
        _write_entry(tmp, arrays)
        os.replace(tmp, entry)
    except OSError:
        if not entry.is_dir():
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return arrays


def _contiguous(arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: np.ascontiguousarray(a) for k, a in arrays.items()}


def _checksum(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).data).hexdigest()


def _write_entry(entry: Path, arrays: dict[str, np.ndarray]) -> None:
    """Each array, then the manifest, into ``entry`` by atomic replaces (a repair rewrites equal
    bytes, so a concurrent reader sees the old file or the new one, never a part)."""
    manifest = {
        k: {"shape": list(a.shape), "dtype": a.dtype.str, "sha256": _checksum(a)}
        for k, a in arrays.items()
    }
    for k, a in arrays.items():
        _replace(entry / f"{k}.npy", lambda f, a=a: np.save(f, a, allow_pickle=False))
    _replace(entry / MANIFEST, lambda f: f.write(json.dumps(manifest, indent=1).encode()))


def _replace(dest: Path, write: Callable[[BinaryIO], object]) -> None:
    """Whatever ``write`` writes, put at ``dest`` by one rename."""
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}-", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, dest)
    finally:
        Path(tmp).unlink(missing_ok=True)


def _read_entry(entry: Path) -> dict[str, np.ndarray]:
    """The arrays of an entry, each checked against the manifest; ValueError says what is off."""
    manifest = json.loads((entry / MANIFEST).read_text())
    if not isinstance(manifest, dict):
        raise ValueError(f"{MANIFEST} holds {type(manifest).__name__}, not a mapping of arrays")
    arrays = {}
    for k, spec in manifest.items():
        a = np.load(entry / f"{k}.npy", allow_pickle=False)
        if list(a.shape) != spec["shape"] or a.dtype.str != spec["dtype"]:
            expected = f"{spec['dtype']} {spec['shape']}"
            raise ValueError(f"{k}.npy holds {a.dtype.str} {a.shape}, {MANIFEST} says {expected}")
        if _checksum(a) != spec["sha256"]:
            raise ValueError(f"{k}.npy does not match the SHA-256 in {MANIFEST}")
        arrays[k] = a
    return arrays


def sha256sum(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def fetch(url: str, dest: str | os.PathLike, sha256: str, *, timeout: float = 60.0) -> Path:
    """Download ``url`` to ``dest`` unless a file with the right SHA-256 is already there.

    The bytes go to a temporary file beside ``dest`` and are renamed into place only after the
    checksum matched; on a mismatch nothing is left behind and ``ValueError`` says what came back.
    """
    dest = Path(dest)
    sha256 = sha256.lower()
    if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
        raise ValueError(f"sha256 must be 64 hex digits, got {sha256!r}.")
    if dest.is_file() and sha256sum(dest) == sha256:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}-", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        h = hashlib.sha256()
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
            while block := response.read(1 << 20):
                h.update(block)
                out.write(block)
        got = h.hexdigest()
        if got != sha256:
            raise ValueError(
                f"Checksum mismatch for {url}: expected sha256 {sha256}, got {got}. "
                f"Nothing was written to {dest}; check the URL or fetch the file by hand."
            )
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest
