"""Theorem 1 in numbers: the hierarchical ELBO split into its terms, and the Eq 43 TC estimator.

Theorem 1 (Appendix B, Eq 16), over a finite dataset x_1..x_N with empirical q(x) = (1/N) sum_n
delta_{x_n} and the chain q(z_1 | x) prod_{i<L} q(z_{i+1} | z_i, x) of Eq 4, reads, per data point
averaged:

    ELBO = E[log p(x | z)]                              log_likelihood                        (+)
         - sum_{i<L} E[log q(z_i | z_{i-1}, x) - log p(z_i | z_{i+1})]   kl_1 .. kl_{L-1}     (-)
         - E[log q(z_L | z_{L-1}, x) - log q(z_L)]      mi: index-code MI I(x, z_{L-1}; z_L)  (-)
         - E[log q(z_L) - log prod_j q(z_Lj)]           tc: KL(q(z_L) || prod_j q(z_Lj))      (-)
         - E[log prod_j q(z_Lj) - log p(z_L)]           dwkl: sum_j KL(q(z_Lj) || p(z_Lj))    (-)

with every expectation under q(x) and the chain. The ELBO is the model's, (1/N) sum_n ELBO(x_n)
(:meth:`VAE.elbo`). The paper's L(theta, phi; D) (Eqs 17-19) adds the constant H(q(x)) = log N to
both sides (it shows in Eq 28 and is dropped in Eq 16); we carry it on neither. The lower KL terms
are the model's single-sample log ratios (:meth:`VAE.lower_log_ratios`). The "mi" term is the MI
between z_L and what q conditions it on, (x, z_{L-1}) (the paper's Eq 7); for L = 1 it is the
index-code MI I(x; z) of the beta-TCVAE.

**The aggregate posterior.** q(z_L) = (1/N) sum_n E_{z_{L-1} ~ q(. | x_n)} q(z_L | z_{L-1}, x_n).
For L = 1 it is the finite mixture of the N posteriors, and :class:`AggregatePosterior` evaluates
it exactly. For L > 1 each data point contributes a continuous mixture over its lower-layer
chain, so we draw a pool of K ancestral samples z_{L-1}^{n,k} per data point, independent of the
points where the density is evaluated, and use the N K components
q_hat(z) = (1/(N K)) sum_{n,k} q(z | z_{L-1}^{n,k}, x_n), and likewise per coordinate j.
q_hat(z) is unbiased for q(z), so log q_hat(z) is biased low by about Var[q_hat(z)] / (2 q(z)^2),
which is O(1 / (N K)) per evaluation point when the components overlap and O(1 / K) where one
data point's chain dominates; each log q_hat(z_Lj) likewise, less so. So a small pool biases MI up,
dwkl down (by the marginals' bias), and TC by the joint's bias less the marginals' (down when the
joint's dominates). The biases cancel in MI + TC + dwkl, so the sum check below cannot see them:
compare the terms at two pool sizes instead. Cost: (N S) x (N K) x D density evaluations per term.

**The numerical check (claim C12).** Once the same log q_hat is used, the terms sum to a
single-sample ELBO sample by sample: that is algebra, not evidence. So :func:`decompose_elbo`
estimates the ELBO directly with :meth:`VAE.elbo` (closed-form top-layer KL) and each term from
its own independent draws of S chains per data point. The gap ELBO - sum of terms then has mean
zero for any fixed pool, a standard error that falls like 1 / sqrt(S), and a dropped or
mis-signed term t moves it by |t| or 2|t|, far outside the interval once t is a few standard errors.

**The minibatch TC estimator (Eq 43, Appendix C).** :func:`tc_estimator_study` draws many
minibatches of B points (without replacement, as an epoch does), one ancestral chain per point as
the training loss does, and applies :func:`seatbelt.tc.log_qz` to the top layer. Exact relation
used as a test: for L = 1 and B = N the MWS batch is the whole dataset, so per sample
log q_MWS(z) = log q(z) - log N and log prod_j q_MWS(z_j) = log prod_j q(z_j) - D log N: the MWS
MI is offset by +log N, the TC by +(D - 1) log N and the dwkl by -D log N, with no noise. For L > 1
no such identity holds: the batch mixture has a single chain per point, including the one z was
drawn from.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import pandas as pd
import torch
from scipy import stats
from torch import Tensor

from . import tc
from .claims import Effect
from .gaussian import DiagGaussian, log_density, standard_log_density
from .models import VAE

# entries of the (points, components, D) pairwise tensor computed at once, to bound memory
_CHUNK_ELEMENTS = 2**22
TOP_TERMS = ("mi", "tc", "dwkl")


@contextlib.contextmanager
def _evaluating(model: VAE):
    """Eval mode (BatchNorm on running statistics, so q(z | x) depends on x alone) and no grad."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)


def _model_device(model: VAE) -> torch.device:
    return next(model.parameters()).device


def _check_data(model: VAE, x: Tensor) -> None:
    if x.ndim < 2 or tuple(x.shape[1:]) != model.config.data_shape or x.shape[0] < 1:
        raise ValueError(
            f"x must be a dataset of items of shape {model.config.data_shape}, (N, ...) with N >= "
            f"1; got shape {tuple(x.shape)}."
        )


def _chains(model: VAE, x: Tensor, per_point: int, generator: torch.Generator):
    """Encode ``per_point`` independent ancestral chains of every item; rows grouped by item."""
    x_rep = x.repeat_interleave(per_point, dim=0)
    return x_rep, model.encode(x_rep, sample=True, generator=generator)


@dataclass(frozen=True)
class AggregatePosterior:
    """q(z_L) as a uniform mixture of diagonal Gaussian components (``mu``, ``logvar``: (P, D),
    float64).

    ``exact`` is True when the components are the N posteriors of a one-layer model (the mixture
    is then q(z) itself); otherwise they are a pool of ancestral samples (module docstring).
    """

    mu: Tensor
    logvar: Tensor
    exact: bool

    @property
    def n_components(self) -> int:
        return self.mu.shape[0]

    def log_prob(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """(log q(z), log prod_j q(z_j)) per row of ``z`` (B, D), both (B,) float64."""
        z = z.to(self.mu)
        p, d = self.mu.shape
        chunk = max(1, _CHUNK_ELEMENTS // (p * d))
        joint, marginals = [], []
        for zc in z.split(chunk):
            pairwise = log_density(zc[:, None, :], self.mu[None], self.logvar[None])  # (b, P, D)
            joint.append(torch.logsumexp(pairwise.sum(-1), dim=1) - math.log(p))
            marginals.append((torch.logsumexp(pairwise, dim=1) - math.log(p)).sum(-1))
        return torch.cat(joint), torch.cat(marginals)


def aggregate_posterior(
    model: VAE, x: Tensor, pool_size: int = 128, seed: int = 0
) -> AggregatePosterior:
    """The top layer's aggregate posterior over the dataset ``x``: exact for L = 1, a pool for L >
    1.

    ``pool_size`` is K, the ancestral chains per data point (ignored for L = 1).
    """
    _check_data(model, x)
    if pool_size < 1:
        raise ValueError(f"pool_size must be >= 1 chains per data point, got {pool_size}.")
    device = _model_device(model)
    generator = torch.Generator(device=device).manual_seed(seed)
    with _evaluating(model):
        return _aggregate(model, x.to(device), pool_size, generator)


def _aggregate(
    model: VAE, x: Tensor, pool_size: int, generator: torch.Generator
) -> AggregatePosterior:
    exact = model.n_layers == 1
    # for L = 1 the top posterior does not depend on the sample, so one chain per point is exact
    _, enc = _chains(model, x, 1 if exact else pool_size, generator)
    top = enc.posteriors[-1]
    return AggregatePosterior(top.mu.double(), top.logvar.double(), exact)


def _term_names(model: VAE) -> list[str]:
    return ["log_likelihood", *(f"kl_{i + 1}" for i in range(model.n_layers - 1)), *TOP_TERMS]


def _labels(model: VAE) -> dict[str, str]:
    top = f"z_{model.n_layers}"
    # for L > 1 the term is the MI between z_L and what it is conditioned on, (x, z_{L-1})
    given = "x" if model.n_layers == 1 else f"x, z_{model.n_layers - 1}"
    labels = {
        "log_likelihood": "E[log p(x|z)]",
        "mi": f"I({given}; {top})",
        "tc": f"TC({top})",
        "dwkl": f"sum_j KL(q({top},j) || p({top},j))",
    }
    for i in range(model.n_layers - 1):
        labels[f"kl_{i + 1}"] = f"E[log q(z_{i + 1}|.) - log p(z_{i + 1}|z_{i + 2})]"
    return labels


def _top_terms(
    top: DiagGaussian, z: Tensor, log_qz: Tensor, log_prod_qzj: Tensor
) -> dict[str, Tensor]:
    """Per-sample MI, TC and dwkl for samples ``z`` of the top posteriors ``top``, given log q
    estimates."""
    z = z.double()
    log_q_zx = log_density(z, top.mu.double(), top.logvar.double()).sum(-1)
    return {
        "mi": log_q_zx - log_qz,
        "tc": log_qz - log_prod_qzj,
        "dwkl": log_prod_qzj - standard_log_density(z),
    }


def _term_values(model: VAE, name: str, x_rep: Tensor, enc, mixture: AggregatePosterior) -> Tensor:
    """One term's per-sample value at the chains ``enc`` of ``x_rep``, float64."""
    if name == "log_likelihood":
        return model.log_likelihood(x_rep, enc.z).double()
    if name.startswith("kl_"):
        return model.lower_log_ratios(enc)[int(name[3:]) - 1].sum(-1).double()
    z = enc.z[-1]
    return _top_terms(enc.posteriors[-1], z, *mixture.log_prob(z))[name]


def _stratified(values: Tensor, n: int, per_point: int) -> tuple[float, float]:
    """Mean and standard error of (1/N) sum_n (1/S) sum_s v_ns: each point has exactly S draws,
    so only the within-point variance counts: se^2 = sum_n var_n / (S N^2)."""
    v = values.reshape(n, per_point)
    return float(v.mean()), float(math.sqrt(v.var(dim=1, unbiased=True).sum() / (per_point * n**2)))


def theorem1_gap(elbo: float, elbo_se: float, terms: pd.DataFrame) -> tuple[float, float]:
    """ELBO - sum_k coefficient_k estimate_k, and its standard error (independent estimates).

    ``terms`` needs the columns ``coefficient`` (+1 or -1: how the term enters the ELBO),
    ``estimate`` and ``se``, as :attr:`Decomposition.terms` has them.
    """
    missing = {"coefficient", "estimate", "se"} - set(terms.columns)
    if missing:
        raise ValueError(f"terms table lacks columns {sorted(missing)}; pass Decomposition.terms.")
    gap = elbo - float((terms["coefficient"] * terms["estimate"]).sum())
    return gap, math.sqrt(elbo_se**2 + float((terms["se"] ** 2).sum()))


@dataclass(frozen=True)
class Decomposition:
    """A Theorem 1 estimate: the ELBO, its terms, and the gap between them.

    ``terms`` has one row per term with columns ``term`` (key), ``label`` (for plots),
    ``coefficient`` (+1/-1 in the ELBO), ``estimate`` and ``se`` (Monte Carlo standard error).
    ``samples`` is S, the chains per data point for each term and for the ELBO; ``aggregate``
    the top layer's aggregate posterior the MI, TC and dwkl used (exact for L = 1, a pool of
    ``pool_size`` chains per point for L > 1; ``pool_size`` is 0 when exact).
    """

    terms: pd.DataFrame
    elbo: float
    elbo_se: float
    samples: int
    pool_size: int
    n_data: int
    aggregate: AggregatePosterior

    @property
    def gap(self) -> float:
        return theorem1_gap(self.elbo, self.elbo_se, self.terms)[0]

    @property
    def gap_se(self) -> float:
        return theorem1_gap(self.elbo, self.elbo_se, self.terms)[1]

    def term(self, name: str) -> float:
        """The estimate of one term by key (``"tc"``, ``"kl_1"``, ...)."""
        row = self.terms.loc[self.terms["term"] == name, "estimate"]
        if row.empty:
            raise KeyError(f"no term {name!r}; terms are {list(self.terms['term'])}.")
        return float(row.iloc[0])

    def check(self, z: float = 3.0) -> bool:
        """Whether 0 lies within gap +- z standard errors (the sum of terms agrees with the
        ELBO)."""
        return abs(self.gap) <= z * self.gap_se

    def effect(self, margin: float, level: float = 0.95) -> Effect:
        """The gap as a claim-C12 effect: a normal interval at ``level``, to lie within 0 +-
        ``margin``.

        Choose ``margin`` below the smallest term that should be detectable, so that dropping it
        would fail the check.
        """
        half = stats.norm.ppf(0.5 + level / 2) * self.gap_se
        return Effect(
            "ELBO - sum of Theorem 1 terms",
            self.gap,
            self.gap - half,
            self.gap + half,
            null=0.0,
            direction="within",
            margin=margin,
            level=level,
            n=self.samples * self.n_data,
            method="normal (Monte Carlo standard error)",
        )

    def summary(self) -> pd.DataFrame:
        """The terms with the ELBO, the sum of terms and the gap appended as rows, for display."""
        total = float((self.terms["coefficient"] * self.terms["estimate"]).sum())
        total_se = math.sqrt(float((self.terms["se"] ** 2).sum()))
        extra = pd.DataFrame(
            [
                {
                    "term": "sum",
                    "label": "sum of terms",
                    "coefficient": 1,
                    "estimate": total,
                    "se": total_se,
                },
                {
                    "term": "elbo",
                    "label": "ELBO (model.elbo)",
                    "coefficient": 1,
                    "estimate": self.elbo,
                    "se": self.elbo_se,
                },
                {
                    "term": "gap",
                    "label": "ELBO - sum of terms",
                    "coefficient": 1,
                    "estimate": self.gap,
                    "se": self.gap_se,
                },
            ]
        )
        return pd.concat([self.terms, extra], ignore_index=True)


def decompose_elbo(
    model: VAE, x: Tensor, samples: int = 64, pool_size: int = 128, seed: int = 0
) -> Decomposition:
    """Estimate the dataset-level ELBO and every term of Theorem 1 on the dataset ``x`` (N, ...).

    The ELBO (from :meth:`VAE.elbo`) and each term use their own ``samples`` (S >= 2) independent
    chains per data point; the top-layer terms share one aggregate posterior (exact for L = 1,
    ``pool_size`` chains per point for L > 1; module docstring). The model runs in eval mode.
    """
    _check_data(model, x)
    if samples < 2:
        raise ValueError(
            "samples must be >= 2 chains per data point to estimate a standard error, got "
            f"{samples}."
        )
    if pool_size < 1:
        raise ValueError(f"pool_size must be >= 1 chains per data point, got {pool_size}.")
    device = _model_device(model)
    x = x.to(device)
    n = x.shape[0]
    generator = torch.Generator(device=device).manual_seed(seed)
    labels = _labels(model)
    rows = []
    with _evaluating(model):
        mixture = _aggregate(model, x, pool_size, generator)
        x_rep = x.repeat_interleave(samples, dim=0)
        elbo, elbo_se = _stratified(
            model.elbo(x_rep, sample=True, generator=generator).double(), n, samples
        )
        for name in _term_names(model):
            x_rep, enc = _chains(model, x, samples, generator)
            estimate, se = _stratified(_term_values(model, name, x_rep, enc, mixture), n, samples)
            coefficient = 1 if name == "log_likelihood" else -1
            rows.append(
                {
                    "term": name,
                    "label": labels[name],
                    "coefficient": coefficient,
                    "estimate": estimate,
                    "se": se,
                }
            )
    return Decomposition(
        pd.DataFrame(rows), elbo, elbo_se, samples, 0 if mixture.exact else pool_size, n, mixture
    )


def gap_vs_samples(
    model: VAE,
    x: Tensor,
    samples: Sequence[int] = (4, 16, 64, 256),
    seeds: Iterable[int] = range(5),
    pool_size: int = 128,
) -> pd.DataFrame:
    """The Theorem 1 gap against S, one row per (samples, seed), for a log-log plot of |gap| vs S.

    Columns: ``samples``, ``seed``, ``elbo``, ``sum_of_terms``, ``gap``, ``abs_gap``, ``gap_se``,
    ``within_3se``. Each (S, seed) is an independent :func:`decompose_elbo` (its own pool too);
    ``gap_se`` should fall like 1 / sqrt(S), and ``abs_gap`` with it on average.
    """
    rows, seeds = [], list(seeds)
    for s in samples:
        for seed in seeds:
            d = decompose_elbo(model, x, samples=int(s), pool_size=pool_size, seed=int(seed))
            rows.append(
                {
                    "samples": int(s),
                    "seed": int(seed),
                    "elbo": d.elbo,
                    "sum_of_terms": d.elbo - d.gap,
                    "gap": d.gap,
                    "abs_gap": abs(d.gap),
                    "gap_se": d.gap_se,
                    "within_3se": d.check(3.0),
                }
            )
    return pd.DataFrame(rows)


def tc_estimator_study(
    model: VAE,
    x: Tensor,
    batch_sizes: Sequence[int],
    n_batches: int = 100,
    estimators: Sequence[str] = tc.ESTIMATORS,
    reference: Decomposition | None = None,
    pool_size: int = 128,
    seed: int = 0,
) -> pd.DataFrame:
    """Bias and spread of the minibatch (Eq 43) estimates of the top layer's MI, TC and dwkl vs
    batch size.

    For each batch size B in ``batch_sizes`` (2 <= B <= N; B is the whole batch, so MSS's M is
    B - 1), draws ``n_batches`` minibatches of distinct points of ``x``, one ancestral chain per
    point, and the batch-mean estimates of each estimator with dataset size N = len(x). All
    estimators see the same batches and samples.

    One row per (estimator, batch_size, term) with columns:
    ``mean`` and ``std`` of the batch estimates over batches; ``reference`` and ``reference_se``
    from ``reference`` (default: :func:`decompose_elbo` with ``pool_size`` and S = 64);
    ``bias`` = mean - reference and ``bias_se``; ``bias_paired`` = the mean over batches of
    (estimate - the same samples' plug-in under ``reference.aggregate``), a lower-noise estimate of
    the same bias (exact for L = 1, up to the pool's bias for L > 1), and ``bias_paired_se``.
    ``pool_size`` is used only to build the default reference.
    """
    _check_data(model, x)
    n = x.shape[0]
    batch_sizes = [int(b) for b in batch_sizes]
    bad = [b for b in batch_sizes if not 2 <= b <= n]
    if bad:
        raise ValueError(
            f"batch sizes must lie in 2..N = {n} (distinct points of the dataset), got {bad}."
        )
    if n_batches < 2:
        raise ValueError(f"n_batches must be >= 2 to estimate a spread, got {n_batches}.")
    unknown = set(estimators) - set(tc.ESTIMATORS)
    if unknown:
        raise ValueError(f"unknown estimators {sorted(unknown)}; choose from {tc.ESTIMATORS}.")
    if reference is None:
        reference = decompose_elbo(model, x, samples=64, pool_size=pool_size, seed=seed)
    elif reference.n_data != n:
        raise ValueError(
            f"reference was computed on {reference.n_data} points, x has {n}: pass the same "
            "dataset."
        )
    device = _model_device(model)
    x = x.to(device)
    index_generator = torch.Generator().manual_seed(seed)
    generator = torch.Generator(device=device).manual_seed(seed + 1)
    mixture = reference.aggregate
    ref_table = reference.terms.set_index("term")
    rows = []
    with _evaluating(model):
        for b in batch_sizes:
            idx = torch.stack(
                [torch.randperm(n, generator=index_generator)[:b] for _ in range(n_batches)]
            )
            enc = model.encode(x[idx.flatten().to(device)], sample=True, generator=generator)
            top, z = enc.posteriors[-1], enc.z[-1]
            plugin = _top_terms(top, z, *mixture.log_prob(z))
            plugin = {k: v.reshape(n_batches, b).mean(1) for k, v in plugin.items()}
            for estimator in estimators:
                per_batch = {k: [] for k in TOP_TERMS}
                for j in range(n_batches):
                    rows_j = slice(j * b, (j + 1) * b)
                    mu, logvar, zj = (
                        top.mu[rows_j].double(),
                        top.logvar[rows_j].double(),
                        z[rows_j].double(),
                    )
                    values = _top_terms(
                        DiagGaussian(mu, logvar), zj, *tc.log_qz(zj, mu, logvar, n, estimator)
                    )
                    for k, v in values.items():
                        per_batch[k].append(v.mean())
                for k in TOP_TERMS:
                    est = torch.stack(per_batch[k])
                    diff = est - plugin[k]
                    ref, ref_se = float(ref_table.loc[k, "estimate"]), float(ref_table.loc[k, "se"])
                    rows.append(
                        {
                            "estimator": estimator,
                            "batch_size": b,
                            "term": k,
                            "mean": float(est.mean()),
                            "std": float(est.std()),
                            "reference": ref,
                            "reference_se": ref_se,
                            "bias": float(est.mean()) - ref,
                            "bias_se": math.sqrt(float(est.var()) / n_batches + ref_se**2),
                            "bias_paired": float(diff.mean()),
                            "bias_paired_se": float(diff.std()) / math.sqrt(n_batches),
                        }
                    )
    return pd.DataFrame(rows)
