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
            joint, marginals = tc.log_qz(z[idx], mu[idx], logvar[idx], dataset_size=2000, estimator="mss")
            err.append(torch.cat([joint - exact_joint[idx], marginals - exact_marginals[idx]]).abs().mean())
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


@pytest.mark.parametrize("estimator", tc.ESTIMATORS)
@pytest.mark.parametrize("rows_per_pass", [1, 3, 64])
def test_fused_estimator_matches_autograd_values_and_gradients(generator, monkeypatch, estimator, rows_per_pass):
    """The row-chunked forward and hand-written backward agree with autograd, however the rows split."""
    monkeypatch.setattr(tc, "_row_chunk", lambda *_: rows_per_pass)
    batch, n = 10, 50
    z, mu, logvar = (t.requires_grad_() for t in _dataset(generator, batch, 4))
    if estimator == "mws":
        log_w = torch.full((batch, batch), -math.log(n * batch), dtype=torch.float64)
    else:
        log_w = tc.mss_log_weights(batch, n, dtype=torch.float64)
    # unequal weights on the two outputs, so a swapped or dropped gradient term shows
    probe = torch.randn(2, batch, generator=generator, dtype=torch.float64)

    def loss(outputs):
        return (probe[0] * outputs[0] + probe[1] * outputs[1]).sum()

    fused = tc.log_qz(z, mu, logvar, n, estimator)
    reference = _autograd_reference(z, mu, logvar, log_w)
    torch.testing.assert_close(fused, reference)
    grads = torch.autograd.grad(loss(fused), (z, mu, logvar))
    expected = torch.autograd.grad(loss(reference), (z, mu, logvar))
    for got, want in zip(grads, expected):
        torch.testing.assert_close(got, want)
    assert torch.autograd.gradcheck(lambda *t: tc.log_qz(*t, n, estimator), (z, mu, logvar))
