"""The model zoo: one cached model per point, resumable builds, cached batteries, keys that cover
the code."""

from __future__ import annotations

import errno
import shutil
from dataclasses import fields, replace
from pathlib import Path

import pandas as pd
import pytest
import torch

from seatbelt import cache, chapters, training, zoo
from seatbelt.attacks import AttackProtocol
from seatbelt.book import plan
from test_cache import Trap, plant

ROOT = Path(__file__).resolve().parents[1]
TINY = """
datasets:
  dsprites:
    image_size: 32
    n_train: 256
    n_test: 32
    steps: 2
    batch_size: 64
    latent: 3
    seatbelt_latents: [6, 4, 2]
    seatbelt_hidden: [8, 8, 8]
  swissroll:
    n_train: 256
    n_test: 32
    steps: 3
    batch_size: 64
    latent: 2
    mlp_hidden: 8
"""
PROTOCOL = AttackProtocol(n_pairs=1, lambdas=(1.0,), attacks=("kl",), seed=0)
FAST = (("max_evals", 6), ("max_iter", 3))


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    """A profile "tiny" in a params folder of its own, and an empty cache."""
    (tmp_path / "params" / "tiny").mkdir(parents=True)
    (tmp_path / "params" / "tiny" / "zoo.yaml").write_text(TINY)
    monkeypatch.setenv(zoo.PARAMS_ENV, str(tmp_path / "params"))
    monkeypatch.setenv("SEATBELT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("SEATBELT_PROGRESS", "off")
    return tmp_path / "cache"


def _no_training(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("trained although the model was cached")

    monkeypatch.setattr(training, "train", fail)


def test_a_second_request_for_the_same_point_trains_nothing(tiny, monkeypatch):
    first = zoo.model("beta-tcvae", "swissroll", beta=4, profile="tiny")
    assert not first.cached
    _no_training(monkeypatch)
    again = zoo.model(
        "beta-tcvae", "swissroll", beta=4.0, latent=2, profile="tiny"
    )  # 2 is the recipe's default
    assert again.cached and again.path == first.path


def test_aliases_of_one_model_are_one_cache_entry(tiny, monkeypatch):
    vae = zoo.model("vae", "swissroll", profile="tiny")
    _no_training(monkeypatch)
    assert zoo.model("beta-tcvae", "swissroll", beta=1, profile="tiny").path == vae.path
    assert zoo.model("beta-vae", "swissroll", beta=1, profile="tiny").path == vae.path


def test_a_one_layer_seatbelt_is_the_beta_tcvae_of_the_top_size():
    r = zoo.Recipe(
        "dsprites",
        n_train=256,
        n_test=32,
        steps=2,
        batch_size=64,
        seatbelt_latents=(6, 4, 2),
        seatbelt_hidden=(8, 8, 8),
    )
    assert zoo.Point("seatbelt", "dsprites", beta=4, layers=1).resolve(r) == zoo.Point(
        "beta-tcvae", "dsprites", 4.0, 2
    )
    deep = zoo.Point("chain", "dsprites", beta=4, layers=3).resolve(r)
    config = zoo.model_config(deep, r, (1, 32, 32))
    assert config.latent_sizes == (6, 4, 2) and config.likelihood_layers == "bottom"


def test_families_build_the_objectives_they_name():
    r = zoo.Recipe("swissroll", n_train=256, n_test=32, steps=2, batch_size=64, latent=2)

    def config(family, **kw):
        return zoo.model_config(zoo.Point(family, "swissroll", **kw).resolve(r), r, (3,))

    assert config("beta-vae", beta=8).objective == "beta_vae"
    assert (
        config("beta-tcvae", beta=8).objective == "beta_tcvae"
        and config("beta-tcvae", beta=8).net == "mlp"
    )
    assert config("seatbelt", beta=8, layers=2).likelihood_layers == "all"


def test_an_interrupted_build_resumes_with_what_was_done(tiny, monkeypatch):
    points = [zoo.Point("beta-tcvae", "swissroll", beta=b) for b in (2.0, 3.0)]
    original, calls = training.train, []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # the second model's training is cut off
        return original(*args, **kwargs)

    monkeypatch.setattr(training, "train", interrupted)
    with pytest.raises(KeyboardInterrupt):
        for p in points:
            zoo.get(p, "tiny")
    assert zoo.is_cached(points[0], "tiny") and not zoo.is_cached(points[1], "tiny")
    monkeypatch.setattr(training, "train", original)
    resumed = [zoo.get(p, "tiny") for p in points]
    assert [t.cached for t in resumed] == [True, False]


POINT = zoo.Point("beta-tcvae", "dsprites", beta=2)


def _entry(folder: Path) -> Path:
    [entry] = [p for p in folder.iterdir() if not p.name.startswith(".")]  # not the lock files
    return entry


def test_a_battery_is_cached_and_a_corrupt_one_recomputed(tiny):
    request = zoo.BatteryRequest(
        zoo.Point("beta-tcvae", "dsprites", beta=2), PROTOCOL, solver_options=FAST
    )
    first = zoo.battery(request, profile="tiny")
    assert zoo.battery_is_cached(request, "tiny")
    again = zoo.battery(request, profile="tiny")
    assert again.frame.equals(first.frame)
    (_entry(tiny / "batteries") / "tensors.pt").write_bytes(b"damaged")
    with pytest.warns(UserWarning, match="does not match the checksum"):
        redone = zoo.battery(request, profile="tiny")
    assert redone.frame[["delta", "divergence0"]].equals(
        first.frame[["delta", "divergence0"]]
    )  # same seeds, same numbers


def test_a_trapped_battery_entry_is_never_unpickled(tiny, tmp_path):
    request = zoo.BatteryRequest(POINT, PROTOCOL, solver_options=FAST)
    first = zoo.battery(request, profile="tiny")
    plant(_entry(tiny / "batteries"), Trap(tmp_path / "marker"))
    with pytest.warns(UserWarning, match="discarding cached entry"):
        redone = zoo.battery(request, profile="tiny")
    assert not (tmp_path / "marker").exists()
    assert redone.frame[["delta", "divergence0"]].equals(first.frame[["delta", "divergence0"]])


def test_a_cached_battery_comes_back_whole(tiny):
    request = zoo.BatteryRequest(POINT, PROTOCOL, solver_options=FAST)
    first = zoo.battery(request, profile="tiny")
    again = zoo.battery(request, profile="tiny")
    pd.testing.assert_frame_equal(again.frame, first.frame, check_exact=True)
    for name in (f.name for f in fields(first) if f.name not in ("frame", "meta")):
        assert torch.equal(getattr(again, name), getattr(first, name)), name


def test_a_full_disk_costs_a_warning_not_the_battery(tiny, monkeypatch):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full)
    request = zoo.BatteryRequest(POINT, PROTOCOL, solver_options=FAST)
    with pytest.warns(UserWarning) as caught:
        results = zoo.battery(request, profile="tiny")  # neither the model nor the battery is saved
    messages = [str(w.message) for w in caught]
    assert all(
        m.startswith("not cached: ") and m.endswith("No space left on device") for m in messages
    )
    assert any("/batteries/" in m for m in messages) and not results.frame.empty
    assert all(p.name.startswith(".") for p in (tiny / "batteries").iterdir())  # only the lock


def test_the_plan_reads_the_cache_and_changes_nothing(tiny, monkeypatch):
    request = zoo.BatteryRequest(POINT, PROTOCOL, solver_options=FAST)
    zoo.battery(request, profile="tiny")
    model = _entry(tiny / "models")
    (model / "model.pt").write_bytes(b"damaged")
    before = {p.name: p.read_bytes() for p in model.iterdir()}
    _no_training(monkeypatch)
    with pytest.warns(UserWarning, match="is unusable.*does not match the checksum"):
        assert not zoo.is_cached(POINT, "tiny")  # reported, not retrained, not deleted
    assert zoo.battery_is_cached(request, "tiny")  # a cached battery needs no model
    assert not zoo.battery_is_cached(replace(request, split="train"), "tiny")
    assert {p.name: p.read_bytes() for p in model.iterdir()} == before
    assert not zoo.battery(request, profile="tiny").frame.empty  # served without the model


def test_batteries_differ_by_protocol_and_solver(tiny):
    point = zoo.Point("beta-tcvae", "dsprites", beta=2)
    a = zoo.BatteryRequest(point, PROTOCOL, solver_options=FAST)
    b = zoo.BatteryRequest(
        point, AttackProtocol(n_pairs=1, lambdas=(2.0,), seed=0), solver_options=FAST
    )
    zoo.battery(a, profile="tiny")
    assert not zoo.battery_is_cached(b, "tiny")


@pytest.mark.parametrize(
    "request_, problem",
    [
        (dict(family="gan", dataset="dsprites"), "unknown family 'gan'"),
        (dict(family="vae", dataset="mnist"), "unknown dataset 'mnist'"),
        (dict(family="vae", dataset="dsprites", beta=4), "the VAE is beta = 1"),
        (dict(family="seatbelt", dataset="dsprites", latent=4), "takes layers=L"),
        (dict(family="beta-tcvae", dataset="dsprites", layers=2), "has one latent layer"),
        (dict(family="beta-tcvae", dataset="dsprites", latent=0), "positive integer"),
    ],
)
def test_bad_points_are_refused_with_the_reason(request_, problem):
    with pytest.raises(zoo.ZooError, match=problem):
        zoo.Point(**request_)


def test_a_grid_point_outside_the_recipe_and_a_profile_without_one_are_refused(tiny):
    with pytest.raises(zoo.ZooError, match="layers must be in 1..3"):
        zoo.model("seatbelt", "dsprites", beta=2, layers=5, profile="tiny")
    with pytest.raises(zoo.ZooError, match="profile 'laptop' has no zoo recipe.*tiny"):
        zoo.model("vae", "dsprites", profile="laptop")
    with pytest.raises(zoo.ZooError, match="no recipe for 'celeba'"):
        zoo.model("vae", "celeba", profile="tiny")


def test_an_unknown_recipe_key_is_refused(tiny):
    path = Path(zoo.params_root()) / "tiny" / "zoo.yaml"
    path.write_text(TINY.replace("latent: 2", "latnet: 2"))
    with pytest.raises(zoo.ZooError, match="unknown recipe keys \\['latnet'\\]"):
        zoo.recipe("tiny", "swissroll")


def test_the_model_key_covers_the_code_that_determines_weights(tmp_path):
    package = tmp_path / "seatbelt"
    shutil.copytree(
        Path(cache.__file__).parent, package, ignore=shutil.ignore_patterns("__pycache__")
    )
    before = cache.code_digest(package=package)
    (package / "plots.py").write_text((package / "plots.py").read_text() + "\nX = 1\n")
    (package / "chapters.py").write_text((package / "chapters.py").read_text() + "\nX = 1\n")
    assert cache.code_digest(package=package) == before
    for source in ("models.py", "tc.py", "data/base.py"):
        (package / source).write_text((package / source).read_text() + "\nX = 1\n")
        changed = cache.code_digest(package=package)
        assert changed != before, source
        before = changed


def test_a_plan_on_an_empty_cache_lists_every_model(tmp_path):
    table = plan.table(ROOT, "smoke", cache_dir=tmp_path)
    needed = {
        (name, p.resolve(zoo.recipe("smoke", p.dataset)))
        for name in chapters.NEEDS
        for p in chapters.needs(name, **_defaults(name)).models
    }
    models = table[table["kind"] == "model"]
    assert len(models) == len(needed)
    assert set(models["state"]) <= {"to train", "shared"}
    assert (models.loc[models["state"] == "to train", "minutes"] > 0).all()
    assert models["state"].eq("to train").sum() == len({p for _, p in needed})


def _defaults(name: str) -> dict:
    from seatbelt.book import params as P

    return {k: d.default for k, d in P.declared_parameters(ROOT / "book" / f"{name}.ipynb").items()}


def test_the_recipe_digest_follows_results_not_cost_estimates(tiny):
    path = Path(zoo.params_root()) / "tiny" / "zoo.yaml"
    before = zoo.recipes_digest("tiny")
    path.write_text(TINY.replace("mlp_hidden: 8", "mlp_hidden: 8\n    images_per_s: 123"))
    assert zoo.recipes_digest("tiny") == before  # a cost estimate re-runs no chapter
    path.write_text(TINY.replace("steps: 3", "steps: 4"))
    assert zoo.recipes_digest("tiny") != before
