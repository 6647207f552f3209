"""The TC estimators against exact values on small datasets (Appendix C)."""

import math

import pytest
import torch

from seatbelt import tc
from seatbelt.gaussian import log_density


def _dataset(generator, n, d):
    mu = torch.randn(n, d, generator=generator, dtype=torch.float64) * 2
    logvar = torch.randn(n, d, generator=generator, dtype=torch.float64) * 0.3 - 1
    z = mu + torch.exp(0.5 * logvar) * torch.randn(n, d, generator=generator, dtype=torch.float64)
    return z, mu, logvar


def _exact(z, mu, logvar):
    """log q(z) and log prod_d q(z_d) over the whole dataset (q = the mixture of all posteriors)."""
    n = mu.shape[0]
    pairwise = log_density(z[:, None], mu[None], logvar[None])
    joint = torch.logsumexp(pairwise.sum(-1), 1) - math.log(n)
    marginals = (torch.logsumexp(pairwise, 1) - math.log(n)).sum(-1)
    return joint, marginals


@pytest.mark.parametrize("batch,n", [(2, 2), (5, 7), (64, 100), (257, 1000)])
def test_mss_weights_from_definition(batch, n):
    w = tc.mss_log_weights(batch, n, dtype=torch.float64).exp()
    m = batch - 1
    torch.testing.assert_close(w.sum(1), torch.ones(batch, dtype=torch.float64))
    for i in range(batch):
        for j in range(batch):
            expected = 1 / n if i == j else (n - m) / (n * m) if j == (i + 1) % batch else 1 / m
            assert w[i, j].item() == pytest.approx(expected, rel=1e-12)


def test_mws_on_the_whole_dataset_is_exact_minus_log_n(generator):
    z, mu, logvar = _dataset(generator, 6, 3)
    joint, marginals = tc.log_qz(z, mu, logvar, dataset_size=6, estimator="mws")
    exact_joint, exact_marginals = _exact(z, mu, logvar)
    torch.testing.assert_close(joint, exact_joint - math.log(6))
    # each of the D marginals carries its own -log N, so the TC is offset by (D - 1) log N
    torch.testing.assert_close(marginals, exact_marginals - 3 * math.log(6))
    torch.testing.assert_close(joint - marginals, exact_joint - exact_marginals + 2 * math.log(6))


def test_mss_approaches_exact_as_batch_grows(generator):
    z, mu, logvar = _dataset(generator, 2000, 2)
    exact_joint, exact_marginals = _exact(z, mu, logvar)
    errors = []
    for batch in (16, 128, 1024):
        err = []
        for _ in range(8):
            idx = torch.randperm(2000, generator=generator)[:batch]
            joint, marginals = tc.log_qz(
                z[idx], mu[idx], logvar[idx], dataset_size=2000, estimator="mss"
            )
            err.append(
                torch.cat([joint - exact_joint[idx], marginals - exact_marginals[idx]]).abs().mean()
            )
        errors.append(float(torch.stack(err).mean()))
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 0.1


def test_mss_is_closer_to_exact_than_mws(generator):
    """MWS is a lower bound with a log-batch offset; MSS is the better estimate of log q(z)."""
    z, mu, logvar = _dataset(generator, 2000, 2)
    exact_joint, _ = _exact(z, mu, logvar)
    idx = torch.randperm(2000, generator=generator)[:512]
    mws, _ = tc.log_qz(z[idx], mu[idx], logvar[idx], 2000, "mws")
    mss, _ = tc.log_qz(z[idx], mu[idx], logvar[idx], 2000, "mss")
    assert (mss - exact_joint[idx]).abs().mean() < (mws - exact_joint[idx]).abs().mean()


def test_bad_inputs_raise_clear_errors(generator):
    z, mu, logvar = _dataset(generator, 4, 2)
    with pytest.raises(ValueError, match="unknown TC estimator"):
        tc.log_qz(z, mu, logvar, 10, estimator="exact")
    with pytest.raises(ValueError, match="whole training set"):
        tc.log_qz(z, mu, logvar, 2)
    with pytest.raises(ValueError, match="one shape"):
        tc.log_qz(z, mu[:, :1], logvar, 10)
    with pytest.raises(ValueError, match="at least 2"):
        tc.mss_log_weights(1, 10)


def _autograd_reference(z, mu, logvar, log_w):
    """The estimator as plain autograd over the whole (B, B, D) tensor, to check the fused one."""
    pairwise = log_density(z[:, None], mu[None], logvar[None])
    joint = torch.logsumexp(pairwise.sum(-1) + log_w, 1)
    marginals = torch.logsumexp(pairwise + log_w[:, :, None], 1).sum(-1)
    return joint, marginals


@pytest.fixture(params=["compiled", "eager"])
def mode(request, monkeypatch):
    """Run a test with the estimator's loops compiled, and again eagerly."""
    monkeypatch.setitem(tc._COMPILE, "enabled", request.param == "compiled")
    return request.param


def _log_w(estimator, batch, n, dtype=torch.float64):
    if estimator == "mws":
        return torch.full((batch, batch), -math.log(n * batch), dtype=dtype)
    return tc.mss_log_weights(batch, n, dtype=dtype)


def _assert_matches_reference(z, mu, logvar, n, estimator, generator, **tolerance):
    """Values and gradients of log_qz against autograd over the whole tensor, in float64."""
    wide = [t.detach().double().requires_grad_() for t in (z, mu, logvar)]
    # unequal weights on the two outputs, so a swapped or dropped gradient term shows
    probe = torch.randn(2, z.shape[0], generator=generator, dtype=torch.float64)

    def loss(outputs):
        return (probe[0] * outputs[0].double() + probe[1] * outputs[1].double()).sum()

    got = tc.log_qz(z, mu, logvar, n, estimator)
    want = _autograd_reference(*wide, _log_w(estimator, z.shape[0], n))
    for a, b in zip(got, want):
        torch.testing.assert_close(a.double(), b, **tolerance)
    for a, b in zip(
        torch.autograd.grad(loss(got), (z, mu, logvar)), torch.autograd.grad(loss(want), wide)
    ):
        torch.testing.assert_close(a.double(), b, **tolerance)


@pytest.mark.parametrize("estimator", tc.ESTIMATORS)
@pytest.mark.parametrize("rows_per_pass", [1, 3, 64])
def test_fused_estimator_matches_autograd_values_and_gradients(
    generator, monkeypatch, mode, estimator, rows_per_pass
):
    """The fused forward and hand-written backward agree with autograd, however the eager rows
    split."""
    monkeypatch.setattr(tc, "_row_chunk", lambda *_: rows_per_pass)
    batch, n = 10, 50
    z, mu, logvar = (t.requires_grad_() for t in _dataset(generator, batch, 4))
    _assert_matches_reference(z, mu, logvar, n, estimator, generator)
    assert torch.autograd.gradcheck(lambda *t: tc.log_qz(*t, n, estimator), (z, mu, logvar))


@pytest.mark.parametrize("estimator", tc.ESTIMATORS)
def test_float32_training_batch_matches_float64_reference(generator, mode, estimator):
    """At a training batch in float32, with log-variances over the whole bounded range (-10, 10),
    the estimator stays within float32 rounding of the float64 computation."""
    batch, d = 300, 12
    mu = torch.randn(batch, d, generator=generator) * 3
    logvar = (torch.rand(batch, d, generator=generator) * 20 - 10).requires_grad_()
    z = (
        mu + torch.exp(0.5 * logvar.detach()) * torch.randn(batch, d, generator=generator)
    ).requires_grad_()
    _assert_matches_reference(
        z, mu.requires_grad_(), logvar, 10_000, estimator, generator, rtol=1e-4, atol=1e-3
    )


def test_a_sample_far_from_every_posterior_is_exact(generator, mode):
    """A z thousands of standard deviations from every posterior: each density underflows in
    float32, but the log-sum-exp, its value and its gradients stay exact and finite."""
    z, mu, logvar = (t.float() for t in _dataset(generator, 8, 3))
    z[0] = 1e3
    z, mu, logvar = (t.requires_grad_() for t in (z, mu, logvar))
    _assert_matches_reference(z, mu, logvar, 100, "mws", generator, rtol=1e-5, atol=1e-3)


def _count_fallbacks(monkeypatch) -> list:
    calls = []
    exact = tc._logsumexp

    def counted(*args):
        calls.append(1)
        return exact(*args)

    monkeypatch.setattr(tc, "_logsumexp", counted)
    return calls


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_a_sample_far_from_its_own_posterior_but_near_another_falls_back_to_the_max_shift(
    generator, monkeypatch, mode, dtype
):
    """The forward shifts each sum by its diagonal term. z_0 sits on posterior 1's mean, thousands
    of its own standard deviations away, so another term exceeds the diagonal one by far more
    than e^88: the shifted sum overflows, and the estimator sums again shifted by the max."""
    calls = _count_fallbacks(monkeypatch)
    z, mu, logvar = (t.to(dtype) for t in _dataset(generator, 8, 3))
    logvar[:2] = -8.0
    z[0] = mu[1]
    mu[0] = mu[1] + 5.0
    z, mu, logvar = (t.requires_grad_() for t in (z, mu, logvar))
    _assert_matches_reference(z, mu, logvar, 100, "mws", generator, rtol=1e-5, atol=1e-4)
    assert calls, "the diagonal shift should have overflowed here"


def test_a_sample_near_its_own_posterior_needs_no_fallback(generator, monkeypatch, mode):
    calls = _count_fallbacks(monkeypatch)
    z, mu, logvar = _dataset(generator, 32, 4)
    tc.log_qz(z.float(), mu.float(), logvar.float(), 100)
    assert not calls


def test_without_a_compiler_the_estimator_warns_once_and_runs_eagerly(generator, monkeypatch):
    monkeypatch.setitem(tc._COMPILE, "enabled", True)
    monkeypatch.setattr(tc, "_COMPILED", {})

    def broken(*args, **kwargs):
        raise RuntimeError("no C++ compiler")

    monkeypatch.setattr(torch, "compile", broken)
    z, mu, logvar = _dataset(generator, 6, 2)
    with pytest.warns(UserWarning, match="runs eagerly"):
        got = tc.log_qz(z, mu, logvar, 50)
    assert not tc.compile_enabled()
    for a, b in zip(got, _autograd_reference(z, mu, logvar, _log_w("mws", 6, 50))):
        torch.testing.assert_close(a, b)
