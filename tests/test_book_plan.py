"""The plan (`make plan`, and a build's ETA): read-only, and free of the runner."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from seatbelt import training, zoo
from seatbelt.book import plan

REPO = Path(__file__).resolve().parents[1]
RECIPE = """
datasets:
  dsprites:
    image_size: 32
    n_train: 256
    n_test: 32
    steps: 2
    batch_size: 64
"""


def test_the_plan_does_not_import_the_runner():
    code = "import sys, seatbelt.book.plan; print('seatbelt.book.runner' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


@pytest.fixture
def book(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The intro chapter alone, with a smoke recipe that trains in a second, and its own caches."""
    (tmp_path / "_toc.yml").write_text("format: jb-book\nroot: book/intro\n")
    (tmp_path / "book").mkdir()
    shutil.copy(REPO / "book" / "intro.ipynb", tmp_path / "book" / "intro.ipynb")
    (tmp_path / "params" / "smoke").mkdir(parents=True)
    (tmp_path / "params" / "smoke" / "zoo.yaml").write_text(RECIPE)
    monkeypatch.setenv(zoo.PARAMS_ENV, str(tmp_path / "params"))
    monkeypatch.setenv("SEATBELT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("SEATBELT_PROGRESS", "off")
    return tmp_path


def test_the_plan_trains_and_deletes_nothing_even_over_a_damaged_cache(book, monkeypatch):
    for job, needs in plan.needs_of(book, "smoke"):
        for point in needs.models:
            zoo.get(point, "smoke")
    cache = book / "cache"
    for weights in cache.rglob("model.pt"):
        weights.write_bytes(b"damaged")  # a build would retrain these: the plan must not

    def forbidden(*args, **kwargs):
        raise AssertionError("the plan trained or attacked")

    monkeypatch.setattr(training, "train", forbidden)
    monkeypatch.setattr(zoo, "run_battery", forbidden)
    before = {p: p.read_bytes() for p in cache.rglob("*") if p.is_file()}
    table = plan.table(book, "smoke")
    assert {p: p.read_bytes() for p in cache.rglob("*") if p.is_file()} == before
    assert set(table["state"]) <= {"to train", "to run", "shared"}  # damaged is not cached


def test_the_attacks_pass_runs_every_uncached_attack_once_in_worker_processes(book):
    assert (plan.build_zoo(book, "smoke", log=lambda _: None)["status"] != "failed").all()
    first = plan.build_attacks(book, "smoke", workers=2, log=lambda _: None)
    assert len(first) > 1 and (first["status"] == "done").all()
    table = plan.table(book, "smoke")
    assert set(table["state"]) <= {"cached", "shared"}  # the chapter will find all of it
    assert plan.build_attacks(book, "smoke", workers=2, log=lambda _: None).empty
