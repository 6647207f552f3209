"""The 3-D Swiss roll of the paper's toy experiment (Appendix A.2, Fig A.7).

The paper says only "3D 'Swiss Roll' data"; we use the parameterisation of scikit-learn's
``make_swiss_roll``: with t = 1.5 pi (1 + 2 a) and height h = 21 b, a, b ~ U(0, 1),

    point = (t cos t, h, t sin t) + noise * eps,   eps ~ N(0, I_3),

so the roll winds 1.5 turns about the y axis. The points are then mapped into [-1, 1] by one
isotropic affine map (the same scale on every axis, so distances keep the roll's geometry): centred
on the middle of the sample's bounding box and divided by half its longest side. The map is in
``meta`` ("centre", "scale") to undo it: original = x * scale + centre.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .base import Data


def swiss_roll(n: int = 10_000, noise: float = 0.0, seed: int = 0) -> Data:
    """``n`` points (float32, levels=0) in [-1, 1]^3; factor_values hold the roll parameter t and
    the height h."""
    if not isinstance(n, int) or n < 2:
        raise ValueError(f"n must be an integer of at least 2 points, got {n!r}.")
    if not noise >= 0:
        raise ValueError(f"noise is a standard deviation and must be >= 0, got {noise!r}.")
    g = torch.Generator().manual_seed(seed)
    t = 1.5 * math.pi * (1 + 2 * torch.rand(n, generator=g, dtype=torch.float64))
    h = 21 * torch.rand(n, generator=g, dtype=torch.float64)
    # numpy's cos and sin: torch 2.13's float64 ones on CPU are now and then off by about 1e-8,
    # which moved the centre and so every cached model's key from one process to the next
    cos, sin = (torch.from_numpy(f(t.numpy())) for f in (np.cos, np.sin))
    points = torch.stack([t * cos, h, t * sin], 1)
    points += noise * torch.randn(n, 3, generator=g, dtype=torch.float64)
    lo, hi = points.min(0).values, points.max(0).values
    centre, scale = (lo + hi) / 2, (hi - lo).max() / 2
    x = ((points - centre) / scale).clamp_(-1, 1)  # clamp only absorbs rounding at the extremes
    return Data(
        name="swiss_roll",
        x=x.float(),
        levels=0,
        factor_values=torch.stack([t, h], 1).float(),
        factor_names=("t", "height"),
        meta={
            "n": n,
            "noise": noise,
            "seed": seed,
            "centre": centre.tolist(),
            "scale": scale.item(),
        },
    )
