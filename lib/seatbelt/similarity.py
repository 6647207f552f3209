"""Image similarity under attack: MS-SSIM at the scales an image supports, and success rates.

**MS-SSIM** (Wang, Simoncelli and Bovik 2003) compares two images at M scales, halving the side
between scales: the contrast-structure term c_j at scales 1..M-1 and the full SSIM at the
coarsest, MS-SSIM = prod_j c_j^(w_j) * SSIM_M^(w_M). It is computed by torchmetrics (its
``multiscale_structural_similarity_index_measure``), never here: this module only chooses the
settings and states them.

* Scales. Each SSIM is a mean over an 11 x 11 Gaussian window (sigma 1.5), so the coarsest scale
  needs a side of at least 11 pixels: M = the largest number <= 5 with side / 2^(M-1) >= 11
  (:func:`ms_ssim_scales`). The five scales of the original need 176 pixels; 32 x 32 images
  support 2 (sides 32 and 16), 64 x 64 images 3 (64, 32, 16). torchmetrics refuses exactly the
  counts this rule refuses at these sizes (tests/test_similarity.py checks).
* Weights. The first M of the original's five exponents (0.0448, 0.2856, 0.3001, 0.2363, 0.1333,
  finest first), renormalised to sum to 1, so a similarity s at every scale gives MS-SSIM s
  whatever M is. With M = 5 they are the original's (which sum to 1.0001).
* Range. The book's images live in [-1, 1]; they are mapped to [0, 1] with data range 1, the
  convention of the peers (Kuzina et al. 2022). This matters: SSIM's luminance term
  (2 mu_a mu_b + C1) / (mu_a^2 + mu_b^2 + C1) is not invariant to a shift of the intensities.
* Negative similarities are clipped to 0 before the powers (torchmetrics' ``normalize="relu"``),
  as a negative base has no real fractional power.

**Success rate**: the share of inputs where an attack crossed a stated threshold
(:func:`success_rate`), e.g. an untargeted attack succeeds when MS-SSIM(recon(x + d), recon(x))
falls below it. The threshold is an argument and is printed with the rate.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import Tensor
from torchmetrics.functional.image import (
    multiscale_structural_similarity_index_measure,
    structural_similarity_index_measure,
)

MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)  # Wang et al. 2003, finest first
WINDOW = 11  # the Gaussian window's side (sigma 1.5), as in Wang et al.
SIGMA = 1.5


def ms_ssim_scales(height: int, width: int) -> int:
    """How many MS-SSIM scales an image supports: its coarsest scale must hold a whole window."""
    side = min(height, width)
    if side < WINDOW:
        raise ValueError(
            f"MS-SSIM needs images of at least {WINDOW} x {WINDOW} pixels (its window); got "
            f"{height} x {width}."
        )
    scales = 1
    while scales < len(MS_SSIM_WEIGHTS) and side // 2**scales >= WINDOW:
        scales += 1
    return scales


def ms_ssim_weights(scales: int) -> tuple[float, ...]:
    """The exponents of ``scales`` scales: Wang et al.'s first ones, renormalised to sum to 1."""
    if not 1 <= scales <= len(MS_SSIM_WEIGHTS):
        raise ValueError(f"scales must be in 1..{len(MS_SSIM_WEIGHTS)}, got {scales}.")
    if scales == len(MS_SSIM_WEIGHTS):
        return MS_SSIM_WEIGHTS
    chosen = MS_SSIM_WEIGHTS[:scales]
    return tuple(w / sum(chosen) for w in chosen)


def ms_ssim(a: Tensor, b: Tensor, *, scales: int | None = None) -> Tensor:
    """MS-SSIM of each pair of images ``a[i]``, ``b[i]`` ((N, C, H, W) in [-1, 1]), shape (N,).

    ``scales`` None takes every scale the images support (:func:`ms_ssim_scales`); 1 is SSIM.
    """
    if a.shape != b.shape or a.dim() != 4:
        raise ValueError(
            f"MS-SSIM compares two image batches of one shape (N, C, H, W); got {tuple(a.shape)} "
            f"and {tuple(b.shape)}."
        )
    supported = ms_ssim_scales(*a.shape[-2:])
    scales = supported if scales is None else scales
    if scales > supported:
        raise ValueError(
            f"{a.shape[-2]} x {a.shape[-1]} images support {supported} MS-SSIM scales (the "
            f"coarsest must hold the {WINDOW}-pixel window); got scales={scales}."
        )
    weights = ms_ssim_weights(scales)
    to_unit = (a.double() + 1) / 2, (b.double() + 1) / 2  # the peers' [0, 1] convention
    if scales == 1:  # torchmetrics' MS-SSIM needs two scales; one scale is plain SSIM
        value = structural_similarity_index_measure(
            *to_unit, sigma=SIGMA, kernel_size=WINDOW, data_range=1.0, reduction="none"
        )
        return torch.relu(value).to(a.dtype)
    value = multiscale_structural_similarity_index_measure(
        *to_unit,
        sigma=SIGMA,
        kernel_size=WINDOW,
        data_range=1.0,
        betas=weights,
        normalize="relu",
        reduction="none",
    )
    return value.to(a.dtype)


@dataclass(frozen=True)
class SuccessRate:
    """How often an attack crossed a threshold: ``successes`` of ``n`` inputs, by ``rule``."""

    rate: float
    successes: int
    n: int
    threshold: float
    rule: str

    def __str__(self) -> str:
        return f"{self.rate:.0%} of {self.n} inputs ({self.rule})"


def success_rate(
    values: Tensor | np.ndarray, threshold: float, *, below: bool, name: str = "MS-SSIM"
) -> SuccessRate:
    """The share of ``values`` (one per input, e.g. the worst case over restarts) below (or, with
    ``below=False``, above) ``threshold``; ``name`` says what the values are, for the rule."""
    values = np.asarray(values.detach().cpu() if isinstance(values, Tensor) else values, float)
    if values.ndim != 1 or len(values) == 0:
        raise ValueError(f"need one value per input, a non-empty 1-D array; got {values.shape}.")
    if not np.isfinite(values).all() or not np.isfinite(threshold):
        raise ValueError("success rates need finite values and a finite threshold.")
    hits = values < threshold if below else values > threshold
    rule = f"{name} {'<' if below else '>'} {threshold:g}"
    return SuccessRate(float(hits.mean()), int(hits.sum()), len(values), float(threshold), rule)


def budget_measures(results, model=None) -> pd.DataFrame:
    """One row per input of a budgeted attack (:class:`seatbelt.attacks.budget.BudgetResults`):
    its worst case over restarts (``worst()``) and what that worst case did to the output, read
    in the images' own units, so that no measure moves when a model's posteriors only widen.

    ms_ssim_own:    MS-SSIM(recon(x + d), recon(x)): 1 is untouched, lower is more damage.
    For a targeted attack (``model`` needed, to reconstruct the targets):
    ms_ssim_target: MS-SSIM(recon(x + d), recon(x_t)): higher is closer to the target.
    reach:          the normalised adversarial distance of the distortion-distance curve,
                    (||recon(x + d) - x_t|| - ||recon(x_t) - x_t||) / (||recon(x) - x_t|| -
                    ||recon(x_t) - x_t||): 1 for the unattacked reconstruction, 0 for the
                    target's own (higher is more robust); NaN where the normaliser is not > 0.
    """
    worst = results.worst().sort_values("input").reset_index(drop=True)
    own = ms_ssim(results.adversarial_recons, results.source_recons)
    worst["ms_ssim_own"] = own.double().numpy()
    targeted = results.targets.numel() > 0
    worst["ms_ssim_target"] = np.nan
    worst["reach"] = np.nan
    if targeted:
        if model is None:
            raise ValueError("a targeted attack's measures need the model, to reconstruct x_t.")
        targets = results.targets
        device = next(iter(model.parameters())).device
        with torch.no_grad():
            recon_t = model.decode(model.encode(targets.to(device), sample=False).z).cpu()
        worst["ms_ssim_target"] = ms_ssim(results.adversarial_recons, recon_t).double().numpy()

        def distance(a: Tensor) -> np.ndarray:
            return (a - targets).flatten(1).double().norm(dim=-1).numpy()

        base = distance(recon_t)
        span = distance(results.source_recons) - base
        reach = (distance(results.adversarial_recons) - base) / np.where(span > 0, span, np.nan)
        worst["reach"] = reach
    return worst
