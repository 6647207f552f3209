"""Adversarial attacks on VAEs: latent (KL, W2) and output attacks, their solvers, the paper's battery.

    objectives  Attack (which objective, which layers) and the batched objective Delta (Eqs 1, 2, 10)
    protocol    AttackProtocol: pairs, lambdas and attacks of Section 5, as data
    solvers     SolveResult and ScipyLBFGSB, the paper's one-L-BFGS-B-per-problem reference
    batched     BatchedLBFGSB: every problem of a battery in one torch batch, CPU or GPU
    battery     run_battery: the whole battery against one model, one call
    results     AttackResults, the representative attack and AUDDC of Gondim-Ribeiro et al. (2018)
"""

from .batched import BatchedLBFGSB
from .battery import SOLVERS, run_battery, start_distortions
from .objectives import ATTACK_KINDS, Attack, AttackObjective
from .protocol import AttackProtocol
from .results import AttackResults, auddc, representative
from .solvers import ScipyLBFGSB, SolveResult

__all__ = [
    "ATTACK_KINDS", "Attack", "AttackObjective", "AttackProtocol", "AttackResults", "BatchedLBFGSB",
    "SOLVERS", "ScipyLBFGSB", "SolveResult", "auddc", "representative", "run_battery", "start_distortions",
]
