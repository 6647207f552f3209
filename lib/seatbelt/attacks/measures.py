"""Robustness measures that do not depend on the posterior's width, and the controls of a battery.

**Why fixed-λ measures are not scale-free.** Take two encoders with the same mean map, one with
posterior standard deviations c times the other's, and σ independent of x. The KL between two
such posteriors scales by 1/c², so for every distortion d

    Δ_c(d; λ) = c⁻² Δ_1(d; λc²),   hence   Δ*_c(λ) / KL0_c = Δ*_1(λc²) / KL0_1.

Widening the posteriors is exactly attacking at a larger λ. Δ/KL0 rises with λ, so widening alone
raises Δ/KL0 at every λ, and moves every fixed-λ distance and likelihood, with the encoder's
geometry unchanged. What stays put is the set of (distortion, output distance) points the λ path
traces: widening only re-indexes it by λ. The measures here read that set, never λ:

* :func:`auddc`: the area under the **lower envelope** of the distortion-distance curve. An
  attacker with a distortion budget u gets the best output distance of any λ within it, so the
  curve is the running minimum over distortion, a step function, integrated exactly on [0, 1].
  Axes as in Gondim-Ribeiro et al. (2018): distortion ||d|| / ||x - x_t||, and the adversarial
  distance (||recon(x + d) - x_t|| - ||recon(x_t) - x_t||) / (||recon(x) - x_t|| -
  ||recon(x_t) - x_t||), 1 for the unattacked reconstruction and 0 for the target's own. The
  unattacked point (0, 1) is always on the curve (d = 0 reconstructs x). Lower is less robust.
* :func:`minimal_distortion`: the smallest distortion on the envelope at which the adversarial
  distance comes within ``eps`` of the target's own reconstruction (normalised distance <= eps),
  censored (reported as above the largest distortion tried) where no λ reached it.

**Controls** (:func:`controls`): whether a larger Δ is robustness or a weaker optimisation. For
every model x + d = x_t is feasible and makes every latent divergence 0, so Δ*(λ) <= λ||x - x_t||²:
a solver that ends above the cost of copying the target is stuck. The battery keeps the better of
the solver's answer and the copy, reports how often the solver alone was above it, and re-solves a
subsample with 10x the iteration cap to show how far Δ still moves.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from ..gaussian import DiagGaussian, kl
from ..models import Encoding

PATH_KEYS = ["model", "attack", "layers", "pair"]
COPY_TOLERANCE = 1e-4  # of KL0: above the copy bound by more than this is a stuck solver
ITERATION_LIMITS = ("stopped: iteration limit", "STOP: TOTAL NO. OF ITERATIONS REACHED LIMIT")


def path_points(path: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """One λ path's (distortion, normalised distance) points, NaN distances if the normaliser is 0.

    Warns, naming the path, when the unattacked reconstruction is no farther from the target than
    the target's own (the normaliser is degenerate and the curve has no scale).
    """
    span = float(path["dist_orig_target"].iloc[0])
    baseline = float(path["dist_target_recon_target"].iloc[0])
    scale = float(path["dist_orig_recon_target"].iloc[0]) - baseline
    x = path["d_norm"].to_numpy(dtype=float) / span
    if not scale > 0:
        keys = ", ".join(f"{k} {path[k].iloc[0]}" for k in PATH_KEYS if k in path)
        warnings.warn(
            f"distortion-distance curve of {keys}: recon(x) is no farther from x_t "
            f"({scale + baseline:.4g}) than recon(x_t) is ({baseline:.4g}); "
            f"its measures are NaN.",
            stacklevel=3,
        )
        return x, np.full_like(x, np.nan)
    return x, (path["dist_adv_recon_target"].to_numpy(dtype=float) - baseline) / scale


def lower_envelope(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The running minimum of y over x, as the breakpoints of a step function from (0, 1).

    Returns (u, e): e[i] is the best distance within any budget in [u[i], u[i + 1]).
    """
    order = np.argsort(x, kind="stable")
    xs = np.concatenate([[0.0], x[order]])
    ys = np.minimum.accumulate(np.concatenate([[1.0], y[order]]))
    steps = np.flatnonzero(np.concatenate([[True], ys[1:] < ys[:-1]]))  # where the envelope drops
    return xs[steps], ys[steps]


def envelope_area(x: np.ndarray, y: np.ndarray, upto: float = 1.0) -> float:
    """∫_0^upto of the lower envelope of the points (x, y), with (0, 1) on the curve."""
    if np.isnan(y).any():
        return float("nan")
    u, e = lower_envelope(x, y)
    edges = np.clip(np.concatenate([u, [upto]]), 0.0, upto)
    return float(np.sum(e * np.diff(edges)))


def auddc(frame: pd.DataFrame) -> pd.DataFrame:
    """The envelope AUDDC of each λ path (module docstring), one row per (model, attack, layers,
    pair)."""
    rows = []
    for keys, path in frame.groupby(PATH_KEYS, sort=False):
        x, y = path_points(path)
        rows.append(
            {
                **dict(zip(PATH_KEYS, keys)),
                "auddc": envelope_area(x, y),
                "points": int(((x >= 0) & (x <= 1)).sum()),
            }
        )
    return pd.DataFrame(rows)


def minimal_distortion(frame: pd.DataFrame, eps: float = 0.1) -> pd.DataFrame:
    """Per λ path, the smallest distortion ||d|| / ||x - x_t|| whose envelope distance is <=
    ``eps``.

    ``eps`` is in the normalised distance's units: 0.1 means within a tenth of the way from the
    target's own reconstruction distance to the unattacked one. ``reached`` is False where no λ
    got there; ``distortion`` is then the largest distortion tried (a lower bound: censored).
    """
    if not 0 <= eps < 1:
        raise ValueError(
            f"eps = {eps}: the normalised distance runs from 0 (the target's own "
            f"reconstruction) to 1 (unattacked); give eps in [0, 1)."
        )
    rows = []
    for keys, path in frame.groupby(PATH_KEYS, sort=False):
        x, y = path_points(path)
        within = y <= eps
        if np.isnan(y).any():
            distortion, reached = float("nan"), False
        elif within.any():
            distortion, reached = float(x[within].min()), True
        else:
            distortion, reached = float(x.max()), False
        rows.append(
            {**dict(zip(PATH_KEYS, keys)), "distortion": distortion, "reached": reached, "eps": eps}
        )
    return pd.DataFrame(rows)


def controls(
    frame: pd.DataFrame, by: tuple[str, ...] = ("model", "attack", "layers")
) -> pd.DataFrame:
    """Per battery (``by``), the evidence that its Δ is the model's and not the optimiser's.

    above_copy_bound: share of trials whose solver alone ended above the copy-the-target cost by
                      more than COPY_TOLERANCE x KL0 (the battery then kept the copy);
    capped: share of trials that stopped at the iteration cap;
    cap10_trials, cap10_change: the re-solved subsample, and the median and largest relative
                      drop of Δ with 10x the cap ((Δ - Δ_10x) / max(Δ, COPY_TOLERANCE KL0); 0
                      means the cap did not bind);
    reference_trials, reference_strict, reference_tolerant: the subsample re-solved by the scipy
                      reference, and the share where the battery's Δ is as strong as it, strictly
                      (Δ <= 1.01 Δ_ref) and within float32 noise (Δ <= 1.01 Δ_ref + 1e-3 KL0),
                      as bench/attacks.py judges solvers.
    """

    nan = float("nan")

    def summary(g: pd.DataFrame) -> pd.Series:
        slack = COPY_TOLERANCE * g["divergence0"].abs()
        check = g.dropna(subset=["delta_cap10"])
        # relative to Δ, floored at the copy tolerance of KL0: at λ = 0, Δ can be float noise
        floor = np.maximum(check["delta"].abs(), COPY_TOLERANCE * check["divergence0"].abs())
        change = (check["delta"] - check["delta_cap10"]) / floor.clip(lower=1e-12)
        ref = g.dropna(subset=["delta_reference"])
        bar = 1.01 * ref["delta_reference"]
        return pd.Series(
            {
                "trials": len(g),
                "above_copy_bound": float((g["delta_solver"] > g["copy_bound"] + slack).mean()),
                "capped": float(g["status"].isin(ITERATION_LIMITS).mean()),
                "cap10_trials": len(check),
                "cap10_change_median": float(change.median()) if len(check) else float("nan"),
                "cap10_change_max": float(change.max()) if len(check) else float("nan"),
                "reference_trials": len(ref),
                "reference_strict": float((ref["delta"] <= bar).mean()) if len(ref) else nan,
                "reference_tolerant": (
                    float((ref["delta"] <= bar + 1e-3 * ref["divergence0"].abs()).mean())
                    if len(ref)
                    else nan
                ),
            }
        )

    return frame.groupby(list(by), sort=False).apply(summary, include_groups=False).reset_index()


class Widened(torch.nn.Module):
    """A one-layer model whose posteriors are ``c`` times wider, means unchanged: the c²
    equivalence.

    Attacking ``Widened(model, c)`` at λ is attacking ``model`` at λc², scaled by 1/c², exactly
    when the posterior's σ does not depend on x (the KL's variance term is then 0); otherwise the
    variance term breaks it by as much as it weighs. Nothing is trained: it wraps the model.
    """

    def __init__(self, model, c: float):
        super().__init__()
        if model.n_layers != 1:
            raise ValueError(
                f"Widened wraps a one-layer model; this one has {model.n_layers} layers."
            )
        if not c > 0:
            raise ValueError(f"the widening c must be positive, got {c}.")
        self.model, self.log_c2 = model, 2.0 * math.log(c)

    @property
    def n_layers(self) -> int:
        return 1

    def encode(self, x: Tensor, sample: bool = False, generator=None) -> Encoding:
        q = self.model.encode(x, sample=False).posteriors[0]
        wide = DiagGaussian(q.mu, q.logvar + self.log_c2)
        return Encoding([wide], [wide.sample(generator) if sample else wide.mu])

    def decode(self, zs: list[Tensor]) -> Tensor:
        return self.model.decode(zs)

    def log_likelihood(self, x: Tensor, zs: list[Tensor]) -> Tensor:
        return self.model.log_likelihood(x, zs)

    def elbo(
        self, x: Tensor, target: Tensor | None = None, sample: bool = True, generator=None
    ) -> Tensor:
        enc = self.encode(x, sample=sample, generator=generator)
        q = enc.posteriors[0]
        return self.log_likelihood(x if target is None else target, enc.z) - kl(q.mu, q.logvar)
