"""Adversarial attacks on VAEs: latent (KL, W2) and output attacks, their solvers, the paper's
battery.

objectives  Attack (which objective, which layers) and the batched objective Delta (Eqs 1, 2, 10)
protocol    AttackProtocol: pairs, lambdas and attacks of Section 5, as data
solvers     SolveResult and ScipyLBFGSB, the paper's one-L-BFGS-B-per-problem reference
batched     BatchedLBFGSB: every problem of a battery in one torch batch, CPU or GPU
battery     run_battery: the whole battery against one model, one call
results     AttackResults and the representative attack of Gondim-Ribeiro et al. (2018)
measures    lambda-free measures (envelope AUDDC, minimal distortion) and a battery's controls
"""

from .batched import BatchedLBFGSB
from .battery import SOLVER_NAMES, SOLVERS, SolverName, run_battery, start_distortions
from .measures import auddc, controls, minimal_distortion
from .objectives import ATTACK_KINDS, LAYER_NAMES, Attack, AttackKind, AttackObjective, LayerName
from .protocol import AttackProtocol
from .results import AttackResults, representative
from .solvers import ScipyLBFGSB, SolveResult

__all__ = [
    "ATTACK_KINDS",
    "Attack",
    "AttackKind",
    "AttackObjective",
    "AttackProtocol",
    "AttackResults",
    "BatchedLBFGSB",
    "LAYER_NAMES",
    "LayerName",
    "SOLVERS",
    "SOLVER_NAMES",
    "ScipyLBFGSB",
    "SolveResult",
    "SolverName",
    "auddc",
    "controls",
    "minimal_distortion",
    "representative",
    "run_battery",
    "start_distortions",
]
