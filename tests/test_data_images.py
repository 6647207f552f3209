"""Real-image loaders on tiny fixtures in each published layout, the cache, downloads, and the real
files."""

import gzip
import hashlib
import importlib
import io
import os
import pickle
import tarfile
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from seatbelt.data import (
    DamagedFileError,
    DatasetNotFoundError,
    celeba,
    chairs,
    cifar10,
    faces3d,
    fetch,
    mnist,
)
from seatbelt.data.files import cache_dir, cached, describe_root, existing_root

images = importlib.import_module("seatbelt.data.images")

torch.set_num_threads(1)
_USER_CACHE = os.environ.get("SEATBELT_CACHE")


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SEATBELT_CACHE", str(tmp_path / "cache"))


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    """No test touches the network: downloads are off unless a test turns them on, and even then
    only file:// URLs open."""
    monkeypatch.setenv("SEATBELT_DOWNLOAD", "0")
    real = urllib.request.urlopen

    def local_only(url, *args, **kwargs):
        if not str(url).startswith("file:"):
            raise AssertionError(f"a test tried to download {url}")
        return real(url, *args, **kwargs)

    monkeypatch.setattr(urllib.request, "urlopen", local_only)


def _jpeg(array, **kw):
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="JPEG", quality=95, subsampling=0, **kw)
    return buf.getvalue()


def _png(image):
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


# ---------------------------------------------------------------- data root and downloads


def test_the_data_root_is_optional_and_errors_say_where_it_is(tmp_path, monkeypatch):
    monkeypatch.delenv("SEATBELT_DATA", raising=False)
    assert existing_root() is None
    assert "none set" in describe_root() and "SEATBELT_DATA" in describe_root()
    assert existing_root(tmp_path / "missing") is None
    assert describe_root(tmp_path / "missing") == f"{tmp_path / 'missing'} (which does not exist)"
    monkeypatch.setenv("SEATBELT_DATA", str(tmp_path))
    assert existing_root() == tmp_path and describe_root() == str(tmp_path)
    monkeypatch.delenv("SEATBELT_DATA")
    with pytest.raises(DatasetNotFoundError, match="SEATBELT_DATA"):
        cifar10()


def test_fetch_checks_the_sha256(tmp_path):
    src = tmp_path / "remote.bin"
    src.write_bytes(b"official bytes" * 1000)
    good = hashlib.sha256(src.read_bytes()).hexdigest()
    dest = tmp_path / "data" / "file.bin"
    assert fetch(src.as_uri(), dest, good) == dest
    assert dest.read_bytes() == src.read_bytes()
    src.unlink()
    assert fetch(src.as_uri(), dest, good) == dest  # present with the right checksum: no download

    other = tmp_path / "data" / "other.bin"
    (tmp_path / "remote2.bin").write_bytes(b"tampered")
    with pytest.raises(ValueError, match="Checksum mismatch"):
        fetch((tmp_path / "remote2.bin").as_uri(), other, good)
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == [
        "file.bin"
    ]  # no partial file left
    with pytest.raises(ValueError, match="64 hex digits"):
        fetch(src.as_uri(), other, "abc")


def test_cache_builds_once_and_rebuilds_when_the_source_changes(tmp_path):
    _write_cifar_batches(tmp_path)
    calls = []
    real = images._cifar_pickles

    def counting(src, split):
        calls.append(split)
        return real(src, split)

    with pytest.MonkeyPatch.context() as m:
        m.setattr(images, "_cifar_pickles", counting)
        a = cifar10("test", tmp_path)
        b = cifar10("test", tmp_path)
        assert calls == ["test"] and torch.equal(a.x, b.x)
        batch = tmp_path / "cifar-10-batches-py" / "test_batch"
        os.utime(batch, ns=(batch.stat().st_atime_ns, batch.stat().st_mtime_ns + 10**9))
        cifar10("test", tmp_path)
        assert calls == ["test", "test"]
    entries = sorted(p.name for p in cache_dir().iterdir())
    assert len(entries) == 2 and all(
        e.startswith("cifar10-test-") for e in entries
    )  # no temporary leftovers


def test_cached_round_trips_arrays(tmp_path):
    arrays = {"x": np.arange(12, dtype=np.uint8).reshape(3, 4), "names": np.array(["a", "bc"])}
    first = cached("demo", "k1", lambda: arrays)
    again = cached("demo", "k1", lambda: pytest.fail("built twice"))
    for out in (first, again):
        np.testing.assert_array_equal(out["x"], arrays["x"])
        assert out["names"].tolist() == ["a", "bc"]


# ---------------------------------------------------------------- CIFAR-10


def _write_cifar_batches(root, per_batch=3):
    rng = np.random.default_rng(0)
    folder = root / "cifar-10-batches-py"
    folder.mkdir()
    written = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, per_batch).tolist()
        batch = {
            b"batch_label": name.encode(),
            b"labels": labels,
            b"data": data,
            b"filenames": [b"f.png"] * per_batch,
        }
        (folder / name).write_bytes(
            pickle.dumps(batch, protocol=2)
        )  # python-2 era protocol, bytes keys
        written[name] = (data, labels)
    meta = {b"label_names": [c.encode() for c in images.CIFAR10_CLASSES]}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return written


def test_cifar_pickles_give_planes_and_labels(tmp_path):
    written = _write_cifar_batches(tmp_path)
    train, test = cifar10("train", tmp_path), cifar10("test", tmp_path)
    assert (
        train.x.shape == (15, 3, 32, 32) and test.x.shape == (3, 3, 32, 32) and train.levels == 256
    )
    data = np.concatenate([written[f"data_batch_{i}"][0] for i in range(1, 6)])
    np.testing.assert_array_equal(
        train.x[:, 0].reshape(15, -1).numpy(), data[:, :1024]
    )  # red plane first
    np.testing.assert_array_equal(train.x[:, 2].reshape(15, -1).numpy(), data[:, 2048:])
    assert train.labels.tolist() == sum((written[f"data_batch_{i}"][1] for i in range(1, 6)), [])
    assert test.labels.tolist() == written["test_batch"][1]
    assert train.class_names == images.CIFAR10_CLASSES and train.meta["source"].endswith(
        "cifar-10-batches-py"
    )


def test_cifar_archive_reads_like_the_folder(tmp_path):
    (tmp_path / "unpacked").mkdir()
    _write_cifar_batches(tmp_path / "unpacked")
    with tarfile.open(tmp_path / "cifar-10-python.tar.gz", "w:gz") as t:
        t.add(tmp_path / "unpacked" / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    from_tar = cifar10("train", tmp_path)
    from_dir = cifar10("train", tmp_path / "unpacked")
    assert from_tar.meta["source"].endswith(".tar.gz")
    assert torch.equal(from_tar.x, from_dir.x) and torch.equal(from_tar.labels, from_dir.labels)


class _Trojan:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_cifar_pickle_cannot_run_code(tmp_path):
    _write_cifar_batches(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "test_batch").write_bytes(
        pickle.dumps({b"data": _Trojan()})
    )
    with pytest.raises(DamagedFileError, match="test_batch is not a CIFAR-10 python batch.*print"):
        cifar10("test", tmp_path)


def test_cifar_jpeg_zip_layout(tmp_path):
    colours = {}
    with zipfile.ZipFile(tmp_path / "cifar10-jpeg.zip", "w") as z:
        for split in ("train", "test"):
            for label, cls in [(7, "horse"), (0, "airplane")]:
                for k in (2, 1):
                    colour = (20 * label + 10, 60 * k, 100 if split == "train" else 200)
                    z.writestr(
                        f"{split}/{cls}/{k:04d}.jpg", _jpeg(np.full((32, 32, 3), colour, np.uint8))
                    )
                    colours[split, label, k] = colour
    d = cifar10("train", tmp_path)
    assert d.x.shape == (4, 3, 32, 32) and d.labels.tolist() == [
        0,
        0,
        7,
        7,
    ]  # by class, then file name
    expected = [colours["train", label, k] for label in (0, 7) for k in (1, 2)]
    mean = d.x.float().mean((2, 3))
    torch.testing.assert_close(mean, torch.tensor(expected, dtype=torch.float32), atol=3, rtol=0)
    assert cifar10("test", tmp_path).x[:, 2].float().mean().item() == pytest.approx(200, abs=3)


def test_cifar_errors(tmp_path):
    with pytest.raises(ValueError, match="split must be one of"):
        cifar10("validation", tmp_path)
    with pytest.raises(DatasetNotFoundError, match="cifar-10-python.tar.gz.*download=True"):
        cifar10("train", tmp_path)
    with zipfile.ZipFile(tmp_path / "cifar10-jpeg.zip", "w") as z:
        z.writestr("train/unicorn/0001.jpg", _jpeg(np.zeros((32, 32, 3), np.uint8)))
    with pytest.raises(ValueError, match="unknown class folder 'unicorn'"):
        cifar10("train", tmp_path)


# ---------------------------------------------------------------- MNIST


def _idx(array):
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(n).to_bytes(4, "big") for n in array.shape
    )
    return gzip.compress(header + array.tobytes())


def _write_mnist(folder, prefix, n=5):
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    y = rng.integers(0, 10, n, dtype=np.uint8)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{prefix}-images-idx3-ubyte.gz").write_bytes(_idx(x))
    (folder / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(_idx(y))
    return x, y


def test_mnist_idx_layout(tmp_path):
    x, y = _write_mnist(tmp_path / "mnist", "t10k")
    d = mnist("test", tmp_path)
    assert d.x.shape == (5, 1, 28, 28) and d.levels == 256 and d.class_names[3] == "3"
    np.testing.assert_array_equal(d.x[:, 0].numpy(), x)
    assert d.labels.dtype == torch.int64 and d.labels.tolist() == y.tolist()
    x2, _ = _write_mnist(tmp_path / "flat", "t10k")  # files directly in the root work too
    np.testing.assert_array_equal(mnist("test", tmp_path / "flat").x[:, 0].numpy(), x2)


def test_mnist_missing_train_split_names_the_files(tmp_path):
    _write_mnist(tmp_path / "mnist", "t10k")
    (tmp_path / "mnist" / "train-labels-idx1-ubyte.gz").write_bytes(_idx(np.zeros(3, np.uint8)))
    with pytest.raises(DatasetNotFoundError) as err:
        mnist("train", tmp_path)
    message = str(err.value)
    assert (
        "train-images-idx3-ubyte.gz" in message
        and str(tmp_path / "mnist") in message
        and "download=True" in message
    )


def test_mnist_rejects_a_corrupt_file(tmp_path):
    _write_mnist(tmp_path / "mnist", "t10k")
    (tmp_path / "mnist" / "t10k-images-idx3-ubyte.gz").write_bytes(
        gzip.compress(b"\x00\x00\x0d\x03" + bytes(12))
    )
    with pytest.raises(ValueError, match="magic"):
        mnist("test", tmp_path)


def test_mnist_download_verifies_checksums(tmp_path, monkeypatch):
    remote = tmp_path / "remote"
    x, _ = _write_mnist(remote, "train")
    sums = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in remote.iterdir()}
    monkeypatch.setattr(images, "MNIST_URL", remote.as_uri() + "/")
    monkeypatch.setattr(images, "MNIST_SHA256", {k: "0" * 64 for k in sums})
    root = tmp_path / "data"
    root.mkdir()
    with pytest.raises(ValueError, match="Checksum mismatch"):
        mnist("train", root, download=True)
    assert not any((cache_dir() / "mnist").iterdir())  # nothing half-written

    monkeypatch.setattr(images, "MNIST_SHA256", sums)
    d = mnist("train", root, download=True)
    np.testing.assert_array_equal(d.x[:, 0].numpy(), x)
    assert (cache_dir() / "mnist" / "train-images-idx3-ubyte.gz").is_file()


# ---------------------------------------------------------------- CelebA


def _face(width, height):
    """Red frame, green interior covering the 148/178 centre crop, a blue block in the crop's
    top-left corner."""
    side = round(width * 148 / 178)
    left, top = (width - side) // 2, (height - side) // 2
    img = np.zeros((height, width, 3), np.uint8)
    img[:] = (255, 0, 0)
    m = max(2, width // 18)
    img[top - m : top + side + m, left - m : left + side + m] = (0, 255, 0)
    b = side // 5
    img[top : top + b, left : left + b] = (0, 0, 255)
    return img


@pytest.mark.parametrize("layout", ["folder", "zip"])
def test_celeba_crops_the_centre_then_resizes(tmp_path, layout):
    if layout == "folder":
        folder = tmp_path / "img_align_celeba"
        folder.mkdir()
        for k in (2, 1):
            (folder / f"{k:06d}.jpg").write_bytes(_jpeg(_face(178, 218)))
    else:
        with zipfile.ZipFile(tmp_path / "celeba-10k-jpeg.zip", "w") as z:
            for k in (1, 2, 3):
                z.writestr(f"celebA/{k:06d}.jpg", _jpeg(_face(89, 109)))
    d = celeba(tmp_path, size=64)
    assert (
        d.x.shape == ((2 if layout == "folder" else 3), 3, 64, 64)
        and d.levels == 256
        and d.labels is None
    )
    img = d.x[0].float()
    assert img[0].max() < 40  # no red: everything outside the crop is gone
    green = img[:, 20:, 20:]
    assert green[1].min() > 200 and green[[0, 2]].max() < 40
    corner = img[:, :8, :8]  # the blue block fills the crop's top-left fifth (12.8 px at 64)
    assert corner[2].min() > 200 and corner[[0, 1]].max() < 40
    assert celeba(tmp_path, size=32).x.shape[-1] == 32


def test_celeba_errors(tmp_path):
    with pytest.raises(ValueError, match="divisor of 64"):
        celeba(tmp_path, size=100)
    with pytest.raises(DatasetNotFoundError, match="img_align_celeba.zip"):
        celeba(tmp_path)


# ---------------------------------------------------------------- 3D Chairs


def _chair_render():
    """Transparent background with an opaque black square in the middle."""
    img = Image.new("RGBA", (40, 40), (0, 0, 0, 0))
    img.paste(Image.new("RGBA", (10, 10), (0, 0, 0, 255)), (15, 15))
    return img


def _chair_files():
    files = {}
    for model in ("b_chair", "a_chair"):
        for e, p in enumerate((20, 30)):
            for a, t in enumerate((0, 11, 23)):
                name = (
                    f"rendered_chairs/{model}/renders/"
                    f"image_{e * 31 + a:03d}_p{p:03d}_t{t:03d}_r096.png"
                )
                files[name] = _png(_chair_render())
    files["rendered_chairs/all_chair_names.mat"] = b"not an image"
    return files


@pytest.mark.parametrize("layout", ["folder", "tar"])
def test_chairs_layout_factors_and_white_background(tmp_path, layout):
    files = _chair_files()
    if layout == "folder":
        for name, data in files.items():
            (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / name).write_bytes(data)
    else:
        with tarfile.open(tmp_path / "rendered_chairs.tar", "w") as t:
            for name, data in files.items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                t.addfile(info, io.BytesIO(data))
    d = chairs(tmp_path, size=32)
    assert d.x.shape == (12, 1, 32, 32) and d.levels == 256
    assert d.class_names == ("a_chair", "b_chair") and d.labels.tolist() == [0] * 6 + [1] * 6
    assert d.factor_names == ("model", "elevation", "azimuth")
    assert d.factors[:6].tolist() == [[0, e, a] for e in range(2) for a in range(3)]
    assert d.factor_values[:6, 1:].tolist() == [
        [p, t] for p in (20.0, 30.0) for t in (0.0, 11.0, 23.0)
    ]
    img = d.x[0, 0]
    assert img[0, 0] == 255 and img[16, 16] == 0  # transparent -> white, the chair stays black


# ---------------------------------------------------------------- 3D Faces


def test_faces_grid_factors_and_block_mean(tmp_path):
    g = torch.Generator().manual_seed(0)
    grid = torch.randint(0, 256, (2, 3, 2, 2, 64, 64), generator=g, dtype=torch.uint8)
    torch.save(grid, tmp_path / "basel_face_renders.pth")
    d = faces3d(tmp_path)
    assert d.x.shape == (24, 1, 64, 64) and d.levels == 256
    assert torch.equal(d.x[:, 0], grid.reshape(24, 64, 64))
    assert d.factor_names == ("identity", "azimuth", "elevation", "lighting")
    assert d.factors[7].tolist() == [0, 1, 1, 1] and d.factors[-1].tolist() == [1, 2, 1, 1]
    assert torch.equal(d.labels, d.factors[:, 0])
    small = faces3d(tmp_path, size=16)
    blocks = grid.reshape(24, 16, 4, 16, 4).double().mean((2, 4))
    assert torch.equal(small.x[:, 0], torch.floor(blocks + 0.5).to(torch.uint8))


def test_faces_errors(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="basel_face_renders.pth"):
        faces3d(tmp_path)
    torch.save(torch.zeros(5, 64, 64, dtype=torch.uint8), tmp_path / "basel_face_renders.pth")
    with pytest.raises(ValueError, match="127050"):
        faces3d(tmp_path)
    torch.save(torch.zeros(5, 64, 64), tmp_path / "basel_face_renders.pth")
    with pytest.raises(ValueError, match="uint8"):
        faces3d(tmp_path)
    with pytest.raises(ValueError, match="divisor of 64"):
        faces3d(tmp_path, size=3)
    with pytest.raises(ValueError, match="divisor of 64"):
        chairs(tmp_path, size=48)


# ---------------------------------------------------------------- the real files, when present

_REAL = Path(os.environ.get("SEATBELT_DATA", "/nonexistent"))
_real_files = pytest.mark.skipif(
    not (_REAL / "cifar10-jpeg.zip").is_file(),
    reason=(
        "SEATBELT_DATA does not point at the project's data (cifar10-jpeg.zip, "
        "celeba-10k-jpeg.zip, mnist/)"
    ),
)


@pytest.fixture
def _user_cache(monkeypatch):
    """The real files are decoded into the user's (or CI's) cache, so later runs are quick."""
    if _USER_CACHE is None:
        monkeypatch.delenv("SEATBELT_CACHE")
    else:
        monkeypatch.setenv("SEATBELT_CACHE", _USER_CACHE)


@_real_files
def test_real_files_load(_user_cache):
    m = mnist("test")
    assert m.x.shape == (10_000, 1, 28, 28) and m.labels.bincount().min() > 800
    for split, n in (("train", 50_000), ("test", 10_000)):
        c = cifar10(split)
        assert c.x.shape == (n, 3, 32, 32) and c.labels.bincount().tolist() == [n // 10] * 10
    faces = celeba(size=64)
    assert faces.x.shape == (10_000, 3, 64, 64)
    for d in (m, c, faces):
        x = d.get(slice(0, 8))
        assert x.min() >= -1 and x.max() <= 1 and x.std() > 0.1  # real, varied pixels
    with pytest.raises(DatasetNotFoundError, match="train-images-idx3-ubyte.gz"):
        mnist("train")
