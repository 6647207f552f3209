"""The decoded-data cache: keyed on everything that determines the arrays, damaged entries
rebuilt with a warning, and concurrent writers that never delete each other's work."""

import importlib
import io
import re
import warnings
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from seatbelt import digest
from seatbelt.data import celeba
from seatbelt.data.files import cache_dir, cached

images = importlib.import_module("seatbelt.data.images")

ARRAYS = {"x": np.arange(4096, dtype=np.uint8).reshape(4, 1024), "names": np.array(["a", "bc"])}


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SEATBELT_CACHE", str(tmp_path / "cache"))


def _celeba_zip(root):
    """Two 89x109 noise faces: any other crop gives other pixels."""
    rng = np.random.default_rng(0)
    with zipfile.ZipFile(root / "celeba-10k-jpeg.zip", "w") as z:
        for k in (1, 2):
            buf = io.BytesIO()
            face = rng.integers(0, 256, (109, 89, 3), dtype=np.uint8)
            Image.fromarray(face).save(buf, format="JPEG")
            z.writestr(f"celebA/{k:06d}.jpg", buf.getvalue())


def test_the_key_covers_preprocessing_constants_and_decoding_code(tmp_path, monkeypatch):
    _celeba_zip(tmp_path)
    builds = []
    decoded = images._decoded
    monkeypatch.setattr(images, "_decoded", lambda *args: builds.append(1) or decoded(*args))
    first = celeba(tmp_path, size=16)
    assert torch.equal(celeba(tmp_path, size=16).x, first.x) and len(builds) == 1

    with monkeypatch.context() as m:
        m.setattr(images, "CELEBA_CROP", 0.5)
        assert not torch.equal(celeba(tmp_path, size=16).x, first.x) and len(builds) == 2

    images._decoder.cache_clear()
    try:
        with monkeypatch.context() as m:
            m.setattr(digest, "digest", lambda found: "the decoding code after an edit")
            assert torch.equal(celeba(tmp_path, size=16).x, first.x) and len(builds) == 3
    finally:
        images._decoder.cache_clear()  # forget the patched digest
    assert torch.equal(celeba(tmp_path, size=16).x, first.x) and len(builds) == 3


def _truncate(path):
    path.write_bytes(path.read_bytes()[:-100])


def _flip_last_byte(path):
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


def _reshape(path):
    np.save(path, ARRAYS["x"].reshape(8, 512))


def _break_manifest(path):
    (path.parent / "manifest.json").write_text("{")


@pytest.mark.parametrize("damage", [_truncate, _flip_last_byte, _reshape, _break_manifest])
def test_a_damaged_entry_is_rebuilt_with_a_warning(damage):
    cached("demo", "k", lambda: ARRAYS)
    entry = cache_dir() / "demo-k"
    damage(entry / "x.npy")
    with pytest.warns(UserWarning, match=re.escape(str(entry)) + r".* damaged .*rebuilding"):
        out = cached("demo", "k", lambda: ARRAYS)
    np.testing.assert_array_equal(out["x"], ARRAYS["x"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # repaired on disk: read back without a warning or a build
        again = cached("demo", "k", lambda: pytest.fail("built again after the repair"))
    np.testing.assert_array_equal(again["x"], ARRAYS["x"])
    assert again["names"].tolist() == ARRAYS["names"].tolist()
    assert sorted(p.name for p in entry.iterdir()) == ["manifest.json", "names.npy", "x.npy"]


def test_a_losing_writer_keeps_the_winner():
    """Another process publishes the entry while this one builds it: this one's rename loses, and
    the winner's entry stays in place, untouched."""
    entry = cache_dir() / "demo-k"

    def build_while_another_process_wins():
        cached("demo", "k", lambda: ARRAYS)
        return ARRAYS

    out = cached("demo", "k", build_while_another_process_wins)
    np.testing.assert_array_equal(out["x"], ARRAYS["x"])
    assert [p.name for p in cache_dir().iterdir()] == [entry.name]  # the loser's copy is gone
    winner = entry.stat().st_ino
    again = cached("demo", "k", lambda: pytest.fail("rebuilt"))
    np.testing.assert_array_equal(again["x"], ARRAYS["x"])
    assert entry.stat().st_ino == winner
