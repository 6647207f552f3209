"""Robustness to random noise (Appendix F, Fig F.12): how well a VAE decodes a noisy input's code
back to the clean input.

For an image x, a noise scale a >= 0 and eps ~ N(0, I) on the pixels (data scaled to [-1, 1]):

    z ~ q(z | x + a eps)                                                                    (F.1)
    L_a(x) = log p(x | z)          the likelihood of the CLEAN x under the noisy input's code  (F.2)

Higher L_a means better denoising; a = 0 is the model's ordinary reconstruction term
E_q(z|x)[log p(x | z)], one sample. The paper shows the density of L_a over a dataset for
a in {0.1, 0.5, 1} (its caption; its legend reads 0.01, 0.1, 1) and reads off the mean,
E_eps E_q(z|x+a eps)[log p(x | z)]. x + a eps is not clipped to the data range: (F.1) as written.
For the Seatbelt-VAE z is every layer, drawn ancestrally (Eq 4), and p(x | z) sees them all (Eq 3).

Sampling, for paired comparisons between models: eps is drawn on the CPU from ``seed`` alone,
one eps per image shared by every scale (x + 0.1 eps and x + eps differ only in a), so two models
evaluated with the same protocol see exactly the same noisy images. z is drawn with a generator
on the model's device seeded from ``seed`` too. Both depend on (seed, batch_size): the same
protocol gives the same numbers.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from .data.base import Data


@dataclass(frozen=True)
class NoiseProtocol:
    """Which noise scales a, on how many images, with which draws.

    scales:     the a of (F.1), each >= 0 (0 gives the clean reconstruction term as a reference).
    n_images:   the first n images of the data (None: all of them).
    seed:       seeds eps and the z draws.
    batch_size: images per forward pass (the draws depend on it, the expectation does not).
    """

    scales: tuple[float, ...] = (0.0, 0.1, 0.5, 1.0)
    n_images: int | None = None
    seed: int = 0
    batch_size: int = 256

    def __post_init__(self):
        object.__setattr__(self, "scales", tuple(float(a) for a in self.scales))
        if not self.scales:
            raise ValueError(
                "NoiseProtocol needs at least one noise scale, e.g. scales=(0.0, 0.1, 0.5, 1.0)."
            )
        if not all(np.isfinite(a) and a >= 0 for a in self.scales):
            raise ValueError(f"noise scales must be finite and >= 0, got {self.scales}.")
        if len(set(self.scales)) != len(self.scales):
            raise ValueError(f"noise scales must be distinct, got {self.scales}.")
        if self.n_images is not None and self.n_images < 1:
            raise ValueError(f"n_images must be positive (or None for all), got {self.n_images}.")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {self.batch_size}.")


def noisy_log_likelihood(
    model, data: Data | Tensor, protocol: NoiseProtocol = NoiseProtocol()
) -> pd.DataFrame:
    """L_a(x) of (F.2) for every image and scale: a tidy frame with columns image, scale, log_lik.

    model: a :class:`seatbelt.models.VAE` (or anything with ``encode(x, sample, generator).z``
           and ``log_likelihood(x, zs)``). It runs in eval mode without gradients (BatchNorm of
           the Seatbelt MLPs uses its running statistics); its previous mode is restored.
    data:  a :class:`Data` set or a float tensor (N, ...) already in [-1, 1].
    ``image`` is the row index into ``data``; rows are ordered by scale, then image.
    """
    n = len(data)
    n_images = n if protocol.n_images is None else protocol.n_images
    if n_images > n:
        raise ValueError(
            f"NoiseProtocol.n_images={n_images} exceeds the {n} images given; lower it or pass "
            "None."
        )
    device = next(model.parameters()).device
    noise_gen = torch.Generator().manual_seed(protocol.seed)
    z_gen = torch.Generator(device=device).manual_seed(protocol.seed + 1)
    values = np.empty((len(protocol.scales), n_images))
    with _evaluating(model), torch.no_grad():
        for start in range(0, n_images, protocol.batch_size):
            rows = slice(start, min(start + protocol.batch_size, n_images))
            x = data.get(rows, device) if isinstance(data, Data) else data[rows].to(device)
            eps = torch.randn(x.shape, generator=noise_gen, dtype=x.dtype).to(
                device
            )  # on the CPU: device-free
            for i, a in enumerate(protocol.scales):
                zs = model.encode(x + a * eps, sample=True, generator=z_gen).z  # (F.1)
                values[i, rows] = model.log_likelihood(x, zs).double().cpu().numpy()  # (F.2)
    if not np.isfinite(values).all():
        raise FloatingPointError(
            "log p(x | z) is not finite for some image: check the model's outputs for NaN."
        )
    return pd.DataFrame(
        {
            "image": np.tile(np.arange(n_images), len(protocol.scales)),
            "scale": np.repeat(protocol.scales, n_images),
            "log_lik": values.ravel(),
        }
    )


@contextlib.contextmanager
def _evaluating(model):
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)
