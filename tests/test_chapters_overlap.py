"""The overlap chapter's models: C1's CelebA pair at every seed, the figures at the first."""

from __future__ import annotations

import pytest

from seatbelt import chapters

PARAMS = dict(
    swiss_betas=[8.0], celeba_beta=10.0, curve_dataset="swissroll", curve_betas=[1.0, 8.0]
)


@pytest.fixture
def celeba_present(monkeypatch):
    monkeypatch.setattr(chapters, "data_missing", lambda dataset: None)


def test_c1_compares_the_celeba_pair_at_every_seed(celeba_present):
    models = chapters.overlap_models(**PARAMS, model_seeds=[0, 1, 2])
    assert {(p.family, p.seed) for p in models.celeba} == {
        ("vae", 0),
        ("beta-vae", 0),
        ("beta-tcvae", 0),
    }
    assert sorted((p.seed, p.family) for p in models.celeba_seeds) == [
        (1, "beta-tcvae"),
        (1, "beta-vae"),
        (2, "beta-tcvae"),
        (2, "beta-vae"),
    ]
    assert all(p.dataset == "celeba" and p.beta == 10.0 for p in models.celeba_seeds)
    assert set(models.celeba_seeds) <= set(models.needs.models)


def test_one_seed_adds_no_celeba_model(celeba_present):
    assert chapters.overlap_models(**PARAMS, model_seeds=[0]).celeba_seeds == []


def test_without_celeba_no_seed_asks_for_it(monkeypatch):
    monkeypatch.setattr(chapters, "data_missing", lambda dataset: "no files")
    models = chapters.overlap_models(**PARAMS, model_seeds=[0, 1])
    assert models.celeba == [] and models.celeba_seeds == []
