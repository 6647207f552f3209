"""The paper's claims, the checks the chapters make of them, and the effect sizes those checks
report.

A chapter measures an effect (a ratio, a difference, a correlation) over many units (attack
pairs, test images), attaches a 95% interval (:func:`measure`: a BCa bootstrap for any
statistic; :func:`paired_comparison`: a Student-t interval for the same units measured twice,
which holds its level with few units), and records a :class:`ClaimCheck`
for one claim of the registry :data:`CLAIMS`. The check is *held* when the whole interval lies
on the side of ``null`` the claim predicts, *not held* otherwise, and a claim no chapter has
measured is *not run*. The scorecard chapter reads every check back with :func:`load_checks`
and shows :func:`scorecard`.

Checks are JSON files ``<results_dir>/claims/<claim>.json``, one per claim, so chapters that
run in separate processes (or on separate machines of a sweep) never write the same file.
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Literal

import numpy as np
import pandas as pd
from scipy import stats

Direction = Literal["greater", "less", "within"]
Status = Literal["held", "not held", "not run"]
DIRECTIONS: tuple[str, ...] = ("greater", "less", "within")
SCHEMA = 1


@dataclass(frozen=True)
class Claim:
    id: str
    statement: str
    paper: str


CLAIMS: dict[str, Claim] = {
    c.id: c
    for c in (
        Claim(
            "C1", "beta-TCVAE's posterior std norm is larger than beta-VAE's at equal beta", "Fig 2"
        ),
        Claim(
            "C2",
            "reconstruction likelihood degrades less with beta for beta-TCVAE than for beta-VAE",
            "Fig 2, Fig A.7",
        ),
        Claim(
            "C3", "the attacker's Delta_KL rises from beta = 1 to beta > 1 for beta-TCVAE", "Fig 3"
        ),
        Claim(
            "C4",
            "Seatbelt beats beta-TCVAE on -log p(x_t|z*) at large beta for the KL, output and W2 "
            "attacks",
            "Fig 5",
        ),
        Claim(
            "C5",
            "Seatbelt at large beta multiplies Delta_KL over the VAE by a large factor",
            "Fig 5, Fig D.9",
        ),
        Claim(
            "C6",
            "Seatbelt's beta = 1 ELBO degrades more slowly with beta than beta-TCVAE's",
            "Fig 6",
        ),
        Claim(
            "C7",
            "attacking all layers is at least as effective as attacking z_1 or z_L alone",
            "Fig D.8",
        ),
        Claim(
            "C8",
            "the adversarial-target distance grows faster with beta than the target-reconstruction "
            "distance",
            "Fig E.10",
        ),
        Claim(
            "C9", "there is no simple correspondence between MIG and the attack loss", "Fig E.11"
        ),
        Claim("C10", "beta > 1 denoises better at every noise scale", "Fig F.12"),
        Claim(
            "C11", "downstream accuracy under attack ranks VAE < beta-TCVAE < Seatbelt", "Table 1"
        ),
        Claim("C12", "the Theorem 1 decomposition sums to the ELBO", "Appendix B"),
        Claim(
            "C13",
            "TC on a chain model (likelihood on z_1 only) is less robust than Seatbelt",
            "Section 4",
        ),
    )
}


@dataclass(frozen=True)
class Effect:
    """An effect size with its interval and the side of ``null`` a claim predicts.

    direction "greater": the claim predicts effect > null - margin (margin 0: strictly larger;
    margin > 0: "at least as large", a non-inferiority margin); "less" mirrors it; "within"
    predicts |effect - null| <= margin (an equivalence, margin > 0).
    """

    name: str
    estimate: float
    low: float
    high: float
    null: float
    direction: Direction
    margin: float = 0.0
    level: float = 0.95
    n: int = 0
    method: str = "BCa bootstrap"

    def __post_init__(self):
        if self.direction not in DIRECTIONS:
            raise ValueError(
                f"Effect {self.name!r}: direction {self.direction!r} is not one of {DIRECTIONS}."
            )
        if self.margin < 0 or (self.direction == "within" and self.margin == 0):
            raise ValueError(
                f"Effect {self.name!r}: margin must be >= 0, and > 0 for direction 'within' (got "
                f"{self.margin})."
            )
        if not 0 < self.level < 1:
            raise ValueError(f"Effect {self.name!r}: level must be in (0, 1), got {self.level}.")
        if self.low > self.high:
            raise ValueError(f"Effect {self.name!r}: interval low {self.low} > high {self.high}.")

    @property
    def supported(self) -> bool:
        """Whether the whole interval lies where the claim predicts (False when it is not
        finite)."""
        if not (math.isfinite(self.low) and math.isfinite(self.high)):
            return False
        if self.direction == "greater":
            return self.low > self.null - self.margin
        if self.direction == "less":
            return self.high < self.null + self.margin
        return self.null - self.margin <= self.low and self.high <= self.null + self.margin

    @property
    def prediction(self) -> str:
        if self.direction == "within":
            return f"within {self.null:g} ± {self.margin:g}"
        sign, bound = (
            (">", self.null - self.margin)
            if self.direction == "greater"
            else ("<", self.null + self.margin)
        )
        return f"{sign} {bound:g}"

    def __str__(self) -> str:
        pct = round(100 * self.level)
        return (
            f"{self.name} = {self.estimate:.3g} [{self.low:.3g}, {self.high:.3g}] "
            f"({pct}%, n={self.n}; claim {self.prediction})"
        )


def ratio_of_medians(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
    """median(a) / median(b), vectorised over ``axis`` as :func:`scipy.stats.bootstrap` wants."""
    return np.median(a, axis=axis) / np.median(b, axis=axis)


def median(a: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.median(a, axis=axis)


def measure(
    name: str,
    statistic: Callable[..., np.ndarray],
    samples: tuple[np.ndarray, ...] | list[np.ndarray],
    *,
    null: float,
    direction: Direction,
    margin: float = 0.0,
    paired: bool = False,
    level: float = 0.95,
    n_resamples: int = 2000,
    seed: int = 0,
) -> Effect:
    """The effect ``statistic(*samples)`` with a BCa bootstrap interval at ``level``.

    ``statistic`` takes one array per sample and an ``axis`` keyword (see :func:`ratio_of_medians`).
    ``paired=True`` resamples the units of all samples together (same attack problems measured
    on two models); otherwise each sample is resampled on its own. An interval that collapses to
    a point (all resamples equal, e.g. constant data) is returned as that point.
    """
    arrays = [np.asarray(s, dtype=float).ravel() for s in samples]
    if not arrays or any(len(a) < 2 for a in arrays):
        raise ValueError(
            f"Effect {name!r}: every sample needs at least 2 values, got sizes "
            f"{[len(a) for a in arrays]}."
        )
    if paired and len({len(a) for a in arrays}) != 1:
        raise ValueError(
            f"Effect {name!r}: paired samples must have equal sizes, got "
            f"{[len(a) for a in arrays]}."
        )
    if not all(np.isfinite(a).all() for a in arrays):
        raise ValueError(
            f"Effect {name!r}: samples contain NaN or inf; drop or explain them before measuring."
        )
    estimate = float(statistic(*arrays, axis=-1))
    with warnings.catch_warnings():
        # BCa is undefined when resamples barely vary; the non-finite interval is handled below
        warnings.simplefilter("ignore", stats.DegenerateDataWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        res = stats.bootstrap(
            arrays,
            statistic,
            n_resamples=n_resamples,
            vectorized=True,
            paired=paired,
            confidence_level=level,
            method="BCa",
            rng=np.random.default_rng(seed),
        )
    low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
    if not (math.isfinite(low) and math.isfinite(high)):
        spread = res.bootstrap_distribution
        if np.ptp(spread) == 0:  # degenerate: BCa is undefined but every resample agrees
            low = high = float(spread.flat[0])
    return Effect(
        name,
        estimate,
        low,
        high,
        null=null,
        direction=direction,
        margin=margin,
        level=level,
        n=len(arrays[0]),
    )


def paired_comparison(
    name: str,
    a: np.ndarray,
    b: np.ndarray,
    *,
    scale: Literal["ratio", "difference"],
    null: float,
    direction: Direction,
    margin: float = 0.0,
    level: float = 0.95,
) -> Effect:
    """How ``a`` compares with ``b`` on the same units, with a Student-t interval.

    ``scale="ratio"``: the geometric mean of a_i / b_i (a and b positive), the interval from the
    t interval of the mean log ratio; ``"difference"``: the mean of a_i - b_i and its t interval.
    Few units (attack pairs: 5 to 20) are where bootstrap intervals undercover (measured for a
    mean with BCa: 81% at n = 5, 88% at n = 10, 91% at n = 20 for a nominal 95%); the t interval
    is exact for normal per-unit differences and close for symmetric ones.
    """
    a, b = np.asarray(a, dtype=float).ravel(), np.asarray(b, dtype=float).ravel()
    if len(a) != len(b) or len(a) < 2:
        raise ValueError(
            f"Effect {name!r}: needs two paired samples of equal size >= 2, got {len(a)} and "
            f"{len(b)}."
        )
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError(
            f"Effect {name!r}: samples contain NaN or inf; drop or explain them before measuring."
        )
    if scale == "ratio":
        if (a <= 0).any() or (b <= 0).any():
            raise ValueError(
                f"Effect {name!r}: a ratio needs positive values; compare differences instead."
            )
        d = np.log(a) - np.log(b)
    elif scale == "difference":
        d = a - b
    else:
        raise ValueError(f"Effect {name!r}: scale must be 'ratio' or 'difference', got {scale!r}.")
    half = stats.t.ppf(0.5 + level / 2, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d))
    low, mid, high = d.mean() - half, d.mean(), d.mean() + half
    if scale == "ratio":
        low, mid, high = np.exp(low), np.exp(mid), np.exp(high)
    return Effect(
        name,
        float(mid),
        float(low),
        float(high),
        null=null,
        direction=direction,
        margin=margin,
        level=level,
        n=len(d),
        method=f"paired t ({'log ' if scale == 'ratio' else ''}{scale})",
    )


def slope_comparison(
    name: str,
    x: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    *,
    null: float = 0.0,
    direction: Direction = "greater",
    margin: float = 0.0,
    level: float = 0.95,
) -> Effect:
    """Whether ``a`` grows faster with ``x`` than ``b`` does, on the same units.

    ``a`` and ``b`` are (n_units, len(x)) arrays: each unit (an attack pair) measured at every
    ``x`` (e.g. beta). Each unit gives the least-squares slope of its ``a`` on ``x`` and of its
    ``b`` on ``x``; the effect is the mean over units of slope(a) - slope(b), with the paired
    Student-t interval of :func:`paired_comparison` (the unit is the pair, as there).
    """
    x = np.asarray(x, dtype=float).ravel()
    a, b = np.atleast_2d(np.asarray(a, dtype=float)), np.atleast_2d(np.asarray(b, dtype=float))
    if a.shape != b.shape or a.shape[1] != len(x):
        raise ValueError(
            f"Effect {name!r}: a and b must both be (n_units, {len(x)}) (one column per x); "
            f"got {a.shape} and {b.shape}."
        )
    if len(np.unique(x)) < 2:
        raise ValueError(
            f"Effect {name!r}: a slope needs at least two distinct x values, got {x.tolist()}."
        )
    centred = x - x.mean()
    slopes = [(v - v.mean(axis=1, keepdims=True)) @ centred / (centred @ centred) for v in (a, b)]
    return paired_comparison(
        name,
        slopes[0],
        slopes[1],
        scale="difference",
        null=null,
        direction=direction,
        margin=margin,
        level=level,
    )


def lambda_free_context(
    robust: pd.DataFrame,
    reference: pd.DataFrame,
    label: str,
    *,
    eps: float = 0.1,
    level: float = 0.95,
) -> tuple[Effect, Effect]:
    """The λ-free comparison of two models attacked on the same pairs, as two paired effects.

    ``robust`` and ``reference`` are battery frames of one attack each (same protocol, so the same
    pairs). Per pair: the envelope AUDDC and the minimal distortion that reaches within ``eps`` of
    the target (:mod:`seatbelt.attacks.measures`), each compared on the pairs with a paired t
    interval: the AUDDC as the mean difference robust - reference (the normalised distance can
    pass below 0, so the area need not be positive), predicting > 0; the distortion as the
    geometric mean of robust / reference, predicting > 1 (the robust model needs more). Unlike Δ/KL0
    or any fixed-λ summary, neither moves when a model's posteriors only widen. A pair whose curve
    is degenerate (NaN) is dropped; a minimal distortion that no λ reached counts at the largest
    distortion tried, a lower bound, and the effect's name says how many were censored.
    """
    from .attacks.measures import auddc, minimal_distortion

    def per_pair(frame: pd.DataFrame, measure) -> pd.DataFrame:
        if frame[["attack", "layers"]].drop_duplicates().shape[0] != 1:
            raise ValueError(
                f"{label}: give one attack's rows per frame, got "
                f"{frame[['attack', 'layers']].drop_duplicates().values.tolist()}."
            )
        return measure(frame).set_index("pair")

    area = (
        per_pair(robust, auddc)["auddc"]
        .to_frame("a")
        .join(per_pair(reference, auddc)["auddc"].rename("b"))
    )
    area = area.dropna()
    reach = [per_pair(f, lambda g: minimal_distortion(g, eps)) for f in (robust, reference)]
    dist = reach[0][["distortion"]].join(reach[1]["distortion"].rename("ref")).dropna()
    censored = int((~reach[0]["reached"]).sum() + (~reach[1]["reached"]).sum())
    return (
        paired_comparison(
            f"envelope AUDDC difference, {label}",
            area["a"],
            area["b"],
            scale="difference",
            null=0.0,
            direction="greater",
            level=level,
        ),
        paired_comparison(
            f"minimal distortion ratio (eps {eps:g}, {censored} censored), {label}",
            dist["distortion"],
            dist["ref"],
            scale="ratio",
            null=1.0,
            direction="greater",
            level=level,
        ),
    )


@dataclass(frozen=True)
class ClaimCheck:
    """One chapter's verdict on one claim: ``effect`` decides; ``context`` shows beside it.

    ``context`` holds measurements that qualify the verdict (e.g. the λ-free measures of
    :func:`lambda_free_context` beside the paper's raw metric) without changing it: the paper's
    metric decides, as the paper defines it. ``requires`` holds premises the claim's reading depends
    on (a ratio of slopes says "declines more slowly" only if the reference declines): the check is
    held only when they hold too. ``chapter`` is the chapter's name (``intro`` for
    ``book/intro.ipynb``) and ``section`` the anchor of the section that measured it (a MyST label
    ``(claim-c3)=`` above its heading gives the anchor ``claim-c3``): the scorecard links the claim
    there.
    """

    claim: str
    effect: Effect
    context: tuple[Effect, ...] = ()
    requires: tuple[Effect, ...] = ()
    chapter: str = ""
    profile: str = ""
    note: str = ""
    section: str = ""
    schema: int = field(default=SCHEMA)

    def __post_init__(self):
        if self.claim not in CLAIMS:
            raise ValueError(f"Unknown claim {self.claim!r}; the registry has {', '.join(CLAIMS)}.")

    @property
    def status(self) -> Status:
        """Held when ``effect`` and every premise in ``requires`` are supported."""
        return (
            "held"
            if self.effect.supported and all(e.supported for e in self.requires)
            else "not held"
        )

    @property
    def link(self) -> str:
        """Where the check was measured, relative to the scorecard's page (chapters are its
        siblings in ``book/``): ``intro.html#claim-c3``; empty without a chapter."""
        if not self.chapter:
            return ""
        return f"{self.chapter}.html" + (f"#{self.section}" if self.section else "")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ClaimCheck:
        if d.get("schema") != SCHEMA:
            raise ValueError(
                f"Claim check schema {d.get('schema')!r} is not {SCHEMA}; re-run the chapter that "
                "wrote it."
            )
        d = dict(d)
        d["effect"] = Effect(**d["effect"])
        d["context"] = tuple(Effect(**e) for e in d.get("context", ()))
        d["requires"] = tuple(Effect(**e) for e in d.get("requires", ()))
        return cls(**d)

    def save(self, results_dir: str | Path) -> Path:
        path = Path(results_dir) / "claims" / f"{self.claim}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=1) + "\n")
        return path


def load_checks(results_dir: str | Path) -> dict[str, ClaimCheck]:
    """Every claim check under ``results_dir/claims``, by claim id (an absent folder is no
    checks)."""
    folder = Path(results_dir) / "claims"
    checks = {}
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else ():
        check = ClaimCheck.from_dict(json.loads(path.read_text()))
        if path.stem != check.claim:
            raise ValueError(f"{path} holds claim {check.claim}; its file name says {path.stem}.")
        checks[check.claim] = check
    return checks


def scorecard(checks: dict[str, ClaimCheck]) -> pd.DataFrame:
    """One row per registered claim, in registry order; claims without a check are "not run".
    ``link``: the section that measured the claim, relative to the scorecard's page."""
    rows = []
    for claim in CLAIMS.values():
        check = checks.get(claim.id)
        rows.append(
            {
                "claim": claim.id,
                "statement": claim.statement,
                "paper": claim.paper,
                "measured": "; ".join(str(e) for e in (check.effect, *check.requires))
                if check
                else "",
                "also measured": "; ".join(str(e) for e in check.context) if check else "",
                "status": check.status if check else "not run",
                "chapter": check.chapter if check else "",
                "profile": check.profile if check else "",
                "link": check.link if check else "",
            }
        )
    return pd.DataFrame(rows)
