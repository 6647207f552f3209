"""C6 and C11 over training seeds: Fig 6's curves and Table 1's CIFAR-10 models again at every
further seed, the figures and the other models at the first only."""

from __future__ import annotations

import pytest

from seatbelt import chapters

SEATBELT = dict(
    betas=[1.0, 2.0, 6.0], tcvae_latents=[64], layers=4, band_layers=[4], celeba_beta=6.0,
    theorem_layers=2, seed=0,
)  # fmt: skip
DOWNSTREAM = dict(beta=10.0, layers=4, n_pairs=8, max_iter=5, seed=0)


@pytest.fixture
def data_present(monkeypatch):
    monkeypatch.setattr(chapters, "data_missing", lambda dataset: None)


def test_c6_trains_figure_6s_curves_at_every_further_seed(data_present):
    models = chapters.seatbelt_models(**SEATBELT, model_seeds=[0, 1, 2])
    assert sorted(models.curve_seeds) == [1, 2]
    for s, (seatbelts, tcvaes) in models.curve_seeds.items():
        assert [(p.family, p.beta, p.layers, p.seed) for p in seatbelts] == [
            ("seatbelt", b, 4, s) for b in (1.0, 2.0, 6.0)
        ]
        assert [(p.family, p.beta, p.latent, p.seed) for p in tcvaes] == [
            ("beta-tcvae", b, 64, s) for b in (1.0, 2.0, 6.0)
        ]
    first_only = [*models.seatbelts, models.chain, *models.celeba, models.theorem]
    assert all(p.seed == 0 for p in first_only)
    assert len(models.needs.models) == len(set(models.needs.models))
    one = chapters.seatbelt_models(**SEATBELT, model_seeds=[0])
    assert one.curve_seeds == {} and set(one.needs.models) < set(models.needs.models)


def test_the_first_model_seed_trains_every_seatbelt_chapter_model(data_present):
    models = chapters.seatbelt_models(**SEATBELT, model_seeds=[3, 0])
    assert {p.seed for p in [*models.seatbelts, models.chain, models.theorem]} == {3}
    assert list(models.curve_seeds) == [0]
    # no model_seeds: the page's seed trains every model, as before seeds were a parameter
    assert chapters.seatbelt_models(**SEATBELT).curve_seeds == {}


def test_c11_attacks_table_1s_models_at_every_further_seed_on_the_same_pairs(monkeypatch):
    monkeypatch.setattr(chapters, "data_missing", lambda dataset: "no files")  # SVHN left out
    plan = chapters.downstream_plan(**DOWNSTREAM, model_seeds=[0, 1, 2])
    assert list(plan.models) == ["cifar10"] and sorted(plan.seed_batteries) == [1, 2]
    first = plan.batteries["cifar10"]
    for s, requests in plan.seed_batteries.items():
        assert [(r.point.family, r.point.seed) for r in requests] == [
            (f, s) for f in ("vae", "beta-tcvae", "seatbelt")
        ]
        # the same protocol (pairs drawn with the page's seed), only the models differ
        assert [r.protocol for r in requests] == [r.protocol for r in first]
    assert len(plan.needs.models) == 9 and len(plan.needs.batteries) == 9
    assert chapters.downstream_plan(**DOWNSTREAM).seed_batteries == {}


@pytest.mark.parametrize("name", ["seatbelt", "downstream"])
def test_repeated_model_seeds_are_refused(name):
    settings = dict(
        seatbelt=dict(betas=[1.0, 6.0], tcvae_latents=[10], layers=4),
        downstream=dict(profile="smoke", beta=10.0, layers=4, classifier_images=10),
    )[name]
    with pytest.raises(ValueError, match="distinct training seeds"):
        chapters.validate(name, **settings, model_seeds=[0, 0])
