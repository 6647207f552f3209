"""The chapters' page helpers (seatbelt.page) and the parameter checks and data checks of
seatbelt.chapters, against known answers."""

from __future__ import annotations

import math

import pytest

from seatbelt import chapters, page
from seatbelt.claims import Effect


def effect(estimate, low, high, null=1.0, name="made up"):
    return Effect(name, estimate, low, high, null=null, direction="greater", n=5)


ROSE = effect(4.3, 3.9, 4.9)
FELL = effect(-2.1, -3.04, -1.2, null=0.0)
STRADDLES = effect(1.02, 0.91, 1.15)


@pytest.fixture
def glued(monkeypatch):
    """What the page glued, by name (myst_nb's glue replaced by a dict)."""
    store = {}
    monkeypatch.setattr(page, "_glue", store.__setitem__)
    return store


@pytest.mark.parametrize(
    "e, word", [(ROSE, "rose"), (FELL, "fell"), (STRADDLES, "did not move detectably")]
)
def test_the_trend_is_where_the_interval_lies_against_the_null(e, word):
    assert page.direction(e) == word
    assert page.direction(e, up="better", down="worse", flat="no different") == {
        "rose": "better",
        "fell": "worse",
    }.get(word, "no different")


def test_an_interval_touching_the_null_has_not_moved():
    assert page.direction(effect(1.5, 1.0, 2.0)) == "did not move detectably"
    assert page.direction(effect(-1.0, -2.0, 0.0, null=0.0)) == "did not move detectably"


def test_an_effect_reads_as_one_string():
    assert page.effect_text(ROSE, kind="ratio") == "rose 4.3× [3.9, 4.9]"
    assert page.effect_text(FELL, kind="difference", unit="nats") == "fell -2.1 nats [-3.04, -1.2]"
    assert (
        page.effect_text(STRADDLES, kind="ratio") == "did not move detectably (1.02× [0.91, 1.15])"
    )
    assert page.effect_text(FELL, fmt=".1f", trend=False) == "-2.1 [-3.0, -1.2]"
    assert page.effect_text(FELL, fmt="+.2f", trend=("up", "down", "flat")) == (
        "down -2.10 [-3.04, -1.20]"
    )
    assert page.effect_text(ROSE, fmt=",.0f", unit="nats", trend=False) == "4 nats [4, 5]"
    with pytest.raises(ValueError, match="kind must be one of"):
        page.effect_text(ROSE, kind="factor")


def test_effects_are_glued_as_their_strings(glued):
    assert page.glue_effect("raw", ROSE, kind="ratio") == "rose 4.3× [3.9, 4.9]"
    page.glue_effects({"a": FELL, "b": STRADDLES}, trend=False, fmt=".2g")
    page.glue_effect("c", STRADDLES, trend=("better", "worse", "no different"), fmt=".2f")
    assert glued == {
        "raw": "rose 4.3× [3.9, 4.9]",
        "a": "-2.1 [-3, -1.2]",
        "b": "1 [0.91, 1.1]",
        "c": "no different (1.02 [0.91, 1.15])",
    }


def test_many_values_are_glued_at_once(glued):
    page.glue_values({"n_test_dsprites": "500"}, profile="smoke", n_pairs=5)
    assert glued == {"n_test_dsprites": "500", "profile": "smoke", "n_pairs": 5}


def test_a_listing_joins_with_commas_and_a_last_and():
    assert page.listing([10]) == "10"
    assert page.listing(["1", "6"]) == "1 and 6"
    assert page.listing(f"{b:g}" for b in (1.0, 2.0, 6.0)) == "1, 2 and 6"
    assert page.listing(["a", "b"], "or") == "a or b"
    with pytest.raises(ValueError):
        page.listing([])


def test_a_power_range_is_page_maths():
    assert page.power_range(-20.0, 20.0) == "$2^{-20}$ to $2^{20}$"
    assert page.power_range(-2.5, 3, base=10) == "$10^{-2.5}$ to $10^{3}$"
    assert page.maths("$x$").data == "$x$"


def test_an_effect_table_has_a_row_per_effect_and_the_columns_asked_for():
    table = page.effect_table([ROSE, FELL], "claim", "held", "n")
    assert list(table.columns) == ["effect", "estimate", "low", "high", "claim", "held", "n"]
    assert table["estimate"].tolist() == [4.3, -2.1]
    assert table["claim"].tolist() == ["> 1", "> 0"] and table["held"].tolist() == [True, False]
    assert list(page.effect_table([]).columns) == ["effect", "estimate", "low", "high"]
    with pytest.raises(ValueError, match="unknown effect columns"):
        page.effect_table([ROSE], "verdict")


def test_seed_reach_says_whether_an_interval_covers_training_runs():
    several = page.seed_reach([1.18, 1.34, 1.25], "the ratio")
    assert several == (
        "3 training seeds crossed with the images; seed by seed the ratio runs from 1.18 to 1.34"
    )
    assert page.seed_reach([0.02, -0.03], "the difference", fmt="+.3f").endswith(
        "from -0.030 to +0.020"
    )
    for one in ([], [0.5]):
        assert page.seed_reach(one, "the ratio", per="point") == (
            "the images of one trained model per point: not the variation between training runs"
        )


def test_setup_makes_the_results_folder_and_times_the_page(tmp_path, glued):
    chapter = page.setup(tmp_path / "results", "intro", theme=False)
    assert chapter.out == tmp_path / "results" / "intro" and chapter.out.is_dir()
    assert 0 <= chapter.minutes() < 1
    assert chapter.glue_minutes() is None  # a cell ending with it shows nothing
    assert 0 <= glued["minutes"] < 1


def test_missing_data_is_one_line_without_the_machines_paths(tmp_path, monkeypatch):
    root = tmp_path / "data"
    monkeypatch.setenv("SEATBELT_DATA", str(root))
    monkeypatch.setattr(
        chapters,
        "dataset_missing",
        lambda name, split=None: (
            None
            if name != "svhn"
            else f"SVHN {split} split not found: need it in\n {root / 'svhn'}."
        ),
    )
    assert page.not_run("dsprites", "cifar10") is None
    assert page.not_run("dsprites", "svhn") == (
        "not run: data missing — SVHN train split not found: need it in $SEATBELT_DATA/svhn."
    )
    assert chapters.data_missing("svhn") == (
        "SVHN train split not found: need it in $SEATBELT_DATA/svhn."
    )


def test_a_section_glues_its_not_run_line_or_nothing(monkeypatch, glued):
    monkeypatch.setattr(
        chapters,
        "dataset_missing",
        lambda name, split=None: "CelebA not found." if name == "celeba" else None,
    )
    assert page.glue_not_run("roll_note", "swissroll", placeholders=["x"]) is True
    assert glued == {"roll_note": ""}
    assert page.glue_not_run("faces_note", "celeba", placeholders=["x"]) is False
    assert glued["faces_note"] == "not run: data missing — CelebA not found."
    assert math.isnan(glued.pop("x"))
    page.glue_not_run("c1_note", "celeba", placeholders={"c1_status": "not run"})
    assert glued["c1_status"] == "not run"


def test_table_1_leaves_out_a_dataset_whose_files_are_missing(monkeypatch):
    settings = dict(beta=10.0, layers=4, n_pairs=8, max_iter=5, seed=0)
    monkeypatch.setattr(chapters, "dataset_missing", lambda name, split=None: None)
    both = chapters.downstream_plan(**settings)
    assert list(both.models) == ["cifar10", "svhn"] and not both.missing
    assert [p.family for p in both.models["svhn"]] == ["vae", "beta-tcvae", "seatbelt"]
    assert [b.point for b in both.batteries["svhn"]] == both.models["svhn"]
    assert len(both.needs.models) == 6 and len(both.needs.batteries) == 6
    monkeypatch.setattr(
        chapters,
        "dataset_missing",
        lambda name, split=None: "SVHN not found." if name == "svhn" else None,
    )
    one = chapters.downstream_plan(**settings)
    assert list(one.models) == ["cifar10"] and one.missing == {"svhn": "SVHN not found."}
    assert one.models["cifar10"] == both.models["cifar10"]


@pytest.mark.parametrize(
    "name, parameters, message",
    [
        ("intro", dict(beta_tc=1.0), "beta_tc=1.0"),
        (
            "layerwise",
            dict(betas=[1.0, 6.0], depths=[4], depth=1, c5_factor=10.0, c7_margin=0.05),
            "depth=1",
        ),
        (
            "layerwise",
            dict(betas=[1.0, 6.0], depths=[4], depth=4, c5_factor=10.0, c7_margin=1.5),
            "c7_margin=1.5",
        ),
        (
            "denoising",
            dict(betas_tc=[2.0, 6.0], betas_seatbelt=[1.0, 6.0], scales=[0.1]),
            "betas_tc=\\[2.0, 6.0\\]",
        ),
        (
            "denoising",
            dict(betas_tc=[1.0, 6.0], betas_seatbelt=[1.0, 6.0], scales=[0.0, 0.1]),
            "scales=",
        ),
        (
            "downstream",
            dict(profile="smoke", beta=10.0, layers=4, classifier_images=10**9),
            "classifier_images=",
        ),
        ("downstream", dict(profile="smoke", beta=1.0, layers=4, classifier_images=10), "beta=1.0"),
        ("overlap", dict(curve_betas=[2.0, 8.0], model_seeds=[0]), "curve_betas="),
        ("seatbelt", dict(betas=[1.0], tcvae_latents=[10], layers=4), "betas=\\[1.0\\]"),
    ],
)
def test_a_chapter_refuses_the_parameter_it_cannot_run_with(name, parameters, message):
    with pytest.raises(ValueError, match=message):
        chapters.validate(name, **parameters, unrelated="ignored")


def test_the_needs_of_a_chapter_are_validated_first():
    with pytest.raises(ValueError, match="beta_tc=0.5"):
        chapters.needs(
            "intro",
            beta_tc=0.5,
            latent_size=10,
            seed=0,
            n_pairs=2,
            n_lambdas=2,
            log2_lambda_min=-1.0,
            log2_lambda_max=1.0,
            max_iter=5,
        )
    chapters.validate("scorecard", anything=1)  # no check registered: nothing to refuse
