"""Theorem 1 numerically (claim C12) and the Eq 43 minibatch TC estimator, against exact answers."""

import dataclasses
import math

import pytest
import torch

from seatbelt.decomposition import (
    AggregatePosterior,
    aggregate_posterior,
    decompose_elbo,
    gap_vs_samples,
    tc_estimator_study,
)
from seatbelt.gaussian import kl
from seatbelt.models import ModelConfig, build_model

N = 24


def _data(n=N, seed=1):
    """Points near a random line through the origin: the top-layer means then lie near a curve that
    is not axis-aligned, so the aggregate posterior has a sizeable TC as well as MI."""
    g = torch.Generator().manual_seed(seed)
    t = torch.linspace(-1, 1, n)[:, None]
    return 3 * (t * torch.randn(1, 4, generator=g) + 0.05 * torch.randn(n, 4, generator=g))


def _model(latent=(3, 2), n=N):
    """A random tiny model whose posteriors are narrow (std e^-3) and spread out (means x30), so
    every term of Theorem 1 is far from 0; likelihood std 1 keeps the likelihood's Monte Carlo noise
    small."""
    torch.manual_seed(0)
    config = ModelConfig(
        kind="seatbelt" if len(latent) > 1 else "vae",
        objective="beta_tcvae",
        latent_sizes=latent,
        hidden_sizes=(8,) * (len(latent) - 1),
        data_shape=(4,),
        net="mlp",
        mlp_hidden=8,
        dataset_size=n,
        likelihood_std=1.0,
    )
    model = build_model(config)
    with torch.no_grad():
        for head, d in zip(model.posterior_heads, model.latent_sizes):
            last = head if isinstance(head, torch.nn.Linear) else head.net[-1]
            last.weight[:d] *= 30
            last.weight[d:] = 0
            last.bias[d:] = -6.0
    return model


@pytest.fixture(scope="module")
def two_layer():
    model = _model()
    return model, decompose_elbo(model, _data(), samples=64, pool_size=64, seed=0)


@pytest.mark.parametrize("latent", [(2,), (3, 2), (3, 3, 2)])
def test_terms_sum_to_the_elbo_within_the_interval(latent):
    model = _model(latent)
    d = decompose_elbo(model, _data(), samples=64, pool_size=32, seed=0)
    expected = [
        "log_likelihood",
        *(f"kl_{i + 1}" for i in range(len(latent) - 1)),
        "mi",
        "tc",
        "dwkl",
    ]
    assert list(d.terms["term"]) == expected
    assert list(d.terms["coefficient"]) == [1] + [-1] * (len(expected) - 1)
    assert d.gap_se > 0 and d.check(z=3.0), d.summary()
    assert d.pool_size == (0 if len(latent) == 1 else 32) and d.aggregate.exact == (
        len(latent) == 1
    )
    assert d.effect(margin=0.5).supported


def test_gap_shrinks_like_one_over_root_s():
    model = _model((3, 2))
    table = gap_vs_samples(model, _data(), samples=(4, 64), seeds=range(3), pool_size=16)
    by_s = table.groupby("samples")[["abs_gap", "gap_se"]].mean()
    ratio = by_s.loc[4, "gap_se"] / by_s.loc[64, "gap_se"]
    assert 3.0 < ratio < 5.3  # sqrt(64 / 4) = 4
    assert by_s.loc[64, "abs_gap"] < by_s.loc[4, "abs_gap"]
    assert table["within_3se"].all()


@pytest.mark.parametrize("term", ["log_likelihood", "kl_1", "mi", "tc", "dwkl"])
@pytest.mark.parametrize("mistake", ["dropped", "mis-signed"])
def test_a_dropped_or_mis_signed_term_fails_the_check(two_layer, term, mistake):
    _, d = two_layer
    assert d.check()
    terms = d.terms.copy()
    if mistake == "dropped":
        terms = terms[terms["term"] != term]
    else:
        terms.loc[terms["term"] == term, "coefficient"] *= -1
    broken = dataclasses.replace(d, terms=terms)
    assert not broken.check(z=3.0)
    assert abs(broken.gap) > 10 * broken.gap_se
    assert not broken.effect(margin=0.5).supported


def test_one_point_one_layer_has_zero_mi_and_tc_exactly():
    """N = 1, L = 1: q(z) = q(z | x_1), a factorised Gaussian, so log q(z|x) - log q(z) = 0 and
    TC = 0 sample by sample; the dwkl is then the closed-form KL(q(z|x_1) || p(z)). In float64, as a
    float32 encoder gives last-bit different posteriors for batches of different sizes."""
    model = _model((2,), n=1).double()
    x = _data(1).double()
    d = decompose_elbo(model, x, samples=256, seed=0)
    assert abs(d.term("mi")) < 1e-12 and abs(d.term("tc")) < 1e-12
    model.eval()
    with torch.no_grad():
        q = model.encode(x).posteriors[0]
    exact = kl(q.mu.double(), q.logvar.double()).item()
    dwkl_se = float(d.terms.set_index("term").loc["dwkl", "se"])
    assert abs(d.term("dwkl") - exact) < 4 * dwkl_se
    assert d.check()


def test_one_layer_aggregate_is_the_exact_mixture():
    model = _model((2,))
    x = _data()
    agg = aggregate_posterior(model, x, pool_size=7)
    assert agg.exact and agg.n_components == N
    z = torch.tensor([[0.3, -1.2]], dtype=torch.float64)
    log_q, log_marginals = agg.log_prob(z)
    comps = [
        torch.distributions.Normal(agg.mu[n], torch.exp(0.5 * agg.logvar[n])) for n in range(N)
    ]
    densities = torch.stack([c.log_prob(z[0]).exp() for c in comps])  # (N, D)
    torch.testing.assert_close(log_q, densities.prod(1).mean().log()[None])
    torch.testing.assert_close(log_marginals, densities.mean(0).log().sum()[None])


def test_mws_on_the_whole_dataset_carries_the_exact_offsets():
    """L = 1, B = N: per sample MWS gives log q(z) - log N and each marginal - log N, so the MWS
    MI, TC and dwkl differ from the exact plug-in by +log N, +(D - 1) log N and -D log N exactly."""
    model = _model((2,))
    study = tc_estimator_study(model, _data(), batch_sizes=[4, N], n_batches=20, seed=0).set_index(
        ["estimator", "batch_size", "term"]
    )
    log_n, d = math.log(N), 2
    for term, offset in {"mi": log_n, "tc": (d - 1) * log_n, "dwkl": -d * log_n}.items():
        row = study.loc[("mws", N, term)]
        assert row["bias_paired"] == pytest.approx(offset, abs=1e-9)
        assert row["bias_paired_se"] < 1e-9
        assert abs(row["bias"] - offset) < 4 * row["bias_se"]
    # MSS is not exact at B = N, but far closer to the reference than MWS
    assert abs(study.loc[("mss", N, "tc"), "bias"]) < 0.1 * study.loc[("mws", N, "tc"), "bias"]
    assert set(study.columns) >= {"mean", "std", "reference", "reference_se", "bias", "bias_se"}


def test_two_layer_study_uses_the_given_reference(two_layer):
    model, reference = two_layer
    study = tc_estimator_study(
        model, _data(), batch_sizes=[8], n_batches=10, estimators=("mss",), reference=reference
    )
    assert len(study) == 3 and (study["estimator"] == "mss").all()
    assert study.set_index("term").loc["tc", "reference"] == reference.term("tc")


def test_the_model_mode_is_restored():
    model = _model((2,))
    model.train()
    decompose_elbo(model, _data(), samples=2)
    assert model.training


def test_bad_inputs_raise_clear_errors(two_layer):
    model, reference = two_layer
    x = _data()
    with pytest.raises(ValueError, match="samples must be >= 2"):
        decompose_elbo(model, x, samples=1)
    with pytest.raises(ValueError, match="pool_size"):
        decompose_elbo(model, x, pool_size=0)
    with pytest.raises(ValueError, match="items of shape"):
        decompose_elbo(model, torch.zeros(5, 3))
    with pytest.raises(ValueError, match="batch sizes must lie in 2..N"):
        tc_estimator_study(model, x, batch_sizes=[N + 1], reference=reference)
    with pytest.raises(ValueError, match="unknown estimators"):
        tc_estimator_study(model, x, batch_sizes=[4], estimators=("exact",), reference=reference)
    with pytest.raises(ValueError, match="same dataset"):
        tc_estimator_study(model, x[:10], batch_sizes=[4], reference=reference)
    with pytest.raises(ValueError, match="lacks columns"):
        dataclasses.replace(reference, terms=reference.terms.drop(columns="se")).gap
    with pytest.raises(KeyError, match="no term"):
        reference.term("kl_2")
    assert isinstance(reference.aggregate, AggregatePosterior)
