"""Downstream classifiers: build, a training step, save/load through the cache, cache hits, a
separable task, and the VAE-facing helpers (representations, the paper's three tasks, classifying an
attack battery)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats
from torch import nn

from seatbelt import cache, classifiers, training
from seatbelt.attacks import AttackProtocol, BatchedLBFGSB, run_battery
from seatbelt.classifiers import Classifier, ClassifierConfig, TrainConfig
from seatbelt.data import Data
from seatbelt.models import ModelConfig

torch.set_num_threads(1)
RUN = TrainConfig(epochs=3, batch_size=32, lr=1e-2, seed=0)


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("SEATBELT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("SEATBELT_PROGRESS", "off")


def blobs(n=256, dim=8, seed=0):
    """Two classes 8 standard deviations apart along every axis: any sensible classifier separates
    them."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    return torch.randn(n, dim, generator=g) + 8.0 * (y[:, None].float() - 0.5), y


def bright_dark(n=128, seed=0):
    """RGB 8x8 images: class 1 is bright (+0.5 on average), class 0 dark (-0.5), plus noise of std
    0.2."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 2
    return 0.2 * torch.randn(n, 3, 8, 8, generator=g) + (y.float() - 0.5)[:, None, None, None], y


def test_build_shapes_and_a_fully_convolutional_conv():
    mlp = Classifier(ClassifierConfig("mlp", (3, 8, 8), 10, hidden=16))
    assert mlp(torch.zeros(4, 3, 8, 8)).shape == (4, 10)
    assert [m.out_features for m in mlp.modules() if isinstance(m, nn.Linear)] == [
        16,
        10,
    ]  # two layers
    conv = Classifier(ClassifierConfig("conv", (3, 32, 32), 10, channels=(4, 8, 8)))
    assert conv(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    assert not any(isinstance(m, nn.Linear) for m in conv.modules())
    with pytest.raises(ValueError, match="got a batch of shape"):
        mlp(torch.zeros(4, 3, 4, 4))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"net": "rnn", "input_shape": (4,), "n_classes": 2}, "not one of"),
        ({"net": "conv", "input_shape": (4,), "n_classes": 2}, "use net='mlp'"),
        ({"net": "mlp", "input_shape": (4,), "n_classes": 1}, "n_classes >= 2"),
        (
            {"net": "conv", "input_shape": (3, 4, 4), "n_classes": 2, "channels": (4, 4, 4)},
            "side >= 8",
        ),
    ],
)
def test_bad_configs_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ClassifierConfig(**kwargs)


def test_a_training_step_lowers_the_loss_on_its_batch():
    torch.manual_seed(0)
    x, y = blobs(64)
    net = Classifier(ClassifierConfig("mlp", (8,), 2, hidden=16))
    optimiser = torch.optim.Adam(net.parameters(), lr=1e-2)
    first, _ = classifiers.train_step(net, optimiser, x, y)
    for _ in range(5):
        classifiers.train_step(net, optimiser, x, y)
    with torch.no_grad():
        assert float(nn.functional.cross_entropy(net(x), y)) < first


@pytest.mark.parametrize("net, data", [("mlp", blobs), ("conv", bright_dark)])
def test_accuracy_on_a_trivially_separable_task(net, data):
    x, y = data(seed=0)
    test_x, test_y = data(seed=1)
    config = ClassifierConfig(net, tuple(x.shape[1:]), 2, hidden=16, channels=(4, 8))
    fitted = classifiers.fit(config, lambda: (x, y), RUN, source={"task": net}, use_cache=False)
    assert fitted.history["epoch"].tolist() == [0, 1, 2]
    accuracy = float((classifiers.predict(fitted.net, test_x) == test_y).float().mean())
    assert accuracy >= 0.98
    with pytest.raises(ValueError, match="labels must be in"):
        classifiers.train(Classifier(config), x, y + 5, RUN)


def test_save_load_and_the_cache_hit(tmp_path):
    x, y = blobs()
    config = ClassifierConfig("mlp", (8,), 2, hidden=16)
    calls = []

    def features():
        calls.append(1)
        return x, y

    first = classifiers.fit(config, features, RUN, source={"data": "blobs"})
    assert not first.cached and len(calls) == 1 and (first.path / "meta.json").exists()
    assert first.path.parent == cache.cache_root() / "classifiers"
    again = classifiers.fit(config, features, RUN, source={"data": "blobs"})
    assert (
        again.cached and len(calls) == 1 and again.path == first.path
    )  # nothing recomputed, nothing trained
    for (name, a), b in zip(first.net.state_dict().items(), again.net.state_dict().values()):
        assert torch.equal(a, b), name
    assert again.history.equals(first.history)
    assert torch.equal(classifiers.predict(again.net, x), classifiers.predict(first.net, x))
    # another source, another run config or another architecture is another entry
    assert not classifiers.fit(config, features, RUN, source={"data": "other"}).cached
    path, _ = classifiers.cache_entry(
        config, TrainConfig(epochs=4, batch_size=32, lr=1e-2), {"data": "blobs"}
    )
    assert path != first.path
    path, _ = classifiers.cache_entry(
        ClassifierConfig("mlp", (8,), 2, hidden=17), RUN, {"data": "blobs"}
    )
    assert path != first.path
    # a damaged entry is discarded and retrained, never used
    (first.path / "tensors.pt").write_bytes(b"garbage")
    with pytest.warns(UserWarning, match="discarding"):
        redone = classifiers.fit(config, features, RUN, source={"data": "blobs"})
    assert not redone.cached and len(calls) == 3


def test_the_cache_key_covers_the_classifier_code(tmp_path):
    package = tmp_path / "pkg"
    shutil.copytree(
        Path(cache.__file__).parent, package, ignore=shutil.ignore_patterns("__pycache__")
    )
    before = cache.code_digest(classifiers.SOURCES, package)
    (package / "classifiers.py").write_text(
        (package / "classifiers.py").read_text() + "\n_CHUNK = 7\n"
    )
    assert cache.code_digest(classifiers.SOURCES, package) != before


# ------------------------------------------------------------------------ on a (tiny) VAE


def tiny_vae(kind):
    data = Data(
        "tiny",
        x=(torch.rand(64, 1, 32, 32, generator=torch.Generator().manual_seed(0)) * 255).to(
            torch.uint8
        ),
        levels=256,
        labels=torch.arange(64) % 3,
    )
    seatbelt = kind == "seatbelt"
    config = ModelConfig(
        kind=kind,
        latent_sizes=(6, 4) if seatbelt else (5,),
        hidden_sizes=(8,) if seatbelt else (),
        data_shape=(1, 32, 32),
    )
    return training.fit(config, data, TrainConfig(steps=1, batch_size=32), progress=False), data


@pytest.mark.parametrize("kind", ["vae", "seatbelt"])
def test_representations_and_the_three_tasks(kind, monkeypatch):
    trained, data = tiny_vae(kind)
    x = data.get(slice(0, 5))
    latent = classifiers.represent(trained.model, x, "latent")
    assert latent.shape == (5, sum(trained.model.latent_sizes))
    with torch.no_grad():
        means = trained.model.encode(x).z
        assert torch.allclose(latent, torch.cat(means, -1))
        assert torch.allclose(
            classifiers.represent(trained.model, x, "recon", batch_size=2),
            trained.model.decode(means),
        )
    with pytest.raises(ValueError, match="representation"):
        classifiers.represent(trained.model, x, "pixels")

    run = TrainConfig(epochs=1, batch_size=32)
    fitted = classifiers.fit_tasks(trained, data, run, hidden=8, channels=(4,))
    assert set(fitted) == set(classifiers.TASKS) and not any(f.cached for f in fitted.values())
    assert fitted["mlp_latent"].net.config.input_shape == (sum(trained.model.latent_sizes),)
    assert fitted["conv_recon"].net.config.input_shape == (1, 32, 32)
    assert fitted["mlp_recon"].net.config.n_classes == 3

    calls = []
    monkeypatch.setattr(classifiers, "represent", lambda *a, **k: calls.append(a) or None)
    again = classifiers.fit_tasks(trained, data, run, hidden=8, channels=(4,))
    assert (
        all(f.cached for f in again.values()) and not calls
    )  # a hit costs no pass through the VAE


def test_classifying_an_attack_battery():
    trained, data = tiny_vae("seatbelt")
    fitted = classifiers.fit_tasks(
        trained, data, TrainConfig(epochs=1, batch_size=32), hidden=8, channels=(4,)
    )
    protocol = AttackProtocol(n_pairs=4, lambdas=(1.0,), pairing="different_label", seed=0)
    battery = run_battery(
        trained.model, data, protocol, solver=BatchedLBFGSB(max_iter=3, max_evals=6)
    )
    table = classifiers.evaluate_attacks(trained.model, battery, data.labels, fitted)
    assert len(table) == 3 * 4 and set(table["task"]) == set(classifiers.TASKS)
    assert (
        table["source_label"] != table["target_label"]
    ).all()  # the protocol's different-label pairs
    assert (
        table["source_label"].to_numpy()
        == data.labels[battery.frame["source"].to_numpy(dtype=np.int64)].numpy()[
            table["row"].to_numpy()
        ]
    ).all()
    # the clean recon prediction equals the classifier on the VAE's own reconstruction of the source
    mlp = table[table["task"] == "mlp_recon"]
    sources = data.get(torch.as_tensor(battery.frame["source"].to_numpy(dtype=np.int64)))
    direct = classifiers.predict(
        fitted["mlp_recon"].net, classifiers.represent(trained.model, sources, "recon")
    )
    assert (mlp["clean"].to_numpy() == direct.numpy()).all()
    assert (table["attacked_correct"] == (table["attacked"] == table["source_label"])).all()
    assert not (
        table["attacked_correct"] & table["attacker_success"]
    ).any()  # different labels: never both


def test_proportion_matches_the_wilson_interval():
    estimate, low, high = classifiers.proportion(40, 100)
    # Wilson: (p + z^2/2n -/+ z sqrt(p(1-p)/n + z^2/4n^2)) / (1 + z^2/n), z = 1.959964
    z, n, p = 1.959964, 100, 0.4
    centre, half = (
        (p + z * z / (2 * n)) / (1 + z * z / n),
        z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n),
    )
    assert (
        estimate == 0.4
        and low == pytest.approx(centre - half, abs=1e-6)
        and high == pytest.approx(centre + half, abs=1e-6)
    )
    assert classifiers.proportion(0, 10)[1] == 0.0 and classifiers.proportion(10, 10)[2] == 1.0
    with pytest.raises(ValueError):
        classifiers.proportion(11, 10)


def _evaluated():
    """Two models, one task, four attacked images; model B right under attack where A is, and on row
    2."""
    rows = []
    for model, attacked in (("A", [1, 1, 0, 0]), ("B", [1, 1, 1, 0])):
        for row, right in enumerate(attacked):
            rows.append(
                {
                    "model": model,
                    "task": "mlp_latent",
                    "row": row,
                    "clean_correct": True,
                    "attacked_correct": bool(right),
                    "attacker_success": not right and row == 3,
                }
            )
    return pd.DataFrame(rows)


def test_summarise_counts_and_the_paired_drop():
    s = classifiers.summarise(_evaluated()).set_index("model")
    assert (
        s.loc["A", "clean"] == 1.0
        and s.loc["A", "attacked"] == 0.5
        and s.loc["B", "attacked"] == 0.75
    )
    assert s.loc["A", "success"] == 0.25 and s.loc["A", "images"] == 4
    assert s.loc["A", "drop"] == -0.5  # clean 1, attacked [1, 1, 0, 0]: differences 0, 0, -1, -1
    half = stats.t.ppf(0.975, 3) * np.std([0, 0, -1, -1], ddof=1) / 2
    assert s.loc["A", "drop_low"] == pytest.approx(-0.5 - half) and s.loc[
        "A", "drop_high"
    ] == pytest.approx(-0.5 + half)
    assert (s["attacked_low"] <= s["attacked"]).all() and (
        s["attacked"] <= s["attacked_high"]
    ).all()


def test_ranking_is_the_paired_difference_of_consecutive_models():
    (effect,) = classifiers.ranking(_evaluated(), ("A", "B"))
    half = stats.t.ppf(0.975, 3) * 0.5 / 2  # differences 0, 0, 1, 0: mean 0.25, sd 0.5, n 4
    assert effect.estimate == 0.25 and effect.n == 4 and effect.direction == "greater"
    assert effect.low == pytest.approx(0.25 - half) and effect.high == pytest.approx(0.25 + half)
    assert "p_MLP(y|z): B - A" in effect.name and not effect.supported  # 4 images decide nothing
    with pytest.raises(ValueError, match="missing models"):
        classifiers.ranking(_evaluated(), ("A", "C"))


def test_the_drop_ranking_compares_what_the_attack_took_away():
    frame = _evaluated()
    # B now wrong on row 1 before the attack and right after it: a negative drop there
    frame.loc[(frame["model"] == "B") & (frame["row"] == 1), "clean_correct"] = False
    (accuracy,) = classifiers.ranking(frame, ("A", "B"))
    (drop,) = classifiers.ranking(frame, ("A", "B"), drop=True)
    # drops per row: A 0, 0, 1, 1; B 0, -1 (attacked right, clean wrong), 0, 1: A - B = 0, 1, 1, 0
    assert drop.estimate == 0.5 and accuracy.estimate == 0.25
    assert "accuracy drop under attack" in drop.name and "A - B" in drop.name


def test_ranking_over_seeds_resamples_the_seeds_too():
    """Two seeds whose models disagree (B better under one, no different under the other): the
    estimate is the mean over every (seed, image), and the interval comes from the bootstrap over
    seeds crossed with images, not from a t interval that takes the rows as independent."""
    first = _evaluated().assign(seed=0)
    second = first.assign(seed=1)
    second.loc[second["model"] == "B", "attacked_correct"] = second.loc[
        second["model"] == "A", "attacked_correct"
    ].to_numpy()
    both = pd.concat([first, second], ignore_index=True)
    (effect,) = classifiers.ranking(both, ("A", "B"))
    assert effect.estimate == pytest.approx(0.125) and effect.n == 8
    assert "2 seeds" in effect.method
    blind = both.assign(row=both["seed"] * 10 + both["row"]).drop(columns="seed")
    (naive,) = classifiers.ranking(blind, ("A", "B"))
    assert naive.estimate == pytest.approx(0.125) and "paired t" in naive.method
