"""Attack results: the tidy frame, the images kept for figures, and their summaries.

Two summaries follow Gondim-Ribeiro, Tabacof and Valle (2018), "Adversarial attacks on
variational autoencoders", and their public attack code:

* the representative attack of a pair (what Figs 1 and 4 show): among the pair's lambdas whose
  adversarial reconstruction is at most the pair's mean distance from the target,
  ||recon(x + d) - x_t|| <= mean, the one with the largest such distance: a typical successful
  attack rather than the single best one.
* AUDDC, the area under the distortion-distance curve of a pair. Each lambda gives a point
  (||d|| / ||x - x_t||, (||recon(x + d) - x_t|| - ||recon(x_t) - x_t||) / (||recon(x) - x_t|| -
  ||recon(x_t) - x_t||)): distortion as a fraction of the source-target distance against the
  adversarial distance rescaled so that 1 is the unattacked reconstruction and 0 the target's
  own reconstruction. Points with distortion in [0, 1] are sorted by distortion; the curve then
  drops to its lowest distance and runs flat to distortion 1, and the trapezoid rule gives the
  area, as in the public code. This module also starts the curve at the unattacked point (0, 1)
  (exact, since d = 0 reconstructs x), so the area is defined for any set of lambdas; with the
  paper's lambdas up to 2^20 the first point is already there. Lower AUDDC means the attack
  reaches the target with less distortion: a less robust model.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from torch import Tensor

PATH_KEYS = ["model", "attack", "layers", "pair"]


@dataclass
class AttackResults:
    """One battery: a frame with one row per attack, and its images (all on the CPU).

    frame: columns documented in :func:`seatbelt.attacks.run_battery`; row ``i`` of the frame
           (its index) is row ``i`` of the per-row tensors; column ``pair`` indexes the per-pair ones.
    per pair (n_pairs, *item_shape): sources, targets, source_recons, target_recons.
    per row (n_rows, *item_shape): distortions d, adversarial inputs x + d, adversarial_recons
           (the likelihood mean at the posterior means of x + d). Empty when images were not kept.
    """

    frame: pd.DataFrame
    sources: Tensor
    targets: Tensor
    source_recons: Tensor
    target_recons: Tensor
    distortions: Tensor
    adversarial: Tensor
    adversarial_recons: Tensor
    meta: dict = field(default_factory=dict)

    def panel(self, row: int) -> dict[str, Tensor]:
        """The images of one attack, named as in the paper's panels (Figs 1 and 4)."""
        if len(self.adversarial) == 0:
            raise ValueError("this battery kept no images; rerun run_battery(..., keep_images=True).")
        pair = int(self.frame.loc[row, "pair"])
        return {
            "original": self.sources[pair],
            "adversarial": self.adversarial[row],
            "distortion": self.distortions[row],
            "target": self.targets[pair],
            "original_recon": self.source_recons[pair],
            "adversarial_recon": self.adversarial_recons[row],
            "target_recon": self.target_recons[pair],
        }

    def representative(self) -> pd.DataFrame:
        return representative(self.frame)

    def auddc(self) -> pd.DataFrame:
        return auddc(self.frame)


def representative(frame: pd.DataFrame) -> pd.DataFrame:
    """The representative attack of each lambda path (Gondim-Ribeiro et al. 2018), one row per path."""
    chosen = []
    for _, path in frame.groupby(PATH_KEYS, sort=False):
        distance = path["dist_adv_recon_target"]
        candidates = path[distance <= distance.mean()]
        chosen.append(candidates["dist_adv_recon_target"].idxmax())
    return frame.loc[chosen]


def auddc(frame: pd.DataFrame) -> pd.DataFrame:
    """AUDDC of each lambda path (module docstring), one row per (model, attack, layers, pair)."""
    rows = []
    for keys, path in frame.groupby(PATH_KEYS, sort=False):
        span = path["dist_orig_target"].iloc[0]
        baseline = path["dist_target_recon_target"].iloc[0]
        scale = path["dist_orig_recon_target"].iloc[0] - baseline
        x = path["d_norm"].to_numpy() / span
        y = (path["dist_adv_recon_target"].to_numpy() - baseline) / scale
        keep = (x >= 0) & (x <= 1)
        x, y = x[keep], y[keep]
        order = np.argsort(x, kind="stable")
        lowest = y.min(initial=1.0)  # the unattacked point (0, 1) is on the curve too
        xs = np.concatenate([[0.0], x[order], [x.max(initial=0.0), 1.0]])
        ys = np.concatenate([[1.0], y[order], [lowest, lowest]])
        rows.append({**dict(zip(PATH_KEYS, keys)), "auddc": float(np.trapezoid(ys, xs)), "points": int(keep.sum())})
    return pd.DataFrame(rows)
