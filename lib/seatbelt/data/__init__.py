"""Datasets, all returned as :class:`seatbelt.data.base.Data` with items scaled to [-1, 1] on
access.

Generated: :func:`dsprites` (or the official npz when present), :func:`swiss_roll`.
Real images, read from the data root (``root=`` or $SEATBELT_DATA): :func:`cifar10`, :func:`svhn`,
:func:`celeba`, :func:`mnist`, :func:`chairs`, :func:`faces3d` (CIFAR-10 and MNIST are downloaded
on first use unless $SEATBELT_DOWNLOAD=0). :func:`missing` says beforehand, without reading any
data, whether a dataset can be had and if not how to get it.

``seatbelt.data.dsprites`` is the loader function; the renderer and index helpers live in the
module of the same name: ``from seatbelt.data.dsprites import render, index_of, factors_of``.
"""

from .base import Data
from .dsprites import dsprites
from .files import DamagedFileError, DatasetNotFoundError, fetch
from .images import celeba, chairs, cifar10, faces3d, missing, mnist, svhn
from .swissroll import swiss_roll

__all__ = [
    "DamagedFileError",
    "Data",
    "DatasetNotFoundError",
    "celeba",
    "chairs",
    "cifar10",
    "dsprites",
    "faces3d",
    "fetch",
    "missing",
    "mnist",
    "svhn",
    "swiss_roll",
]
