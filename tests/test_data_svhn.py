"""The SVHN loader on tiny .mat fixtures written in the official layout (X: (32, 32, 3, N), y:
1..10)."""

import os

import numpy as np
import pytest
import scipy.io
import torch

from seatbelt.data import DatasetNotFoundError, svhn


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SEATBELT_CACHE", str(tmp_path / "cache"))


def _write(path, x_hwcn, y):
    path.parent.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(path, {"X": x_hwcn, "y": np.asarray(y, dtype=np.uint8).reshape(-1, 1)})


def _fixture(n=5, seed=0):
    """(X in the file's (32, 32, 3, N) order, its labels 1..10): every pixel distinct per image and
    channel."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, size=(32, 32, 3, n), dtype=np.uint8)
    y = np.array([10, 1, 2, 9, 10][:n])
    return x, y


def test_reads_the_official_layout(tmp_path):
    x, y = _fixture()
    _write(tmp_path / "svhn" / "test_32x32.mat", x, y)
    data = svhn("test", root=tmp_path)
    assert data.name == "svhn" and data.levels == 256 and data.meta["split"] == "test"
    assert data.x.shape == (5, 3, 32, 32) and data.x.dtype == torch.uint8
    # (H, W, C, N) -> (N, C, H, W): pixel (row 4, column 7, green) of image 3
    assert int(data.x[3, 1, 4, 7]) == int(x[4, 7, 1, 3])
    assert np.array_equal(data.x.numpy(), x.transpose(3, 2, 0, 1))
    # the file's label 10 is the digit 0
    assert data.labels.tolist() == [0, 1, 2, 9, 0]
    assert data.class_names[0] == "0"
    assert float(data.get(0).min()) >= -1 and float(data.get(0).max()) <= 1


def test_root_itself_and_split_files_are_separate(tmp_path):
    x, y = _fixture(3)
    _write(tmp_path / "train_32x32.mat", x, y[:3])
    assert len(svhn("train", root=tmp_path)) == 3
    with pytest.raises(DatasetNotFoundError) as err:
        svhn("test", root=tmp_path)
    message = str(err.value)
    assert (
        "test_32x32.mat" in message and str(tmp_path) in message and "ufldl.stanford.edu" in message
    )


def test_missing_data_names_the_files_and_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("SEATBELT_DATA", str(tmp_path))
    with pytest.raises(DatasetNotFoundError, match=r"train_32x32\.mat") as err:
        svhn("train")
    assert str(tmp_path / "svhn") in str(err.value)


def test_bad_split_and_bad_files(tmp_path):
    with pytest.raises(ValueError, match="split"):
        svhn("validation", root=tmp_path)
    x, y = _fixture(3)
    _write(tmp_path / "test_32x32.mat", x[:, :, :, :2], y)  # 2 images, 3 labels
    with pytest.raises(ValueError, match="N labels"):
        svhn("test", root=tmp_path)
    _write(tmp_path / "test_32x32.mat", x, [0, 1, 2])  # 0 is not an SVHN label
    with pytest.raises(ValueError, match="1..10"):
        svhn("test", root=tmp_path)
    (tmp_path / "test_32x32.mat").write_bytes(b"not a mat file")
    with pytest.raises(ValueError, match="not a readable SVHN"):
        svhn("test", root=tmp_path)


def test_decoded_arrays_are_cached_and_refreshed_when_the_file_changes(tmp_path):
    x, y = _fixture(4)
    path = tmp_path / "test_32x32.mat"
    _write(path, x, y[:4])
    first = svhn("test", root=tmp_path)
    assert np.array_equal(svhn("test", root=tmp_path).x.numpy(), first.x.numpy())
    x2 = 255 - x
    _write(path, x2, y[:4])
    os.utime(
        path, ns=(path.stat().st_mtime_ns + 10**9,) * 2
    )  # a rewrite within the same tick still counts
    assert np.array_equal(svhn("test", root=tmp_path).x.numpy(), x2.transpose(3, 2, 0, 1))
