"""Claim checks: interval coverage on data with a known answer, the verdict logic, the records."""

from __future__ import annotations

import json
import math

import numpy as np
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
    "e, supported",
    [
        (effect(1.1, 2.0), True),
        (effect(0.9, 2.0), False),  # covers the null: not shown
        (effect(0.5, 0.8), False),  # the opposite
        (effect(0.95, 2.0, margin=0.1), True),  # "at least as large", within the margin
        (effect(0.2, 0.9, "less"), True),
        (effect(0.2, 1.1, "less"), False),
        (effect(-0.05, 0.08, "within", 0.0, 0.1), True),
        (effect(-0.05, 0.2, "within", 0.0, 0.1), False),
        (effect(float("nan"), float("nan")), False),
        (effect(1.1, float("inf")), False),
    ],
)
def test_a_claim_is_supported_only_when_the_whole_interval_is_where_it_predicts(e, supported):
    assert e.supported is supported
    assert ClaimCheck("C3", e).status == ("held" if supported else "not held")


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
    assert list(claims.CLAIMS) == [f"C{i}" for i in range(1, 14)]
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
    assert status["C3"] == "held" and status["C12"] == "not held"
    assert [s for c, s in status.items() if c not in ("C3", "C12")] == ["not run"] * 11
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


def test_a_claim_whose_premise_fails_is_not_held(tmp_path):
    ratio = claims.Effect("slope ratio", 0.5, 0.3, 0.7, null=1.0, direction="less")
    premise = claims.Effect("reference slope", 0.2, 0.1, 0.3, null=0.0, direction="less")
    assert claims.ClaimCheck("C6", ratio).status == "held"
    check = claims.ClaimCheck("C6", ratio, requires=(premise,))
    assert check.status == "not held"
    check.save(tmp_path)
    assert claims.load_checks(tmp_path)["C6"].status == "not held"
