"""The feasible set of an attack, and the Euclidean projection onto it.

Every attack keeps x + d inside the data range [-1, 1]: d in the box [lower, upper] with
lower = -1 - x <= 0 <= upper = 1 - x. A fixed budget adds a ball around d = 0:

* L-infinity, ||d||_inf <= eps: another box, so the feasible set stays a box,
  [max(lower, -eps), min(upper, eps)], and box-constrained solvers need nothing new.
* L2, ||d||_2 <= eps: the set is the box intersected with a ball, and the projection
  P(v) = argmin_{d in set} ||d - v||^2 is no longer a clamp. Its KKT conditions with a
  multiplier mu >= 0 on ||d||^2 <= eps^2 give, coordinate by coordinate,

      d(mu) = clamp(v / (1 + mu), lower, upper),

  the minimiser of (d - v)^2 + mu d^2 over [lower, upper]. Because 0 is in the box, |d_i(mu)|
  does not increase with mu, so ||d(mu)|| is monotone and mu = 0 (the clamp) is the answer when
  it lies in the ball; otherwise mu solves ||d(mu)|| = eps, found here by bisection on
  s = 1 / (1 + mu) in (0, 1].

Budgets are in the data's own units. The book's images live in [-1, 1], twice the width of the
[0, 1] images most papers attack, so a peer's eps = 0.1 on [0, 1] is eps = 0.2 here.
"""

from __future__ import annotations

from typing import Literal, get_args

import torch
from torch import Tensor

Norm = Literal["linf", "l2"]
NORMS: tuple[Norm, ...] = get_args(Norm)
_BISECTIONS = 64  # halves s down to float64 resolution


def budget_box(lower: Tensor, upper: Tensor, norm: Norm | None, eps: float | None):
    """The box of an attack: the data range, intersected with an L-infinity ball if one is set."""
    if norm == "linf":
        return lower.clamp_min(-eps), upper.clamp_max(eps)
    return lower, upper


def project(v: Tensor, lower: Tensor, upper: Tensor, radius: float | None = None) -> Tensor:
    """Rows of ``v`` (P, n) projected onto {lower <= d <= upper, ||d||_2 <= radius}.

    ``lower <= 0 <= upper`` is required (the undistorted input is feasible), which is what makes
    the bisection of the module docstring exact. ``radius`` None is the box alone.
    """
    d = torch.clamp(v, lower, upper)
    if radius is None:
        return d
    outside = d.double().norm(dim=-1) > radius
    if not bool(outside.any()):
        return d
    vo, lo, up = (t[outside].double() for t in (v, lower, upper))
    s_low = torch.zeros(len(vo), 1, dtype=torch.float64, device=v.device)  # ||d(s)|| <= radius
    s_high = torch.ones_like(s_low)  # ||d(s)|| > radius
    for _ in range(_BISECTIONS):
        s = (s_low + s_high) / 2
        inside = torch.clamp(vo * s, lo, up).norm(dim=-1, keepdim=True) <= radius
        s_low, s_high = torch.where(inside, s, s_low), torch.where(inside, s_high, s)
    projected = torch.clamp(vo * s_low, lo, up).to(v.dtype)
    # rounding to the working dtype may cross the sphere by an ulp: shrink towards 0, which keeps
    # the box because 0 is in it
    norm = projected.double().norm(dim=-1, keepdim=True)
    shrink = torch.where(
        norm > radius, radius / norm * (1 - 4 * torch.finfo(v.dtype).eps), torch.ones_like(norm)
    )
    d[outside] = (projected * shrink.to(v.dtype)).clamp(lower[outside], upper[outside])
    return d
