"""Adversarial attacks on VAEs: latent (KL, W2) and output attacks, targeted and untargeted,
penalised or within a fixed budget; their solvers; the paper's battery.

objectives  Attack (which objective, which layers, which budget) and the batched objective Delta
            (Eqs 1, 2, 10; the untargeted attacks of Kuzina et al.)
constraints the feasible set (data range, L∞ or L2 budget) and the exact projection onto it
protocol    AttackProtocol: pairs, lambdas and attacks of Section 5, as data
solvers     SolveResult, ScipyLBFGSB (the paper's one-L-BFGS-B-per-problem reference) and
            ProjectedGradient (SPG, the reference for L2 budgets)
batched     BatchedLBFGSB: every problem of a battery in one torch batch, CPU or GPU
battery     run_battery: the whole battery against one model, one call
budget      run_budgeted: fixed-budget attacks from random restarts, the worst case per input
results     AttackResults and the representative attack of Gondim-Ribeiro et al. (2018)
measures    lambda-free measures (envelope AUDDC, minimal distortion) and a battery's controls
"""

from .batched import BatchedLBFGSB
from .battery import SOLVER_NAMES, SOLVERS, SolverName, run_battery, start_distortions
from .budget import BudgetResults, random_starts, run_budgeted, worst_case
from .constraints import NORMS, Norm, project
from .measures import auddc, controls, minimal_distortion
from .objectives import (
    ATTACK_KINDS,
    LAYER_NAMES,
    UNTARGETED_KINDS,
    Attack,
    AttackKind,
    AttackObjective,
    LayerName,
)
from .protocol import AttackProtocol
from .results import AttackResults, representative
from .solvers import ProjectedGradient, ScipyLBFGSB, SolveResult, reference_for

__all__ = [
    "ATTACK_KINDS",
    "Attack",
    "AttackKind",
    "AttackObjective",
    "AttackProtocol",
    "AttackResults",
    "BatchedLBFGSB",
    "BudgetResults",
    "LAYER_NAMES",
    "LayerName",
    "NORMS",
    "Norm",
    "ProjectedGradient",
    "SOLVERS",
    "SOLVER_NAMES",
    "ScipyLBFGSB",
    "SolveResult",
    "SolverName",
    "UNTARGETED_KINDS",
    "auddc",
    "controls",
    "minimal_distortion",
    "project",
    "random_starts",
    "reference_for",
    "representative",
    "run_battery",
    "run_budgeted",
    "start_distortions",
    "worst_case",
]
