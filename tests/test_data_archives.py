"""Archives read by the image loaders: the type told by content, damage reported with the archive
(and member) named, and macOS metadata skipped."""

import gzip
import io
import pickle
import re
import tarfile
import zipfile

import numpy as np
import pytest
from PIL import Image

from seatbelt.data import DamagedFileError, celeba, cifar10, mnist

APPLE_DOUBLE = b"\x00\x05\x16\x07\x00\x02\x00\x00Mac OS X        " + bytes(64)


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SEATBELT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("SEATBELT_DOWNLOAD", "0")


def _damaged(message: str, *, then: str = ""):
    """Expect DamagedFileError starting with ``message`` (literal), then the regex ``then``."""
    return pytest.raises(DamagedFileError, match=re.escape(message) + then)


def _jpeg(seed=0):
    buf = io.BytesIO()
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (109, 89, 3), dtype=np.uint8)).save(buf, format="JPEG")
    return buf.getvalue()


def _celeba_zip(root, extra=()):
    """Three faces in a stored zip, as the real one: each member's bytes appear as they are."""
    path = root / "celeba-10k-jpeg.zip"
    with zipfile.ZipFile(path, "w") as z:
        for k in (1, 2, 3):
            z.writestr(f"celebA/{k:06d}.jpg", _jpeg(k))
        for name, data in extra:
            z.writestr(name, data)
    return path


def _cifar_tar_gz(root):
    path = root / "cifar-10-python.tar.gz"
    rng = np.random.default_rng(0)
    with tarfile.open(path, "w:gz") as t:
        for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
            batch = {b"data": rng.integers(0, 256, (20, 3072), dtype=np.uint8), b"labels": [0] * 20}
            blob = pickle.dumps(batch, protocol=2)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(blob)
            t.addfile(info, io.BytesIO(blob))
    return path


def _cut(path, fraction):
    path.write_bytes(path.read_bytes()[: int(path.stat().st_size * fraction)])


def test_a_truncated_zip_is_reported_as_a_damaged_zip(tmp_path):
    path = _celeba_zip(tmp_path)
    _cut(path, 0.6)
    with _damaged(f"{path} is a zip archive that cannot be opened"):
        celeba(tmp_path, size=16)


def test_a_truncated_tar_gz_names_the_archive(tmp_path):
    path = _cifar_tar_gz(tmp_path)
    assert len(cifar10("train", tmp_path)) == 100
    _cut(path, 0.6)
    with _damaged(str(path), then=".*download cifar-10-python.tar.gz again"):
        cifar10("test", tmp_path)


def test_a_file_that_is_no_archive_says_so(tmp_path):
    path = tmp_path / "celeba-10k-jpeg.zip"
    path.write_text("<html>Sign in to download</html>")
    with _damaged(f"{path} is neither a zip nor a tar archive (it begins b'<html>"):
        celeba(tmp_path, size=16)
    path.write_bytes(b"")
    with _damaged(f"{path} is neither a zip nor a tar archive (it is empty)"):
        celeba(tmp_path, size=16)


def test_macos_metadata_is_skipped(tmp_path):
    metadata = ["__MACOSX/celebA/._000001.jpg", "celebA/._000002.jpg"]
    _celeba_zip(tmp_path, [(name, APPLE_DOUBLE) for name in metadata])
    assert len(celeba(tmp_path, size=16)) == 3
    folder = tmp_path / "folder" / "img_align_celeba"
    folder.mkdir(parents=True)
    (folder / "000001.jpg").write_bytes(_jpeg())
    (folder / "._000001.jpg").write_bytes(APPLE_DOUBLE)
    assert len(celeba(tmp_path / "folder", size=16)) == 1


def test_an_unreadable_image_names_the_archive_and_the_member(tmp_path):
    path = _celeba_zip(tmp_path, [("celebA/000004.jpg", _jpeg()[:300])])
    with _damaged(f"{path}: member celebA/000004.jpg is not a readable image"):
        celeba(tmp_path, size=16)
    folder = tmp_path / "folder" / "img_align_celeba"
    folder.mkdir(parents=True)
    (folder / "000001.jpg").write_bytes(b"not a jpeg")
    with _damaged(f"{folder / '000001.jpg'} is not a readable image", then=".*intact copy"):
        celeba(tmp_path / "folder", size=16)


def test_a_corrupt_zip_member_is_named(tmp_path):
    path = _celeba_zip(tmp_path)
    data = bytearray(path.read_bytes())
    data[data.index(_jpeg(2)) + 500] ^= 0xFF  # inside celebA/000002.jpg: its CRC no longer matches
    path.write_bytes(bytes(data))
    with _damaged(f"{path}: member celebA/000002.jpg cannot be read"):
        celeba(tmp_path, size=16)


def test_damaged_mnist_and_cifar_files_are_named(tmp_path):
    folder = tmp_path / "mnist"
    folder.mkdir()
    labels = gzip.compress(bytes([0, 0, 8, 1, 0, 0, 0, 2, 3, 4]))
    (folder / "t10k-labels-idx1-ubyte.gz").write_bytes(labels)
    header = bytes([0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 28, 0, 0, 0, 28])
    images = folder / "t10k-images-idx3-ubyte.gz"
    images.write_bytes(gzip.compress(header + bytes(2 * 28 * 28))[:-30])
    with _damaged(f"{images} is not a readable gzip file"):
        mnist("test", tmp_path)

    batch = tmp_path / "cifar-10-batches-py" / "test_batch"
    batch.parent.mkdir()
    batch.write_bytes(pickle.dumps({b"data": bytes(10), b"labels": [0]})[:-5])
    with _damaged(f"{batch} is not a CIFAR-10 python batch"):
        cifar10("test", tmp_path)
