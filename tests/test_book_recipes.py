"""A profile's zoo recipes (params/<profile>/zoo.yaml): each value read as its field's type, and
an error naming the file, the recipe and the key before anything trains."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from seatbelt import zoo

RECIPE = """
lr: {lr}
datasets:
  swissroll:
    n_train: {n_train}
    n_test: 32
    steps: 3
    batch_size: 64
    latent: 2
    seatbelt_latents: {latents}
    seatbelt_hidden: [8, 8]
"""
GOOD = {"lr": "1.0e-3", "n_train": 256, "latents": "[4, 2]"}


def write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **values: object) -> None:
    """A profile "tiny" whose recipe takes ``values`` over :data:`GOOD`."""
    (tmp_path / "params" / "tiny").mkdir(parents=True, exist_ok=True)
    (tmp_path / "params" / "tiny" / "zoo.yaml").write_text(RECIPE.format(**{**GOOD, **values}))
    monkeypatch.setenv(zoo.PARAMS_ENV, str(tmp_path / "params"))


def test_numbers_written_as_yaml_1_1_strings_are_read_as_numbers(tmp_path, monkeypatch):
    write(tmp_path, monkeypatch, lr="1e-3", n_train="1e3")  # both strings to YAML 1.1
    r = zoo.recipe("tiny", "swissroll")
    assert (r.lr, r.n_train, r.seatbelt_latents) == (1e-3, 1000, (4, 2))
    assert type(r.lr) is float and type(r.n_train) is int
    write(tmp_path, monkeypatch)
    assert zoo.recipe("tiny", "swissroll").lr == 1e-3


@pytest.mark.parametrize(
    "values, expected",
    [
        ({"lr": "fast"}, "recipe swissroll, key lr: expected float, got 'fast'"),
        ({"lr": ".nan"}, "recipe swissroll, key lr: expected a finite number, got nan"),
        ({"n_train": 2.5}, "recipe swissroll, key n_train: expected an integer, got 2.5"),
        ({"n_train": "yes"}, "recipe swissroll, key n_train: expected int, got True"),
        (
            {"latents": "four"},
            "recipe swissroll, key seatbelt_latents: expected a list, got 'four'",
        ),
        ({"latents": "[4, x]"}, "recipe swissroll, key seatbelt_latents: expected int, got 'x'"),
        ({"lr": -1}, "recipe for swissroll: sizes, steps, lr and likelihood_std must be positive"),
    ],
)
def test_a_bad_value_names_the_file_the_recipe_and_the_key(tmp_path, monkeypatch, values, expected):
    write(tmp_path, monkeypatch, **values)
    path = tmp_path / "params" / "tiny" / "zoo.yaml"
    with pytest.raises(zoo.ZooError, match=re.escape(f"{path}: ") + ".*" + re.escape(expected)):
        zoo.recipe("tiny", "swissroll")


def test_a_recipe_that_is_not_a_mapping_is_named(tmp_path, monkeypatch):
    (tmp_path / "params" / "tiny").mkdir(parents=True)
    (tmp_path / "params" / "tiny" / "zoo.yaml").write_text("datasets:\n  swissroll: 3\n")
    monkeypatch.setenv(zoo.PARAMS_ENV, str(tmp_path / "params"))
    with pytest.raises(zoo.ZooError, match="the recipe for swissroll must be a mapping"):
        zoo.recipe("tiny", "swissroll")
