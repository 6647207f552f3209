"""The cache when builds share it, when it cannot be written, and when its files are hostile:
nothing computed is lost, no complete entry is deleted, nothing cached is unpickled."""

from __future__ import annotations

import builtins
import errno
import hashlib
import io
import json
import multiprocessing
import os
import time
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from seatbelt import cache, classifiers, training
from seatbelt.classifiers import ClassifierConfig
from seatbelt.data import Data
from seatbelt.models import ModelConfig

META = {"what": "a small entry"}
ENTRY = cache.Entry(
    {"w": torch.arange(6.0)}, {"t": pd.DataFrame({"a": [1, 2], "s": ["x", "y"]})}, {"n": 1}
)
FORK = multiprocessing.get_context("fork")  # small objects, no parallel kernels: safe, and fast


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SEATBELT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("SEATBELT_PROGRESS", "off")


def test_the_cache_root_is_absolute_with_home_expanded(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    here = tmp_path.resolve()
    monkeypatch.setenv("SEATBELT_CACHE", "relative/cache")
    assert cache.cache_root() == here / "relative" / "cache"
    monkeypatch.setenv("SEATBELT_CACHE", "~/shared")
    assert cache.cache_root() == tmp_path / "home" / "shared"
    monkeypatch.delenv("SEATBELT_CACHE")
    assert cache.cache_root() == tmp_path / "home" / ".cache" / "seatbelt"
    assert cache.cache_root("~/mine") == tmp_path / "home" / "mine"
    assert cache.cache_root("mine") == here / "mine"


def _bits(column: pd.Series) -> np.ndarray:
    return column.to_numpy().view(f"u{column.dtype.itemsize}")


def test_frames_come_back_exactly():
    frame = pd.DataFrame(
        {
            "f64": [0.1 + 0.2, -0.0, np.nan, -np.inf, 5e-324],
            "f32": np.array([1 / 3, -0.0, np.nan, 3e38, 1e-45], dtype=np.float32),
            "i64": [2**62, -1, 0, 3, 4],
            "u8": np.array([0, 255, 1, 2, 3], dtype=np.uint8),
            "flag": [True, False, True, True, False],
            "index": pd.array([1, None, 3, -4, 2**60], dtype="Int64"),
            "maybe": pd.array([True, None, False, True, None], dtype="boolean"),
            "text": pd.Series(["NA", "nan", "", None, 'a,b\n"c" é'], dtype="str"),
            "object": pd.Series(["x", None, "NULL", "1", "True"], dtype=object),
        },
        index=pd.RangeIndex(10, 20, 2),
    )
    back = cache.decode_frame(*cache.encode_frame(frame))
    pd.testing.assert_frame_equal(back, frame, check_exact=True)
    for column in ("f64", "f32"):  # bit for bit: -0.0 and the NaN too
        assert np.array_equal(_bits(back[column]), _bits(frame[column]))
    with pytest.raises(TypeError, match="reset_index"):
        cache.encode_frame(frame.set_index("text"))
    with pytest.raises(TypeError, match="neither numbers nor text"):
        cache.encode_frame(pd.DataFrame({"c": pd.Categorical(["a", "b"])}))


# ------------------------------------------------------------------------ concurrent builds


def _load(path: Path) -> cache.Entry:
    return cache.load_entry(path, META)


def _write(directory: Path, entry: cache.Entry) -> None:
    cache.write_entry(directory, entry, META)


def _never() -> cache.Entry:
    raise AssertionError("recomputed an entry that was saved")


def _is_entry(got: cache.Entry) -> bool:
    return (
        torch.equal(got.tensors["w"], ENTRY.tensors["w"])
        and got.frames["t"].equals(ENTRY.frames["t"])
        and got.content == ENTRY.content
    )


def _checked(step: Callable[[], object]) -> list[str]:
    """Every error, warning or wrong content of one step of a build."""
    problems = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            if step() is False:
                problems.append("read another content")
        except Exception as e:  # noqa: BLE001 (counted, not raised)
            problems.append(repr(e))
    return problems + [str(w.message) for w in caught]


def _read(path: Path) -> bool:
    return _is_entry(cache.through(path, _load, _never, _write)[0])


def _writer(path: Path, rounds: int) -> list[str]:
    """Save the entry (without the lock: the raw race of two builds) and read it, ``rounds``
    times."""
    problems = []
    for _ in range(rounds):
        problems += _checked(lambda: cache.save(path, lambda directory: _write(directory, ENTRY)))
        problems += _checked(lambda: _read(path))
    return problems


def _reader(path: Path, reads: int) -> list[str]:
    """Read the entry ``reads`` times once it appears; the problems seen, including a complete
    entry that vanished or was replaced."""
    problems, inode, deadline = [], None, time.monotonic() + 30
    while reads and time.monotonic() < deadline:
        try:
            found = path.stat().st_ino
        except FileNotFoundError:
            if inode is not None:
                problems.append("a complete entry vanished")
            time.sleep(0.001)
            continue
        if inode is not None and found != inode:
            problems.append("a complete entry was replaced")
        inode = found
        problems += _checked(lambda: _read(path))
        reads -= 1
    return problems + (["the entry never appeared"] if reads else [])


def test_concurrent_saves_and_reads_of_one_key_lose_nothing(tmp_path):
    path = tmp_path / "entries" / "key"
    with ProcessPoolExecutor(5, mp_context=FORK) as pool:
        reader = pool.submit(_reader, path, 200)
        writers = [pool.submit(_writer, path, 50) for _ in range(4)]
        problems = [p for job in [*writers, reader] for p in job.result()]
    assert problems == []
    assert sorted(p.name for p in path.parent.iterdir()) == [".key.lock", "key"]  # no temporary


def _build(path: Path, log: Path) -> list[float]:
    def compute() -> cache.Entry:
        with open(log, "a") as f:
            f.write("computed\n")
        time.sleep(0.3)  # long enough for every other build to ask meanwhile
        return cache.Entry({"w": torch.rand(3)}, ENTRY.frames, ENTRY.content)

    return cache.through(path, _load, compute, _write)[0].tensors["w"].tolist()


def test_concurrent_builds_compute_a_key_once(tmp_path):
    path, log = tmp_path / "entries" / "key", tmp_path / "log"
    with ProcessPoolExecutor(4, mp_context=FORK) as pool:
        results = [job.result() for job in [pool.submit(_build, path, log) for _ in range(4)]]
    assert log.read_text().count("computed") == 1
    assert all(r == results[0] for r in results)


# ------------------------------------------------------------------------ unwritable caches

MODEL = ModelConfig(
    kind="vae", objective="beta_vae", latent_sizes=(2,), data_shape=(6,), net="mlp", mlp_hidden=8
)
POINTS = Data(
    "points", torch.rand(64, 6, generator=torch.Generator().manual_seed(0)) * 2 - 1, levels=0
)
FEATURES = (torch.randn(64, 4, generator=torch.Generator().manual_seed(0)), torch.arange(64) % 2)
NET = ClassifierConfig("mlp", (4,), 2, hidden=8)


def _model(seed: int) -> training.Trained:
    run = training.TrainConfig(steps=2, batch_size=32, seed=seed)
    return training.fit(MODEL, POINTS, run, progress=False)


def _classifier(seed: int) -> classifiers.Fitted:
    run = training.TrainConfig(steps=2, batch_size=32)
    return classifiers.fit(NET, lambda: FEATURES, run, source={"seed": seed}, progress=False)


BUILDS: dict[str, Callable[[int], object]] = {"model": _model, "classifier": _classifier}


def _refuse(*args, **kwargs):
    raise OSError(errno.EROFS, "Read-only file system")


@contextmanager
def read_only(monkeypatch) -> Iterator[None]:
    """Every write to the filesystem fails as on a read-only mount (the tests run as root, whom
    chmod would not stop)."""
    real_open, real_os_open = builtins.open, os.open
    writes = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND

    def open_(file, mode="r", *args, **kwargs):
        return _refuse() if set(mode) & set("wax+") else real_open(file, mode, *args, **kwargs)

    def os_open(path, flags, *args, **kwargs):
        return _refuse() if flags & writes else real_os_open(path, flags, *args, **kwargs)

    with monkeypatch.context() as m:
        for name in ("mkdir", "rename", "replace", "unlink", "rmdir"):
            m.setattr(os, name, _refuse)
        m.setattr(os, "open", os_open)
        m.setattr(builtins, "open", open_)
        m.setattr(io, "open", open_)
        yield


@pytest.mark.parametrize("kind", BUILDS)
def test_a_full_disk_costs_a_warning_not_the_result(kind, monkeypatch):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as m:
        m.setattr(torch, "save", full)
        with pytest.warns(UserWarning, match="not cached: .*No space left on device") as caught:
            result = BUILDS[kind](0)
    assert not result.cached and str(result.path) in str(caught[0].message)
    left = [p.name for p in result.path.parent.iterdir()]
    assert left == [f".{result.path.name}.lock"]  # no entry, no temporary
    assert not BUILDS[kind](0).cached and BUILDS[kind](0).cached  # with room again, it is cached


@pytest.mark.parametrize("kind", BUILDS)
def test_a_read_only_cache_is_read_through(kind, monkeypatch):
    build = BUILDS[kind]
    saved = build(0)
    with read_only(monkeypatch):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert build(0).cached  # a hit is used, quietly
        with pytest.warns(UserWarning, match="not cached: .*Read-only file system") as caught:
            missed = build(1)  # a miss is computed and returned
    assert not missed.cached and missed.path != saved.path and not missed.path.exists()
    assert str(missed.path) in str(caught[0].message)


# ------------------------------------------------------------------------ hostile files


class Trap:
    """Creates ``marker`` when unpickled: a cached file that runs code when it is loaded."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def resign(path: Path) -> None:
    """Record the checksums of the entry's files as they are now, as anyone who can write to the
    cache could."""
    meta = json.loads((path / "meta.json").read_text())
    for file in path.iterdir():
        if file.name != "meta.json":
            meta[f"{file.name.split('.')[0]}_sha256"] = _sha256(file)
    (path / "meta.json").write_text(json.dumps(meta))


def scribble(path: Path, data: bytes) -> None:
    """Overwrite the data files of the entry at ``path`` (``tensors.pt``, and the ``object.pt``
    that entries once were) with ``data``."""
    for name in ("tensors.pt", "object.pt"):
        (path / name).write_bytes(data)


def plant(path: Path, obj: object) -> None:
    """Pickle ``obj`` into every data file of the entry at ``path`` (``tensors.pt``, and the
    ``object.pt`` that entries once were), with checksums that match."""
    for name in ("tensors.pt", "object.pt"):
        torch.save(obj, path / name)
    resign(path)


def test_a_trapped_classifier_entry_is_never_unpickled(tmp_path):
    first = _classifier(0)
    plant(first.path, Trap(tmp_path / "marker"))
    with pytest.warns(UserWarning, match="discarding cached entry"):
        again = _classifier(0)
    assert not (tmp_path / "marker").exists()
    assert not again.cached
    for a, b in zip(again.net.state_dict().values(), first.net.state_dict().values()):
        assert torch.equal(a, b)
    assert _classifier(0).cached  # the trap was replaced by a sound entry


@pytest.mark.parametrize("damage", ["not a torch file", "a missing tensor", "an unknown dtype"])
def test_an_entry_that_does_not_load_is_recomputed_not_a_crash(damage):
    path = _classifier(0).path
    if damage == "not a torch file":
        scribble(path, b"written by a future torch")
        resign(path)
    elif damage == "a missing tensor":
        plant(path, {"tensors": {}, "columns": {}})
    else:
        content = json.loads((path / "content.json").read_text())
        content["frames"]["history"]["columns"][0]["dtype"] = "float128x"
        (path / "content.json").write_text(json.dumps(content))
        resign(path)
    with pytest.warns(UserWarning, match="discarding cached entry"):
        assert not _classifier(0).cached
    assert _classifier(0).cached


def test_a_corrupt_entry_in_a_read_only_cache_is_left_alone(monkeypatch):
    path = _classifier(0).path
    scribble(path, b"damaged")
    with read_only(monkeypatch), pytest.warns(UserWarning) as caught:
        assert not _classifier(0).cached
    using, saving = (str(w.message) for w in caught)
    assert using.startswith(f"not using cached entry {path}")
    assert saving.startswith(f"not cached: {path}")
    assert (path / "tensors.pt").read_bytes() == b"damaged"
