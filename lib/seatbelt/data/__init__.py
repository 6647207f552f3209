"""Datasets, all returned as :class:`seatbelt.data.base.Data` with items scaled to [-1, 1] on access."""

from .base import Data

__all__ = ["Data"]
