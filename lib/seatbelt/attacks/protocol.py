"""The attack protocol of Section 5 as data: which pairs, which lambdas, which attacks.

The paper attacks 10 random source/target pairs per model with 50 values of lambda spaced
geometrically from 2^-20 to 2^20 (Section 5; Fig 3 uses 20 pairs). The public attack code of
Gondim-Ribeiro et al. (2018) also runs lambda = 0, the unpenalised attack; so does this
protocol by default. Pairs are drawn with a seeded generator: a random source and a random
different target, or, with ``pairing="different_label"``, a target whose label differs from
the source's (Table 1's downstream attacks).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

import numpy as np

from .objectives import Attack, AttackKind

Pairing = Literal["random", "different_label"]
PAIRINGS: tuple[Pairing, ...] = get_args(Pairing)


@dataclass(frozen=True)
class AttackProtocol:
    """A battery: every attack x every pair x every lambda.

    lambdas: explicit values, or None for ``include_zero`` plus 2^c for ``n_lambdas`` values of
             c evenly spaced in ``log2_lambda_range`` (the paper: 50 values in [-20, 20]).
    attacks: kind names ("kl", "w2", "output") or :class:`Attack` objects (layer choices).
    cap_check: problems per attack re-solved with 10x the solver's iteration cap, a control on
             whether the cap limits Δ (:func:`seatbelt.attacks.measures.controls`); 0 skips it.
    reference_check: problems per attack (others than the cap check's) re-solved by the scipy
             reference at its own limits: the battery's attacker measured against the paper's.
    """

    n_pairs: int = 10
    n_lambdas: int = 50
    log2_lambda_range: tuple[float, float] = (-20.0, 20.0)
    include_zero: bool = True
    lambdas: tuple[float, ...] | None = None
    attacks: tuple[Attack | AttackKind, ...] = ("kl",)
    pairing: Pairing = "random"
    seed: int = 0
    cap_check: int = 8
    reference_check: int = 4

    def __post_init__(self):
        object.__setattr__(self, "attacks", tuple(Attack.coerce(a) for a in self.attacks))
        if self.lambdas is not None:
            object.__setattr__(self, "lambdas", tuple(float(v) for v in self.lambdas))
        for name in ("cap_check", "reference_check"):
            if getattr(self, name) < 0:
                raise ValueError(
                    f"{name} must be >= 0 (0 skips the control), got {getattr(self, name)}."
                )
        if self.n_pairs < 1:
            raise ValueError(f"n_pairs must be positive, got {self.n_pairs}.")
        if not self.attacks:
            raise ValueError("the protocol needs at least one attack, e.g. attacks=('kl',).")
        if self.pairing not in PAIRINGS:
            raise ValueError(f"unknown pairing {self.pairing!r}; choose one of {PAIRINGS}.")
        values = self.lambda_values()
        if len(values) == 0:
            raise ValueError(
                "the protocol has no lambda: give lambdas, n_lambdas >= 1 or include_zero=True."
            )
        if not np.all(np.isfinite(values)) or np.any(values < 0):
            raise ValueError(
                "lambda must be finite and >= 0, got "
                f"{values[(values < 0) | ~np.isfinite(values)]}."
            )

    def lambda_values(self) -> np.ndarray:
        """The lambdas of every pair, ascending (0 first when included)."""
        if self.lambdas is not None:
            return np.array(self.lambdas, dtype=np.float64)
        if self.n_lambdas < 0:
            raise ValueError(f"n_lambdas must be >= 0, got {self.n_lambdas}.")
        low, high = self.log2_lambda_range
        if low > high:
            raise ValueError(
                "log2_lambda_range must be (low, high) with low <= high, got "
                f"{self.log2_lambda_range}."
            )
        powers = 2.0 ** np.linspace(low, high, self.n_lambdas)
        return np.concatenate([[0.0], powers]) if self.include_zero else powers

    def draw_pairs(self, n_items: int, labels: np.ndarray | None = None) -> np.ndarray:
        """(n_pairs, 2) source and target indices into a dataset of ``n_items`` items."""
        if n_items < 2:
            raise ValueError(f"attacks need at least 2 items to pair, got {n_items}.")
        rng = np.random.default_rng(self.seed)
        if self.pairing == "different_label":
            if labels is None:
                raise ValueError(
                    "pairing='different_label' needs data with labels; use pairing='random'."
                )
            labels = np.asarray(labels)
            if len(np.unique(labels)) < 2:
                raise ValueError("pairing='different_label' needs at least two distinct labels.")
        else:
            labels = None  # random pairing ignores labels
        pairs = np.empty((self.n_pairs, 2), dtype=np.int64)
        for k in range(self.n_pairs):
            source = target = int(rng.integers(n_items))
            while target == source or (labels is not None and labels[target] == labels[source]):
                target = int(rng.integers(n_items))
            pairs[k] = source, target
        return pairs
