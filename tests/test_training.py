"""The training loop and the model cache."""

import json
from dataclasses import replace

import pandas as pd
import pytest
import torch

from seatbelt.data import Data
from seatbelt.models import ModelConfig, build_model
from seatbelt.training import TrainConfig, fit, train

CONFIG = ModelConfig(data_shape=(1, 32, 32), latent_sizes=(4,), beta=2)
RUN = TrainConfig(steps=6, batch_size=64, seed=0)


def _data(n=256, seed=0, name="blobs"):
    g = torch.Generator().manual_seed(seed)
    return Data(
        name,
        (torch.rand(n, 1, 32, 32, generator=g) > 0.7).to(torch.uint8),
        levels=2,
        meta={"seed": seed},
    )


def _weights(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def test_history_has_one_row_per_epoch_and_cosine_ends_at_zero():
    history = fit(
        CONFIG, _data(), TrainConfig(epochs=2, batch_size=64), use_cache=False, progress=False
    ).history
    assert list(history.epoch) == [0, 1] and list(history.step) == [4, 8]
    assert {"loss", "recon", "mi", "tc", "dwkl", "images_per_s"} <= set(history.columns)
    assert history.lr.iloc[-1] == pytest.approx(0.0, abs=1e-12)


def test_same_seed_same_weights_other_seed_other_weights():
    a = fit(CONFIG, _data(), RUN, use_cache=False, progress=False).model
    b = fit(CONFIG, _data(), RUN, use_cache=False, progress=False).model
    c = fit(
        CONFIG,
        _data(),
        TrainConfig(steps=6, batch_size=64, seed=1),
        use_cache=False,
        progress=False,
    ).model
    assert torch.equal(_weights(a), _weights(b))
    assert not torch.equal(_weights(a), _weights(c))


def test_cache_round_trip(tmp_path):
    first = fit(CONFIG, _data(), RUN, cache_dir=tmp_path, progress=False)
    second = fit(CONFIG, _data(), RUN, cache_dir=tmp_path, progress=False)
    assert not first.cached and second.cached and first.path == second.path
    assert torch.equal(_weights(first.model), _weights(second.model))
    assert second.model.config.dataset_size == 256
    pd.testing.assert_frame_equal(second.history, first.history)


def test_cache_key_covers_model_run_and_data(tmp_path):
    base = fit(CONFIG, _data(), RUN, cache_dir=tmp_path, progress=False).path
    others = [
        fit(
            ModelConfig(data_shape=(1, 32, 32), latent_sizes=(4,), beta=3),
            _data(),
            RUN,
            cache_dir=tmp_path,
            progress=False,
        ),
        fit(
            CONFIG,
            _data(),
            TrainConfig(steps=6, batch_size=64, seed=5),
            cache_dir=tmp_path,
            progress=False,
        ),
        fit(CONFIG, _data(seed=1), RUN, cache_dir=tmp_path, progress=False),
    ]
    assert all(not o.cached for o in others)
    assert len({base, *(o.path for o in others)}) == 4


@pytest.mark.parametrize("damage", ["weights", "checksum", "config", "missing"])
def test_corrupt_or_mismatched_checkpoint_is_retrained(tmp_path, damage):
    path = fit(CONFIG, _data(), RUN, cache_dir=tmp_path, progress=False).path
    meta = json.loads((path / "meta.json").read_text())
    if damage == "weights":
        (path / "model.pt").write_bytes(b"not a checkpoint")
    elif damage == "checksum":
        meta["model_sha256"] = "0" * 64
        (path / "meta.json").write_text(json.dumps(meta))
    elif damage == "config":
        meta["train_config"]["lr"] = 0.5
        (path / "meta.json").write_text(json.dumps(meta))
    else:
        (path / "history.csv").unlink()
    with pytest.warns(UserWarning, match="retrained"):
        again = fit(CONFIG, _data(), RUN, cache_dir=tmp_path, progress=False)
    assert not again.cached
    assert fit(CONFIG, _data(), RUN, cache_dir=tmp_path, progress=False).cached


def test_non_finite_loss_stops_with_the_step_and_config():
    x = torch.zeros(128, 1, 32, 32)
    x[100] = float("nan")
    data = Data("nan", x, levels=0)
    with pytest.raises(FloatingPointError, match=r"non-finite loss at step \d+ .*ModelConfig"):
        train(
            build_model(replace(CONFIG, dataset_size=128)),
            data,
            TrainConfig(epochs=1, batch_size=128),
        )


@pytest.mark.parametrize(
    "run,match",
    [
        (TrainConfig(), "exactly one"),
        (TrainConfig(steps=1, epochs=1), "exactly one"),
        (TrainConfig(steps=1, batch_size=1000), "exceeds"),
        (TrainConfig(steps=1, schedule="linear"), "schedule"),
    ],
)
def test_bad_run_configs_raise_before_training(run, match):
    with pytest.raises(ValueError, match=match):
        fit(CONFIG, _data(), run, use_cache=False, progress=False)


def test_data_shape_mismatch_raises():
    with pytest.raises(ValueError, match="data_shape"):
        fit(ModelConfig(data_shape=(1, 64, 64)), _data(), RUN, use_cache=False, progress=False)


def test_training_hands_back_the_default_layout_so_fresh_and_cached_models_agree(tmp_path):
    """Training runs channels-last; a fresh model and its cached copy give identical outputs."""
    fresh = fit(CONFIG, _data(), RUN, cache_dir=tmp_path, progress=False).model
    assert all(p.is_contiguous() for p in fresh.parameters())
    cached = fit(CONFIG, _data(), RUN, cache_dir=tmp_path, progress=False).model
    x = _data(n=8, seed=3).get(slice(None))
    assert torch.equal(fresh.reconstruct(x), cached.reconstruct(x))
