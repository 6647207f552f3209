"""Real image datasets: CIFAR-10, SVHN, CelebA, MNIST, 3D Chairs and 3D Faces, in their published
layouts.

Every loader takes ``root`` (default: the ``SEATBELT_DATA`` directory), looks for the dataset's
usual files there, decodes them once into uint8 arrays (N, C, H, W) cached on disk (see
:mod:`seatbelt.data.files`), and returns :class:`Data` with ``levels=256``. A missing dataset
raises :class:`DatasetNotFoundError` naming the files to get and the directory to put them in;
:func:`missing` says so beforehand without reading anything. CIFAR-10 and MNIST, which have
official checksummed files, are downloaded on first use into the cache (``SEATBELT_DOWNLOAD=0``
or ``download=False`` turns that off; see :mod:`seatbelt.data.files`); the other datasets need a
registration or a manual step. A damaged file raises :class:`DamagedFileError` naming the file
(and the archive member).

The decoded cache is keyed on the sources, the loader's parameters and preprocessing constants,
a digest of this module's and :mod:`seatbelt.data.archives`' code (comments and docstrings
aside) and the Pillow version: a change to any of them decodes again, with no version to bump.

Layouts read (file names relative to the data root; the first one found wins):

- CIFAR-10: ``cifar-10-batches-py/`` (the official python pickles), ``cifar-10-python.tar.gz`` (the
  official archive, read without extracting), or ``cifar10-jpeg.zip`` (``train/<class>/NNNN.jpg``,
  ``test/<class>/NNNN.jpg``; sorted by class, then file name); in the data root, else in the
  download cache.
- SVHN (cropped digits, Netzer et al. 2011): the official ``{train,test,extra}_32x32.mat`` in
  ``svhn/`` or the root itself, read with ``scipy.io.loadmat``: ``X`` is (32, 32, 3, N) uint8 and
  ``y`` (N, 1) holds 1..10, where 10 stands for the digit 0 (mapped here to label 0).
- CelebA: aligned JPEGs in ``img_align_celeba/`` or ``img_align_celeba.zip`` (official), or in
  ``celeba-10k-jpeg.zip`` (``celebA/NNNNNN.jpg``); sorted by file name. Preprocessed as Chen et al.
  (2018): a centred square crop of 148/178 of the width, resized (bilinear, antialiased) to size.
- MNIST: ``mnist/`` or the root itself, holding the official IDX files
  ``{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz``, else ``mnist/`` in the download cache.
- 3D Chairs (Aubry et al. 2014): ``rendered_chairs/<model>/renders/image_NNN_pPPP_tTTT_rRRR.png``,
  or the official ``rendered_chairs.tar`` holding that tree; 62 views per model (2 elevations x
  31 azimuths). Preprocessed to greyscale (on white where a render has transparency), a centred
  square crop of CHAIRS_CROP of the side (removing most of the white border, in the spirit of
  Kulkarni et al. 2015; the exact crop used by the paper is not published), resized to size.
- 3D Faces (Paysan et al. 2009, as rendered for Chen et al. 2018): ``basel_face_renders.pth``, the
  torch-saved uint8 tensor that the beta-TCVAE code loads, either (50, 21, 11, 11, 64, 64) or flat
  (127050, 64, 64), the grid being identity x azimuth x elevation x lighting in C order.
"""

from __future__ import annotations

import functools
import gzip
import io
import os
import pickle
import re
import zlib
from pathlib import Path
from typing import Any, Callable

import numpy as np
import PIL
import scipy.io
import torch
import torch.nn.functional as F
from PIL import Image

from .. import digest
from .archives import damaged, kind, members
from .base import Data
from .files import (
    DOWNLOAD_ENV,
    DamagedFileError,
    DatasetNotFoundError,
    cache_dir,
    cached,
    describe_root,
    downloads_on,
    existing_root,
    fetch,
    source_key,
)

_NATIVE = 64

CIFAR10_CLASSES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
CIFAR10_ARCHIVE = "cifar-10-python.tar.gz"
CIFAR10_FILES = ("cifar-10-batches-py", CIFAR10_ARCHIVE, "cifar10-jpeg.zip")
CIFAR10_URL = f"https://www.cs.toronto.edu/~kriz/{CIFAR10_ARCHIVE}"
CIFAR10_SHA256 = "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"

MNIST_URL = (
    "https://storage.googleapis.com/cvdf-datasets/mnist/"  # the CVDF mirror of the official files
)
MNIST_SHA256 = {
    "train-images-idx3-ubyte.gz": (
        "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"
    ),
    "train-labels-idx1-ubyte.gz": (
        "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"
    ),
    "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
}

SVHN_URL = "http://ufldl.stanford.edu/housenumbers/"  # the official host of the .mat files
SVHN_SPLITS = ("train", "test", "extra")

CELEBA_FILES = ("img_align_celeba", "img_align_celeba.zip", "celeba-10k-jpeg.zip")
CELEBA_URL = "https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html"
CELEBA_CROP = 148 / 178  # side of the centred square crop, as a fraction of the image width
CHAIRS_FILES = ("rendered_chairs", "rendered_chairs.tar")
CHAIRS_CROP = 0.75  # side of the centred square crop of a chair render (600 px -> 450 px)
CHAIRS_URL = "https://www.di.ens.fr/willow/research/seeing3Dchairs/data/rendered_chairs.tar"
FACES_FILE = "basel_face_renders.pth"
FACES_GRID = (50, 21, 11, 11)
FACES_FACTORS = ("identity", "azimuth", "elevation", "lighting")

GENERATED = ("dsprites", "swissroll", "swiss_roll")
_DOWNLOAD_OFF = (
    f" Downloading is off (download=False or {DOWNLOAD_ENV}=0): pass download=True or set "
    f"{DOWNLOAD_ENV}=1 to fetch it."
)


def missing(
    name: str, *, split: str | None = None, root: str | os.PathLike | None = None
) -> str | None:
    """None when dataset ``name`` can be had: generated, found on disk, or downloadable with
    downloads on; else one line saying what is missing and how to get it.

    Cheap (it only looks for files, and assumes a download would succeed), so a chapter can ask
    before any work. ``split`` matters for MNIST (default "test") and SVHN (default "train").
    """
    if name in GENERATED:
        return None
    if name == "cifar10":
        if _cifar10_source(root) or downloads_on():
            return None
        return _cifar10_missing(root) + _DOWNLOAD_OFF
    if name == "mnist":
        split = split or "test"
        _check_split(split, ("train", "test"))
        if _mnist_folder(split, root) or downloads_on():
            return None
        return _mnist_missing(split, root) + _DOWNLOAD_OFF
    if name == "svhn":
        split = split or "train"
        _check_split(split, SVHN_SPLITS)
        return None if _svhn_file(split, root) else _svhn_missing(split, root)
    manual = {
        "celeba": (CELEBA_FILES, _celeba_missing),
        "chairs": (CHAIRS_FILES, _chairs_missing),
        "faces3d": ((FACES_FILE,), _faces_missing),
    }
    if name not in manual:
        known = GENERATED + ("cifar10", "mnist", "svhn", *manual)
        raise ValueError(f"unknown dataset {name!r}; seatbelt.data knows {known}.")
    files, message = manual[name]
    return None if _find(root, files) else message(root)


def cifar10(
    split: str = "train", root: str | os.PathLike | None = None, *, download: bool | None = None
) -> Data:
    """CIFAR-10 ``split`` ("train": 50,000, "test": 10,000), uint8 (N, 3, 32, 32), labels 0..9.

    When no layout is found in the data root or the download cache, the official archive is
    downloaded (``download``: default $SEATBELT_DOWNLOAD, on).
    """
    _check_split(split, ("train", "test"))
    src = _cifar10_source(root)
    if src is None:
        src = cache_dir() / CIFAR10_ARCHIVE
        _download(_cifar10_missing(root), download, [(CIFAR10_URL, src, CIFAR10_SHA256)])
    reader = _cifar_jpeg if kind(src) == "zip" else _cifar_pickles
    arrays = cached(f"cifar10-{split}", _key([src], split=split), lambda: reader(src, split))
    return Data(
        name="cifar10",
        x=torch.from_numpy(arrays["x"]),
        levels=256,
        labels=torch.from_numpy(arrays["labels"]),
        class_names=CIFAR10_CLASSES,
        meta={"split": split, "source": src.name},
    )


def _cifar10_source(root: str | os.PathLike | None) -> Path | None:
    return _find(root, CIFAR10_FILES) or _find(cache_dir(), CIFAR10_FILES)


def _cifar10_missing(root: str | os.PathLike | None) -> str:
    return (
        f"CIFAR-10 not found in {describe_root(root)} or {cache_dir()}: put one of "
        f"{list(CIFAR10_FILES)} in the data directory (the official archive is {CIFAR10_URL})."
    )


def svhn(split: str = "train", root: str | os.PathLike | None = None) -> Data:
    """SVHN cropped digits ``split`` ("train": 73,257, "test": 26,032, "extra": 531,131) as uint8
    (N, 3, 32, 32) with labels 0..9 (the files' label 10 is the digit 0)."""
    _check_split(split, SVHN_SPLITS)
    path = _svhn_file(split, root)
    if path is None:
        raise DatasetNotFoundError(_svhn_missing(split, root))
    arrays = cached(f"svhn-{split}", _key([path]), lambda: _svhn_mat(path))
    return Data(
        name="svhn",
        x=torch.from_numpy(arrays["x"]),
        levels=256,
        labels=torch.from_numpy(arrays["labels"]),
        class_names=tuple(str(d) for d in range(10)),
        meta={"split": split, "source": path.name},
    )


def _svhn_file(split: str, root: str | os.PathLike | None) -> Path | None:
    base = existing_root(root)
    if base is None:
        return None
    name = f"{split}_32x32.mat"
    return next((d / name for d in (base / "svhn", base) if (d / name).is_file()), None)


def _svhn_missing(split: str, root: str | os.PathLike | None) -> str:
    base = existing_root(root)
    where = f"{base / 'svhn'} (or {base})" if base else describe_root(root)
    return (
        f"SVHN {split} split not found: need {split}_32x32.mat in {where}. The official "
        f"files {', '.join(f'{s}_32x32.mat' for s in SVHN_SPLITS)} are at {SVHN_URL}."
    )


def celeba(root: str | os.PathLike | None = None, size: int = 64) -> Data:
    """CelebA aligned faces, centre-cropped and resized to uint8 (N, 3, size, size); no labels."""
    _check_size(size)
    src = _find(root, CELEBA_FILES)
    if src is None:
        raise DatasetNotFoundError(_celeba_missing(root))

    def build() -> dict[str, np.ndarray]:
        decoded = _decoded(
            src,
            lambda name: Path(name).name if name.lower().endswith(".jpg") else None,
            lambda image: _crop_resize(image.convert("RGB"), CELEBA_CROP, size),
        )
        if not decoded:
            raise DatasetNotFoundError(f"{src} holds no .jpg images: put the aligned faces there.")
        return {"x": np.stack([image for _, image in decoded]).transpose(0, 3, 1, 2)}

    arrays = cached(f"celeba-{size}", _key([src], size=size, crop=CELEBA_CROP), build)
    return Data(
        name="celeba",
        x=torch.from_numpy(arrays["x"]),
        levels=256,
        meta={"source": src.name, "size": size, "crop": CELEBA_CROP},
    )


def _celeba_missing(root: str | os.PathLike | None) -> str:
    return (
        f"CelebA not found in {describe_root(root)}: put the aligned images there as one of "
        f"{list(CELEBA_FILES)} (img_align_celeba.zip from the CelebA site, {CELEBA_URL}; "
        "it has no direct download)."
    )


def mnist(
    split: str = "test", root: str | os.PathLike | None = None, *, download: bool | None = None
) -> Data:
    """MNIST ``split`` ("train": 60,000, "test": 10,000) as uint8 (N, 1, 28, 28) with labels 0..9.

    Missing files are downloaded from the official mirror (``download``: default
    $SEATBELT_DOWNLOAD, on).
    """
    _check_split(split, ("train", "test"))
    names = _mnist_names(split)
    folder = _mnist_folder(split, root)
    if folder is None:
        folder = cache_dir() / "mnist"
        hint = _mnist_missing(split, root)
        _download(hint, download, [(MNIST_URL + n, folder / n, MNIST_SHA256[n]) for n in names])
    images, labels = (folder / n for n in names)

    def build() -> dict[str, np.ndarray]:
        x, y = _read_idx(images), _read_idx(labels)
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
            raise DamagedFileError(
                f"MNIST files in {folder} disagree: images {x.shape}, labels {y.shape}. "
                f"Replace {images.name} and {labels.name} with the official files ({MNIST_URL})."
            )
        return {"x": x[:, None], "labels": y.astype(np.int64)}

    arrays = cached(f"mnist-{split}", _key([images, labels]), build)
    return Data(
        name="mnist",
        x=torch.from_numpy(arrays["x"]),
        levels=256,
        labels=torch.from_numpy(arrays["labels"]),
        class_names=tuple(str(d) for d in range(10)),
        meta={"split": split, "source": images.name},
    )


def _mnist_names(split: str) -> list[str]:
    prefix = "train" if split == "train" else "t10k"
    return [f"{prefix}-images-idx3-ubyte.gz", f"{prefix}-labels-idx1-ubyte.gz"]


def _mnist_dirs(root: str | os.PathLike | None) -> list[Path]:
    base = existing_root(root)
    return ([base / "mnist", base] if base else []) + [cache_dir() / "mnist"]


def _mnist_folder(split: str, root: str | os.PathLike | None) -> Path | None:
    names = _mnist_names(split)
    return next((d for d in _mnist_dirs(root) if all((d / n).is_file() for n in names)), None)


def _mnist_missing(split: str, root: str | os.PathLike | None) -> str:
    names = _mnist_names(split)
    base = existing_root(root)
    where = f"{base / 'mnist'} (or {base})" if base else describe_root(root)
    present = [str(d / n) for d in _mnist_dirs(root) for n in names if (d / n).is_file()]
    return (
        f"MNIST {split} split not found: need {names[0]} and {names[1]} in {where}"
        + (f"; only {present} exist" if present else "")
        + f". Get them from {MNIST_URL}."
    )


def _find(root: str | os.PathLike | None, names: tuple[str, ...]) -> Path | None:
    """The first of ``names`` in the data directory ``root``; None if there is none (or no root)."""
    base = existing_root(root)
    return next((base / n for n in names if (base / n).exists()), None) if base else None


def _download(hint: str, download: bool | None, files: list[tuple[str, Path, str]]) -> None:
    """Fetch each (url, destination, sha256), or raise DatasetNotFoundError: ``hint``, why not."""
    if not downloads_on(download):
        raise DatasetNotFoundError(hint + _DOWNLOAD_OFF)
    for url, dest, sha256 in files:
        try:
            fetch(url, dest, sha256)
        except OSError as e:  # offline, refused or timed out: urllib's errors are OSErrors
            failed = f"Downloading {url} failed ({e}): retry online, or put the files in place."
            raise DatasetNotFoundError(f"{hint} {failed}") from e


@functools.cache
def _decoder() -> str:
    """A digest of the code that decodes sources into arrays and of Pillow, whose JPEG decoder and
    resampling shape the pixels: a change to either decodes again."""
    code = digest.digest(digest.modules(["data.images", "data.archives"]))
    return f"{code}-pillow{PIL.__version__}"


def _key(sources: list[Path], **params) -> str:
    """The decoded cache key: the sources, the parameters and constants used, and the decoder."""
    return source_key(sources, decoder=_decoder(), **params)


def chairs(root: str | os.PathLike | None = None, size: int = 64) -> Data:
    """3D Chairs renders as greyscale uint8 (N, 1, size, size).

    labels: chair model (class_names: the model folder names, sorted); factors: (model, elevation,
    azimuth) class indices; factor_values: (model index, elevation in degrees, azimuth in degrees).
    """
    _check_size(size)
    src = _find(root, CHAIRS_FILES)
    if src is None:
        raise DatasetNotFoundError(_chairs_missing(root))
    pattern = re.compile(
        r"(?:^|/)rendered_chairs/([^/]+)/renders/(image_\d+_p(\d+)_t(\d+)_r\d+\.png)$"
    )

    def key_of(name: str) -> tuple[str, str, int, int] | None:
        match = pattern.search(name)
        return (match[1], match[2], int(match[3]), int(match[4])) if match else None

    def build() -> dict[str, np.ndarray]:
        decoded = _decoded(
            src, key_of, lambda image: _crop_resize(_on_white(image), CHAIRS_CROP, size)
        )
        if not decoded:
            raise DatasetNotFoundError(
                f"{src} holds no renders named "
                "rendered_chairs/<model>/renders/image_*_p*_t*_r*.png."
            )
        keys = [key for key, _ in decoded]
        models, elevations, azimuths = (
            np.array(sorted({key[k] for key in keys})) for k in (0, 2, 3)
        )
        factors = np.array(
            [
                (
                    np.searchsorted(models, m),
                    np.searchsorted(elevations, p),
                    np.searchsorted(azimuths, t),
                )
                for m, _, p, t in keys
            ]
        )
        return {
            "x": np.stack([image for _, image in decoded])[:, None],
            "factors": factors.astype(np.int64),
            "elevations": elevations.astype(np.float32),
            "azimuths": azimuths.astype(np.float32),
            "models": models,
        }

    arrays = cached(f"chairs-{size}", _key([src], size=size, crop=CHAIRS_CROP), build)
    factors = torch.from_numpy(arrays["factors"])
    values = torch.stack(
        [
            factors[:, 0].float(),
            torch.from_numpy(arrays["elevations"])[factors[:, 1]],
            torch.from_numpy(arrays["azimuths"])[factors[:, 2]],
        ],
        1,
    )
    return Data(
        name="chairs",
        x=torch.from_numpy(arrays["x"]),
        levels=256,
        labels=factors[:, 0].clone(),
        factors=factors,
        factor_values=values,
        factor_names=("model", "elevation", "azimuth"),
        class_names=tuple(arrays["models"].tolist()),
        meta={"source": src.name, "size": size, "crop": CHAIRS_CROP},
    )


def _chairs_missing(root: str | os.PathLike | None) -> str:
    return (
        f"3D Chairs not found in {describe_root(root)}: put rendered_chairs/ (or "
        f"rendered_chairs.tar, unextracted) there; get it from {CHAIRS_URL}."
    )


def faces3d(root: str | os.PathLike | None = None, size: int = 64) -> Data:
    """3D Faces as greyscale uint8 (N, 1, size, size) with factors (identity, azimuth, elevation,
    lighting).

    The tensor file is read directly (it is already decoded, so there is no cache); below 64x64,
    images are reduced by block averaging.
    """
    _check_size(size)
    path = _find(root, (FACES_FILE,))
    if path is None:
        raise DatasetNotFoundError(_faces_missing(root))
    try:
        images = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError) as e:  # torch.load on a damaged file
        raise damaged(path, None, f"is not a readable torch file ({e})") from e
    if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8:
        got = f"{type(images).__name__} {getattr(images, 'dtype', '')}"
        raise ValueError(f"{path} must hold a uint8 tensor, got {got}.")
    if images.ndim == 6:
        grid = tuple(images.shape[:4])
    elif images.ndim == 3 and len(images) == np.prod(FACES_GRID):
        grid = FACES_GRID
    else:
        raise ValueError(
            f"{path} holds a tensor of shape {tuple(images.shape)}; expected "
            f"{FACES_GRID + (64, 64)} or ({np.prod(FACES_GRID)}, 64, 64) (identity x azimuth x "
            "elevation x lighting)."
        )
    if tuple(images.shape[-2:]) != (_NATIVE, _NATIVE):
        raise ValueError(f"{path}: images must be 64x64, got {tuple(images.shape[-2:])}.")
    x = images.reshape(-1, 1, _NATIVE, _NATIVE)
    if size != _NATIVE:
        small = torch.empty(len(x), 1, size, size, dtype=torch.uint8)
        for start in range(0, len(x), 8192):  # chunks keep the float copy small
            mean = F.avg_pool2d(
                x[start : start + 8192].float(), _NATIVE // size
            )  # exact: block sizes are powers of 2
            small[start : start + 8192] = torch.floor(mean + 0.5)  # rounded half up
        x = small
    factors = torch.cartesian_prod(*(torch.arange(n) for n in grid)).reshape(-1, 4)
    return Data(
        name="faces3d",
        x=x,
        levels=256,
        labels=factors[:, 0].clone(),
        factors=factors,
        factor_names=FACES_FACTORS,
        meta={"source": path.name, "size": size, "grid": grid},
    )


def _faces_missing(root: str | os.PathLike | None) -> str:
    return (
        f"3D Faces not found: put {FACES_FILE} (the uint8 tensor of Basel face renders used by the "
        f"beta-TCVAE code of Chen et al. 2018, obtained from its authors) in {describe_root(root)}."
    )


def _check_split(split: str, allowed: tuple[str, ...]) -> None:
    if split not in allowed:
        raise ValueError(f"split must be one of {allowed}, got {split!r}.")


def _check_size(size: int) -> None:
    if not isinstance(size, int) or size < 1 or _NATIVE % size:
        raise ValueError(
            "size must be a whole divisor of 64 (64 as in the paper, 32 for CPU runs), got "
            f"{size!r}."
        )


def _crop_resize(image: Image.Image, fraction: float, size: int) -> np.ndarray:
    """Centred square crop of side ``fraction`` of the width, resized to size x size (antialiased
    bilinear)."""
    w, h = image.size
    side = round(w * fraction)
    left, top = (w - side) // 2, (h - side) // 2
    return np.asarray(
        image.crop((left, top, left + side, top + side)).resize((size, size), Image.BILINEAR)
    )


def _on_white(image: Image.Image) -> Image.Image:
    """Greyscale, with any transparent background made white."""
    rgba = image.convert("RGBA")
    return Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba).convert("L")


def _decoded(
    src: Path, key_of: Callable[[str], Any], decode: Callable[[Image.Image], np.ndarray]
) -> list[tuple[Any, np.ndarray]]:
    """(key, decoded image) for each file of ``src`` that ``key_of`` gives a key (not None), sorted
    by key.

    Files are decoded one at a time as the source is read, so only decoded arrays stay in memory.
    """
    out = []
    for name, read in members(src):
        key = key_of(name)
        if key is not None:
            try:
                with Image.open(io.BytesIO(read())) as image:
                    out.append((key, decode(image)))
            except (OSError, SyntaxError) as e:  # Pillow's errors for bad data (SyntaxError: PNG)
                raise damaged(src, name, f"is not a readable image ({e})") from e
    out.sort(key=lambda item: item[0])
    return out


def _cifar_jpeg(src: Path, split: str) -> dict[str, np.ndarray]:
    def key_of(name: str) -> tuple[int, str] | None:
        parts = name.split("/")
        if len(parts) != 3 or parts[0] != split or not parts[2].endswith(".jpg"):
            return None
        if parts[1] not in CIFAR10_CLASSES:
            raise ValueError(
                f"{src}: {name} is in an unknown class folder {parts[1]!r}; expected "
                f"{CIFAR10_CLASSES}. Remove it, or rebuild the zip with the official class names."
            )
        return CIFAR10_CLASSES.index(parts[1]), parts[2]

    decoded = _decoded(src, key_of, lambda image: np.asarray(image.convert("RGB")))
    if not decoded:
        raise DatasetNotFoundError(f"{src} holds no {split}/<class>/*.jpg images.")
    x = np.stack([image for _, image in decoded]).transpose(0, 3, 1, 2)
    return {"x": x, "labels": np.array([label for (label, _), _ in decoded], dtype=np.int64)}


class _CifarUnpickler(pickle.Unpickler):
    """Loads only what a CIFAR batch holds (dicts, lists, bytes and numpy arrays): a pickle cannot
    run code."""

    _allowed = {
        ("_codecs", "encode"),  # how protocol-2 pickles written by Python 3 store bytes
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self._allowed:
            raise pickle.UnpicklingError(
                f"CIFAR batch refers to {module}.{name}, which a CIFAR batch never holds."
            )
        return super().find_class(module, name)


def _cifar_pickles(src: Path, split: str) -> dict[str, np.ndarray]:
    """The official python batches, from the ``cifar-10-batches-py`` folder or an archive of it."""
    batches = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    raw: dict[str, tuple[str, bytes]] = {}
    for name, read in members(src):
        if Path(name).name in batches:
            raw[Path(name).name] = name, read()
    absent = [b for b in batches if b not in raw]
    if absent:
        raise DatasetNotFoundError(
            f"{src} lacks the CIFAR-10 batch files {absent}: replace it with the official archive "
            f"({CIFAR10_URL})."
        )
    parsed = [_cifar_batch(src, *raw[b]) for b in batches]
    return {
        "x": np.concatenate([x for x, _ in parsed]),
        "labels": np.concatenate([y for _, y in parsed]),
    }


def _cifar_batch(src: Path, name: str, raw: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 3, 32, 32) and labels of one pickled batch, ``name`` inside ``src``."""
    try:
        d = _CifarUnpickler(io.BytesIO(raw), encoding="bytes").load()
        data = np.asarray(d[b"data"], dtype=np.uint8)
        labels = np.asarray(d[b"labels"], dtype=np.int64)
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, KeyError) as e:
        raise damaged(src, name, f"is not a CIFAR-10 python batch ({type(e).__name__}: {e})") from e
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(labels) != len(data):
        problem = f"holds data {data.shape} and labels {labels.shape}, not (N, 3072) and N labels"
        raise damaged(src, name, problem)
    return data.reshape(-1, 3, 32, 32), labels  # rows hold the red, green, blue planes in turn


def _svhn_mat(path: Path) -> dict[str, np.ndarray]:
    """X (32, 32, 3, N) and y (N, 1) of an SVHN .mat file as x (N, 3, 32, 32) uint8 and labels
    0..9."""
    try:
        mat = scipy.io.loadmat(path, variable_names=("X", "y"))
    except (
        scipy.io.matlab.MatReadError,
        ValueError,
        NotImplementedError,
        OSError,
    ) as e:  # truncated, HDF5 (v7.3)
        raise ValueError(
            f"{path} is not a readable SVHN .mat file (MATLAB v5 with X and y): {e}"
        ) from e
    if "X" not in mat or "y" not in mat:
        raise ValueError(
            f"{path} lacks the SVHN variables X and y; it holds "
            f"{sorted(k for k in mat if not k.startswith('__'))}."
        )
    x, y = mat["X"], np.asarray(mat["y"]).reshape(-1)
    if x.ndim != 4 or x.shape[:3] != (32, 32, 3) or x.shape[3] != len(y):
        raise ValueError(
            f"{path}: expected X of shape (32, 32, 3, N) and N labels, got X {x.shape} and "
            f"{len(y)} labels."
        )
    if x.dtype != np.uint8:
        raise ValueError(f"{path}: X must be uint8 pixels, got {x.dtype}.")
    if len(y) and (y.min() < 1 or y.max() > 10 or not np.all(y == np.round(y))):
        raise ValueError(
            f"{path}: SVHN labels are the integers 1..10, got values in [{y.min()}, {y.max()}]."
        )
    return {"x": np.ascontiguousarray(x.transpose(3, 2, 0, 1)), "labels": (y.astype(np.int64) % 10)}


def _read_idx(path: Path) -> np.ndarray:
    """An unsigned-byte IDX array (the MNIST format) from a gzip file."""
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as e:  # not gzip, or truncated
        raise damaged(path, None, f"is not a readable gzip file ({e})") from e
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        problem = f"is not an unsigned-byte IDX file (bad magic number {raw[:4].hex()})"
        raise damaged(path, None, problem)
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * k : 8 + 4 * k], "big") for k in range(ndim))
    body = raw[4 + 4 * ndim :]
    if len(body) != np.prod(shape):
        raise damaged(path, None, f"has a header saying {shape} but holds {len(body)} bytes")
    return np.frombuffer(body, dtype=np.uint8).reshape(shape).copy()
