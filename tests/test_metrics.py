"""MIG (seatbelt.metrics) on synthetic codes whose answer is known in closed form.

The codes sit on a balanced grid of factor values (every combination repeated ``reps`` times,
rows shuffled). Latents with a tiny posterior std (1e-3) at levels 1 apart never overlap, so the
estimator's summand log q(z_j | v) / q(z_j) reduces to log p(c | v) / p(c), c the latent's level:
with all N points as samples the estimate is then exact, not only right in expectation.

The last test plants the public bug (a reshape where a transpose belongs) and checks that the
known-answer tests fail on it.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from seatbelt import metrics
from seatbelt.metrics import mig, mig_from_table, mig_table

TINY = 1e-3  # posterior std of a near-deterministic latent


def grid(sizes, reps, seed=0):
    """Every combination of factor values ``reps`` times, rows shuffled: (N, K) int64."""
    f = (
        torch.cartesian_prod(*[torch.arange(s) for s in sizes])
        .reshape(-1, len(sizes))
        .repeat(reps, 1)
    )
    return f[torch.randperm(len(f), generator=torch.Generator().manual_seed(seed))]


def posteriors(means, stds):
    """(N, D) mu and logvar from lists of per-latent means and stds (tensors or numbers)."""
    n = max(len(m) for m in means if torch.is_tensor(m))
    mu = torch.stack([torch.as_tensor(m, dtype=torch.float32).expand(n) for m in means], 1)
    sd = torch.stack([torch.as_tensor(s, dtype=torch.float32).expand(n) for s in stds], 1)
    return mu.contiguous(), (2 * sd.log()).contiguous()


# --- the known-answer checks, as functions so the planted-bug test can run them too -------------


def check_copied_factors_give_one():
    """Latent k = factor k (std 1e-3) plus two noise latents: I(z_k; v_k) = H(v_k) = log n_k
    exactly, I(z_k; v_l) = 0 for k != l exactly (the grid is balanced), the noise latents carry a
    little finite-N information; so MIG is 1 up to that bias."""
    sizes = (3, 4, 5)
    f = grid(sizes, reps=20)
    noise = torch.randn(len(f), 2, generator=torch.Generator().manual_seed(1))
    mu, logvar = posteriors(
        [f[:, 0], f[:, 1], f[:, 2], noise[:, 0], noise[:, 1]], [TINY] * 3 + [1.0, 1.0]
    )
    table = mig_table(mu, logvar, f, factor_sizes=sizes, n_samples=len(f))
    info = table[[f"z{j}" for j in range(3)]].to_numpy()
    np.testing.assert_allclose(info, np.diag(np.log(sizes)), atol=1e-5)
    np.testing.assert_allclose(table["H"], np.log(sizes), rtol=1e-12)
    assert list(table["top"]) == ["z0", "z1", "z2"]
    assert mig_from_table(table) > 0.98


def check_middle_value():
    """One latent carrying two factors, z0 = v1 + v2, gives MIG = 2/3 (1/2 without v3).

    Factors: v1, v2 uniform on {0, 1}, v3 uniform on {0, 1, 2}, independent. Latents (std s = 1e-3
    unless said): z0 ~ N(v1 + v2, s^2), z1 ~ N(v3, s^2), z2 and z3 ~ N(0, 1) for every point.
    z0 reveals c = v1 + v2 and nothing else: c is 0, 1, 2 with probabilities 1/4, 1/2, 1/4, so
    H(c) = (3/2) log 2, and given v1, c is uniform on two values, H(c | v1) = log 2. Hence
        I(z0; v1) = H(c) - H(c | v1) = (1/2) log 2 = H(v1) / 2,   and the same for v2;
        I(z1; v3) = H(v3) = log 3;   I(z0; v3) = I(z1; v1) = I(z1; v2) = 0 (independent factors);
        I(z2; .) = I(z3; .) = 0 exactly (every point has the same posterior, so q(z | v) = q(z)).
    Gaps: v1 -> 1/2, v2 -> 1/2, v3 -> 1, so MIG = (1/2 + 1/2 + 1) / 3 = 2/3, and 1/2 without v3.
    With all N points as samples the estimate is exact: its summand for (z0, v1) is
    log p(c | v1) / p(c), which is log 2 when c is 0 or 2 and 0 when c = 1, averaging (1/2) log 2.
    (Had z0 encoded (v1, v2) injectively, e.g. 2 v1 + v2, both gaps would be 1: MIG does not
    penalise one latent carrying two factors when no other latent competes.)
    """
    f = grid((2, 2, 3), reps=25)
    mu, logvar = posteriors([f[:, 0] + f[:, 1], f[:, 2], 0.0, 0.0], [TINY, TINY, 1.0, 1.0])
    table = mig_table(mu, logvar, f, names=["v1", "v2", "v3"], n_samples=len(f))
    half, l2, l3 = 0.5 * math.log(2), math.log(2), math.log(3)
    expected = np.array([[half, 0, 0, 0], [half, 0, 0, 0], [0, l3, 0, 0]])
    np.testing.assert_allclose(table[["z0", "z1", "z2", "z3"]].to_numpy(), expected, atol=1e-6)
    np.testing.assert_allclose(table["H"], [l2, l2, l3], rtol=1e-12)
    np.testing.assert_allclose(table["gap"], [0.5, 0.5, 1.0], atol=1e-6)
    assert mig_from_table(table) == pytest.approx(2 / 3, abs=1e-6)
    assert mig_from_table(table, exclude=("v3",)) == pytest.approx(0.5, abs=1e-6)
    assert mig_from_table(table, exclude=[2]) == pytest.approx(0.5, abs=1e-6)


def check_noise_moves_mig_down():
    """Copied factors with a growing posterior std: the levels overlap more, I(z_k; v_k) falls, so
    MIG falls strictly (the steps are many times the Monte Carlo error)."""
    f = grid((4, 4), reps=50)
    stds = (0.1, 0.3, 0.5, 0.8, 1.2, 2.0)
    values = []
    for s in stds:
        mu, logvar = posteriors([f[:, 0], f[:, 1], 0.0], [s, s, 1.0])
        values.append(mig(mu, logvar, f, n_samples=len(f)))
    assert values[0] > 0.95 and values[-1] < 0.2, values
    assert all(a > b + 0.02 for a, b in zip(values, values[1:])), values


def check_order_does_not_matter():
    """Permuting latents permutes the MI columns and leaves MIG alone; so does permuting points.
    On the exact code of check_middle_value this holds to float rounding; on a noisy code it holds
    within Monte Carlo error (the draws pair with other points)."""
    gen = torch.Generator().manual_seed(3)
    f = grid((2, 2, 3), reps=25)
    noisy = [
        f[:, 0] + torch.randn(len(f), generator=gen),
        f[:, 2].float(),
        torch.randn(len(f), generator=gen),
    ]
    for means, stds, tol in (
        ([f[:, 0] + f[:, 1], f[:, 2], 0.0, 0.0], [TINY, TINY, 1.0, 1.0], 1e-6),
        (noisy, [0.5, 0.5, 1.0], 0.05),
    ):
        mu, logvar = posteriors(means, stds)
        d = mu.shape[1]
        cols = [f"z{j}" for j in range(d)]
        base = mig_table(mu, logvar, f, n_samples=len(f))
        perm = torch.randperm(d, generator=gen)
        shuffled = mig_table(mu[:, perm], logvar[:, perm], f, n_samples=len(f))
        # column j of the shuffled code is latent perm[j] of the original
        np.testing.assert_allclose(
            shuffled[cols].to_numpy(), base[[f"z{int(p)}" for p in perm]].to_numpy(), atol=tol
        )
        rows = torch.randperm(len(f), generator=gen)
        moved = mig_table(mu[rows], logvar[rows], f[rows], n_samples=len(f))
        np.testing.assert_allclose(moved[cols].to_numpy(), base[cols].to_numpy(), atol=tol)
        for other in (shuffled, moved):
            assert mig_from_table(other) == pytest.approx(mig_from_table(base), abs=tol)


KNOWN_ANSWERS = [
    check_copied_factors_give_one,
    check_middle_value,
    check_noise_moves_mig_down,
    check_order_does_not_matter,
]


@pytest.mark.parametrize("check", KNOWN_ANSWERS, ids=lambda c: c.__name__)
def test_known_answer(check):
    check()


def test_independent_latents_give_zero():
    """Latents drawn independently of the factors (means N(0, 1), std 1): every I is only the small
    finite-N bias, so MIG is near 0."""
    f = grid((3, 4), reps=50)
    gen = torch.Generator().manual_seed(2)
    mu, logvar = torch.randn(len(f), 4, generator=gen), torch.zeros(len(f), 4)
    table = mig_table(mu, logvar, f, n_samples=len(f))
    assert table[[f"z{j}" for j in range(4)]].to_numpy().max() < 0.01
    assert mig_from_table(table) < 0.01


def test_subsampled_estimate_is_close():
    """With S = N / 4 sample points (all N posteriors kept in every mixture) the middle value 2/3
    holds within Monte Carlo error: the (z0, v1) gap is then the fraction of samples with c in
    {0, 2}, a binomial proportion with std 0.5 / sqrt(S) = 0.018."""
    f = grid((2, 2, 3), reps=250)
    mu, logvar = posteriors([f[:, 0] + f[:, 1], f[:, 2], 0.0, 0.0], [TINY, TINY, 1.0, 1.0])
    values = [mig(mu, logvar, f, n_samples=len(f) // 4, seed=s) for s in range(3)]
    assert values[0] != values[1]  # the seed does choose other points
    assert values[0] == mig(
        mu, logvar, f, n_samples=len(f) // 4, seed=0
    )  # and the same seed the same ones
    for v in values:
        assert v == pytest.approx(2 / 3, abs=0.04)


@pytest.mark.parametrize("n_samples", [200, 37])
def test_matches_direct_formula(monkeypatch, n_samples):
    """Eq (1^) written out directly in float64 on a small random problem, with the same draws,
    matches the blocked, grouped computation (blocks forced small so several are summed)."""
    monkeypatch.setitem(metrics._COMPONENTS, "cpu", 7)
    monkeypatch.setitem(metrics._BLOCK, "cpu", 60)
    gen = torch.Generator().manual_seed(4)
    n, d = 150, 3
    mu = torch.randn(n, d, generator=gen, dtype=torch.float64)
    logvar = torch.randn(n, d, generator=gen, dtype=torch.float64) - 1
    f = torch.stack(
        [torch.randint(0, 3, (n,), generator=gen), torch.randint(5, 7, (n,), generator=gen)], 1
    )
    table = mig_table(mu, logvar, f, n_samples=n_samples, seed=9)

    draws = torch.Generator().manual_seed(9)  # the draw order of mig_table
    idx = torch.randperm(n, generator=draws)[:n_samples] if n_samples < n else torch.arange(n)
    z = mu[idx] + torch.exp(0.5 * logvar[idx]) * torch.randn(
        len(idx), d, generator=draws, dtype=torch.float64
    )

    def log_q(points, members):  # log (1/|members|) sum_m q(z_j | x_m), for each sample and latent
        m, lv = mu[members], logvar[members]
        dens = -0.5 * (math.log(2 * math.pi) + lv + (z[points, None] - m) ** 2 / lv.exp())
        return torch.logsumexp(dens, 1) - math.log(len(members))

    everyone = torch.arange(n)
    marginal = log_q(torch.arange(len(idx)), everyone)
    for k in range(2):
        cond = torch.stack(
            [log_q(torch.tensor([s]), everyone[f[:, k] == f[i, k]])[0] for s, i in enumerate(idx)]
        )
        expected = (cond - marginal).mean(0).clamp(min=0)
        got = table.iloc[k][[f"z{j}" for j in range(d)]].to_numpy(float)
        np.testing.assert_allclose(got, expected.numpy(), rtol=1e-9, atol=1e-12)
        p = torch.unique(f[:, k], return_counts=True)[1].double() / n
        h = -torch.stack([p[(f[i, k] > torch.unique(f[:, k])).sum()].log() for i in idx]).mean()
        assert table["H"].iloc[k] == pytest.approx(float(h), rel=1e-12)
    assert ((table["gap"] >= 0) & (table["gap"] <= 1)).all()


def test_numpy_float64_and_autograd_inputs_agree():
    f = grid((2, 2, 3), reps=5)
    mu, logvar = posteriors([f[:, 0] + f[:, 1], f[:, 2], 0.0], [0.4, 0.4, 1.0])
    a = mig(mu, logvar, f, n_samples=40)
    assert mig(mu.numpy(), logvar.numpy(), f.numpy(), n_samples=40) == a
    assert mig(mu.double(), logvar.double(), f, n_samples=40) == pytest.approx(a, abs=1e-5)
    assert (
        mig(mu.requires_grad_(), logvar, f, n_samples=40) == a
    )  # encoder outputs straight in: no graph kept


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    f = grid((2, 2, 3), reps=20)
    mu, logvar = posteriors([f[:, 0] + f[:, 1], f[:, 2], 0.0], [0.4, 0.4, 1.0])
    cpu = mig_table(mu, logvar, f, n_samples=100)
    gpu = mig_table(mu.cuda(), logvar.cuda(), f.cuda(), n_samples=100)
    cols = ["z0", "z1", "z2", "H", "gap"]
    np.testing.assert_allclose(gpu[cols].to_numpy(float), cpu[cols].to_numpy(float), atol=1e-5)


def put(t, i, j, value):
    """A copy of t with t[i, j] = value."""
    t = t.clone()
    t[i, j] = value
    return t


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda mu, lv, f: (mu, lv[:-1], f), "same"),
        (lambda mu, lv, f: (mu, lv, f[:-1]), "N = 12"),
        (lambda mu, lv, f: (mu, lv, f[:, 0]), r"factors\[:, None\]"),
        (lambda mu, lv, f: (mu[:, :1], lv[:, :1], f), "at least 2 latents"),
        (lambda mu, lv, f: (put(mu, 3, 1, float("nan")), lv, f), "mu has NaN"),
        (lambda mu, lv, f: (mu, put(lv, 5, 0, float("inf")), f), "logvar has NaN"),
        (
            lambda mu, lv, f: (mu, lv, torch.stack([f[:, 0], torch.full_like(f[:, 0], 4)], 1)),
            "single value 4",
        ),
        (lambda mu, lv, f: (mu, put(lv, 2, 1, -200.0), f), "overflows"),
        (lambda mu, lv, f: (mu, lv, f.float()), "integers"),
        (lambda mu, lv, f: (mu, lv, put(f.float(), 0, 0, float("nan"))), "factors has NaN"),
    ],
)
def test_bad_input_is_named(change, message):
    f = grid((2, 3), reps=2)
    mu, logvar = posteriors([f[:, 0], f[:, 1]], [0.5, 0.5])
    with pytest.raises((ValueError, TypeError), match=message):
        mig(*change(mu, logvar, f))


def test_bad_options_are_named():
    f = grid((2, 3), reps=2)
    mu, logvar = posteriors([f[:, 0], f[:, 1]], [0.5, 0.5])
    with pytest.raises(ValueError, match="outside \\[0, 2\\)"):
        mig(mu, logvar, f, factor_sizes=(3, 2))
    with pytest.raises(ValueError, match="factor_sizes has 1 entries for 2"):
        mig(mu, logvar, f, factor_sizes=(2,))
    with pytest.raises(ValueError, match="positive integer"):
        mig(mu, logvar, f, n_samples=0)
    with pytest.raises(ValueError, match="distinct factor names"):
        mig(mu, logvar, f, names=["a", "a"])
    table = mig_table(mu, logvar, f, names=["shape", "scale"])
    with pytest.raises(ValueError, match="unknown factor 'colour'"):
        mig_from_table(table, exclude=("colour",))
    with pytest.raises(ValueError, match="every factor"):
        mig_from_table(table, exclude=("shape", 1))
    assert mig_from_table(table, exclude="shape") == pytest.approx(table.loc["scale", "gap"])


def reshape_instead_of_transpose(x):
    """The public bug: (N, D) -> (D, N) by reshape, which mixes latents and points."""
    return x.reshape(x.shape[1], x.shape[0])


@pytest.mark.parametrize("check", KNOWN_ANSWERS, ids=lambda c: c.__name__)
def test_known_answers_catch_the_reshape_bug(monkeypatch, check):
    """Each known-answer check fails on a copy of MIG with the bug planted; if one ever passed on
    it, that check would no longer guard against the bug. (The near-zero check cannot: the bug
    gives near zero too.)"""
    monkeypatch.setattr(metrics, "_per_latent", reshape_instead_of_transpose)
    with pytest.raises(AssertionError):
        check()
