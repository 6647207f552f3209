"""The held-out ELBO's parts, the per-unit KLs and the slope ratio of Fig 6, against exact
answers."""

import numpy as np
import pytest
import torch

from seatbelt import claims
from seatbelt.gaussian import kl
from seatbelt.heldout import active_units, per_image, ratio_of_slopes, slope, unit_kl
from seatbelt.models import ModelConfig, build_model


def _model(latent=(3, 2)):
    torch.manual_seed(0)
    config = ModelConfig(
        kind="seatbelt" if len(latent) > 1 else "vae",
        latent_sizes=latent,
        hidden_sizes=(8,) * (len(latent) - 1),
        data_shape=(4,),
        net="mlp",
        mlp_hidden=8,
        dataset_size=10,
    )
    return build_model(config).eval()


def _x(n=10):
    return torch.randn(n, 4, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("latent", [(2,), (3, 2), (4, 3, 2)])
def test_per_image_is_the_models_elbo_draw_for_draw(latent):
    """With one draw and the same generator seed, the parts add up to VAE.elbo's own value
    exactly."""
    model, x = _model(latent), _x()
    table = per_image(model, x, samples=1, seed=3, batch_size=4)
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        expected = torch.cat(
            [model.elbo(x[s : s + 4], generator=generator) for s in range(0, len(x), 4)]
        )
    np.testing.assert_allclose(table["elbo"], expected.double().numpy(), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(table["elbo"], table["log_likelihood"] - table["kl"], atol=1e-9)
    layers = [f"kl_{i + 1}" for i in range(len(latent))]
    np.testing.assert_allclose(table[layers].sum(axis=1), table["kl"], atol=1e-9)
    assert list(table["image"]) == list(range(len(x)))


def test_one_layer_unit_kl_is_the_closed_form():
    model, x = _model((2,)), _x()
    units = unit_kl(model, x, samples=3, batch_size=7)
    with torch.no_grad():
        q = model.encode(x).posteriors[0]
    per_unit = 0.5 * (q.mu**2 + q.logvar.exp() - 1 - q.logvar).double().mean(0)
    np.testing.assert_allclose(units["kl"], per_unit.numpy(), rtol=1e-6)
    assert abs(units["kl"].sum() - kl(q.mu, q.logvar).double().mean().item()) < 1e-5


def test_unit_kls_add_up_to_the_layer_terms():
    model, x = _model((4, 3, 2)), _x()
    units = unit_kl(model, x, samples=5, seed=2)
    table = per_image(model, x, samples=5, seed=2)
    by_layer = units.groupby("layer")["kl"].sum()
    for layer in (1, 2, 3):
        assert by_layer[layer] == pytest.approx(table[f"kl_{layer}"].mean(), abs=1e-6)
    summary = active_units(units, threshold=0.0)
    assert list(summary["units"]) == [4, 3, 2]
    assert (active_units(units, threshold=1e9)["active"] == 0).all()


def test_the_model_mode_is_restored_and_bad_input_raises():
    model = _model()
    model.train()
    per_image(model, _x(), samples=1)
    assert model.training
    with pytest.raises(ValueError, match="items of shape"):
        per_image(model, torch.zeros(3, 5))
    with pytest.raises(ValueError, match="samples and batch_size"):
        unit_kl(model, _x(), samples=0)
    with pytest.raises(ValueError, match="threshold"):
        active_units(unit_kl(model, _x(), samples=1), threshold=-1)


def test_slope_of_exact_lines():
    betas = [1, 2, 4, 8]
    t = np.log2(betas)
    values = np.stack([5 - 3 * t, 1 + 0.5 * t])
    np.testing.assert_allclose(slope(values, betas), [-3, 0.5])
    with pytest.raises(ValueError, match="two distinct positive betas"):
        slope([1.0, 2.0], [1, 1])
    with pytest.raises(ValueError, match="last axis"):
        slope([1.0, 2.0, 3.0], [1, 2])


def test_ratio_of_slopes_of_exact_lines_and_its_bootstrap():
    """A declines by 1 nat per doubling of beta and B by 4: the ratio is 1/4, and a paired bootstrap
    over images (noise common to an image across models) keeps its interval near it."""
    betas = [1, 4, 8]
    rng = np.random.default_rng(0)
    image_effect = rng.normal(0, 5, size=200)
    t = np.log2(betas)
    a = [image_effect - 1 * ti + rng.normal(0, 0.1, 200) for ti in t]
    b = [image_effect - 4 * ti + rng.normal(0, 0.1, 200) for ti in t]

    def statistic(means):
        return ratio_of_slopes(means, betas)

    assert float(statistic(np.mean([*a, *b], axis=1))) == pytest.approx(0.25, abs=0.01)
    effect = claims.crossed_means(
        "slope ratio", statistic, [*a, *b], null=1.0, direction="less", n_resamples=500
    )
    assert effect.low < 0.25 < effect.high and effect.high < 0.3 and effect.supported
    with pytest.raises(ValueError, match="takes 6 means"):
        statistic(np.mean(a, axis=1))
