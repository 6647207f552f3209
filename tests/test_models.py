"""Models: build, forward, save/load, a training step, and the identities the paper relies on."""

from dataclasses import replace

import pytest
import torch

from seatbelt.gaussian import standard_log_density
from seatbelt.models import VAE, ModelConfig, SeatbeltVAE, build_model, seatbelt_sizes

SMALL = dict(data_shape=(1, 32, 32), dataset_size=1000)
L, H = seatbelt_sizes(3)
CONFIGS = {
    "vae-conv32": ModelConfig(objective="elbo", **SMALL),
    "beta-vae": ModelConfig(objective="beta_vae", beta=4, **SMALL),
    "tcvae-mss": ModelConfig(beta=4, tc_estimator="mss", **SMALL),
    "vae-conv64-rgb": ModelConfig(data_shape=(3, 64, 64), dataset_size=100),
    "vae-mlp": ModelConfig(
        net="mlp", data_shape=(3,), latent_sizes=(2,), dataset_size=100, mlp_hidden=32
    ),
    "seatbelt-3": ModelConfig(
        kind="seatbelt", beta=4, latent_sizes=L, hidden_sizes=H, free_bits=0.1, **SMALL
    ),
    "chain-3": ModelConfig(
        kind="seatbelt", beta=4, latent_sizes=L, hidden_sizes=H, likelihood_layers="bottom", **SMALL
    ),
}


def _batch(config, n=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand((n, *config.data_shape), generator=g) * 2 - 1


@pytest.mark.parametrize("name", CONFIGS)
def test_build_forward_and_interface(name):
    config = CONFIGS[name]
    model = build_model(config)
    x = _batch(config)
    enc = model.encode(x)
    assert len(enc.posteriors) == len(enc.z) == model.n_layers
    for q, z, d in zip(enc.posteriors, enc.z, model.latent_sizes):
        assert q.mu.shape == q.logvar.shape == z.shape == (8, d)
        torch.testing.assert_close(z, q.mu)
    assert model.decode(enc.z).shape == x.shape
    assert model.log_likelihood(x, enc.z).shape == (8,)
    for sample in (True, False):
        assert torch.isfinite(model.elbo(x, sample=sample)).all()
    loss = model.loss(x)
    assert loss.total.ndim == 0 and torch.isfinite(loss.total)
    assert all(torch.isfinite(v) for v in loss.terms.values())


@pytest.mark.parametrize("name", ["vae-conv32", "seatbelt-3"])
def test_training_steps_lower_the_loss(name):
    torch.manual_seed(0)
    config = CONFIGS[name]
    model = build_model(config)
    x = _batch(config, n=32)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    first = model.loss(x).total.item()
    for _ in range(15):
        opt.zero_grad()
        model.loss(x).total.backward()
        opt.step()
    assert model.loss(x).total.item() < 0.9 * first


def test_state_dict_round_trip_gives_identical_outputs(tmp_path):
    model = build_model(CONFIGS["seatbelt-3"]).eval()
    torch.save(model.state_dict(), tmp_path / "m.pt")
    clone = build_model(CONFIGS["seatbelt-3"]).eval()
    clone.load_state_dict(torch.load(tmp_path / "m.pt", weights_only=True))
    x = _batch(model.config)
    torch.testing.assert_close(
        model.elbo(x, sample=False), clone.elbo(x, sample=False), rtol=0, atol=0
    )
    assert ModelConfig.from_dict(model.config.to_dict()) == model.config


def test_one_layer_seatbelt_is_exactly_the_beta_tcvae():
    tcvae = build_model(ModelConfig(beta=6, **SMALL))
    seatbelt = build_model(ModelConfig(kind="seatbelt", beta=6, **SMALL))
    assert isinstance(seatbelt, SeatbeltVAE)
    seatbelt.load_state_dict(tcvae.state_dict())
    x = _batch(tcvae.config)
    a = tcvae.loss(x, generator=torch.Generator().manual_seed(1))
    b = seatbelt.loss(x, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(a.total, b.total, rtol=0, atol=0)
    assert a.terms.keys() == b.terms.keys()


def test_beta_one_tcvae_is_the_single_sample_elbo():
    """MI + TC + dim-wise KL telescope to log q(z|x) - log p(z) on the same draw."""
    model = build_model(ModelConfig(beta=1, **SMALL))
    x = _batch(model.config)
    loss = model.loss(x, generator=torch.Generator().manual_seed(3))
    enc = model.encode(x, sample=True, generator=torch.Generator().manual_seed(3))
    q, z = enc.posteriors[0], enc.z[0]
    elbo = model.log_likelihood(x, enc.z) - (q.log_prob(z) - standard_log_density(z))
    torch.testing.assert_close(loss.total, -elbo.mean())


def test_beta_one_tcvae_matches_closed_form_elbo_in_expectation():
    model = build_model(ModelConfig(beta=1, **SMALL)).eval()
    x = _batch(model.config, n=4)
    elbo = build_model(replace(model.config, objective="elbo")).eval()
    elbo.load_state_dict(model.state_dict())
    with torch.no_grad():
        diffs = torch.stack(
            [
                model.loss(x, torch.Generator().manual_seed(s)).total
                - elbo.loss(x, torch.Generator().manual_seed(s)).total
                for s in range(300)
            ]
        )
    assert abs(float(diffs.mean())) < 4 * float(diffs.std()) / 300**0.5


def test_beta_vae_at_beta_one_equals_elbo_objective():
    model = build_model(ModelConfig(objective="beta_vae", beta=1, **SMALL))
    other = build_model(ModelConfig(objective="elbo", **SMALL))
    other.load_state_dict(model.state_dict())
    x = _batch(model.config)
    torch.testing.assert_close(
        model.loss(x, torch.Generator().manual_seed(0)).total,
        other.loss(x, torch.Generator().manual_seed(0)).total,
    )


def test_chain_baseline_likelihood_sees_only_the_bottom_layer():
    chain = build_model(CONFIGS["chain-3"]).eval()
    seatbelt = build_model(CONFIGS["seatbelt-3"]).eval()
    zs = chain.encode(_batch(chain.config)).z
    moved = [zs[0]] + [z + 1.0 for z in zs[1:]]
    torch.testing.assert_close(chain.decode(zs), chain.decode(moved), rtol=0, atol=0)
    assert not torch.allclose(seatbelt.decode(zs), seatbelt.decode(moved))


def test_free_bits_floor_each_units_kl():
    config = ModelConfig(objective="elbo", free_bits=50.0, **SMALL)
    model = build_model(config)
    x = _batch(config)
    loss = model.loss(x, torch.Generator().manual_seed(0))
    torch.testing.assert_close(loss.total, loss.terms["recon"] + 50.0 * 10)


def test_output_attack_surrogate_uses_target_likelihood():
    model = build_model(CONFIGS["seatbelt-3"]).eval()
    x, t = _batch(model.config, seed=0), _batch(model.config, seed=1)
    enc = model.encode(x)
    gap = model.elbo(x, target=t, sample=False) - model.elbo(x, sample=False)
    torch.testing.assert_close(gap, model.log_likelihood(t, enc.z) - model.log_likelihood(x, enc.z))


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(objective="tc"), "objective"),
        (dict(latent_sizes=(10, 5)), "kind='seatbelt'"),
        (dict(kind="seatbelt", latent_sizes=(10, 5)), "hidden_sizes"),
        (
            dict(kind="seatbelt", latent_sizes=(10, 5), hidden_sizes=(8,), objective="beta_vae"),
            "beta_vae",
        ),
        (dict(beta=-1), "beta >= 0"),
        (dict(net="mlp"), "vector data"),
        (dict(data_shape=(1, 48, 48)), "square images"),
    ],
)
def test_bad_configs_raise_clear_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        build_model(ModelConfig(**kwargs))


def test_bad_inputs_raise_clear_errors():
    model = build_model(ModelConfig(**{**SMALL, "dataset_size": None}))
    with pytest.raises(ValueError, match="built for"):
        model.encode(torch.zeros(2, 1, 64, 64))
    with pytest.raises(ValueError, match="dataset_size"):
        model.loss(torch.zeros(2, 1, 32, 32))
    with pytest.raises(ValueError, match="kind='seatbelt'"):
        SeatbeltVAE(ModelConfig())
    assert type(build_model(ModelConfig())) is VAE


def test_log_variances_are_bounded_so_a_runaway_net_cannot_overflow_the_loss():
    config = ModelConfig(
        kind="seatbelt",
        latent_sizes=(6, 4, 2),
        hidden_sizes=(8, 8),
        data_shape=(5,),
        net="mlp",
        mlp_hidden=8,
        dataset_size=64,
        beta=4,
    )
    torch.manual_seed(0)
    model = build_model(config).train()
    with (
        torch.no_grad()
    ):  # a net gone wild: every output scaled far beyond any sensible log-variance
        for module in [*model.posterior_heads, *model.prior_nets]:
            for p in module.parameters():
                p.mul_(1e4)
    x = torch.rand(16, 5) * 2 - 1
    enc = model.encode(x, sample=True)
    assert all(q.logvar.abs().max() <= 10 for q in enc.posteriors)
    assert all(model.prior(i, enc.z[i + 1]).logvar.abs().max() <= 10 for i in range(2))
    assert torch.isfinite(model.loss(x).total)
