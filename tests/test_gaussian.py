"""Closed forms of seatbelt.gaussian against Monte Carlo and torch.distributions."""

import math

import torch

from seatbelt import gaussian


def _params(generator, shape=(3, 4)):
    mu = torch.randn(shape, generator=generator, dtype=torch.float64)
    logvar = torch.randn(shape, generator=generator, dtype=torch.float64) * 0.5
    return mu, logvar


def test_log_density_matches_torch(generator):
    mu, logvar = _params(generator)
    z = torch.randn(mu.shape, generator=generator, dtype=torch.float64)
    expected = torch.distributions.Normal(mu, torch.exp(0.5 * logvar)).log_prob(z)
    torch.testing.assert_close(gaussian.log_density(z, mu, logvar), expected)
    torch.testing.assert_close(gaussian.DiagGaussian(mu, logvar).log_prob(z), expected.sum(-1))


def test_kl_closed_form_matches_monte_carlo(generator):
    mu1, lv1 = _params(generator)
    mu2, lv2 = _params(generator)
    q1 = gaussian.DiagGaussian(mu1.expand(200_000, 3, 4), lv1.expand(200_000, 3, 4))
    z = q1.sample(generator)
    mc = (gaussian.log_density(z, mu1, lv1) - gaussian.log_density(z, mu2, lv2)).sum(-1)
    exact = gaussian.kl(mu1, lv1, mu2, lv2)
    stderr = mc.std(0) / 200_000**0.5
    assert torch.all((mc.mean(0) - exact).abs() < 5 * stderr)


def test_kl_default_is_standard_normal_and_zero_on_itself(generator):
    mu, lv = _params(generator)
    torch.testing.assert_close(
        gaussian.kl(mu, lv), gaussian.kl(mu, lv, torch.zeros_like(mu), torch.zeros_like(lv))
    )
    torch.testing.assert_close(gaussian.kl(mu, lv, mu, lv), torch.zeros(3, dtype=torch.float64))


def test_w2_matches_sorted_sample_coupling(generator):
    """In 1-D the optimal coupling pairs quantiles: W2^2 = mean squared gap of sorted samples."""
    mu1, lv1 = _params(generator, (5,))
    mu2, lv2 = _params(generator, (5,))
    n = 400_000
    a = torch.sort(
        mu1 + torch.exp(0.5 * lv1) * torch.randn(n, 5, generator=generator, dtype=torch.float64), 0
    ).values
    b = torch.sort(
        mu2 + torch.exp(0.5 * lv2) * torch.randn(n, 5, generator=generator, dtype=torch.float64), 0
    ).values
    empirical = ((a - b) ** 2).mean(0).sum()
    assert (
        abs(float(empirical - gaussian.w2(mu1, lv1, mu2, lv2)))
        < 0.02 * float(gaussian.w2(mu1, lv1, mu2, lv2)) + 1e-3
    )


def test_reparameterised_sample_is_differentiable(generator):
    mu = torch.zeros(4, requires_grad=True)
    logvar = torch.zeros(4, requires_grad=True)
    gaussian.DiagGaussian(mu, logvar).sample(generator).sum().backward()
    assert torch.all(mu.grad == 1) and logvar.grad is not None


def test_kl_parts_sum_to_kl_and_match_hand_values(generator):
    mu1, lv1 = _params(generator)
    mu2, lv2 = _params(generator)
    mean, variance = gaussian.kl_parts(mu1, lv1, mu2, lv2)
    torch.testing.assert_close(mean + variance, gaussian.kl(mu1, lv1, mu2, lv2))
    assert torch.all(variance >= 0)

    # By hand, one dimension: mu1 = 3, mu2 = 1, s1^2 = 1, s2^2 = 4 (logvar2 = log 4):
    # mean term 1/2 * 2^2 / 4 = 0.5; variance term 1/2 * (1/4 - 1 - log(1/4)) = 0.31814718...
    def t(v):
        return torch.tensor([[v]], dtype=torch.float64)

    mean, variance = gaussian.kl_parts(t(3.0), t(0.0), t(1.0), t(math.log(4.0)))
    torch.testing.assert_close(mean, torch.tensor([0.5], dtype=torch.float64))
    torch.testing.assert_close(
        variance, torch.tensor([0.5 * (0.25 - 1 + math.log(4.0))], dtype=torch.float64)
    )
    # Equal widths: no variance term, the KL is the mean term alone; equal means: the reverse.
    mean, variance = gaussian.kl_parts(t(2.0), t(0.7), t(-1.0), t(0.7))
    torch.testing.assert_close(variance, torch.zeros(1, dtype=torch.float64))
    torch.testing.assert_close(mean, 0.5 * 9 * torch.exp(-t(0.7))[0])
    mean, _ = gaussian.kl_parts(t(2.0), t(0.1), t(2.0), t(0.9))
    torch.testing.assert_close(mean, torch.zeros(1, dtype=torch.float64))
