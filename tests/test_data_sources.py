"""Where data comes from: generated data needs no data directory, CIFAR-10 and MNIST are fetched on
first use (here only from local file:// copies, never the network), and ``missing`` says beforehand
what cannot be had and how to get it."""

import hashlib
import importlib
import io
import pickle
import tarfile
import urllib.error
import urllib.request
import zipfile

import numpy as np
import pytest

from seatbelt.data import DatasetNotFoundError, cifar10, missing, mnist
from seatbelt.data.files import cache_dir, fetch

images = importlib.import_module("seatbelt.data.images")


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """A private cache, no data directory, downloads at their default, and no network."""
    monkeypatch.setenv("SEATBELT_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("SEATBELT_DATA", raising=False)
    monkeypatch.delenv("SEATBELT_DOWNLOAD", raising=False)
    real = urllib.request.urlopen

    def local_only(url, *args, **kwargs):
        if not str(url).startswith("file:"):
            raise AssertionError(f"a test tried to download {url}")
        return real(url, *args, **kwargs)

    monkeypatch.setattr(urllib.request, "urlopen", local_only)


@pytest.fixture
def remote_cifar(tmp_path, monkeypatch):
    """The official CIFAR-10 URL and checksum pointed at a small local archive; its test images."""
    rng = np.random.default_rng(0)
    archive = tmp_path / "remote" / images.CIFAR10_ARCHIVE
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz") as t:
        for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
            data = rng.integers(0, 256, (2, 3072), dtype=np.uint8)
            blob = pickle.dumps({b"data": data, b"labels": [1, 2]}, protocol=2)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(blob)
            t.addfile(info, io.BytesIO(blob))
    monkeypatch.setattr(images, "CIFAR10_URL", archive.as_uri())
    monkeypatch.setattr(images, "CIFAR10_SHA256", hashlib.sha256(archive.read_bytes()).hexdigest())
    return archive, data.reshape(2, 3, 32, 32)  # the last batch written: test_batch


def test_cifar10_is_downloaded_on_first_use_into_the_cache(remote_cifar):
    archive, test_images = remote_cifar
    np.testing.assert_array_equal(cifar10("test").x.numpy(), test_images)  # no data directory
    assert (cache_dir() / images.CIFAR10_ARCHIVE).is_file()
    archive.unlink()
    assert len(cifar10("train")) == 10  # found in the cache: not fetched again


def test_downloads_never_write_into_the_data_directory(remote_cifar, tmp_path, monkeypatch):
    """It may be shared or read-only, which root does not see: downloads go to the cache."""
    root = tmp_path / "data"
    root.mkdir()
    monkeypatch.setenv("SEATBELT_DATA", str(root))
    assert len(cifar10("test")) == 2
    assert not any(root.iterdir()) and (cache_dir() / images.CIFAR10_ARCHIVE).is_file()


def test_downloads_can_be_turned_off(remote_cifar, monkeypatch):
    monkeypatch.setattr(images, "fetch", lambda *args: pytest.fail("downloaded while off"))
    monkeypatch.setenv("SEATBELT_DOWNLOAD", "0")
    off = r".*Downloading is off \(download=False or SEATBELT_DOWNLOAD=0\)"
    with pytest.raises(DatasetNotFoundError, match=r"cifar-10-python\.tar\.gz" + off):
        cifar10("test")
    with pytest.raises(DatasetNotFoundError, match=r"t10k-images-idx3-ubyte\.gz" + off):
        mnist("test")
    monkeypatch.setattr(images, "fetch", fetch)
    assert len(cifar10("test", download=True)) == 2  # the argument overrides the environment
    monkeypatch.setenv("SEATBELT_DOWNLOAD", "maybe")
    with pytest.raises(ValueError, match="SEATBELT_DOWNLOAD='maybe'"):
        missing("mnist")


def test_a_failed_download_says_how_to_get_the_data(monkeypatch):
    def offline(url, dest, sha256):
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(images, "fetch", offline)
    with pytest.raises(DatasetNotFoundError) as err:
        cifar10("train")
    message = str(err.value)
    assert f"Downloading {images.CIFAR10_URL} failed" in message and "Name or service" in message
    assert "cifar10-jpeg.zip" in message and "SEATBELT_DATA" in message
    with pytest.raises(DatasetNotFoundError, match=r"train-images-idx3-ubyte\.gz.*failed"):
        mnist("train")


def test_missing_says_what_can_be_had_without_reading_it(tmp_path, monkeypatch):
    monkeypatch.setattr(images, "fetch", lambda *args: pytest.fail("missing() downloaded"))
    monkeypatch.setattr(images, "members", lambda *args: pytest.fail("missing() read files"))
    for generated in ("dsprites", "swissroll", "swiss_roll"):
        assert missing(generated) is None
    assert missing("cifar10") is None and missing("mnist", split="train") is None  # downloadable

    celeba = missing("celeba")
    assert "CelebA" in celeba and "img_align_celeba.zip" in celeba and "SEATBELT_DATA" in celeba
    assert "\n" not in celeba
    assert str(tmp_path / "absent") in missing("chairs", root=tmp_path / "absent")
    assert "basel_face_renders.pth" in missing("faces3d")
    assert "train_32x32.mat" in missing("svhn")
    assert "test_32x32.mat" in missing("svhn", split="test")
    with zipfile.ZipFile(tmp_path / "celeba-10k-jpeg.zip", "w"):
        pass
    assert missing("celeba", root=tmp_path) is None
    monkeypatch.setenv("SEATBELT_DATA", str(tmp_path))
    assert missing("celeba") is None

    monkeypatch.setenv("SEATBELT_DOWNLOAD", "0")
    cifar = missing("cifar10")
    assert "cifar-10-python.tar.gz" in cifar and "SEATBELT_DOWNLOAD=0" in cifar
    (tmp_path / "cifar-10-batches-py").mkdir()
    assert missing("cifar10") is None  # present, so downloading does not matter
    assert "train-images-idx3-ubyte.gz" in missing("mnist", split="train")
    with pytest.raises(ValueError, match="unknown dataset 'imagenet'"):
        missing("imagenet")
    with pytest.raises(ValueError, match="split must be one of"):
        missing("mnist", split="validation")
