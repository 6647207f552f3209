"""Defended attacks in the zoo's cache, and the defences chapter's parameter checks."""

from __future__ import annotations

from dataclasses import replace

import pandas as pd
import pytest
import torch

from seatbelt import chapters, zoo
from seatbelt.attacks import Attack, AttackProtocol
from seatbelt.defences import HMC
from test_zoo import FAST, tiny  # noqa: F401 (the fixture)

POINT = zoo.Point("beta-tcvae", "dsprites", beta=2)
SMALL = HMC(step_size=0.2, n_leapfrog=2, n_steps=2, n_warmup=1, n_draws=2)
PENALISED = zoo.BatteryRequest(
    POINT,
    AttackProtocol(n_pairs=2, lambdas=(0.0, 1.0), cap_check=0, reference_check=0),
    solver_options=FAST,
)
UNTARGETED = Attack("untargeted-recon", norm="linf", eps=0.2)
BUDGETED = zoo.BudgetRequest(
    POINT,
    UNTARGETED,
    AttackProtocol(n_pairs=2, n_lambdas=0, attacks=(UNTARGETED,), cap_check=0, reference_check=0),
    restarts=2,
    solver_options=FAST,
)


@pytest.mark.parametrize("base", [PENALISED, BUDGETED], ids=["penalised", "budgeted"])
@pytest.mark.parametrize("adaptive", [False, True], ids=["non-adaptive", "adaptive"])
def test_a_defended_attack_is_cached_keyed_by_the_chain(tiny, base, adaptive):  # noqa: F811
    request = zoo.DefendedRequest(base, SMALL, adaptive=adaptive)
    assert not zoo.attack_is_cached(request, "tiny")
    first = zoo.defended(request, "tiny")
    assert zoo.attack_is_cached(request, "tiny")
    again = zoo.defended(request, "tiny")
    pd.testing.assert_frame_equal(again.frame, first.frame, check_exact=True)
    assert torch.equal(again.distortions, first.distortions)
    assert first.frame["model"].str.endswith("+ HMC").all()
    solver = set(first.frame["solver"])
    assert solver == ({"batched"} if adaptive else {"replay"})
    # the key covers the chain's settings and the attacker's knowledge
    assert not zoo.attack_is_cached(replace(request, hmc=replace(SMALL, n_steps=3)), "tiny")
    assert not zoo.attack_is_cached(replace(request, adaptive=not adaptive), "tiny")
    assert zoo.attack_minutes(request, "tiny") > 0


def test_the_non_adaptive_attack_replays_the_plain_distortions(tiny):  # noqa: F811
    plain = zoo.budgeted(BUDGETED, "tiny")
    replayed = zoo.defended(zoo.DefendedRequest(BUDGETED, SMALL), "tiny")
    assert torch.equal(replayed.distortions, plain.distortions)
    # without a chain the plain result is served
    none = zoo.defended(zoo.DefendedRequest(BUDGETED, None), "tiny")
    pd.testing.assert_frame_equal(none.frame, plain.frame)


def test_an_adaptive_request_needs_a_chain():
    with pytest.raises(zoo.ZooError, match="give the HMC settings"):
        zoo.DefendedRequest(PENALISED, None, adaptive=True)


GOOD = dict(
    families=["vae", "beta-tcvae", "seatbelt"],
    beta=6.0,
    latent=10,
    layers=4,
    n_pairs=3,
    n_lambdas=2,
    log2_lambda_min=-10.0,
    log2_lambda_max=10.0,
    budget=["linf", 0.2],
    restarts=2,
    max_iter=10,
    solver="batched",
    step_size=0.2,
    n_leapfrog=2,
    n_steps=3,
    n_warmup=1,
    n_draws=2,
    chain_lengths=[1, 3],
    chain_family="vae",
    d3_margin=0.05,
    seed=0,
)


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(step_size=0.0), "step_size=0.0"),
        (dict(step_size=-0.1), "step_size=-0.1"),
        (dict(n_steps=0), "n_steps=0"),
        (dict(n_leapfrog=0), "n_leapfrog=0"),
        (dict(chain_lengths=[2, 0]), "chain_lengths"),
        (dict(families=["vae", "seatbelt", "nvae"]), "unknown family 'nvae'"),
        (dict(chain_family="dlgm"), "unknown family 'dlgm'"),
        (dict(budget=[0.2]), "without a norm"),
        (dict(profile="smoke", classifier_images=0), "classifier_images=0"),
    ],
)
def test_bad_defence_parameters_are_refused_before_any_work(change, message):
    with pytest.raises(ValueError, match=message):
        chapters.needs("defences", **{**GOOD, **change})


def test_the_chapter_asks_for_each_attack_three_ways():
    plan = chapters.defences_plan(**GOOD)
    assert len(plan.requests) == 3 * len(chapters.DEFENCE_ATTACKS) * 3
    # the plain requests are the zoo's own batteries, not defended entries
    plain = [r for r in plan.needs.batteries if not isinstance(r, zoo.DefendedRequest)]
    assert len(plain) == 3 * len(chapters.DEFENCE_ATTACKS)
    assert {r.hmc.n_steps for r in plan.chain.values() if r.hmc} == {1, 3}
    assert all(r.hmc.n_warmup < r.hmc.n_steps for r in plan.chain.values() if r.hmc)
