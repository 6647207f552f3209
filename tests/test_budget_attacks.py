"""Fixed-budget and untargeted attacks against optima known exactly (linear Gaussian toys, float64).

With a linear encoder mu(x) = A x + b and input-independent variances s^2, the KL between the
attacked and the target posterior is a quadratic, KL(d) = 1/2 ||M (d - delta)||^2 with
M = diag(1/s) A and delta = x_t - x. Within a budget:

* L-infinity: a bounded least-squares problem over the box [max(-1 - x, -eps), min(1 - x, eps)],
  solved exactly by scipy's BVLS;
* L2, box inactive: the trust-region subproblem, whose solution (H + mu I)^-1 M'M delta with
  ||d|| = eps is found by a root search on mu in H's eigenbasis;
* L2 with the box active, M diagonal: d_i = clip(w_i delta_i / (w_i + mu), lower_i, upper_i)
  (the KKT conditions), with mu found by bisection.

Untargeted, the symmetric KL is ||M d||^2: its maximum over the L2 ball is eps^2 sigma_max(M)^2,
over a box at one of its vertices (a convex function), found by enumerating them.

Every solver must reach these optima and must never evaluate a point outside the ball or the box
(the objective is wrapped to record every point it is asked about).
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import scipy.optimize
import torch

from seatbelt.attacks import (
    Attack,
    AttackObjective,
    AttackProtocol,
    BatchedLBFGSB,
    ProjectedGradient,
    ScipyLBFGSB,
    project,
    random_starts,
    reference_for,
    run_battery,
    run_budgeted,
)
from test_attacks_toymodels import LinearGaussian

BOX_SOLVERS = [BatchedLBFGSB(), ScipyLBFGSB(), ProjectedGradient()]
BOX_IDS = ["batched", "scipy", "spg"]
BALL_SOLVERS = [BatchedLBFGSB(), ProjectedGradient()]
BALL_IDS = ["batched", "spg"]


def metric(model: LinearGaussian) -> np.ndarray:
    """M = diag(1/s) A of a one-layer toy with input-independent variances."""
    A, c = model.A[0].detach().double(), model.c[0].detach().double()
    return (torch.exp(-0.5 * c)[:, None] * A).numpy()


@pytest.fixture
def record(monkeypatch):
    """Every distortion any objective evaluates, with the objective that evaluated it."""
    seen: list[tuple[AttackObjective, torch.Tensor, torch.Tensor | None]] = []
    original = AttackObjective.value_and_grad

    def recording(self, d, idx=None):
        seen.append((self, d.detach().clone(), None if idx is None else idx.clone()))
        return original(self, d, idx)

    monkeypatch.setattr(AttackObjective, "value_and_grad", recording)
    return seen


def assert_never_left(seen, eps: float, norm: str) -> None:
    """No evaluated x + d left [-1, 1], and no evaluated d left the budget ball."""
    assert seen, "the solver evaluated nothing"
    for objective, d, idx in seen:
        x = objective.sources if idx is None else objective.sources[idx]
        adversarial = (x + d).flatten(1)
        assert float(adversarial.abs().max()) <= 1 + 1e-12, "left the data range"
        size = d.flatten(1).abs().amax(-1) if norm == "linf" else d.flatten(1).norm(dim=-1)
        assert float(size.max()) <= eps * (1 + 1e-12), f"left the {norm} ball"


def starts(objective: AttackObjective, norm: str, eps: float, seed: int = 0) -> torch.Tensor:
    shape = tuple(objective.sources.shape[1:])
    return objective.project(random_starts(len(objective), shape, norm, eps, seed).double())


def edge_pairs(n: int, shape=(1, 4, 4), seed: int = 3):
    """Sources with pixels near the edges of [-1, 1], so the data range binds, and targets far
    enough away that the budget binds."""
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(n, *shape, generator=g) * 2 - 1) * 0.5
    flat = x.view(n, -1)
    flat[:, 0], flat[:, 1] = 0.95, -0.95
    x_t = x + 0.6 * torch.randn(n, *shape, generator=g)
    flat_t = x_t.view(n, -1)
    flat_t[:, 0], flat_t[:, 1] = 1.0, -1.0  # pushing outwards, against the data range
    return x.double(), x_t.clamp(-1, 1).double()


# --- targeted, L-infinity: bounded least squares ----------------------------------------------


@pytest.mark.parametrize("solver", BOX_SOLVERS, ids=BOX_IDS)
def test_linf_kl_attack_reaches_the_bounded_least_squares_optimum(solver, record):
    model = LinearGaussian(latent_sizes=(16,), seed=2).double().eval()
    x, x_t = edge_pairs(4)
    eps = 0.2
    objective = AttackObjective(
        model, Attack("kl", norm="linf", eps=eps), x, x_t, torch.zeros(4, dtype=torch.float64)
    )
    M = metric(model)
    optima = []
    for p in range(4):
        lower, upper = objective.lower[p].flatten().numpy(), objective.upper[p].flatten().numpy()
        delta = (x_t[p] - x[p]).flatten().numpy()
        fit = scipy.optimize.lsq_linear(
            M, M @ delta, bounds=(lower, upper), method="bvls", tol=1e-14
        )
        optima.append(fit.cost)  # 1/2 ||M d - M delta||^2
        # the premise: both the budget and the data range bind at the optimum
        assert np.any(np.isclose(np.abs(fit.x), eps)) and np.any(upper < eps)
    solved = solver.solve(objective, starts(objective, "linf", eps))
    with torch.no_grad():
        attained = objective(solved.d)[0].numpy()
    np.testing.assert_allclose(attained, optima, rtol=1e-6, atol=1e-9)
    assert_never_left(record, eps, "linf")


# --- targeted, L2: the trust-region subproblem ------------------------------------------------


def trust_region_optimum(M: np.ndarray, delta: np.ndarray, eps: float) -> float:
    """min 1/2 ||M d - M delta||^2 over ||d|| <= eps, exactly (the constraint binds)."""
    H = M.T @ M
    values, vectors = np.linalg.eigh(H)
    rhs = vectors.T @ (H @ delta)

    def excess(mu: float) -> float:
        return float(np.sum((rhs / (values + mu)) ** 2) - eps**2)

    assert excess(1e-9) > 0, "premise: the unconstrained optimum lies outside the ball"
    mu = scipy.optimize.brentq(excess, 1e-9, 1e9, xtol=1e-15, rtol=1e-15)
    d = vectors @ (rhs / (values + mu))
    return 0.5 * float(np.sum((M @ (d - delta)) ** 2))


@pytest.mark.parametrize("solver", BALL_SOLVERS, ids=BALL_IDS)
def test_l2_kl_attack_reaches_the_trust_region_optimum(solver, record):
    model = LinearGaussian(latent_sizes=(16,), seed=4).double().eval()
    g = torch.Generator().manual_seed(5)
    x = ((torch.rand(4, 1, 4, 4, generator=g) * 2 - 1) * 0.5).double()
    x_t = (x + 0.5 * torch.randn(4, 1, 4, 4, generator=g, dtype=torch.float64)).clamp(-1, 1)
    eps = 0.3  # |d_i| <= 0.3 keeps x + d inside [-0.8, 0.8]: the box never binds
    objective = AttackObjective(
        model, Attack("kl", norm="l2", eps=eps), x, x_t, torch.zeros(4, dtype=torch.float64)
    )
    M = metric(model)
    optima = [trust_region_optimum(M, (x_t[p] - x[p]).flatten().numpy(), eps) for p in range(4)]
    solved = solver.solve(objective, starts(objective, "l2", eps))
    with torch.no_grad():
        attained = objective(solved.d)[0].numpy()
    np.testing.assert_allclose(attained, optima, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(solved.d.flatten(1).norm(dim=-1).numpy(), eps, rtol=1e-6)
    assert_never_left(record, eps, "l2")


@pytest.mark.parametrize("solver", BALL_SOLVERS, ids=BALL_IDS)
def test_l2_kl_attack_with_the_data_range_binding_reaches_the_kkt_optimum(solver, record):
    model = LinearGaussian(shape=(1, 2, 3), latent_sizes=(6,), diagonal=True, seed=6)
    model = model.double().eval()
    x = torch.tensor([[0.9, -0.9, 0.3, -0.2, 0.1, 0.0]], dtype=torch.float64).view(1, 1, 2, 3)
    # targets beyond the data range pull pixels 0 and 1 against their bounds
    x_t = x + torch.tensor([0.6, -0.5, 0.4, -0.6, 0.5, -0.3], dtype=torch.float64).view_as(x)
    M = metric(model)
    w = np.diag(M) ** 2
    delta = (x_t - x).flatten().numpy()
    lower, upper = (-1 - x).flatten().numpy(), (1 - x).flatten().numpy()
    eps = 0.6 * float(np.linalg.norm(np.clip(delta, lower, upper)))

    def kkt(mu: float) -> np.ndarray:
        return np.clip(w * delta / (w + mu), lower, upper)

    mu = scipy.optimize.brentq(lambda m: np.linalg.norm(kkt(m)) - eps, 0.0, 1e9, xtol=1e-15)
    d_star = kkt(mu)
    assert d_star[0] == upper[0] and d_star[1] == lower[1], "premise: the data range binds"
    optimum = 0.5 * float(np.sum(w * (d_star - delta) ** 2))
    objective = AttackObjective(
        model, Attack("kl", norm="l2", eps=eps), x, x_t, torch.zeros(1, dtype=torch.float64)
    )
    solved = solver.solve(objective, starts(objective, "l2", eps))
    with torch.no_grad():
        attained = float(objective(solved.d)[0])
    assert attained == pytest.approx(optimum, rel=1e-6, abs=1e-10)
    np.testing.assert_allclose(solved.d.flatten().numpy(), d_star, atol=1e-4)
    assert_never_left(record, eps, "l2")


# --- untargeted: maxima of ||M d||^2 -----------------------------------------------------------


@pytest.mark.parametrize("solver", BALL_SOLVERS, ids=BALL_IDS)
def test_untargeted_kl_in_an_l2_ball_reaches_the_top_singular_direction(solver, record):
    model = LinearGaussian(seed=7).double().eval()
    g = torch.Generator().manual_seed(8)
    x = ((torch.rand(3, 1, 4, 4, generator=g) * 2 - 1) * 0.5).double()
    eps = 0.3
    restarts = 4
    xs = x.repeat(restarts, 1, 1, 1)
    objective = AttackObjective(
        model, Attack("untargeted-kl", norm="l2", eps=eps), xs, None, torch.zeros(len(xs)).double()
    )
    # symmetric KL of equal-variance Gaussians: sum_j (A d)_j^2 / s_j^2 = ||M d||^2
    optimum = eps**2 * np.linalg.norm(metric(model), 2) ** 2
    solved = solver.solve(objective, starts(objective, "l2", eps))
    with torch.no_grad():
        delta, divergence = objective(solved.d)
    torch.testing.assert_close(delta, -divergence)  # the solver minimised minus the divergence
    np.testing.assert_allclose(divergence.numpy(), optimum, rtol=1e-6)
    assert_never_left(record, eps, "l2")


@pytest.mark.parametrize("solver", BOX_SOLVERS, ids=BOX_IDS)
def test_untargeted_kl_in_an_linf_ball_reaches_the_best_vertex_over_restarts(solver, record):
    model = LinearGaussian(shape=(1, 2, 3), seed=9).double().eval()
    x = torch.tensor([[0.95, -0.1, 0.3, -0.5, 0.2, 0.0]], dtype=torch.float64).view(1, 1, 2, 3)
    eps = 0.2
    restarts = 10
    xs = x.repeat(restarts, 1, 1, 1)
    attack = Attack("untargeted-kl", norm="linf", eps=eps)
    objective = AttackObjective(model, attack, xs, None, torch.zeros(restarts).double())
    M = metric(model)
    lower, upper = objective.lower[0].flatten().numpy(), objective.upper[0].flatten().numpy()
    vertices = np.array(list(itertools.product(*zip(lower, upper))))
    optimum = float(np.max(np.sum((vertices @ M.T) ** 2, axis=1)))
    solved = solver.solve(objective, starts(objective, "linf", eps))
    with torch.no_grad():
        divergence = objective.divergence(solved.d).numpy()
    assert divergence.max() == pytest.approx(optimum, rel=1e-9)
    assert np.all(divergence <= optimum * (1 + 1e-9))
    assert_never_left(record, eps, "linf")


def test_untargeted_recon_is_the_distance_between_reconstructions():
    model = LinearGaussian(seed=10).double().eval()
    x = torch.zeros(2, 1, 4, 4, dtype=torch.float64)
    d = 0.1 * torch.randn(2, 1, 4, 4, generator=torch.Generator().manual_seed(0)).double()
    attack = Attack("untargeted-recon", norm="l2", eps=1.0)
    objective = AttackObjective(model, attack, x, None, torch.zeros(2).double())
    W, A = model.W.detach(), model.A[0].detach()
    expected = (d.flatten(1) @ (W @ A).T).pow(2).sum(-1)  # recon is linear: recon(x+d) - recon(x)
    delta, divergence = objective(d)
    torch.testing.assert_close(divergence, expected)
    torch.testing.assert_close(delta, -expected)


# --- the projection -----------------------------------------------------------------------------


def test_projection_onto_box_and_ball_is_the_nearest_feasible_point():
    g = torch.Generator().manual_seed(11)
    n = 8
    v = 0.8 * torch.randn(20, n, generator=g, dtype=torch.float64)
    x = torch.rand(20, n, generator=g, dtype=torch.float64) * 1.8 - 0.9
    lower, upper = -1 - x, 1 - x
    radius = 0.7
    p = project(v, lower, upper, radius)
    assert bool(((p >= lower) & (p <= upper)).all())
    assert float(p.norm(dim=-1).max()) <= radius
    for i in range(len(v)):
        reference = scipy.optimize.minimize(
            lambda d, i=i: float(np.sum((d - v[i].numpy()) ** 2)),
            np.zeros(n),
            jac=lambda d, i=i: 2 * (d - v[i].numpy()),
            bounds=list(zip(lower[i].numpy(), upper[i].numpy())),
            constraints=[{"type": "ineq", "fun": lambda d: radius**2 - d @ d}],
            method="SLSQP",
            options={"ftol": 1e-14, "maxiter": 500},
        )
        np.testing.assert_allclose(p[i].numpy(), reference.x, atol=1e-6)
    torch.testing.assert_close(project(v, lower, upper), v.clamp(lower, upper))


# --- run_budgeted: restarts, worst case, images ------------------------------------------------


def test_run_budgeted_keeps_the_worst_case_per_input_and_the_average_as_context():
    model = LinearGaussian(seed=12).eval()
    g = torch.Generator().manual_seed(13)
    x = (torch.rand(3, 1, 4, 4, generator=g) * 2 - 1) * 0.5
    attack = Attack("untargeted-kl", norm="linf", eps=0.2)
    solver = BatchedLBFGSB(max_iter=3)  # short runs, so restarts differ
    results = run_budgeted(model, attack, x, restarts=5, solver=solver, seed=1)
    frame = results.frame
    assert len(frame) == 15 and set(frame["restart"]) == set(range(5))
    assert float(frame["d_linf"].max()) <= 0.2 + 1e-7
    worst = results.worst()
    for i, row in worst.iterrows():
        mine = frame[frame["input"] == i]
        assert row["divergence"] == mine["divergence"].max()  # untargeted: the largest
        assert row["divergence_mean"] == pytest.approx(mine["divergence"].mean())
        assert row["evaluations"] == mine["evaluations"].sum()
    assert bool((worst["divergence"] >= worst["divergence_mean"]).all())
    assert bool((worst["divergence"] > worst["divergence_mean"]).any())
    # the images are the worst restart's
    torch.testing.assert_close(results.adversarial, results.sources + results.distortions)
    objective = AttackObjective(model, attack, x, None, torch.zeros(3))
    with torch.no_grad():
        again = objective.divergence(results.distortions).double().numpy()
    np.testing.assert_allclose(again, worst["divergence"], rtol=1e-5)
    assert len(results.targets) == 0


def test_run_budgeted_targeted_keeps_the_smallest_divergence():
    model = LinearGaussian(seed=14).eval()
    x, x_t = (t.float() for t in edge_pairs(2, seed=15))
    attack = Attack("kl", norm="l2", eps=0.3)
    results = run_budgeted(model, attack, x, x_t, restarts=3, solver=BatchedLBFGSB(max_iter=2))
    worst = results.worst()
    for i, row in worst.iterrows():
        assert row["divergence"] == results.frame.query("input == @i")["divergence"].min()
    assert float(results.frame["d_l2"].max()) <= 0.3 * (1 + 1e-6)
    assert bool((results.frame["divergence"] < results.frame["divergence0"]).all())


def test_reference_for_picks_a_solver_that_keeps_the_budget():
    assert isinstance(reference_for(Attack("kl")), ScipyLBFGSB)
    assert isinstance(reference_for(Attack("kl", norm="linf", eps=0.2)), ScipyLBFGSB)
    assert isinstance(reference_for(Attack("kl", norm="l2", eps=0.2)), ProjectedGradient)


def test_eps_none_is_the_penalised_attack_of_before():
    attack = Attack("kl")
    assert (attack.norm, attack.eps) == (None, None)
    assert attack.budget_label == "penalised"
    model = LinearGaussian().eval()
    x = torch.zeros(1, 1, 4, 4)
    objective = AttackObjective(model, attack, x, x + 0.1, torch.ones(1))
    torch.testing.assert_close(objective.lower, -1 - x)
    torch.testing.assert_close(objective.upper, 1 - x)
    assert objective.radius is None


def test_budget_label_states_the_units():
    label = Attack("kl", norm="linf", eps=0.2).budget_label
    assert "0.2" in label and "[-1, 1]" in label and "0.1 on [0, 1]" in label


# --- bad input: a clear error before any work ----------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"norm": "linf", "eps": -0.1}, "eps must be finite and >= 0"),
        ({"norm": "linf", "eps": math.nan}, "eps must be finite and >= 0"),
        ({"norm": "l2", "eps": math.inf}, "eps must be finite and >= 0"),
        ({"norm": "l1", "eps": 0.1}, "unknown norm 'l1'"),
        ({"eps": 0.1}, "got eps without norm"),
        ({"norm": "linf"}, "got norm without eps"),
    ],
)
def test_bad_budgets_are_refused_with_the_fix(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Attack("kl", **kwargs)


def test_eps_must_be_a_number():
    with pytest.raises(TypeError, match="eps must be a number"):
        Attack("kl", norm="linf", eps="0.1")


def test_untargeted_attacks_need_a_budget():
    with pytest.raises(ValueError, match="only a budget bounds"):
        Attack("untargeted-kl")
    with pytest.raises(ValueError, match="uses every layer"):
        Attack("untargeted-recon", "top", norm="l2", eps=1.0)


class CountingToy(LinearGaussian):
    """A toy that counts its encodings, to show that errors come before any work."""

    calls = 0

    def encode(self, x, sample=False, generator=None):
        CountingToy.calls += 1
        return super().encode(x, sample, generator)


def test_an_untargeted_attack_given_a_target_is_refused_before_any_work():
    model = CountingToy().eval()
    x = torch.zeros(2, 1, 4, 4)
    attack = Attack("untargeted-kl", norm="linf", eps=0.2)
    CountingToy.calls = 0
    with pytest.raises(ValueError, match="takes no target"):
        run_budgeted(model, attack, x, x)
    with pytest.raises(ValueError, match="takes no target"):
        AttackObjective(model, attack, x, x, torch.zeros(2))
    with pytest.raises(ValueError, match="needs targets"):
        run_budgeted(model, Attack("kl", norm="linf", eps=0.2), x)
    assert CountingToy.calls == 0


def test_runners_refuse_what_they_cannot_run():
    model = LinearGaussian().eval()
    x = torch.zeros(2, 1, 4, 4)
    with pytest.raises(ValueError, match="run_budgeted needs a budget"):
        run_budgeted(model, Attack("kl"), x, x)
    with pytest.raises(ValueError, match="restarts must be a positive integer"):
        run_budgeted(model, Attack("kl", norm="linf", eps=0.1), x, x, restarts=0)
    with pytest.raises(ValueError, match="cannot keep an L2 budget|not an L2 budget"):
        run_budgeted(model, Attack("kl", norm="l2", eps=0.1), x, x, solver="scipy")
    with pytest.raises(ValueError, match="has no lambda to sweep"):
        run_battery(
            model, (x, x + 0.1), AttackProtocol(n_pairs=2), attacks=(Attack("kl", "all", "l2", 1),)
        )
    l2 = AttackObjective(model, Attack("kl", norm="l2", eps=0.1), x, x, torch.zeros(2))
    with pytest.raises(ValueError, match="cannot keep an L2 budget"):
        ScipyLBFGSB().solve(l2, torch.zeros_like(x))
    untargeted = AttackObjective(
        model, Attack("untargeted-kl", norm="l2", eps=0.1), x, None, torch.zeros(2)
    )
    with pytest.raises(ValueError, match="no target to start from"):
        BatchedLBFGSB(starts=("source", "target")).solve(untargeted, torch.zeros_like(x))
