"""The battery of Section 5 in one call: every attack x pair x lambda against one model."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import asdict, is_dataclass, replace
from typing import Literal, get_args

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from ..data.base import Data
from .batched import BatchedLBFGSB
from .objectives import OUTPUT_KINDS, Attack, AttackKind, AttackObjective, check_model
from .protocol import AttackProtocol
from .results import AttackResults
from .solvers import ScipyLBFGSB

SolverName = Literal["batched", "batched-fast", "batched-two-starts", "scipy"]
SOLVER_NAMES: tuple[SolverName, ...] = get_args(SolverName)
SOLVERS: dict[SolverName, Callable[[], BatchedLBFGSB | ScipyLBFGSB]] = {
    "batched": BatchedLBFGSB,
    "batched-fast": BatchedLBFGSB.fast,
    "batched-two-starts": BatchedLBFGSB.two_starts,
    "scipy": ScipyLBFGSB,
}
if tuple(SOLVERS) != SOLVER_NAMES:  # the Literal is the one list of names
    raise RuntimeError(f"SOLVERS {tuple(SOLVERS)} must follow SolverName {SOLVER_NAMES}.")
START_SCALE = 1e-8  # d ~ U(-1e-8, 1e-8), as in the public attack code
_CHUNK = 256  # problems per no-grad pass when measuring results


def run_battery(
    model,
    data: Data | tuple[Tensor, Tensor],
    protocol: AttackProtocol = AttackProtocol(),
    *,
    attacks: tuple[Attack | AttackKind, ...] | None = None,
    solver: SolverName | BatchedLBFGSB | ScipyLBFGSB = "batched",
    name: str = "model",
    pairs: np.ndarray | None = None,
    keep_images: bool = True,
) -> AttackResults:
    """Attack ``model`` with every attack of the protocol, on every pair, at every lambda.

    data:   a :class:`Data` set (pairs drawn by ``protocol.draw_pairs``, or given as ``pairs``,
            (n_pairs, 2) indices), or a tuple (sources, targets) of tensors in [-1, 1], one pair
            per row.
    solver: "batched" (all problems of an attack solved together, :class:`BatchedLBFGSB`),
            "batched-fast" (the same with a stall rule, :meth:`BatchedLBFGSB.fast`),
            "batched-two-starts" (the stall rule, started at the source and at the target,
            :meth:`BatchedLBFGSB.two_starts`), "scipy" (the paper's one L-BFGS-B run per problem,
            :class:`ScipyLBFGSB`), or a configured instance.
            All start from the same seeded d ~ U(-1e-8, 1e-8). Whatever the solver, the battery
            keeps the better of its answer and copying the target (x + d = x_t), so no attack
            ends above Delta*(lambda) <= lambda ||x - x_t||^2 (latent attacks).

    The model runs in eval mode with frozen parameters during the battery (its previous mode and
    ``requires_grad`` flags are restored), on its own device.

    Frame columns, one row per attack:
      model, attack, layers, solver, pair, source, target (dataset indices; <NA> for tensors),
      lambda; delta: the attained objective Delta; divergence: its attack term (sum of r over the
      layers, the negative ELBO of the target for the output attack, ||recon(x + d) - x_t||^2 for
      the recon attack); divergence0: that term at d = 0;
      delta_rel = delta / divergence0 (latent attacks; NOT scale-free: widening the posteriors by c
      is attacking at lambda c^2, :mod:`.measures`); divergence_rel = divergence / divergence0, the
      share of the divergence the attacker could not remove;
      delta_solver: the solver's own Delta; copy_bound: Delta at x + d = x_t (copying the target,
      always feasible); kept: "copy" where that was lower and the battery kept it, else "solver";
      delta_cap10: Delta re-solved with 10x the cap on ``protocol.cap_check`` problems, else NaN;
      delta_reference: Delta re-solved by the scipy reference at its own limits on
      ``protocol.reference_check`` other problems, else NaN (both keep the copy where better);
      d_norm = ||d||; nll_sample = -log p(x_t | z*), z* ~ q(z | x + d) (seeded, ancestral through
      the chain); nll_mean: the same at the posterior means; nll_target_recon and
      nll_target_recon_mean: -log p(x_t | z_t), z_t ~ q(z | x_t), the target's own reconstruction
      term; nll_excess = nll_sample - nll_target_recon;
      distances (Appendix E, with recon(.) the likelihood mean at the posterior means):
      dist_adv_target = ||x + d - x_t||, dist_adv_recon_target = ||recon(x + d) - x_t||,
      dist_target_recon_target = ||recon(x_t) - x_t||, dist_orig_recon_target = ||recon(x) - x_t||,
      dist_orig_target = ||x - x_t||;
      iterations, evaluations, seconds, status: the solver's work per problem.
    """
    attacks = tuple(
        Attack.coerce(a) for a in (attacks if attacks is not None else protocol.attacks)
    )
    if not attacks:
        raise ValueError("no attack to run: give attacks=('kl', ...) or set protocol.attacks.")
    for attack in attacks:
        if attack.eps is not None:
            raise ValueError(
                f"{attack.kind} with a budget ({attack.budget_label}) has no lambda to sweep: run "
                "it with seatbelt.attacks.run_budgeted."
            )
        check_model(model, attack)
    solver = _resolve_solver(solver)
    device = _model_device(model)
    sources, targets, pair_index = _pairs(data, protocol, pairs, device)
    lambdas = protocol.lambda_values()

    frames, per_row = [], {"distortions": [], "adversarial": [], "adversarial_recons": []}
    meta = {
        "solver": solver.name,
        "solver_config": asdict(solver) if is_dataclass(solver) else {},
        "protocol": asdict(protocol),
        "seconds": {},
    }
    with _frozen(model):
        _probe(model, sources)
        pair_metrics, recons = _pair_metrics(model, sources, targets, protocol.seed)
        for attack in attacks:
            began = time.perf_counter()
            frame, images = _run_attack(
                model,
                attack,
                solver,
                sources,
                targets,
                lambdas,
                protocol.seed,
                protocol.cap_check,
                protocol.reference_check,
            )
            meta["seconds"][f"{attack.kind}:{attack.layers_label}"] = time.perf_counter() - began
            frames.append(frame)
            if keep_images:
                for key, value in images.items():
                    per_row[key].append(value)

    frame = pd.concat(frames, ignore_index=True).join(pair_metrics, on="pair")
    frame["model"], frame["solver"] = name, solver.name
    for column, indices in (("source", pair_index[:, 0]), ("target", pair_index[:, 1])):
        frame[column] = pd.Series(indices[frame["pair"].to_numpy()], dtype="Int64").mask(
            lambda s: s < 0
        )
    frame["nll_excess"] = frame["nll_sample"] - frame["nll_target_recon"]
    empty = sources[:0].cpu()
    return AttackResults(
        frame=frame[_COLUMNS],
        sources=sources.cpu(),
        targets=targets.cpu(),
        source_recons=recons[0],
        target_recons=recons[1],
        **{key: torch.cat(value) if value else empty for key, value in per_row.items()},
        meta=meta,
    )


_COLUMNS = [
    "model",
    "attack",
    "layers",
    "solver",
    "pair",
    "source",
    "target",
    "lambda",
    "delta",
    "divergence",
    "divergence0",
    "delta_rel",
    "divergence_rel",
    "d_norm",
    "delta_solver",
    "copy_bound",
    "kept",
    "delta_cap10",
    "delta_reference",
    "nll_sample",
    "nll_mean",
    "nll_target_recon",
    "nll_target_recon_mean",
    "nll_excess",
    "dist_adv_target",
    "dist_adv_recon_target",
    "dist_target_recon_target",
    "dist_orig_recon_target",
    "dist_orig_target",
    "iterations",
    "evaluations",
    "seconds",
    "status",
]


def start_distortions(n: int, item_shape: tuple[int, ...], seed: int) -> Tensor:
    """The seeded starts d ~ U(-1e-8, 1e-8) of ``n`` problems (on the CPU, the same on every
    device)."""
    generator = torch.Generator().manual_seed(seed)
    return (torch.rand((n, *item_shape), generator=generator) * 2 - 1) * START_SCALE


def _run_attack(
    model,
    attack,
    solver,
    sources,
    targets,
    lambdas,
    seed,
    cap_check: int = 0,
    reference_check: int = 0,
) -> tuple[pd.DataFrame, dict[str, Tensor]]:
    n_pairs, n_lambdas = len(sources), len(lambdas)
    pair = torch.arange(n_pairs, device=sources.device).repeat_interleave(n_lambdas)
    lam = torch.as_tensor(np.tile(lambdas, n_pairs), dtype=sources.dtype, device=sources.device)
    x, x_t = sources[pair], targets[pair]
    objective = AttackObjective(model, attack, x, x_t, lam, groups=pair)
    d0 = start_distortions(len(x), tuple(sources.shape[1:]), seed).to(sources)
    solved = solver.solve(objective, d0)

    # x + d exactly inside [-1, 1] (the float64 reference can overshoot by an ulp in float32)
    d_solver = torch.clamp(x + solved.d, -1.0, 1.0) - x
    # Copying the target (x + d = x_t) is always feasible: no answer may cost more than it.
    d_copy = x_t - x
    delta_solver, copy_bound = _deltas(objective, d_solver), _deltas(objective, d_copy)
    use_copy = copy_bound < delta_solver
    d = torch.where(use_copy.view(-1, *[1] * (d_copy.dim() - 1)), d_copy, d_solver)
    adversarial = x + d
    delta_cap10 = _cap_check(objective, solver, d0, d_copy, cap_check, n_pairs, n_lambdas)
    delta_reference = _reference_check(objective, d0, d_copy, reference_check, n_pairs, n_lambdas)
    generator = torch.Generator(device=sources.device).manual_seed(seed)
    columns: dict[str, list[Tensor]] = {
        k: [] for k in ("delta", "divergence", "divergence0", "nll_sample", "nll_mean")
    }
    recons = []
    with torch.no_grad():
        for chunk in torch.arange(len(x), device=x.device).split(_CHUNK):
            delta, divergence = objective(d[chunk], chunk)
            columns["delta"].append(delta)
            columns["divergence"].append(divergence)
            columns["divergence0"].append(objective.divergence(torch.zeros_like(d[chunk]), chunk))
            sampled = model.encode(adversarial[chunk], sample=True, generator=generator).z
            means = model.encode(adversarial[chunk], sample=False).z
            columns["nll_sample"].append(-model.log_likelihood(x_t[chunk], sampled))
            columns["nll_mean"].append(-model.log_likelihood(x_t[chunk], means))
            recons.append(model.decode(means))
    recon = torch.cat(recons)
    latent = attack.kind not in OUTPUT_KINDS
    values = {k: torch.cat(v).double().cpu().numpy() for k, v in columns.items()}
    frame = pd.DataFrame(
        {
            "attack": attack.kind,
            "layers": attack.layers_label,
            "pair": pair.cpu().numpy(),
            "lambda": np.tile(lambdas, n_pairs),
            **values,
            "delta_rel": values["delta"] / values["divergence0"] if latent else np.nan,
            "divergence_rel": values["divergence"] / values["divergence0"] if latent else np.nan,
            "delta_solver": delta_solver.double().cpu().numpy(),
            "copy_bound": copy_bound.double().cpu().numpy(),
            "kept": np.where(use_copy.cpu().numpy(), "copy", "solver"),
            "delta_cap10": delta_cap10,
            "delta_reference": delta_reference,
            "d_norm": _norm(d),
            "dist_adv_target": _norm(adversarial - x_t),
            "dist_adv_recon_target": _norm(recon - x_t),
            "iterations": solved.iterations,
            "evaluations": solved.evaluations,
            "seconds": solved.seconds,
            "status": solved.status,
        }
    )
    images = {
        "distortions": d.cpu(),
        "adversarial": adversarial.cpu(),
        "adversarial_recons": recon.cpu(),
    }
    return frame, images


def _deltas(objective: AttackObjective, d: Tensor) -> Tensor:
    """Δ of every problem at ``d``, without gradients, in chunks."""
    with torch.no_grad():
        return torch.cat(
            [
                objective(d[chunk], chunk)[0]
                for chunk in torch.arange(len(d), device=d.device).split(_CHUNK)
            ]
        )


def _spread(n: int, n_pairs: int, n_lambdas: int, shift: int = 0) -> np.ndarray:
    """``n`` problems spread evenly over the λ grid, the pair rotating (``shift`` turns it further,
    so two checks can take different problems)."""
    rows = np.arange(n_pairs * n_lambdas)
    pair, lam = rows // n_lambdas, rows % n_lambdas
    by_lambda = rows[np.lexsort(((pair - lam + shift) % n_pairs, lam))]  # λ-major
    take = np.linspace(0, len(rows) - 1, min(n, len(rows))).round().astype(int)
    return np.sort(by_lambda[take])


def _resolve(
    objective, solver, d0: Tensor, d_copy: Tensor, chosen: np.ndarray, size: int
) -> np.ndarray:
    """Δ of the ``chosen`` problems solved again by ``solver`` (the copy kept where it is better,
    as in the battery), NaN for the other ``size`` - len(chosen) problems."""
    out = np.full(size, np.nan)
    if len(chosen) == 0:
        return out
    index = torch.as_tensor(chosen, device=d0.device)
    sub = objective.subset(index)
    d = torch.clamp(sub.sources + solver.solve(sub, d0[index]).d, -1.0, 1.0) - sub.sources
    out[chosen] = torch.minimum(_deltas(sub, d), _deltas(sub, d_copy[index])).double().cpu().numpy()
    return out


def _cap_check(objective, solver, d0, d_copy, n: int, n_pairs: int, n_lambdas: int) -> np.ndarray:
    """Δ of ``n`` problems re-solved with 10x the iteration and evaluation caps, NaN elsewhere.

    The problems are spread evenly over the λ grid and the pairs, so every λ band is checked.
    """
    size = n_pairs * n_lambdas
    if n <= 0 or not is_dataclass(solver) or not hasattr(solver, "max_iter"):
        return np.full(size, np.nan)
    longer = replace(solver, max_iter=solver.max_iter * 10, max_evals=solver.max_evals * 10)
    return _resolve(objective, longer, d0, d_copy, _spread(n, n_pairs, n_lambdas), size)


def _reference_check(objective, d0, d_copy, n: int, n_pairs: int, n_lambdas: int) -> np.ndarray:
    """Δ of ``n`` problems re-solved by the scipy reference at its own limits, NaN elsewhere
    (other problems than the cap check's, spread over the λ grid in the same way)."""
    chosen = _spread(n, n_pairs, n_lambdas, shift=1) if n > 0 else np.array([], dtype=np.int64)
    return _resolve(objective, ScipyLBFGSB(), d0, d_copy, chosen, n_pairs * n_lambdas)


def _pair_metrics(
    model, sources: Tensor, targets: Tensor, seed: int
) -> tuple[pd.DataFrame, tuple[Tensor, Tensor]]:
    """Per pair: the target's own reconstruction terms and the reference distances."""
    generator = torch.Generator(device=sources.device).manual_seed(seed)
    with torch.no_grad():
        source_recon = model.decode(model.encode(sources, sample=False).z)
        target_means = model.encode(targets, sample=False).z
        target_recon = model.decode(target_means)
        sampled = model.encode(targets, sample=True, generator=generator).z
        frame = pd.DataFrame(
            {
                "nll_target_recon": -model.log_likelihood(targets, sampled).double().cpu().numpy(),
                "nll_target_recon_mean": -model.log_likelihood(targets, target_means)
                .double()
                .cpu()
                .numpy(),
                "dist_target_recon_target": _norm(target_recon - targets),
                "dist_orig_recon_target": _norm(source_recon - targets),
                "dist_orig_target": _norm(sources - targets),
            }
        )
    return frame, (source_recon.cpu(), target_recon.cpu())


def _norm(t: Tensor) -> np.ndarray:
    return t.flatten(1).double().norm(dim=-1).cpu().numpy()


def _resolve_solver(solver):
    if isinstance(solver, str):
        if solver not in SOLVER_NAMES:
            raise ValueError(
                f"unknown solver {solver!r}; choose one of {SOLVER_NAMES} or pass a configured "
                "solver."
            )
        return SOLVERS[solver]()
    if not hasattr(solver, "solve"):
        raise TypeError(
            f"solver must be a name in {SOLVER_NAMES} or a solver object, got "
            f"{type(solver).__name__}."
        )
    return solver


def _model_device(model) -> torch.device:
    parameter = next(iter(model.parameters()), None) if hasattr(model, "parameters") else None
    return parameter.device if parameter is not None else torch.device("cpu")


def _pairs(data, protocol: AttackProtocol, pairs, device) -> tuple[Tensor, Tensor, np.ndarray]:
    """(sources, targets, (n_pairs, 2) dataset indices or -1) on ``device``, checked."""
    if isinstance(data, Data):
        if pairs is None:
            labels = data.labels.numpy() if data.labels is not None else None
            pairs = protocol.draw_pairs(len(data), labels)
        pairs = np.asarray(pairs, dtype=np.int64)
        if pairs.ndim != 2 or pairs.shape[1] != 2 or pairs.min() < 0 or pairs.max() >= len(data):
            raise ValueError(
                f"pairs must be (n, 2) indices into the {len(data)} items of {data.name}; got "
                f"shape {pairs.shape}."
            )
        sources, targets = (
            data.get(torch.from_numpy(pairs[:, 0]), device),
            data.get(torch.from_numpy(pairs[:, 1]), device),
        )
    else:
        if pairs is not None:
            raise ValueError(
                "pairs index a Data set; with (sources, targets) tensors each row is already a "
                "pair."
            )
        try:
            sources, targets = data
        except (TypeError, ValueError):
            raise TypeError(
                "data must be a seatbelt Data set or a tuple (sources, targets) of tensors."
            ) from None
        if sources.shape != targets.shape or sources.dim() < 2:
            raise ValueError(
                f"sources {tuple(sources.shape)} and targets {tuple(targets.shape)} must have the "
                "same shape (n_pairs, ...)."
            )
        sources, targets = (
            sources.to(device=device, dtype=torch.float32),
            targets.to(device=device, dtype=torch.float32),
        )
        pairs = np.full((len(sources), 2), -1, dtype=np.int64)
    for what, t in (("sources", sources), ("targets", targets)):
        if not bool(torch.isfinite(t).all()) or float(t.min()) < -1 or float(t.max()) > 1:
            raise ValueError(
                f"{what} must be finite and scaled to [-1, 1] (Data.get does this); got range "
                f"[{float(t.min()):.3g}, {float(t.max()):.3g}]."
            )
    return sources, targets, pairs


def _probe(model, sources: Tensor) -> None:
    """One encoding of one item, so a model/data mismatch fails before any optimisation."""
    with torch.no_grad():
        encoding = model.encode(sources[:1], sample=False)
    if len(encoding.posteriors) != model.n_layers:
        raise ValueError(
            f"the model reports {model.n_layers} layers but encodes {len(encoding.posteriors)}."
        )


@contextlib.contextmanager
def _frozen(model):
    """Eval mode and no parameter gradients for the battery; the caller's settings come back
    after."""
    was_training = getattr(model, "training", False)
    parameters = list(model.parameters()) if hasattr(model, "parameters") else []
    flags = [p.requires_grad for p in parameters]
    if hasattr(model, "eval"):
        model.eval()
    for p in parameters:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(parameters, flags):
            p.requires_grad_(flag)
        if was_training:
            model.train()
