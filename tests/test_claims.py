"""Claim checks: interval coverage on data with a known answer, the verdict logic, the records."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from seatbelt import claims
from seatbelt.claims import ClaimCheck, Effect, measure, ratio_of_medians


def coverage(level: float, paired: bool, reps: int = 300, n: int = 60) -> float:
    """How often the interval of median(b) / median(a) covers the true exp(0.5)."""
    rng = np.random.default_rng(12345)
    truth = math.exp(0.5)
    hits = 0
    for r in range(reps):
        a = rng.lognormal(1.0, 1.0, n)
        # paired: b's marginal is lognormal(1.5, sqrt(1.09)), median e^1.5, correlated with a
        b = a * np.exp(0.5 + 0.3 * rng.standard_normal(n)) if paired else rng.lognormal(1.5, 1.0, n)
        e = measure(
            "ratio",
            ratio_of_medians,
            (b, a),
            null=1,
            direction="greater",
            paired=paired,
            level=level,
            n_resamples=1000,
            seed=r,
        )
        hits += e.low <= truth <= e.high
    return hits / reps


@pytest.mark.parametrize("paired", [False, True])
def test_the_95_interval_covers_the_truth_at_about_the_nominal_rate(paired):
    # 300 replications: binomial sd 0.013 around 0.95, plus the bootstrap's own small-sample
    # error for medians at n = 60 (measured here: 0.967 independent, 0.937 paired). The bounds
    # catch a wrong level or a broken resampling, not a 90% interval (0.92 here): the next test
    # shows they are not vacuous.
    assert 0.91 <= coverage(0.95, paired) <= 0.99


def test_the_level_is_honoured():
    assert 0.40 <= coverage(0.5, paired=False, reps=200) <= 0.60


def test_the_statistics_are_vectorised_over_the_last_axis():
    a, b = (
        np.array([[1.0, 2.0, 9.0], [4.0, 4.0, 4.0]]),
        np.array([[1.0, 1.0, 1.0], [2.0, 3.0, 8.0]]),
    )
    assert ratio_of_medians(a, b).tolist() == [2.0, 4 / 3]


@pytest.mark.parametrize("scale, n", [("ratio", 5), ("ratio", 10), ("difference", 5)])
def test_the_paired_t_interval_holds_its_level_with_few_units(scale, n):
    # Normal per-unit differences: the t interval is exact, so 2000 replications (sd 0.005) must
    # land near 0.95; a normal quantile in place of t's would cover about 0.88 at n = 5.
    rng = np.random.default_rng(7)
    hits = 0
    for _ in range(2000):
        a = rng.lognormal(1.0, 1.0, n)
        if scale == "ratio":
            b, truth = a * np.exp(0.5 + 0.3 * rng.standard_normal(n)), math.exp(0.5)
        else:
            b, truth = a + 2.0 + rng.standard_normal(n), 2.0
        e = claims.paired_comparison("e", b, a, scale=scale, null=0, direction="greater")
        hits += e.low <= truth <= e.high
    assert 0.935 <= hits / 2000 <= 0.965


def test_paired_comparison_known_answer_and_refusals():
    e = claims.paired_comparison(
        "e", [2.0, 8.0], [1.0, 2.0], scale="ratio", null=1, direction="greater"
    )
    assert (
        e.estimate == pytest.approx(math.sqrt(2 * 4))
        and e.n == 2
        and e.method == "paired t (log ratio)"
    )
    e = claims.paired_comparison(
        "e", [3.0, 5.0, 7.0], [1.0, 2.0, 3.0], scale="difference", null=0, direction="greater"
    )
    assert e.estimate == pytest.approx(3.0) and e.low < 3.0 < e.high
    with pytest.raises(ValueError, match="positive"):
        claims.paired_comparison(
            "e", [1.0, -1.0], [1.0, 1.0], scale="ratio", null=1, direction="greater"
        )
    with pytest.raises(ValueError, match="equal size"):
        claims.paired_comparison(
            "e", [1.0, 2.0], [1.0], scale="difference", null=0, direction="greater"
        )


def test_constant_data_give_a_point_interval():
    e = measure("median", claims.median, (np.full(20, 3.0),), null=1, direction="greater")
    assert (e.estimate, e.low, e.high) == (3.0, 3.0, 3.0) and e.supported


def test_the_same_seed_gives_the_same_interval():
    x = np.random.default_rng(0).normal(size=50)
    assert measure("m", claims.median, (x,), null=0, direction="greater", seed=3) == measure(
        "m", claims.median, (x,), null=0, direction="greater", seed=3
    )


@pytest.mark.parametrize(
    "samples, paired, message",
    [
        ((np.array([1.0, np.nan, 2.0]),), False, "NaN or inf"),
        ((np.ones(5), np.ones(6)), True, "equal sizes"),
        ((np.ones(1),), False, "at least 2 values"),
    ],
)
def test_bad_samples_are_refused(samples, paired, message):
    stat = ratio_of_medians if len(samples) == 2 else claims.median
    with pytest.raises(ValueError, match=message):
        measure("m", stat, samples, null=0, direction="greater", paired=paired)


def effect(low, high, direction="greater", null=1.0, margin=0.0):
    return Effect(
        "e", (low + high) / 2, low, high, null=null, direction=direction, margin=margin, n=10
    )


@pytest.mark.parametrize(
    "e, status",
    [
        (effect(1.1, 2.0), "held"),
        (effect(0.9, 2.0), "inconclusive"),  # covers the null: not shown either way
        (effect(0.5, 0.8), "contradicted"),  # all of it on the other side
        (effect(0.95, 2.0, margin=0.1), "held"),  # "at least as large", within the margin
        (effect(0.5, 0.85, margin=0.1), "contradicted"),  # below even the margin
        (effect(0.2, 0.9, "less"), "held"),
        (effect(0.2, 1.1, "less"), "inconclusive"),
        (effect(1.2, 1.5, "less"), "contradicted"),
        (effect(-0.05, 0.08, "within", 0.0, 0.1), "held"),
        (effect(-0.05, 0.2, "within", 0.0, 0.1), "inconclusive"),
        (effect(0.15, 0.2, "within", 0.0, 0.1), "contradicted"),  # outside the equivalence band
        (effect(float("nan"), float("nan")), "inconclusive"),
        (effect(1.1, float("inf")), "inconclusive"),
    ],
)
def test_the_status_says_where_the_whole_interval_lies(e, status):
    assert e.supported is (status == "held")
    assert e.contradicted is (status == "contradicted")
    assert ClaimCheck("C3", e).status == status


def test_a_stated_reason_puts_a_claim_out_of_reach_whatever_its_interval():
    check = ClaimCheck("C9", effect(1.1, 2.0), out_of_reach="needs 17 models, has 4")
    assert check.status == "out of reach"
    assert "out of reach: needs 17 models" in claims.reach(check, claims.CLAIMS["C9"])


def test_effects_are_checked_on_creation():
    with pytest.raises(ValueError, match="direction"):
        effect(1, 2, direction="up")
    with pytest.raises(ValueError, match="margin"):
        effect(-1, 1, direction="within", null=0)
    with pytest.raises(ValueError, match="low"):
        effect(2, 1)
    with pytest.raises(ValueError, match="Unknown claim 'C99'"):
        ClaimCheck("C99", effect(1, 2))


def test_the_registry_holds_the_thirteen_claims_in_order():
    assert list(claims.PAPER_CLAIMS) == [f"C{i}" for i in range(1, 14)]
    assert list(claims.CLAIMS)[:13] == list(claims.PAPER_CLAIMS)
    assert all(c.statement and c.paper for c in claims.CLAIMS.values())


def test_checks_round_trip_through_json_and_fill_the_scorecard(tmp_path):
    check = ClaimCheck(
        "C3",
        effect(1.2, 3.0),
        context=(effect(0.5, 0.7, "less", 1.0),),
        chapter="intro",
        profile="smoke",
    )
    path = check.save(tmp_path)
    assert path == tmp_path / "claims" / "C3.json"
    ClaimCheck("C12", effect(-0.1, 0.1, "within", 0.0, 1e-3)).save(tmp_path)
    loaded = claims.load_checks(tmp_path)
    assert loaded["C3"] == check
    table = claims.scorecard(loaded)
    assert list(table["claim"]) == list(claims.CLAIMS)
    status = dict(zip(table["claim"], table["status"]))
    assert status["C3"] == "held" and status["C12"] == "inconclusive"
    assert [s for c, s in status.items() if c not in ("C3", "C12")] == ["not run"] * (
        len(claims.CLAIMS) - 2
    )
    assert "claim > 1" in table.set_index("claim").loc["C3", "measured"]


def test_no_checks_means_every_claim_is_not_run(tmp_path):
    assert set(claims.scorecard(claims.load_checks(tmp_path / "absent"))["status"]) == {"not run"}


def test_a_misnamed_or_old_check_is_refused(tmp_path):
    ClaimCheck("C3", effect(1.2, 3.0)).save(tmp_path)
    (tmp_path / "claims" / "C3.json").rename(tmp_path / "claims" / "C4.json")
    with pytest.raises(ValueError, match="holds claim C3"):
        claims.load_checks(tmp_path)
    record = json.loads((tmp_path / "claims" / "C4.json").read_text())
    (tmp_path / "claims" / "C4.json").write_text(json.dumps({**record, "schema": 0}))
    with pytest.raises(ValueError, match="schema"):
        claims.load_checks(tmp_path)


def test_slope_comparison_known_answer_and_refusals():
    x = [1.0, 2.0, 6.0]
    # unit i: a = (2 + i) x + noise-free offsets, b = 0.5 x + i: slope differences 1.5, 2.5, 3.5
    a = np.array([[(2 + i) * v + 7 * i for v in x] for i in range(3)])
    b = np.array([[0.5 * v + i for v in x] for i in range(3)])
    e = claims.slope_comparison("e", x, a, b)
    assert e.estimate == pytest.approx(2.5) and e.n == 3
    half = stats.t.ppf(0.975, 2) * 1.0 / np.sqrt(3)  # the differences' sd is 1
    assert (e.low, e.high) == (pytest.approx(2.5 - half), pytest.approx(2.5 + half))
    assert e.supported and not claims.slope_comparison("e", x, b, a).supported
    with pytest.raises(ValueError, match="one column per x"):
        claims.slope_comparison("e", x, a[:, :2], b)
    with pytest.raises(ValueError, match="two distinct x"):
        claims.slope_comparison("e", [1.0, 1.0, 1.0], a, b)


def test_the_scorecard_links_a_claim_to_the_section_that_measured_it(tmp_path):
    ClaimCheck("C3", effect(1.2, 3.0), chapter="intro", section="claim-c3").save(tmp_path)
    ClaimCheck("C12", effect(-0.1, 0.1, "within", 0.0, 1e-3), chapter="theorem").save(tmp_path)
    old = json.loads((tmp_path / "claims" / "C12.json").read_text())
    del old["section"]  # a check written before sections existed still loads
    (tmp_path / "claims" / "C12.json").write_text(json.dumps(old))
    links = claims.scorecard(claims.load_checks(tmp_path)).set_index("claim")["link"]
    assert (links["C3"], links["C12"], links["C1"]) == ("intro.html#claim-c3", "theorem.html", "")


def test_a_claim_whose_premise_fails_is_inconclusive(tmp_path):
    ratio = claims.Effect("slope ratio", 0.5, 0.3, 0.7, null=1.0, direction="less")
    premise = claims.Effect("reference slope", 0.2, 0.1, 0.3, null=0.0, direction="less")
    assert claims.ClaimCheck("C6", ratio).status == "held"
    check = claims.ClaimCheck("C6", ratio, requires=(premise,))
    assert check.status == "inconclusive"
    check.save(tmp_path)
    assert claims.load_checks(tmp_path)["C6"].status == "inconclusive"
    wrong_side = claims.Effect("slope ratio", 1.5, 1.3, 1.7, null=1.0, direction="less")
    assert claims.ClaimCheck("C6", wrong_side, requires=(premise,)).status == "inconclusive"
    assert claims.ClaimCheck("C6", wrong_side).status == "contradicted"


def test_the_scorecard_says_how_far_each_verdict_reaches(tmp_path):
    ClaimCheck(
        "C3",
        effect(1.2, 3.0),
        dataset="dsprites",
        seeds=3,
        training_images=307_200,
        paper_training_images=30_720_000,
    ).save(tmp_path)
    ClaimCheck("C12", effect(-0.1, 0.1, "within", 0.0, 0.2)).save(tmp_path)
    table = claims.scorecard(claims.load_checks(tmp_path)).set_index("claim")
    assert table.loc["C12", "kind"] == "identity"
    assert set(table.drop(index="C12")["kind"]) == {"empirical"}
    c3 = table.loc["C3"]
    assert (c3["seeds"], c3["training_images"], c3["paper_training_images"]) == (
        3,
        307_200,
        30_720_000,
    )
    assert c3["dataset"] == "dsprites (paper: dSprites, Chairs, 3D Faces)"
    assert "3 seeds" in c3["reach"] and "1% of the paper profile's" in c3["reach"]
    assert (c3["estimate"], c3["low"], c3["high"], c3["null"]) == (2.1, 1.2, 3.0, 1.0)
    assert set(table["status"]) <= set(claims.STATUSES)
    with pytest.raises(ValueError, match="seeds"):
        ClaimCheck("C3", effect(1.2, 3.0), seeds=0)


def test_cluster_weights_resample_units_with_their_rows():
    frame = pd.DataFrame(
        {"seed": np.repeat([0, 1, 2], 8), "pair": np.tile(np.repeat([0, 1, 2, 3], 2), 3)}
    )
    weights = claims.cluster_weights(frame, ["seed", "pair"], 3000, np.random.default_rng(0))
    assert weights.shape == (3000, 24)
    assert (weights[:, ::2] == weights[:, 1::2]).all()  # a pair's rows move together
    assert np.allclose(weights.sum(axis=1), 24)  # balanced: every resample is full size
    assert np.allclose(weights.mean(axis=0), 1, atol=0.05)  # each row drawn once on average
    per_seed = weights.reshape(3000, 3, 8).sum(axis=2)
    # a seed drawn c times carries c full resamples of its pairs: 8 c rows' weight
    assert set(np.unique(per_seed)) <= {0.0, 8.0, 16.0, 24.0}
    with pytest.raises(ValueError, match="no column"):
        claims.cluster_weights(frame, ["model"], 10, np.random.default_rng(0))


def test_the_pair_bootstrap_covers_where_a_trial_bootstrap_does_not():
    """Pairs whose trials are nearly one value (a pair's large-lambda trials are its KL0): the
    interval that resamples pairs keeps its level; resampling trials as independent does not."""
    rng = np.random.default_rng(3)
    n_pairs, n_lambdas, covered, covered_trials = 10, 12, 0, 0
    for _ in range(100):
        pair_level = rng.lognormal(0.0, 1.0, size=(2, n_pairs))  # pair i of each arm
        values = pair_level[:, :, None] * rng.lognormal(0, 0.05, size=(2, n_pairs, n_lambdas))
        frame = pd.DataFrame(
            {
                "delta": values.ravel(),
                "arm": np.repeat([True, False], n_pairs * n_lambdas),
                "pair": np.tile(np.repeat(np.arange(n_pairs), n_lambdas), 2),
                "seed": 0,
            }
        )
        truth = 1.0  # both arms draw their pairs from one distribution
        paired = claims.ratio_of_pooled_means(
            "r", frame, "delta", frame["arm"].to_numpy(), levels=("pair",), n_resamples=1000
        )
        trials = claims.measure(
            "r",
            lambda a, b, axis=-1: np.mean(a, axis=axis) / np.mean(b, axis=axis),
            (frame.loc[frame["arm"], "delta"], frame.loc[~frame["arm"], "delta"]),
            null=1.0,
            direction="greater",
            n_resamples=500,
        )
        covered += paired.low <= truth <= paired.high
        covered_trials += trials.low <= truth <= trials.high
    assert covered >= 85  # percentile bootstrap with 10 pairs: near its level
    assert covered_trials <= 60  # the trial-level interval is far too narrow


def test_the_reach_summary_counts_statuses_and_says_what_stands_in(tmp_path):
    ClaimCheck(
        "C3",
        effect(1.2, 3.0),
        dataset="dsprites",
        seeds=3,
        training_images=300,
        paper_training_images=30_000,
    ).save(tmp_path)
    ClaimCheck(
        "C5",
        effect(0.5, 0.8),
        dataset="dsprites",
        training_images=300,
        paper_training_images=30_000,
    ).save(tmp_path)
    table = claims.scorecard(claims.load_checks(tmp_path))
    assert list(table.set_index("claim").loc[["C3", "C5"], "on_paper_data"]) == [True, False]
    text = claims.reach_summary(table)
    assert text.startswith(
        f"1 held, 1 contradicted, {len(claims.CLAIMS) - 2} not run of {len(claims.CLAIMS)} claims."
    )
    assert "saw 1% of the training images" in text
    assert "C3 rests on several training seeds" in text
    assert "C5 is measured on datasets other than the paper's" in text


def test_seeds_widen_a_paired_comparison_to_what_varies_between_training_runs():
    rng = np.random.default_rng(0)
    index = pd.MultiIndex.from_product([[0, 1, 2], range(10)], names=["seed", "pair"])
    shift = np.repeat([0.0, 1.0, 2.0], 10)  # each seed's models move every pair together
    a = pd.Series(5 + shift + rng.normal(0, 0.05, 30), index=index)
    b = pd.Series(np.full(30, 5.0) + rng.normal(0, 0.05, 30), index=index)
    clustered = claims.paired_comparison(
        "d", a, b, scale="difference", null=0.0, direction="greater"
    )
    units = claims.paired_comparison(
        "d", a.to_numpy(), b.to_numpy(), scale="difference", null=0.0, direction="greater"
    )
    assert clustered.estimate == pytest.approx(units.estimate)
    assert "3 seeds" in clustered.method and units.method == "paired t (difference)"
    # the seeds' spread (0, 1, 2) dominates: pairs alone would claim a far narrower interval
    assert clustered.high - clustered.low > 2.5 * (units.high - units.low)
    one_seed = claims.paired_comparison(
        "d", a.loc[[0]], b.loc[[0]], scale="difference", null=0.0, direction="greater"
    )
    assert one_seed.method == "paired t (difference)"
    with pytest.raises(ValueError, match="same index"):
        claims.paired_comparison(
            "d", a, b.iloc[::-1], scale="difference", null=0.0, direction="greater"
        )


def test_crossed_weights_multiply_the_levels_counts():
    frame = pd.DataFrame({"seed": np.repeat([0, 1], 3), "pair": np.tile([0, 1, 2], 2)})
    rng = np.random.default_rng(0)
    weights = claims.cluster_weights(frame, ["seed", "pair"], 500, rng, crossed=True)
    seeds = weights.reshape(500, 2, 3)
    # each resample is an outer product: a seed count times a pair count
    for w in seeds[:20]:
        assert np.linalg.matrix_rank(w) <= 1
    assert np.allclose(weights.mean(axis=0), 1, atol=0.15)


def test_crossed_means_spans_the_seeds_where_images_alone_would_not():
    """Two arms on the same 200 images at three seeds: arm A's mean is 1, 2 or 3 by seed, B's 4,
    and each image moves both arms alike. The ratio of the pooled means is 0.5; resampling the
    seeds puts the interval over the seeds' own ratios (1/4 to 3/4), and the images alone give an
    interval near 0.5 that a one-row (seed-blind) call reproduces."""
    rng = np.random.default_rng(0)
    image = rng.normal(0, 0.5, 200)
    a = np.stack([level + image + rng.normal(0, 0.01, 200) for level in (1.0, 2.0, 3.0)])
    b = np.stack([4.0 + image + rng.normal(0, 0.01, 200) for _ in range(3)])

    def ratio(means):
        return means[..., 0] / means[..., 1]

    seeds = claims.crossed_means("A / B", ratio, [a, b], null=1.0, direction="less")
    assert seeds.estimate == pytest.approx(0.5, abs=0.01) and seeds.n == 200
    assert "3 seeds" in seeds.method and seeds.supported
    assert seeds.low <= 0.34 and seeds.high >= 0.66  # resampled seed means: 1 1/3 and 2 2/3
    pooled = claims.crossed_means(
        "A / B", ratio, [a.mean(0), b.mean(0)], null=1.0, direction="less"
    )
    assert pooled.method == "percentile bootstrap over the units"
    assert 0.45 < pooled.low < pooled.estimate < pooled.high < 0.55
    # the arms share every draw: identical arms give a ratio of exactly 1 in every resample
    same = claims.crossed_means("A / A", ratio, [a, a], null=1.0, direction="less")
    assert same.low == same.high == 1.0


def test_crossed_means_refuses_ragged_or_missing_values():
    def first(means):
        return means[..., 0]

    with pytest.raises(ValueError, match="same shape"):
        claims.crossed_means(
            "x", first, [np.ones((2, 5)), np.ones((2, 4))], null=0, direction="less"
        )
    with pytest.raises(ValueError, match="NaN"):
        claims.crossed_means("x", first, [np.full((2, 5), np.nan)], null=0, direction="less")


def test_all_of_holds_only_when_every_effect_does():
    def effect(low, high):
        return claims.Effect("e", (low + high) / 2, low, high, null=0.0, direction="greater")

    held, open_, against = effect(1, 2), effect(-1, 1), effect(-2, -1)
    assert claims.ClaimCheck("N2", **claims.all_of([held, held])).status == "held"
    kwargs = claims.all_of([held, open_])
    assert kwargs["effect"] is open_ and claims.ClaimCheck("N2", **kwargs).status == "inconclusive"
    kwargs = claims.all_of([open_, against, held])  # one contradicted comparison decides
    assert kwargs["effect"] is against and kwargs["context"] == (open_, held)
    assert claims.ClaimCheck("N2", **kwargs).status == "contradicted"
    with pytest.raises(ValueError):
        claims.all_of([])
