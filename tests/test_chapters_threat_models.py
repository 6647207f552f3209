"""Budgeted attacks in the zoo's cache, and the threat_models chapter's parameter checks."""

from __future__ import annotations

import math
from dataclasses import fields, replace

import numpy as np
import pandas as pd
import pytest
import torch

from seatbelt import chapters, similarity, zoo
from seatbelt.attacks import Attack, AttackProtocol
from test_zoo import FAST, tiny  # noqa: F401 (the fixture)

POINT = zoo.Point("beta-tcvae", "dsprites", beta=2)
LINF = Attack("kl", norm="linf", eps=0.2)
PROTOCOL = AttackProtocol(n_pairs=2, n_lambdas=0, attacks=(LINF,), seed=0)


def _request(attack=LINF, **kw):
    protocol = replace(PROTOCOL, attacks=(attack,))
    return zoo.BudgetRequest(POINT, attack, protocol, restarts=2, solver_options=FAST, **kw)


def test_a_budgeted_attack_is_cached_and_comes_back_whole(tiny):  # noqa: F811
    request = _request()
    assert not zoo.budget_is_cached(request, "tiny")
    first = zoo.budgeted(request, "tiny")
    assert zoo.budget_is_cached(request, "tiny") and zoo.attack_is_cached(request, "tiny")
    again = zoo.budgeted(request, "tiny")
    pd.testing.assert_frame_equal(again.frame, first.frame, check_exact=True)
    for name in (f.name for f in fields(first) if f.name not in ("frame", "meta")):
        assert torch.equal(getattr(again, name), getattr(first, name)), name
    assert len(first.frame) == 2 * 2 and set(first.frame["restart"]) == {0, 1}
    assert (first.frame["d_linf"] <= 0.2 + 1e-6).all()
    # the key covers the budget, the restarts and the attack
    assert not zoo.budget_is_cached(_request(Attack("kl", norm="linf", eps=0.1)), "tiny")
    assert not zoo.budget_is_cached(replace(request, restarts=3), "tiny")


def test_an_untargeted_budgeted_attack_has_no_targets(tiny):  # noqa: F811
    attack = Attack("untargeted-recon", norm="l2", eps=1.0)
    results = zoo.budgeted(_request(attack), "tiny")
    assert results.targets.numel() == 0 and (results.frame["target"] == -1).all()
    assert (results.frame["d_l2"] <= 1.0 + 1e-5).all()
    measured = similarity.budget_measures(results)
    assert len(measured) == 2 and measured["ms_ssim_own"].between(0, 1 + 1e-6).all()
    assert measured["reach"].isna().all()


def test_the_plan_prices_and_labels_budgeted_attacks(tiny):  # noqa: F811
    request = _request()
    assert zoo.attack_minutes(request, "tiny") > 0
    assert "linf eps=0.2 x 2 inputs x 2 restarts" in zoo.attack_label(request)
    assert zoo.resolved(request, "tiny").point.latent == 3  # the recipe's default, resolved


def test_a_budget_request_without_a_budget_is_refused():
    with pytest.raises(zoo.ZooError, match="needs a budget"):
        zoo.BudgetRequest(POINT, Attack("kl"), PROTOCOL)
    with pytest.raises(zoo.ZooError, match="restarts"):
        zoo.BudgetRequest(POINT, LINF, PROTOCOL, restarts=0)


GOOD = dict(
    datasets=["dsprites"],
    beta=6.0,
    latent=10,
    layers=4,
    attacks=["kl", "untargeted-recon"],
    budgets=[["linf", 0.1], ["l2", 1.0]],
    decide_budget=["linf", 0.2],
    n_inputs=4,
    restarts=3,
    max_iter=20,
    solver="batched",
    ssim_threshold=0.5,
    seed=0,
)


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(budgets=[["linf", -0.1]]), "finite number >= 0"),
        (dict(budgets=[["linf", math.inf]]), "finite number >= 0"),
        (dict(budgets=[["linf", math.nan]]), "finite number >= 0"),
        (dict(budgets=[["l1", 0.1]]), "unknown norm 'l1'"),
        (dict(budgets=[[0.1]]), "without a norm"),
        (dict(decide_budget=[0.2]), "without a norm"),
        (dict(decide_budget=["l2", 0.2]), "L-infinity"),
        (dict(attacks=["kl", "untargeted-recon", "nope"]), "unknown attack 'nope'"),
        (dict(restarts=1), "restarts=1"),
        (dict(cap_factor=1), "cap_factor=1"),
        (dict(solver="adam"), "solver='adam'"),
        (dict(datasets=["celeba"]), "measured on dSprites"),
        (dict(profile="smoke", classifier_images=10**9), "classifier_images=1000000000"),
    ],
)
def test_bad_threat_model_parameters_are_refused_before_any_work(change, message):
    with pytest.raises(ValueError, match=message):
        chapters.needs("threat_models", **{**GOOD, **change})


def test_an_untargeted_attack_given_a_target_is_refused():
    with pytest.raises(ValueError, match="untargeted.*takes no target"):
        chapters.budget_attack("untargeted-kl", "linf", 0.2, target=True)
    assert chapters.budget_attack("kl", "linf", 0.2, target=True).eps == 0.2


def test_the_chapter_asks_for_one_request_per_family_attack_and_budget():
    plan = chapters.threat_models_plan(**GOOD)
    needs = plan.needs
    # 3 families x (2 attacks x 2 budgets + 3 attacks at the deciding budget), and the paper's
    # penalised attack on the VAE and the Seatbelt (N1's premise)
    assert len(needs.models) == 3 and len(plan.requests) == 3 * (2 * 2 + 3)
    assert len(needs.batteries) == len(plan.requests) + 2 + 3 and set(plan.penalised) == {
        "VAE",
        "Seatbelt",
    }
    inputs = {(r.protocol.n_pairs, r.protocol.seed) for r in needs.batteries}
    assert inputs == {(4, 0)}  # every family on the same inputs (the same pairs)
    assert np.all([r.restarts == 3 for r in plan.requests.values()])
    # the cap control: the claims' untargeted attack again with cap_factor x the iterations
    caps = {dict(r.solver_options)["max_iter"] for r in plan.capped.values()}
    assert len(plan.capped) == 3 and caps == {4 * GOOD["max_iter"]}


def test_the_cpu_premise_runs_the_layerwise_chapters_batteries():
    """N1's premise is the paper's attack as the layerwise chapter runs it at cpu: the same
    requests (solver and cap included), so the cpu book runs nothing new for it."""
    from pathlib import Path

    from seatbelt.book import plan

    root = Path(__file__).resolve().parents[1]
    chapters_at_cpu = {job.entry.split("/")[-1]: (job, n) for job, n in plan.needs_of(root, "cpu")}
    job, _ = chapters_at_cpu["threat_models"]
    penalised = chapters.threat_models_plan(**plan.chapter_parameters(job)).penalised
    assert penalised and set(penalised.values()) <= set(chapters_at_cpu["layerwise"][1].batteries)
