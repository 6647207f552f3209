"""Both attack solvers against optima known in closed form (linear Gaussian toys, float64)."""

from __future__ import annotations

import pytest
import torch

from seatbelt.attacks import Attack, AttackObjective, BatchedLBFGSB, ScipyLBFGSB, start_distortions
from test_attacks_toymodels import LinearGaussian, random_pairs

SOLVERS = [
    ScipyLBFGSB(),
    BatchedLBFGSB(),
    BatchedLBFGSB(memory_mb=1e-3, share_lambda_path=False),
    BatchedLBFGSB(starts=("source", "target")),
]
IDS = ["scipy", "batched", "batched-2-slots", "batched-2-starts"]
LAMBDAS = (1e-3, 0.1, 1.0, 10.0)


def stack(x, x_t, lambdas):
    """Every pair at every lambda, pair-major, with the lambda-path groups."""
    k = len(lambdas)
    pair = torch.arange(len(x)).repeat_interleave(k)
    return x[pair], x_t[pair], torch.tensor(lambdas * len(x), dtype=x.dtype), pair


def solve(solver, model, attack, x, x_t, lambdas):
    xs, ts, lam, groups = stack(x, x_t, lambdas)
    objective = AttackObjective(model, attack, xs, ts, lam, groups=groups)
    d0 = start_distortions(len(xs), tuple(x.shape[1:]), seed=0).to(xs)
    return objective, solver.solve(objective, d0)


def ridge_optimum(
    H_data: torch.Tensor, rhs: torch.Tensor, lam: float, penalty_scale: float
) -> torch.Tensor:
    n = H_data.shape[0]
    return torch.linalg.solve(H_data + penalty_scale * lam * torch.eye(n, dtype=H_data.dtype), rhs)


def latent_optimum(model, kind, layers, x, x_t, lam):
    """argmin of sum_i r_i + lam ||d||^2 for the linear encoder with fixed variances (a ridge
    problem).

    Each attacked layer i has mean M_i (x + d) + const with M_i the product of the A's below it,
    so r_i = ||M_i d + M_i (x - x_t)||^2_{W_i} with W_i = I for W2 and diag(1 / (2 sigma_i^2)) for
    KL.
    """
    n = x.numel()
    H = torch.zeros(n, n, dtype=x.dtype)
    rhs = torch.zeros(n, dtype=x.dtype)
    M = torch.eye(n, dtype=x.dtype)
    for i, (A, c) in enumerate(zip(model.A, model.c)):
        M = A.detach() @ M
        if i in layers:
            w = torch.ones_like(c) if kind == "w2" else 0.5 * torch.exp(-c.detach())
            H += M.T @ (w[:, None] * M)
            rhs -= M.T @ (w * (M @ (x - x_t).flatten()))
    return ridge_optimum(H, rhs, lam, 1.0).view_as(x)


@pytest.mark.parametrize("solver", SOLVERS, ids=IDS)
@pytest.mark.parametrize("kind", ["kl", "w2"])
@pytest.mark.parametrize("layers", ["all", "bottom", "top", (2,)])
def test_latent_attack_reaches_the_ridge_optimum(solver, kind, layers):
    model = LinearGaussian(latent_sizes=(6, 3), seed=2).double().eval().requires_grad_(False)
    x, x_t = (t.double() for t in random_pairs(2, seed=3))
    attack = Attack(kind, layers)
    objective, result = solve(solver, model, attack, x, x_t, LAMBDAS)
    indices = attack.layer_indices(model.n_layers)
    for p in range(len(objective)):
        lam = float(objective.lambdas[p])
        best = latent_optimum(model, kind, indices, objective.sources[p], objective.targets[p], lam)
        assert (best.abs() < 0.3).all(), "the test case must keep the box inactive"
        torch.testing.assert_close(result.d[p], best, rtol=0, atol=1e-4 / max(lam, 1e-2) ** 0.5)
        reached, optimum = (
            objective(result.d[p : p + 1], torch.tensor([p]))[0],
            objective(best[None], torch.tensor([p]))[0],
        )
        assert float(reached) <= float(optimum) * (1 + 1e-4) + 1e-10


@pytest.mark.parametrize("solver", SOLVERS, ids=IDS)
def test_output_attack_reaches_its_quadratic_optimum(solver):
    model = (
        LinearGaussian(latent_sizes=(3,), seed=4, likelihood_std=1.0)
        .double()
        .eval()
        .requires_grad_(False)
    )
    x, x_t = (t.double() for t in random_pairs(2, seed=5, step=0.02))
    objective, result = solve(solver, model, Attack("output"), x, x_t, LAMBDAS)
    A, b, W, w0 = model.A[0], model.b[0], model.W, model.w0
    s2 = model.config.likelihood_std**2
    WA = W @ A
    for p in range(len(objective)):
        lam = float(objective.lambdas[p])
        xp, tp = objective.sources[p].flatten(), objective.targets[p].flatten()
        # -ELBO = ||x_t - W mu - w0||^2 / (2 s^2) + ||mu||^2 / 2 + const, mu = A (x + d) + b
        H = WA.T @ WA / s2 + A.T @ A
        rhs = WA.T @ (tp - W @ (A @ xp + b) - w0) / s2 - A.T @ (A @ xp + b)
        best = ridge_optimum(H, rhs, lam, 2.0)
        assert ((xp + best).abs() < 0.95).all(), "the test case must keep the box inactive"
        torch.testing.assert_close(
            result.d[p].flatten(), best, rtol=0, atol=1e-4 / max(lam, 1e-2) ** 0.5
        )


@pytest.mark.parametrize("solver", SOLVERS, ids=IDS)
@pytest.mark.parametrize("kind", ["kl", "w2"])
def test_active_box_optimum_is_the_clipped_separable_optimum(solver, kind):
    """A diagonal encoder makes the problem separable per pixel: the box optimum clips each
    coordinate."""
    shape = (1, 3, 3)
    model = (
        LinearGaussian(shape, latent_sizes=(9,), diagonal=True, seed=6)
        .double()
        .eval()
        .requires_grad_(False)
    )
    g = torch.Generator().manual_seed(7)
    x = torch.rand(2, *shape, generator=g, dtype=torch.float64) * 1.6 - 0.8
    x_t = -1.6 * x  # targets beyond the data range: their posteriors need x + d outside the box
    objective, result = solve(solver, model, Attack(kind), x, x_t, (0.0, 0.05, 1.0))
    a = torch.diagonal(model.A[0])
    w = torch.ones_like(a) if kind == "w2" else 0.5 * torch.exp(-model.c[0])
    clipped = 0
    for p in range(len(objective)):
        lam = float(objective.lambdas[p])
        r0 = a * (objective.sources[p] - objective.targets[p]).flatten()
        free = -w * a * r0 / (w * a * a + lam)
        best = torch.clamp(free, objective.lower[p].flatten(), objective.upper[p].flatten())
        clipped += int((best != free).sum())
        torch.testing.assert_close(result.d[p].flatten(), best, rtol=0, atol=1e-5)
    assert clipped >= 5, "the test case must make the box bind"


@pytest.mark.parametrize("solver", SOLVERS, ids=IDS)
def test_large_lambda_gives_no_distortion_and_zero_lambda_reaches_the_target(solver):
    model = LinearGaussian(latent_sizes=(3,), seed=8).double().eval().requires_grad_(False)
    x, x_t = (t.double() for t in random_pairs(3, seed=9))
    objective, result = solve(solver, model, Attack("kl"), x, x_t, (0.0, 2.0**20))
    unattacked = objective.divergence(torch.zeros_like(objective.sources))
    reached = objective.divergence(result.d)
    norms = result.d.flatten(1).norm(dim=-1)
    zero, large = objective.lambdas == 0, objective.lambdas > 1
    assert bool((unattacked > 1e-3).all())
    assert bool((reached[zero] < 1e-8 * unattacked[zero]).all()), (
        "the target is reachable: r must vanish"
    )
    assert bool((norms[large] < 1e-5).all()), "a huge lambda must leave the source alone"


@pytest.mark.parametrize("solver", SOLVERS, ids=IDS)
def test_float32_solutions_respect_the_box_and_repeat_exactly(solver):
    model = (
        LinearGaussian(latent_sizes=(3, 2), seed=10, linear_logvar=True)
        .eval()
        .requires_grad_(False)
    )
    g = torch.Generator().manual_seed(11)
    x = torch.rand(3, 1, 4, 4, generator=g) * 2 - 1
    x_t = torch.rand(3, 1, 4, 4, generator=g) * 2 - 1
    first = solve(solver, model, Attack("w2"), x, x_t, (0.0, 0.01, 1.0))[1]
    again = solve(solver, model, Attack("w2"), x, x_t, (0.0, 0.01, 1.0))[1]
    xs = x.repeat_interleave(3, 0)
    assert bool(((xs + first.d) >= -1).all() and ((xs + first.d) <= 1).all())
    assert bool(((xs + first.d).abs() == 1).any()), "the test case must make the box bind"
    assert torch.equal(first.d, again.d)
    assert (first.iterations == again.iterations).all() and first.status == again.status


def test_two_slots_really_queue_the_problems():
    from seatbelt.attacks.batched import _Run

    model = LinearGaussian().double().eval().requires_grad_(False)
    x, x_t = (t.double() for t in random_pairs(2))
    xs, ts, lam, groups = stack(x, x_t, LAMBDAS)
    run = _Run(SOLVERS[2], AttackObjective(model, Attack("kl"), xs, ts, lam), xs.flatten(1) * 0)
    assert len(run.slots.problem) == 1 < len(xs)


def test_batched_results_are_the_lower_envelope_of_their_lambda_path():
    """f_j(d_j) <= f_j(d_k) for every two problems j, k of one pair: no path-mate's distortion is
    better."""
    model = (
        LinearGaussian(latent_sizes=(3, 2), seed=12, linear_logvar=True)
        .eval()
        .requires_grad_(False)
    )
    g = torch.Generator().manual_seed(13)
    x = torch.rand(2, 1, 4, 4, generator=g) * 2 - 1
    x_t = torch.rand(2, 1, 4, 4, generator=g) * 2 - 1
    lambdas = tuple(float(v) for v in 2.0 ** torch.arange(-8, 4, 2.0))
    objective, result = solve(BatchedLBFGSB(max_iter=5), model, Attack("kl"), x, x_t, lambdas)
    divergence = objective.divergence(result.d).double()
    norms = result.d.flatten(1).double().pow(2).sum(-1)
    lam = objective.lambdas.double()
    for group in objective.groups.unique():
        members = torch.nonzero(objective.groups == group).flatten()
        values = divergence[members][None, :] + lam[members][:, None] * norms[members][None, :]
        torch.testing.assert_close(values.diagonal(), values.min(1).values, rtol=1e-5, atol=1e-6)


def test_a_problem_adopts_a_better_distortion_of_its_path():
    from seatbelt.attacks.batched import _Run

    model = LinearGaussian().eval().requires_grad_(False)
    x, x_t = random_pairs(1, seed=14)
    objective, solved = solve(BatchedLBFGSB(), model, Attack("w2"), x, x_t, (0.0, 1e-3))
    run = _Run(BatchedLBFGSB(), objective, solved.d.flatten(1))
    run.d[1] = (
        0.0  # the lambda = 1e-3 problem unattacked: the lambda = 0 optimum is far better for it
    )
    run.f, run.divergence = (t.detach() for t in objective(run.d.view_as(solved.d)))
    assert run.adopt_best_of_path().tolist() == [1]
    assert torch.equal(run.d[1], run.d[0])
    torch.testing.assert_close(
        run.f[1], objective(run.d[1].view(1, 1, 4, 4), torch.tensor([1]))[0][0]
    )


def test_only_the_recipients_adopt_but_every_row_donates():
    from seatbelt.attacks.batched import _Run

    model = LinearGaussian().eval().requires_grad_(False)
    x, x_t = random_pairs(1, seed=14)
    objective, solved = solve(BatchedLBFGSB(), model, Attack("w2"), x, x_t, (0.0, 1e-3, 1e-2))
    run = _Run(BatchedLBFGSB(), objective, solved.d.flatten(1))
    run.d[1:] = 0.0  # both penalised problems unattacked; the lambda = 0 optimum is better for each
    run.f, run.divergence = (t.detach() for t in objective(run.d.view_as(solved.d)))
    assert run.adopt_best_of_path(torch.tensor([2])).tolist() == [2]
    assert torch.equal(run.d[2], run.d[0]) and not run.d[1].any()


def test_batched_needs_about_as_many_iterations_as_scipy_when_the_box_binds():
    """With the box active, a projected quasi-Newton method must restrict its curvature pairs to the
    free variables; without that it took over 10x scipy's iterations on this problem."""
    model = (
        LinearGaussian(latent_sizes=(3, 2), seed=10, linear_logvar=True)
        .eval()
        .requires_grad_(False)
    )
    g = torch.Generator().manual_seed(11)
    x = torch.rand(3, 1, 4, 4, generator=g) * 2 - 1
    x_t = torch.rand(3, 1, 4, 4, generator=g) * 2 - 1
    reference = solve(ScipyLBFGSB(), model, Attack("w2"), x, x_t, (0.0, 0.01))[1]
    objective, batched = solve(
        BatchedLBFGSB(max_iter=500, share_lambda_path=False),
        model,
        Attack("w2"),
        x,
        x_t,
        (0.0, 0.01),
    )
    assert batched.iterations.sum() <= 2 * reference.iterations.sum()
    reached, ref_reached = objective(batched.d)[0], objective(reference.d)[0]
    assert bool((reached <= 1.01 * ref_reached + 1e-6).all())


def test_each_problem_keeps_the_better_of_its_two_starts_and_pays_for_both():
    model = (
        LinearGaussian(latent_sizes=(3, 2), seed=15, linear_logvar=True)
        .eval()
        .requires_grad_(False)
    )
    x, x_t = random_pairs(3, seed=16)
    lambdas = (0.0, 1e-3, 0.1, 10.0)
    one = {
        s: solve(
            BatchedLBFGSB(max_iter=3, starts=(s,), share_lambda_path=False),
            model,
            Attack("kl"),
            x,
            x_t,
            lambdas,
        )
        for s in ("source", "target")
    }
    objective, both = solve(
        BatchedLBFGSB(max_iter=3, starts=("source", "target"), share_lambda_path=False),
        model,
        Attack("kl"),
        x,
        x_t,
        lambdas,
    )
    values = {s: objective(result.d)[0] for s, (_, result) in one.items()}
    torch.testing.assert_close(
        objective(both.d)[0], torch.minimum(values["source"], values["target"])
    )
    assert bool((values["target"] < values["source"]).any()) and bool(
        (values["source"] < values["target"]).any()
    ), "the test case must have problems won by each start"
    assert (both.evaluations == one["source"][1].evaluations + one["target"][1].evaluations).all()


def test_the_target_start_solves_the_unpenalised_attack_at_once():
    """At lambda = 0 the target itself is a global optimum of a latent attack: r(q(z|x_t), q(z|x_t))
    = 0."""
    model = LinearGaussian(latent_sizes=(3,), seed=17).eval().requires_grad_(False)
    x, x_t = random_pairs(2, seed=18)
    objective, result = solve(
        BatchedLBFGSB(starts=("target",)), model, Attack("kl"), x, x_t, (0.0,)
    )
    torch.testing.assert_close(result.d, x_t - x)
    assert (result.evaluations == 1).all()


@pytest.mark.parametrize("starts", [(), ("target", "target"), ("zero",)])
def test_unknown_or_repeated_starts_are_refused(starts):
    with pytest.raises(ValueError, match="starts must be distinct names"):
        BatchedLBFGSB(starts=starts)


def _textbook_two_loop(pairs, g, free):
    """Nocedal and Wright's Alg 7.4 for one problem, pairs newest first, restricted to the free
    variables, skipping pairs without positive curvature there; H0 = s'y / y'y of the newest valid
    pair."""
    mask = free.double()
    q = g.double() * mask
    pairs = [(s.double() * mask, y.double() * mask) for s, y in pairs]
    pairs = [(s, y) for s, y in pairs if s @ y > torch.finfo(torch.float32).eps * (y @ y)]
    if not pairs:
        return q / q.norm()
    alphas = []
    for s, y in pairs:
        alphas.append((s @ q) / (s @ y))
        q = q - alphas[-1] * y
    s0, y0 = pairs[0]
    r = (s0 @ y0) / (y0 @ y0) * q
    for (s, y), alpha in zip(reversed(pairs), reversed(alphas)):
        r = r + (alpha - (y @ r) / (s @ y)) * s
    return r


def test_the_batched_two_loop_is_the_textbook_recursion_on_each_slot():
    """Ring buffers at different heads and fill levels, a reset memory, a pair without curvature,
    half the variables held."""
    from seatbelt.attacks.batched import _Slots

    g = torch.Generator().manual_seed(0)
    n, history = 50, 5
    slots = _Slots(4, n, history, torch.float32, torch.device("cpu"))
    for slot, stored in enumerate((0, 2, 5, 8)):  # slot 3 wrapped around its ring
        for _ in range(stored):
            s = torch.randn(1, n, generator=g)
            y = s + 0.3 * torch.randn(1, n, generator=g)
            slots.remember(torch.tensor([slot]), s, y)
    slots.y[2, 0] = -slots.s[2, 0]  # negative curvature: skipped
    slots.forget(
        torch.tensor([1])
    )  # a reset memory keeps its old pairs in the ring: they must not count
    slots.remember(
        torch.tensor([1]), torch.randn(1, n, generator=g), torch.randn(1, n, generator=g).abs()
    )
    grad = torch.randn(4, n, generator=g)
    free = torch.rand(4, n, generator=g) > 0.5
    got = slots.two_loop(grad, free)
    for slot in range(4):
        depth = int(slots.count[slot])
        newest_first = [
            (
                slots.s[slot, (int(slots.head[slot]) - 1 - i) % history],
                slots.y[slot, (int(slots.head[slot]) - 1 - i) % history],
            )
            for i in range(depth)
        ]
        expected = _textbook_two_loop(newest_first, grad[slot], free[slot]).float()
        torch.testing.assert_close(got[slot], expected, rtol=1e-4, atol=1e-5)


def test_compacting_moves_the_live_problems_to_the_first_slots_with_their_state():
    from types import SimpleNamespace

    from seatbelt.attacks.batched import _Slots

    n, history, f64 = 6, 3, {"dtype": torch.float64}
    run = SimpleNamespace(
        d=torch.arange(5.0, **f64)[:, None].expand(5, n).clone(),
        lower=-torch.ones(5, n, **f64),
        upper=torch.ones(5, n, **f64),
    )
    slots = _Slots(5, n, history, torch.float64, torch.device("cpu"))
    for problem in (4, 3, 2, 1):
        slots.load(problem, run)
    slots.remember(
        torch.arange(4), torch.arange(4.0, **f64)[:, None].expand(4, n), torch.ones(4, n, **f64)
    )
    slots.problem[torch.tensor([0, 2])] = -1  # problems 4 and 2 finished
    slots.compact()
    assert slots.live == 2 and sorted(slots.problem[:2].tolist()) == [1, 3]
    for slot in range(
        2
    ):  # each problem took its d and its memory along (problem p was loaded into slot 4 - p)
        problem = int(slots.problem[slot])
        assert (slots.d[slot] == problem).all()
        assert (slots.s[slot, 0] == 4 - problem).all() and int(slots.count[slot]) == 1
    slots.load(0, run)
    assert slots.live == 3 and int(slots.problem[2]) == 0 and int(slots.count[2]) == 0
