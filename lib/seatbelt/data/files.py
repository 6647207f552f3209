"""Where datasets live on disk: the data root, the cache of decoded arrays, and checksummed downloads.

- The data root is the ``root`` argument of a loader, else the ``SEATBELT_DATA`` environment
  variable; nothing is ever read from a path written into the code.
- Decoded arrays are cached under ``$SEATBELT_CACHE/data`` (default ``~/.cache/seatbelt/data``),
  keyed by the identity of the source files (resolved path, size, modification time) and the
  loader's parameters, so an edited or replaced source file is decoded again.
- Every write is atomic (a temporary name, then a rename): an interrupted run never leaves a
  half-written cache entry or download behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import urllib.request
from pathlib import Path
from typing import Callable, Mapping

import numpy as np

DATA_ENV = "SEATBELT_DATA"
CACHE_ENV = "SEATBELT_CACHE"


class DatasetNotFoundError(FileNotFoundError):
    """A dataset's files are not where the loader looked; the message says what to get and where."""


def data_root(root: str | os.PathLike | None = None) -> Path:
    """The data directory: ``root`` if given, else ``$SEATBELT_DATA``; it must exist."""
    if root is None:
        root = os.environ.get(DATA_ENV)
        if not root:
            raise DatasetNotFoundError(
                f"No data directory: pass root=/path/to/data or set the environment variable {DATA_ENV}."
            )
    path = Path(root).expanduser()
    if not path.is_dir():
        raise DatasetNotFoundError(
            f"Data directory {path} does not exist: create it, or point root= / {DATA_ENV} at the directory "
            "holding the data."
        )
    return path


def cache_dir() -> Path:
    """``$SEATBELT_CACHE/data``, default ``~/.cache/seatbelt/data``."""
    base = os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "seatbelt"
    return Path(base).expanduser() / "data"


def source_key(sources: list[Path], **params) -> str:
    """A short hash of the sources' identity (resolved path, size, mtime) and the loader's parameters.

    Directories are identified by every file below them, so adding or touching one file changes the key.
    """
    ident = []
    for src in sources:
        files = sorted(p for p in src.rglob("*") if p.is_file()) if src.is_dir() else [src]
        for f in files:
            st = f.stat()
            ident.append((str(f.resolve()), st.st_size, st.st_mtime_ns))
    blob = json.dumps({"sources": ident, "params": params}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def cached(name: str, key: str, build: Callable[[], Mapping[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """The arrays stored under ``name``-``key`` in the cache, built (once) by ``build`` when absent.

    An entry is a directory of ``.npy`` files, written under a temporary name and renamed into place,
    so readers see either nothing or a complete entry. Two processes building the same entry at
    once both succeed; the second rename loses and its copy is discarded.
    """
    entry = cache_dir() / f"{name}-{key}"
    if not entry.is_dir():
        arrays = build()
        entry.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{entry.name}-", dir=entry.parent))
        try:
            for k, a in arrays.items():
                np.save(tmp / f"{k}.npy", np.ascontiguousarray(a), allow_pickle=False)
            os.replace(tmp, entry)
        except OSError:
            if not entry.is_dir():
                raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return {p.stem: np.load(p, allow_pickle=False) for p in sorted(entry.glob("*.npy"))}


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
