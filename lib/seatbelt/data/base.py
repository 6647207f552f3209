"""The in-memory dataset every loader returns.

Items are stored compactly (binary or 8-bit images as uint8, vectors as float32) and turned
into float tensors in [-1, 1] only batch by batch, so the full dSprites set fits in memory.
Batches are cut by tensor slicing: no per-item DataLoader overhead.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Iterator

import torch
from torch import Tensor


@dataclass(frozen=True)
class Data:
    """A dataset held in memory.

    x:        (N, ...) items. uint8 with ``levels`` grey levels (2 for binary images stored as
              0/1, 256 for 8-bit images), or float32 already in [-1, 1] (``levels=0``).
    labels:   (N,) int64 class labels, where the dataset has them.
    factors:  (N, K) int64 factor class indices (dSprites: shape, scale, orientation, posX, posY).
    factor_values: (N, K) float32 factor values.
    packed:   binary items (levels=2) stored eight pixels to a byte along the last axis (big-endian
              bit order, as numpy.packbits), so the 64x64 dSprites set takes 377 MB, not 3 GB.
    """

    name: str
    x: Tensor
    levels: int = 256
    labels: Tensor | None = None
    factors: Tensor | None = None
    factor_values: Tensor | None = None
    factor_names: tuple[str, ...] = ()
    class_names: tuple[str, ...] = ()
    meta: dict = field(default_factory=dict)
    packed: bool = False

    def __post_init__(self):
        if self.levels == 0 and self.x.dtype != torch.float32:
            raise ValueError(f"{self.name}: float items need dtype float32, got {self.x.dtype}.")
        if self.levels and self.x.dtype != torch.uint8:
            raise ValueError(
                f"{self.name}: quantised items (levels={self.levels}) need dtype uint8, got "
                f"{self.x.dtype}."
            )
        if self.packed and self.levels != 2:
            raise ValueError(
                f"{self.name}: only binary items (levels=2) can be bit-packed, got "
                f"levels={self.levels}."
            )
        for what in ("labels", "factors", "factor_values"):
            t = getattr(self, what)
            if t is not None and len(t) != len(self.x):
                raise ValueError(f"{self.name}: {what} has {len(t)} rows for {len(self.x)} items.")

    def __len__(self) -> int:
        return len(self.x)

    @property
    def item_shape(self) -> tuple[int, ...]:
        shape = tuple(self.x.shape[1:])
        return (*shape[:-1], 8 * shape[-1]) if self.packed else shape

    def to_float(self, x: Tensor) -> Tensor:
        """Stored items to float32 in [-1, 1]."""
        if self.levels == 0:
            return x
        if self.packed:
            x = unpack_bits(x)
        return x.float() * (2.0 / (self.levels - 1)) - 1.0

    def get(self, idx, device: torch.device | str | None = None) -> Tensor:
        """Items ``idx`` (an int, slice, index tensor or list) as float32 in [-1, 1]."""
        return self.to_float(self.x[idx].to(device))

    def batches(
        self,
        batch_size: int,
        *,
        shuffle: bool = True,
        generator: torch.Generator | None = None,
        drop_last: bool = True,
        device: torch.device | str | None = None,
    ) -> Iterator[Tensor]:
        """One pass over the data in float batches."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}.")
        n = len(self)
        order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
        stop = n - n % batch_size if drop_last else n
        for start in range(0, stop, batch_size):
            yield self.get(order[start : start + batch_size], device)

    def subset(self, idx) -> "Data":
        """The items ``idx`` with their labels and factors."""
        idx = torch.as_tensor(idx) if not isinstance(idx, slice) else idx

        def take(t):
            return None if t is None else t[idx]

        return replace(
            self,
            x=self.x[idx],
            labels=take(self.labels),
            factors=take(self.factors),
            factor_values=take(self.factor_values),
        )


def pack_bits(x: Tensor) -> Tensor:
    """0/1 uint8 items to bytes of eight pixels along the last axis (its length a multiple of 8)."""
    if x.shape[-1] % 8:
        raise ValueError(
            f"bit-packing needs a last axis divisible by 8, got shape {tuple(x.shape)}."
        )
    weights = torch.tensor([128, 64, 32, 16, 8, 4, 2, 1], dtype=torch.uint8, device=x.device)
    return (x.reshape(*x.shape[:-1], -1, 8) * weights).sum(-1, dtype=torch.uint8)


def unpack_bits(x: Tensor) -> Tensor:
    """The inverse of :func:`pack_bits`."""
    shifts = torch.arange(7, -1, -1, dtype=torch.uint8, device=x.device)
    return ((x.unsqueeze(-1) >> shifts) & 1).flatten(-2)
