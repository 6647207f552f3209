"""Fixed-budget attacks with random restarts: the threat model of the post-2021 literature.

Kuzina, Welling and Tomczak (2021, 2022) attack a VAE within ||d||_inf <= eps, targeted (the
latent KL to a target's posterior) and untargeted (push the posterior, or the reconstruction,
away from the source's own), each from several random starts. :func:`run_budgeted` runs such an
attack on every input from ``restarts`` random starts in the budget ball, all inputs and
restarts in one batch of the solver, and keeps every restart's result.

**Worst case, not the average.** An attacker who tries R starts keeps the best one, so the
robustness of a model against an input is the worst case over restarts: the lowest Delta, i.e.
the smallest targeted divergence or the largest untargeted one. The peers' code averages the
restarts, which overstates robustness; :meth:`BudgetResults.worst` reports the worst case per
input and the restart average beside it only as context.

Starts: L∞, d ~ U(-eps, eps) per pixel; L2, d uniform in the ball (a Gaussian direction, radius
eps u^(1/n)); each then projected onto the feasible set (the box of the data range too). Never
d = 0: an untargeted divergence is at its minimum there, with a zero gradient, so a solver
started at 0 stops at once. eps is in the data's units, [-1, 1]: twice a peer's eps on [0, 1].
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field, is_dataclass

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from .batched import BatchedLBFGSB
from .battery import SolverName, _frozen, _model_device, _resolve_solver
from .objectives import Attack, AttackObjective
from .solvers import ProjectedGradient, ScipyLBFGSB

_CHUNK = 256  # problems per no-grad pass when measuring results
IMAGES = ("sources", "targets", "source_recons", "distortions", "adversarial", "adversarial_recons")


def random_starts(n: int, item_shape: tuple[int, ...], norm: str, eps: float, seed: int) -> Tensor:
    """``n`` seeded starts uniform in the budget ball (module docstring), on the CPU, before the
    projection onto the data range."""
    generator = torch.Generator().manual_seed(seed)
    if norm == "linf":
        return (torch.rand((n, *item_shape), generator=generator) * 2 - 1) * eps
    direction = torch.randn((n, math.prod(item_shape)), generator=generator)
    direction = direction / direction.norm(dim=-1, keepdim=True)
    radius = eps * torch.rand((n, 1), generator=generator) ** (1 / direction.shape[1])
    return (direction * radius).view(n, *item_shape)


@dataclass
class BudgetResults:
    """Every restart of a budgeted attack, and the images of each input's worst case (CPU).

    frame: one row per (input, restart): input, restart, attack, layers, norm, eps, solver;
           delta (the objective the solver minimised: the divergence, or minus it for an
           untargeted attack), divergence (its attack term: KL or W2 to the target, the
           symmetric KL or squared reconstruction distance from the source's own), divergence0
           (at d = 0), d_linf and d_l2 (the distortion's norms), iterations, evaluations,
           seconds, status. Measured on the model itself, not the solver's inference copy.
    per input (n_inputs, *item_shape): sources, targets (empty when untargeted), source_recons,
           and for the worst restart: distortions, adversarial (x + d), adversarial_recons.
    """

    frame: pd.DataFrame
    sources: Tensor
    targets: Tensor
    source_recons: Tensor
    distortions: Tensor
    adversarial: Tensor
    adversarial_recons: Tensor
    meta: dict = field(default_factory=dict)

    def worst(self) -> pd.DataFrame:
        """One row per input: its worst-case restart (the lowest delta), with divergence_mean, the
        restart average of the divergence (context only: it overstates robustness), and the
        work of all its restarts (evaluations, seconds)."""
        return worst_case(self.frame)

    def to_parts(self) -> tuple[pd.DataFrame, dict[str, Tensor], dict]:
        """(frame, images by name, meta): plain data a cache stores without pickling."""
        return self.frame, {name: getattr(self, name) for name in IMAGES}, self.meta

    @classmethod
    def from_parts(
        cls, frame: pd.DataFrame, images: dict[str, Tensor], meta: dict
    ) -> BudgetResults:
        """The inverse of :meth:`to_parts`; a missing image raises KeyError."""
        return cls(frame=frame, meta=meta, **{name: images[name] for name in IMAGES})


def worst_case(frame: pd.DataFrame) -> pd.DataFrame:
    """Per input, the restart with the lowest delta (:meth:`BudgetResults.worst`)."""
    by_input = frame.groupby("input", sort=True)
    worst = frame.loc[by_input["delta"].idxmin()].set_index("input")
    worst["divergence_mean"] = by_input["divergence"].mean()
    worst["restarts"] = by_input.size()
    worst[["evaluations", "seconds"]] = by_input[["evaluations", "seconds"]].sum()
    return worst.reset_index()


def run_budgeted(
    model,
    attack: Attack,
    sources: Tensor,
    targets: Tensor | None = None,
    *,
    restarts: int = 10,
    solver: SolverName | BatchedLBFGSB | ScipyLBFGSB | ProjectedGradient = "batched",
    seed: int = 0,
) -> BudgetResults:
    """Attack each of ``sources`` ((n, *item_shape) in [-1, 1]) within ``attack``'s budget from
    ``restarts`` random starts, every input and restart in one call of the solver.

    targets: (n, *item_shape), one per source, for a targeted attack; None for an untargeted one.
    solver:  a name of ``SOLVERS`` or a configured solver; the L2 budget needs one that projects
             (the batched solver, or :class:`ProjectedGradient`; not scipy's L-BFGS-B).
    Restarts do not share distortions (no lambda path), so each is an independent attempt.
    Inputs are checked, and every error raised, before any optimisation.
    """
    attack = Attack.coerce(attack)
    if attack.eps is None:
        raise ValueError(
            f"run_budgeted needs a budget: give Attack({attack.kind!r}, norm='linf' or 'l2', "
            "eps=...); the penalised attack is run_battery's."
        )
    if isinstance(restarts, bool) or not isinstance(restarts, int) or restarts < 1:
        raise ValueError(f"restarts must be a positive integer, got {restarts!r}.")
    if attack.untargeted and targets is not None:
        raise ValueError(
            f"the {attack.kind} attack is untargeted and takes no target: pass targets=None, or "
            "use a targeted kind such as 'kl'."
        )
    if not attack.untargeted and targets is None:
        raise ValueError(f"the targeted {attack.kind} attack needs targets, one per source.")
    solver = _resolve_solver(solver)
    if attack.norm == "l2" and isinstance(solver, ScipyLBFGSB):
        raise ValueError(
            "scipy's L-BFGS-B keeps boxes only, not an L2 budget: use the batched solver or "
            "ProjectedGradient()."
        )
    device = _model_device(model)
    sources = _checked("sources", sources, device)
    if targets is not None:
        targets = _checked("targets", targets, device)
        if targets.shape != sources.shape:
            raise ValueError(
                f"targets {tuple(targets.shape)} must match sources {tuple(sources.shape)}."
            )
    n, item_shape = len(sources), tuple(sources.shape[1:])
    stack = torch.arange(n, device=device).repeat(restarts)  # row r n + i: input i, restart r
    with _frozen(model):
        x = sources[stack]
        x_t = targets[stack] if targets is not None else None
        objective = AttackObjective(model, attack, x, x_t, torch.zeros(len(x), device=device))
        starts = random_starts(len(x), item_shape, attack.norm, attack.eps, seed).to(x)
        d0 = objective.project(starts)
        began = time.perf_counter()
        solved = solver.solve(objective, d0)
        wall = time.perf_counter() - began
        d = objective.project(solved.d)  # a float64 solver's answer may round out by an ulp
        delta, divergence, divergence0 = _measure(objective, d)
        frame = pd.DataFrame(
            {
                "input": np.tile(np.arange(n), restarts),
                "restart": np.repeat(np.arange(restarts), n),
                "attack": attack.kind,
                "layers": attack.layers_label,
                "norm": attack.norm,
                "eps": attack.eps,
                "solver": solver.name,
                "delta": delta,
                "divergence": divergence,
                "divergence0": divergence0,
                "d_linf": d.flatten(1).abs().amax(-1).double().cpu().numpy(),
                "d_l2": d.flatten(1).double().norm(dim=-1).cpu().numpy(),
                "iterations": solved.iterations,
                "evaluations": solved.evaluations,
                "seconds": solved.seconds,
                "status": solved.status,
            }
        )
        rows = torch.as_tensor(worst_case(frame)["restart"].to_numpy() * n + np.arange(n))
        worst_d = d[rows.to(device)]
        with torch.no_grad():
            source_recons = model.decode(model.encode(sources, sample=False).z)
            adversarial_recons = model.decode(model.encode(sources + worst_d, sample=False).z)
    meta = {
        "attack": asdict(attack),
        "budget": attack.budget_label,
        "restarts": restarts,
        "seed": seed,
        "solver": solver.name,
        "solver_config": asdict(solver) if is_dataclass(solver) else {},
        "seconds": wall,
    }
    return BudgetResults(
        frame=frame,
        sources=sources.cpu(),
        targets=targets.cpu() if targets is not None else sources[:0].cpu(),
        source_recons=source_recons.cpu(),
        distortions=worst_d.cpu(),
        adversarial=(sources + worst_d).cpu(),
        adversarial_recons=adversarial_recons.cpu(),
        meta=meta,
    )


def _measure(objective: AttackObjective, d: Tensor) -> tuple[np.ndarray, ...]:
    """(delta, divergence, divergence at d = 0) of every problem, without gradients, in chunks."""
    out: tuple[list[Tensor], ...] = ([], [], [])
    with torch.no_grad():
        for chunk in torch.arange(len(d), device=d.device).split(_CHUNK):
            delta, divergence = objective(d[chunk], chunk)
            out[0].append(delta)
            out[1].append(divergence)
            out[2].append(objective.divergence(torch.zeros_like(d[chunk]), chunk))
    return tuple(torch.cat(t).double().cpu().numpy() for t in out)


def _checked(what: str, t: Tensor, device) -> Tensor:
    if not isinstance(t, Tensor) or t.dim() < 2:
        raise TypeError(f"{what} must be a tensor (n, *item_shape), got {type(t).__name__}.")
    t = t.to(device=device, dtype=t.dtype if t.is_floating_point() else torch.float32)
    if not bool(torch.isfinite(t).all()) or float(t.min()) < -1 or float(t.max()) > 1:
        raise ValueError(
            f"{what} must be finite and scaled to [-1, 1] (Data.get does this); got range "
            f"[{float(t.min()):.3g}, {float(t.max()):.3g}]."
        )
    return t
