"""What every attack solver returns, and the paper-faithful reference solver.

The reference is what the public attack code of Gondim-Ribeiro et al. (2018), used by the paper,
does: one scipy L-BFGS-B run per problem (m = 25 correction pairs, factr = 10, box bounds on d
keeping x + d in the data range), starting from d ~ U(-1e-8, 1e-8) projected onto the box.
``scipy.optimize.minimize(method="L-BFGS-B")`` with ftol = factr * eps is the same Fortran
routine as ``fmin_l_bfgs_b(factr=...)``. The optimiser works in float64; the model evaluates the
objective and its gradient in its own dtype (float32), so near the optimum the objective is
resolved only to float32 precision and runs usually end in a failed line search rather than on
the (float64-tight) factr test. The batched solver (:mod:`.batched`) is measured against it.

L-BFGS-B knows boxes only, so it serves the penalised attacks and L∞ budgets (a tighter box), not
L2 budgets. Their reference is :class:`ProjectedGradient`, the spectral projected gradient
method (SPG2 of Birgin, Martínez and Raydan 2000), one problem at a time in float64 like scipy:
it needs nothing of a feasible set but the projection onto it (exact here, :mod:`.constraints`),
it never evaluates outside the set, it converges to a stationary point on any closed convex set,
and it shares no code path with the batched solver's quasi-Newton directions, so agreement
between the two is evidence rather than a tautology. scipy has nothing better for a ball: its
SLSQP is dense in the ~10^3 to 10^4 variables of an image, and trust-constr is an interior
method that needs many more evaluations. :func:`reference_for` picks the reference of an attack.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import scipy.optimize
import torch
from torch import Tensor

from .constraints import project
from .objectives import Attack, AttackObjective


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
        if objective.radius is not None:
            raise ValueError(
                "scipy's L-BFGS-B takes box bounds only and cannot keep an L2 budget; solve L2 "
                "budgets with ProjectedGradient() (reference_for(attack) picks it)."
            )
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


@dataclass(frozen=True)
class ProjectedGradient:
    """Nonmonotone spectral projected gradient (SPG2, Birgin, Martinez and Raydan 2000), one run
    per problem: the reference for budgets that are not boxes (module docstring).

    Iteration k, with P the projection onto the feasible set and alpha_k the spectral
    (Barzilai-Borwein) step s's / s'y of the last step, clipped to [alpha_min, alpha_max]:

        p_k = P(d_k - alpha_k g_k) - d_k,   d_{k+1} = d_k + t p_k,

    t = 1 halved by safeguarded quadratic interpolation until the nonmonotone Armijo condition
    f(d_k + t p_k) <= max_{j < memory} f(d_{k-j}) + gamma t g_k'p_k (Grippo, Lampariello and
    Lucidi 1986) holds. d_k + t p_k is a convex combination of two feasible points, so every
    evaluation is feasible. Stops when ||P(d - g) - d||_inf <= pgtol, when the best objective fell
    by less than rtol max(|f|, 1) over ``window`` iterations, or at the limits; returns the best
    iterate (the method is nonmonotone).
    """

    max_iter: int = 3000
    max_evals: int = 6000
    pgtol: float = 1e-5
    rtol: float = 1e-9
    window: int = 50
    memory: int = 10
    gamma: float = 1e-4
    alpha_min: float = 1e-10
    alpha_max: float = 1e10
    max_line_search: int = 40

    name = "spg"

    def solve(self, objective: AttackObjective, d0: Tensor) -> SolveResult:
        shape, dtype, device = d0.shape[1:], d0.dtype, d0.device
        n = len(objective)
        found = torch.empty(n, d0[0].numel(), dtype=torch.float64)
        iterations, evaluations = np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int64)
        seconds, status = np.zeros(n), []
        for p in range(n):
            idx = torch.tensor([p], device=device)
            lower = objective.lower[idx].flatten(1).double().cpu()
            upper = objective.upper[idx].flatten(1).double().cpu()

            def proj(v: Tensor) -> Tensor:
                return project(v[None], lower, upper, objective.radius)[0]

            def fun(v: Tensor) -> tuple[float, Tensor]:
                d = v.to(device=device, dtype=dtype).view(1, *shape)
                value, _, grad = objective.value_and_grad(d, idx)
                return float(value), grad.flatten().double().cpu()

            began = time.perf_counter()
            found[p], iterations[p], evaluations[p], message = self._one(
                proj(d0[p].flatten().double().cpu()), fun, proj
            )
            seconds[p] = time.perf_counter() - began
            status.append(message)
        d = found.to(device=device, dtype=dtype).view(n, *shape)
        return SolveResult(d, iterations, evaluations, seconds, status)

    def _one(self, d: Tensor, fun, proj) -> tuple[Tensor, int, int, str]:
        f, g = fun(d)
        evals, history = 1, [f]
        best_d, best_f, checkpoint = d, f, f
        alpha = 1.0 / max(float((proj(d - g) - d).abs().max()), 1e-300)
        for k in range(self.max_iter):
            if float((proj(d - g) - d).abs().max()) <= self.pgtol:
                return best_d, k, evals, "converged: projected gradient <= pgtol"
            alpha = min(max(alpha, self.alpha_min), self.alpha_max)
            step = proj(d - alpha * g) - d
            slope = float(g @ step)
            reference, t = max(history[-self.memory :]), 1.0
            for _ in range(self.max_line_search):
                f_new, g_new = fun(d + t * step)
                evals += 1
                if math.isfinite(f_new) and f_new <= reference + self.gamma * t * slope:
                    break
                if evals >= self.max_evals:
                    return best_d, k, evals, "stopped: evaluation limit"
                # minimiser of the quadratic through f(0), f'(0) and f(t), kept in [0.1 t, 0.5 t]
                curvature = f_new - f - t * slope if math.isfinite(f_new) else math.inf
                t_quad = -slope * t * t / (2 * curvature) if curvature > 0 else 0.5 * t
                t = min(max(t_quad, 0.1 * t), 0.5 * t)
            else:
                return best_d, k, evals, "stopped: line search failed"
            s, y = t * step, g_new - g
            sy = float(s @ y)
            alpha = float(s @ s) / sy if sy > 0 else self.alpha_max
            d, f, g = d + s, f_new, g_new
            history.append(f)
            if f < best_f:
                best_d, best_f = d, f
            if (k + 1) % self.window == 0:
                if checkpoint - best_f <= self.rtol * max(abs(best_f), 1.0):
                    return best_d, k + 1, evals, "converged: stalled over the window"
                checkpoint = best_f
            if evals >= self.max_evals:
                return best_d, k + 1, evals, "stopped: evaluation limit"
        return best_d, self.max_iter, evals, "stopped: iteration limit"


def reference_for(attack: Attack) -> ScipyLBFGSB | ProjectedGradient:
    """The reference solver of an attack: scipy's L-BFGS-B where the feasible set is a box (the
    penalised attacks and L∞ budgets), :class:`ProjectedGradient` for an L2 budget."""
    return ProjectedGradient() if attack.norm == "l2" else ScipyLBFGSB()
