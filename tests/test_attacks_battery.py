"""run_battery end to end: real (untrained) models, the results frame, summaries, panels, bad
input."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pandas as pd
import pytest
import torch

from seatbelt.attacks import (
    Attack,
    AttackProtocol,
    BatchedLBFGSB,
    ScipyLBFGSB,
    auddc,
    representative,
    run_battery,
)
from seatbelt.data import Data
from seatbelt.models import ModelConfig, build_model, seatbelt_sizes
from seatbelt.plots import attack_panel, to_display
from test_attacks_toymodels import LinearGaussian

FAST = {"batched": BatchedLBFGSB(max_iter=15), "scipy": ScipyLBFGSB(max_iter=15)}
PROTOCOL = AttackProtocol(n_pairs=2, n_lambdas=2, log2_lambda_range=(-4.0, 4.0), seed=3)
LATENTS, HIDDEN = seatbelt_sizes(2, latent_sizes=(8, 4), hidden_sizes=(32, 16))


def tiny_data(n=12, shape=(1, 32, 32), seed=0) -> Data:
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(n, *shape, generator=g) > 0.7).to(torch.uint8)  # binary, like dSprites
    return Data(name="tiny", x=x, levels=2, labels=torch.arange(n) % 3)


def tiny_model(kind: str):
    config = ModelConfig(
        kind=kind,
        latent_sizes=(6,) if kind == "vae" else LATENTS,
        hidden_sizes=() if kind == "vae" else HIDDEN,
        data_shape=(1, 32, 32),
        dataset_size=12,
    )
    torch.manual_seed(0)
    model = build_model(config)
    model.train()  # run_battery must switch to eval mode itself, and switch back
    return model


@pytest.mark.parametrize("solver", ["batched", "scipy"])
@pytest.mark.parametrize("kind", ["vae", "seatbelt"])
def test_battery_on_untrained_models(kind, solver):
    model = tiny_model(kind)
    data = tiny_data()
    attacks = ("kl", "w2", "output", "recon") + (
        (Attack("kl", "top"), Attack("w2", (1,))) if kind == "seatbelt" else ()
    )
    results = run_battery(model, data, PROTOCOL, attacks=attacks, solver=FAST[solver], name=kind)

    frame = results.frame
    n_rows = len(attacks) * 2 * 3
    assert len(frame) == n_rows and list(frame.index) == list(range(n_rows))
    assert set(frame["attack"]) == {"kl", "w2", "output", "recon"} and set(frame["solver"]) == {
        solver
    }
    numeric = frame.select_dtypes("number").drop(
        columns=["delta_rel", "divergence_rel", "delta_cap10", "delta_reference"]
    )
    assert np.isfinite(numeric.to_numpy(dtype=float)).all()
    # the cap control re-solves cap_check problems of each attack (here all 6 of each)
    assert (
        frame.groupby("attack", sort=False)["delta_cap10"]
        .count()
        .eq(min(PROTOCOL.cap_check, 6) * frame.groupby("attack", sort=False)["layers"].nunique())
        .all()
    )
    assert frame.loc[~frame["attack"].isin(["output", "recon"]), "delta_rel"].notna().all()
    assert (frame["lambda"].unique() == PROTOCOL.lambda_values()).all()
    latent = ~frame["attack"].isin(["output", "recon"])
    assert (
        frame.loc[latent, "delta"] <= frame.loc[latent, "divergence0"] * (1 + 1e-5) + 1e-5
    ).all(), "an attack never ends above its unattacked value (d ~ 0 is the start)"
    torch.testing.assert_close(
        torch.tensor(frame["delta"].to_numpy()),
        torch.tensor((frame["divergence"] + frame["lambda"] * frame["d_norm"] ** 2).to_numpy()),
        rtol=1e-4,
        atol=1e-3,
    )

    pairs = PROTOCOL.draw_pairs(len(data))
    assert (
        frame["source"].to_numpy() == np.repeat(np.tile(pairs[:, 0], 1), 3).tolist() * len(attacks)
    ).all()
    x = data.get(torch.from_numpy(pairs[:, 0]))
    assert torch.equal(results.sources, x)
    assert (
        results.adversarial.shape
        == results.distortions.shape
        == results.adversarial_recons.shape
        == (n_rows, 1, 32, 32)
    )
    assert bool((results.adversarial >= -1).all() and (results.adversarial <= 1).all())
    rows_x = x[torch.tensor(frame["pair"].to_list())]
    torch.testing.assert_close(results.adversarial, rows_x + results.distortions)
    np.testing.assert_allclose(
        frame["d_norm"], results.distortions.flatten(1).norm(dim=-1).double().numpy(), rtol=1e-5
    )

    assert model.training and all(p.requires_grad for p in model.parameters())


def test_batched_and_scipy_start_alike_and_agree_on_the_unattacked_terms():
    model, data = tiny_model("vae"), tiny_data()
    a = run_battery(model, data, PROTOCOL, solver=FAST["batched"]).frame
    b = run_battery(model, data, PROTOCOL, solver=FAST["scipy"]).frame
    same = [
        "pair",
        "source",
        "target",
        "lambda",
        "divergence0",
        "nll_target_recon",
        "nll_target_recon_mean",
        "dist_target_recon_target",
        "dist_orig_recon_target",
        "dist_orig_target",
    ]
    pd.testing.assert_frame_equal(a[same], b[same], rtol=1e-5)


def test_same_seed_same_results():
    model, data = tiny_model("seatbelt"), tiny_data()
    first = run_battery(model, data, PROTOCOL, attacks=("kl", "output"), solver=FAST["batched"])
    again = run_battery(model, data, PROTOCOL, attacks=("kl", "output"), solver=FAST["batched"])
    pd.testing.assert_frame_equal(
        first.frame.drop(columns="seconds"), again.frame.drop(columns="seconds")
    )
    assert torch.equal(first.adversarial, again.adversarial)


def test_tensor_input_rgb_and_different_label_pairs():
    model = LinearGaussian(shape=(3, 4, 4), latent_sizes=(5,)).eval()
    g = torch.Generator().manual_seed(0)
    sources, targets = (
        torch.rand(2, 3, 4, 4, generator=g) * 2 - 1,
        torch.rand(2, 3, 4, 4, generator=g) * 2 - 1,
    )
    results = run_battery(
        model, (sources, targets), PROTOCOL, solver=FAST["batched"], keep_images=False
    )
    assert results.frame["source"].isna().all() and len(results.adversarial) == 0
    with pytest.raises(ValueError, match="keep_images"):
        results.panel(0)

    data = tiny_data()
    labelled = AttackProtocol(n_pairs=6, pairing="different_label", seed=1)
    pairs = labelled.draw_pairs(len(data), data.labels.numpy())
    assert (data.labels[pairs[:, 0]] != data.labels[pairs[:, 1]]).all()
    with pytest.raises(ValueError, match="labels"):
        labelled.draw_pairs(10)


def test_protocol_lambdas():
    values = AttackProtocol().lambda_values()
    assert len(values) == 51 and values[0] == 0
    np.testing.assert_allclose(np.log2(values[1:]), np.linspace(-20, 20, 50))
    assert AttackProtocol(
        include_zero=False, n_lambdas=3, log2_lambda_range=(0, 2)
    ).lambda_values().tolist() == [1, 2, 4]


def test_representative_and_auddc_on_a_known_curve():
    base = {
        "model": "m",
        "attack": "kl",
        "layers": "all",
        "pair": 0,
        "dist_orig_target": 2.0,
        "dist_target_recon_target": 1.0,
        "dist_orig_recon_target": 3.0,
    }
    # distortions 0, 1, 2 (x = 0, 0.5, 1) reaching distances 3, 2, 1 (y = 1, 0.5, 0); x = 1.5 is off
    # the curve
    rows = [
        dict(base, d_norm=n, dist_adv_recon_target=v)
        for n, v in ((0.0, 3.0), (1.0, 2.0), (2.0, 1.0), (3.0, 2.5))
    ]
    frame = pd.DataFrame(rows)
    area = auddc(frame)
    # the lower envelope is a step: 1 on [0, 0.5), 0.5 on [0.5, 1), so the area is 0.75
    assert area.loc[0, "auddc"] == pytest.approx(0.75) and area.loc[0, "points"] == 3
    # mean distance 2.125: the candidates are 2 and 1, the representative the larger of them
    assert representative(frame).index.tolist() == [1]
    # a curve that never gets closer than the unattacked reconstruction has area 1
    flat = pd.DataFrame([dict(base, d_norm=n, dist_adv_recon_target=3.0) for n in (0.5, 1.0)])
    assert auddc(flat).loc[0, "auddc"] == pytest.approx(1.0)


def test_attack_panel_draws_grey_and_rgb():
    grey = run_battery(tiny_model("vae"), tiny_data(), PROTOCOL, solver=FAST["batched"])
    fig = attack_panel(grey, 4)
    assert len(fig.axes) == 7
    images = [ax.get_images()[0].get_array() for ax in fig.axes]
    assert all(np.asarray(im).ndim == 2 for im in images)
    distortion = np.asarray(images[2])
    assert distortion.min() == pytest.approx(0.0) and distortion.max() == pytest.approx(1.0)

    model = LinearGaussian(shape=(3, 4, 4), latent_sizes=(5,)).eval()
    g = torch.Generator().manual_seed(0)
    pair = (
        torch.rand(1, 3, 4, 4, generator=g) * 2 - 1,
        torch.rand(1, 3, 4, 4, generator=g) * 2 - 1,
    )
    rgb = run_battery(
        model, pair, AttackProtocol(n_pairs=1, lambdas=(0.0,)), solver=FAST["batched"]
    )
    fig = attack_panel(rgb, 0)
    assert np.asarray(fig.axes[0].get_images()[0].get_array()).shape == (4, 4, 3)
    assert to_display(torch.full((1, 2, 2), -1.0)).max() == 0.0
    assert to_display(torch.zeros(1, 2, 2), rescale=True).tolist() == [[0.5, 0.5], [0.5, 0.5]]


class NeverCalled:
    name = "never"

    def solve(self, objective, d0):
        raise AssertionError("bad input must be refused before any optimisation")


@pytest.mark.parametrize(
    "make, error, match",
    [
        (
            lambda m, d: run_battery(m, d, PROTOCOL, attacks=("kl2",), solver=NeverCalled()),
            ValueError,
            "unknown attack",
        ),
        (
            lambda m, d: run_battery(
                m, d, PROTOCOL, attacks=(Attack("kl", "middle"),), solver=NeverCalled()
            ),
            ValueError,
            "layer selection",
        ),
        (
            lambda m, d: run_battery(
                m, d, PROTOCOL, attacks=(Attack("kl", (2,)),), solver=NeverCalled()
            ),
            ValueError,
            "at least 2 latent layers",
        ),
        (
            lambda m, d: run_battery(
                m, d, PROTOCOL, attacks=(Attack("kl", (0,)),), solver=NeverCalled()
            ),
            ValueError,
            "1-based",
        ),
        (
            lambda m, d: run_battery(
                m, d, PROTOCOL, attacks=(Attack("output", "top"),), solver=NeverCalled()
            ),
            ValueError,
            "every layer",
        ),
        (
            lambda m, d: run_battery(
                m, (d.get(slice(0, 2)), d.get(slice(0, 3))), PROTOCOL, solver=NeverCalled()
            ),
            ValueError,
            "same shape",
        ),
        (
            lambda m, d: run_battery(
                m, (d.get(slice(0, 2)) * 3, d.get(slice(2, 4))), PROTOCOL, solver=NeverCalled()
            ),
            ValueError,
            r"\[-1, 1\]",
        ),
        (
            lambda m, d: run_battery(
                m, tiny_data(shape=(1, 16, 16)), PROTOCOL, solver=NeverCalled()
            ),
            ValueError,
            "shape",
        ),
        (
            lambda m, d: run_battery(
                m, d, AttackProtocol(lambdas=(1.0, -0.5)), solver=NeverCalled()
            ),
            ValueError,
            ">= 0",
        ),
        (lambda m, d: run_battery(m, d, PROTOCOL, solver="lbfgs"), ValueError, "unknown solver"),
        (
            lambda m, d: run_battery(
                m, d, PROTOCOL, pairs=np.array([[0, 99]]), solver=NeverCalled()
            ),
            ValueError,
            "pairs",
        ),
        (
            lambda m, d: run_battery(torch.nn.Linear(2, 2), d, PROTOCOL, solver=NeverCalled()),
            TypeError,
            "lacks",
        ),
    ],
    ids=[
        "attack",
        "layer-name",
        "layer-range",
        "layer-zero",
        "output-layers",
        "shapes",
        "range",
        "model-shape",
        "negative-lambda",
        "solver",
        "pairs",
        "no-encoder",
    ],
)
def test_bad_input_is_refused_before_optimising(make, error, match):
    with pytest.raises(error, match=match):
        make(tiny_model("vae"), tiny_data())


@pytest.mark.parametrize("name", ["batched", "batched-fast", "batched-two-starts", "scipy"])
def test_solvers_by_name(name):
    model = LinearGaussian().eval()
    g = torch.Generator().manual_seed(0)
    pair = (
        torch.rand(1, 1, 4, 4, generator=g) * 2 - 1,
        torch.rand(1, 1, 4, 4, generator=g) * 2 - 1,
    )
    frame = run_battery(
        model, pair, AttackProtocol(n_pairs=1, lambdas=(0.0, 1.0)), solver=name
    ).frame
    assert set(frame["solver"]) == {name} and (frame["delta"] < frame["divergence0"]).all()
