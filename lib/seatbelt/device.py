"""Device choice, seeding and the CPU allocator: CUDA when present, the CPU otherwise."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import random

import numpy as np
import torch


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def resolve(device: str | torch.device | None) -> torch.device:
    """``None`` or ``"auto"`` picks CUDA when present; anything else is passed to torch."""
    if device is None or device == "auto":
        return default_device()
    return torch.device(device)


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; return a CPU generator seeded the same for explicit use."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


@functools.cache
def keep_freed_memory() -> bool:
    """Let glibc keep freed tensor memory for reuse, instead of returning it to the system.

    A training step allocates and frees tens of MB of activations. By default glibc maps each
    block over 128 KB anew from the kernel and unmaps it on free, so every step pays page faults
    again: a third of a 32x32 training step on 2 cores was system time. Raising the mmap and trim
    thresholds (mallopt) keeps those blocks in the heap: the same step ran 1.2x to 1.4x faster
    (``bench/train_throughput.py``). The setting is process-wide and changes no number; elsewhere
    than glibc it does nothing. Returns whether it took effect.
    """
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    return bool(mallopt(m_mmap_threshold, 2**31 - 1)) and bool(mallopt(m_trim_threshold, 2**31 - 1))
