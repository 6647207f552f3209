"""seatbelt.overlap against known answers: closed forms, Monte Carlo, brute force, exact
mixtures."""

import math

import numpy as np
import pytest
import torch

from seatbelt import gaussian, overlap
from seatbelt.data.base import Data
from seatbelt.models import ModelConfig, build_model


def _params(generator, shape=(3, 4)):
    mu = torch.randn(shape, generator=generator, dtype=torch.float64)
    logvar = torch.randn(shape, generator=generator, dtype=torch.float64) * 0.7
    return mu, logvar


def test_bhattacharyya_matches_monte_carlo(generator):
    """BC = int sqrt(q1 q2) = E_q1[sqrt(q2 / q1)], estimated from samples of q1."""
    mu1, lv1 = _params(generator)
    mu2, lv2 = _params(generator)
    n = 200_000
    z = gaussian.DiagGaussian(mu1.expand(n, 3, 4), lv1.expand(n, 3, 4)).sample(generator)
    ratio = torch.exp(
        0.5
        * (
            gaussian.DiagGaussian(mu2, lv2).log_prob(z)
            - gaussian.DiagGaussian(mu1, lv1).log_prob(z)
        )
    )
    exact = overlap.bhattacharyya(mu1, lv1, mu2, lv2)
    stderr = ratio.std(0) / n**0.5
    assert torch.all((ratio.mean(0) - exact).abs() < 5 * stderr + 1e-4)


def test_bhattacharyya_is_one_on_itself_symmetric_and_in_unit_interval(generator):
    mu1, lv1 = _params(generator)
    mu2, lv2 = _params(generator)
    torch.testing.assert_close(
        overlap.bhattacharyya(mu1, lv1, mu1, lv1), torch.ones(3, dtype=torch.float64)
    )
    torch.testing.assert_close(
        overlap.bhattacharyya(mu1, lv1, mu2, lv2), overlap.bhattacharyya(mu2, lv2, mu1, lv1)
    )
    bc = overlap.bhattacharyya(mu1, lv1, mu2, lv2)
    assert torch.all((bc > 0) & (bc < 1))


def test_bhattacharyya_known_one_dimensional_values():
    def t(*v):
        return torch.tensor([[float(x)] for x in v], dtype=torch.float64)

    # N(0, 1) vs N(1, 1): D_B = (1 - 0)^2 / (4 * 2) = 1/8
    assert float(overlap.bhattacharyya(t(0), t(0), t(1), t(0))) == pytest.approx(
        math.exp(-1 / 8), rel=1e-12
    )
    # N(0, 1) vs N(0, 2^2): BC = sqrt(2 s1 s2 / (s1^2 + s2^2)) = sqrt(4 / 5)
    assert float(overlap.bhattacharyya(t(0), t(0), t(0), t(math.log(4)))) == pytest.approx(
        math.sqrt(0.8), rel=1e-12
    )
    # N(1, 2^2) vs N(-1, 1): D_B = 4 / (4 * 5) + 1/2 log(5 / 4)
    d = overlap.bhattacharyya_distance(t(1), t(math.log(4)), t(-1), t(0))
    assert float(d) == pytest.approx(0.2 + 0.5 * math.log(1.25), rel=1e-12)


def test_bhattacharyya_of_diagonal_gaussians_is_the_product_over_units(generator):
    mu1, lv1 = _params(generator, (6,))
    mu2, lv2 = _params(generator, (6,))
    per_unit = [overlap.bhattacharyya(mu1[[d]], lv1[[d]], mu2[[d]], lv2[[d]]) for d in range(6)]
    torch.testing.assert_close(
        overlap.bhattacharyya(mu1, lv1, mu2, lv2), torch.stack(per_unit).prod()
    )


def test_bhattacharyya_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="one shape"):
        overlap.bhattacharyya(
            torch.zeros(3, 2), torch.zeros(3, 2), torch.zeros(3, 3), torch.zeros(3, 3)
        )


def test_nearest_neighbours_match_brute_force_and_never_self(generator):
    x = torch.randn(157, 2, 5, generator=generator)
    flat = x.flatten(1).double()
    dist = ((flat[:, None] - flat[None]) ** 2).sum(-1)
    dist.fill_diagonal_(math.inf)
    for block in (1, 10, 1024):
        nn = overlap.nearest_neighbours(x, block=block)
        assert torch.equal(nn, dist.argmin(1))
        assert not torch.any(nn == torch.arange(len(x)))


def test_nearest_neighbours_on_a_line():
    x = torch.tensor([[0.0], [1.0], [3.0], [3.5], [10.0]])
    assert overlap.nearest_neighbours(x).tolist() == [1, 0, 3, 2, 3]
    with pytest.raises(ValueError, match="at least 2 items"):
        overlap.nearest_neighbours(x[:1])


def test_neighbour_overlap_is_bc_with_the_neighbour():
    x = torch.tensor([[0.0], [1.0], [5.0]])
    mu = torch.tensor([[0.0], [1.0], [2.0]], dtype=torch.float64)
    logvar = torch.zeros(3, 1, dtype=torch.float64)
    bc = overlap.neighbour_overlap(x, mu, logvar)  # neighbours: 1, 0, 1
    expected = torch.tensor(
        [math.exp(-1 / 8), math.exp(-1 / 8), math.exp(-1 / 8)], dtype=torch.float64
    )
    torch.testing.assert_close(bc, expected)
    with pytest.raises(ValueError, match="one row per item"):
        overlap.neighbour_overlap(x[:2], mu, logvar)


def test_random_pairs_are_distinct_in_range_and_seeded():
    pairs = overlap.random_pairs(5, 10_000, seed=3)
    assert pairs.shape == (10_000, 2) and pairs.min() >= 0 and pairs.max() < 5
    assert np.all(pairs[:, 0] != pairs[:, 1])
    assert np.array_equal(pairs, overlap.random_pairs(5, 10_000, seed=3))
    counts = np.bincount(pairs[:, 1], minlength=5) / len(pairs)  # every target about equally likely
    assert np.all(np.abs(counts - 0.2) < 0.02)


def test_aggregate_density_is_the_mixture_and_integrates_to_one(generator):
    mu = torch.randn(7, 2, generator=generator, dtype=torch.float64)
    logvar = torch.randn(7, 2, generator=generator, dtype=torch.float64) * 0.3 - 1
    z = torch.randn(50, 2, generator=generator, dtype=torch.float64)
    mixture = (
        torch.stack([gaussian.DiagGaussian(mu[n], logvar[n]).log_prob(z) for n in range(7)])
        .exp()
        .mean(0)
    )
    for block in (3, 4096):
        torch.testing.assert_close(
            overlap.aggregate_log_density(z, mu, logvar, block=block).exp(), mixture
        )
    side = torch.linspace(-8, 8, 401, dtype=torch.float64)
    grid = torch.cartesian_prod(side, side)
    mass = overlap.aggregate_log_density(grid, mu, logvar).exp().sum() * (side[1] - side[0]) ** 2
    assert float(mass) == pytest.approx(1.0, abs=1e-3)


def _tiny_model(seed=0):
    torch.manual_seed(seed)
    config = ModelConfig(
        net="mlp", data_shape=(3,), latent_sizes=(2,), dataset_size=64, mlp_hidden=16
    )
    return build_model(config).eval()


def _points(n=64):
    x = torch.rand(n, 3, generator=torch.Generator().manual_seed(1)) * 2 - 1
    return Data(name="points", x=x, levels=0)


def test_evaluate_kl_is_the_closed_form_and_sigma_norm_the_encoders():
    model, data = _tiny_model(), _points()
    ev = overlap.evaluate(model, data, n=50, n_samples=3, batch_size=16, seed=0)
    assert (
        list(ev.frame.columns) == ["item", "log_likelihood", "elbo", "kl", "sigma_norm"]
        and len(ev.frame) == 50
    )
    q = model.encode(data.get(torch.arange(50))).posteriors[0]
    kl = gaussian.kl(q.mu.double(), q.logvar.double()).detach().numpy()
    np.testing.assert_allclose(
        ev.frame["kl"], kl, rtol=1e-4, atol=1e-4
    )  # one-layer KL: closed form
    np.testing.assert_allclose(
        ev.frame["sigma_norm"], q.std.norm(dim=1).detach().numpy(), rtol=1e-6
    )
    torch.testing.assert_close(ev.mu, q.mu.detach())


def test_evaluate_log_likelihood_matches_a_direct_monte_carlo():
    model, data = _tiny_model(), _points()
    ev = overlap.evaluate(model, data, n_samples=400, batch_size=64, seed=1)
    x = data.get(torch.arange(64))
    q = model.encode(x).posteriors[0]
    g = torch.Generator().manual_seed(99)
    with torch.no_grad():
        direct = torch.stack([model.log_likelihood(x, [q.sample(g)]) for _ in range(400)])
    stderr = direct.std(0) / 20
    diff = torch.tensor(ev.frame["log_likelihood"].to_numpy()) - direct.mean(0).double()
    assert torch.all(diff.abs() < 6 * stderr.double() + 1e-3)


def test_evaluate_is_seeded_and_checks_its_arguments():
    model, data = _tiny_model(), _points()
    a = overlap.evaluate(model, data, n_samples=2, seed=5).frame
    b = overlap.evaluate(model, data, n_samples=2, seed=5).frame
    c = overlap.evaluate(model, data, n_samples=2, seed=6).frame
    assert a.equals(b) and not a["log_likelihood"].equals(c["log_likelihood"])
    with pytest.raises(ValueError, match="items asked"):
        overlap.evaluate(model, data, n=65)
    with pytest.raises(ValueError, match="n_samples"):
        overlap.evaluate(model, data, n_samples=0)
    with pytest.raises(ValueError, match="layer"):
        overlap.evaluate(model, data, layer=1)
