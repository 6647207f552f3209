"""Attack results: the tidy frame, the images kept for figures, and their summaries.

Two summaries follow Gondim-Ribeiro, Tabacof and Valle (2018), "Adversarial attacks on
variational autoencoders", and their public attack code:

* the representative attack of a pair (what Figs 1 and 4 show): among the pair's lambdas whose
  adversarial reconstruction is at most the pair's mean distance from the target,
  ||recon(x + d) - x_t|| <= mean, the one with the largest such distance: a typical successful
  attack rather than the single best one.
* AUDDC, the area under the distortion-distance curve of a pair (:mod:`.measures`). The public
  code integrates the raw λ path with the trapezoid rule; the path is not monotone in
  distortion, so this book integrates its lower envelope instead: what an attacker with a
  distortion budget can reach.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd
from torch import Tensor

from .measures import PATH_KEYS, auddc

IMAGES = (
    "sources",
    "targets",
    "source_recons",
    "target_recons",
    "distortions",
    "adversarial",
    "adversarial_recons",
)


@dataclass
class AttackResults:
    """One battery: a frame with one row per attack, and its images (all on the CPU).

    frame: columns documented in :func:`seatbelt.attacks.run_battery`; row ``i`` of the frame
           (its index) is row ``i`` of the per-row tensors; column ``pair`` indexes the per-pair
           ones.
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
            raise ValueError(
                "this battery kept no images; rerun run_battery(..., keep_images=True)."
            )
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

    def to_parts(self) -> tuple[pd.DataFrame, dict[str, Tensor], dict]:
        """(frame, images by field name, meta): the battery as plain data, which a cache can
        store and read back without pickling (:class:`seatbelt.cache.Entry`)."""
        return self.frame, {name: getattr(self, name) for name in IMAGES}, self.meta

    @classmethod
    def from_parts(
        cls, frame: pd.DataFrame, images: dict[str, Tensor], meta: dict
    ) -> AttackResults:
        """The inverse of :meth:`to_parts`; a missing image raises KeyError."""
        return cls(frame=frame, meta=meta, **{name: images[name] for name in IMAGES})

    def representative(self) -> pd.DataFrame:
        return representative(self.frame)

    def auddc(self) -> pd.DataFrame:
        """The envelope AUDDC of each λ path (:func:`.measures.auddc`)."""
        return auddc(self.frame)


def representative(frame: pd.DataFrame) -> pd.DataFrame:
    """The representative attack of each lambda path (Gondim-Ribeiro et al. 2018), one row per
    path."""
    chosen = []
    for _, path in frame.groupby(PATH_KEYS, sort=False):
        distance = path["dist_adv_recon_target"]
        candidates = path[distance <= distance.mean()]
        chosen.append(candidates["dist_adv_recon_target"].idxmax())
    return frame.loc[chosen]
