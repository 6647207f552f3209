"""What every attack solver returns, and the paper-faithful reference solver.

The reference is what the public attack code of Gondim-Ribeiro et al. (2018), used by the paper,
does: one scipy L-BFGS-B run per problem (m = 25 correction pairs, factr = 10, box bounds on d
keeping x + d in the data range), starting from d ~ U(-1e-8, 1e-8) projected onto the box.
``scipy.optimize.minimize(method="L-BFGS-B")`` with ftol = factr * eps is the same Fortran
routine as ``fmin_l_bfgs_b(factr=...)``. The optimiser works in float64; the model evaluates the
objective and its gradient in its own dtype (float32), so near the optimum the objective is
resolved only to float32 precision and runs usually end in a failed line search rather than on
the (float64-tight) factr test. The batched solver (:mod:`.batched`) is measured against it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import scipy.optimize
import torch
from torch import Tensor

from .objectives import AttackObjective


@dataclass
class SolveResult:
    """Per problem: the distortion found and what it cost.

    seconds: wall time attributed to the problem (its own run for the reference solver; for the
             batched solver, each round's time shared equally among the problems it evaluated).
    """

    d: Tensor
    iterations: np.ndarray
    evaluations: np.ndarray
    seconds: np.ndarray
    status: list[str]


@dataclass(frozen=True)
class ScipyLBFGSB:
    """One scipy L-BFGS-B run per problem: the paper's attack optimiser, the reference."""

    history: int = 25
    factr: float = 10.0
    pgtol: float = 1e-5
    max_iter: int = 15000
    max_evals: int = 15000
    max_line_search: int = 20

    name = "scipy"

    def solve(self, objective: AttackObjective, d0: Tensor) -> SolveResult:
        shape, dtype, device = d0.shape[1:], d0.dtype, d0.device
        lower = objective.lower.flatten(1).double().cpu().numpy()
        upper = objective.upper.flatten(1).double().cpu().numpy()
        start = d0.flatten(1).double().cpu().numpy()
        options = {
            "maxcor": self.history,
            "ftol": self.factr * np.finfo(float).eps,
            "gtol": self.pgtol,
            "maxiter": self.max_iter,
            "maxfun": self.max_evals,
            "maxls": self.max_line_search,
        }
        n = len(objective)
        found = np.empty_like(start)
        iterations, evaluations = np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int64)
        seconds, status = np.zeros(n), []
        for p in range(n):
            idx = torch.tensor([p], device=device)

            def fun(v: np.ndarray) -> tuple[float, np.ndarray]:
                d = torch.from_numpy(v).to(device=device, dtype=dtype).view(1, *shape)
                value, _, grad = objective.value_and_grad(d, idx)
                return float(value), grad.flatten().double().cpu().numpy()

            began = time.perf_counter()
            result = scipy.optimize.minimize(
                fun,
                np.clip(start[p], lower[p], upper[p]),
                jac=True,
                method="L-BFGS-B",
                bounds=scipy.optimize.Bounds(lower[p], upper[p]),
                options=options,
            )
            seconds[p] = time.perf_counter() - began
            found[p], iterations[p], evaluations[p] = result.x, result.nit, result.nfev
            status.append(str(result.message))
        d = torch.from_numpy(found).to(device=device, dtype=dtype).view(n, *shape)
        return SolveResult(d, iterations, evaluations, seconds, status)
