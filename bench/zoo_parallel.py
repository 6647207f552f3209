"""How the zoo should use the cores: one process on every thread, or one single-thread process per
core, each training its own model.

The cpu profile's nets are small at 32x32, and a training step parallelises poorly across two
threads. This bench trains the same pairs of zoo models (the cpu recipe, a shortened run each)
two ways, side by side in one run:

* serial: one process with every thread (torch's default), the two models one after the other,
  as `make zoo` trains them;
* parallel: one process per model, each with one thread, at the same time.

and prints images per wall-clock second of each. Two processes that each use every thread run
about 4x slower (oversubscribed), which is why the parallel arm pins one thread per process.

The same two ways are then timed on attack batteries: two of the layerwise chapter's batteries at
the profile (its solver, cap and controls, on models the zoo has cached), never cached here.

    python bench/zoo_parallel.py [--profile cpu] [--steps 60] [--part training batteries]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd
import torch

from goals import save
from seatbelt import training, zoo
from seatbelt.attacks import run_battery
from seatbelt.book import plan
from seatbelt.book.tasks import map_tasks
from seatbelt.models import build_model

PAIRS = {
    "dSprites VAE + beta-TCVAE (d_z 10)": (
        zoo.Point("vae", "dsprites", 1.0),
        zoo.Point("beta-tcvae", "dsprites", 6.0),
    ),
    "dSprites Seatbelt L 4 + VAE d_z 64": (
        zoo.Point("seatbelt", "dsprites", 6.0, layers=4),
        zoo.Point("vae", "dsprites", 1.0, 64),
    ),
    "CIFAR-10 VAE + beta-TCVAE": (
        zoo.Point("vae", "cifar10", 1.0),
        zoo.Point("beta-tcvae", "cifar10", 10.0),
    ),
}


def train_one(point: zoo.Point, profile: str, steps: int, threads: int | None) -> float:
    """Seconds to train ``point``'s model for ``steps`` steps of its recipe (not cached)."""
    if threads:
        torch.set_num_threads(threads)
    point, recipe, config, data = zoo._prepare(point, profile)
    model = build_model(training.complete_config(config, data))
    run = training.TrainConfig(steps=steps, batch_size=recipe.batch_size, lr=recipe.lr)
    started = time.perf_counter()
    training.train(model, data, run, show_progress=False)
    return time.perf_counter() - started


def attack_one(request: zoo.BatteryRequest, profile: str, threads: int | None) -> float:
    """Seconds to run ``request``'s battery, controls included (never cached)."""
    if threads:
        torch.set_num_threads(threads)
    request = zoo.resolved(request, profile)
    _, _, attacked = zoo._battery_entry(request, profile, None)
    model = zoo.get(request.point, profile).model
    started = time.perf_counter()
    run_battery(
        model, attacked, request.protocol, attacks=request.attacks, solver=zoo._solver(request)
    )
    return time.perf_counter() - started


def layerwise_batteries(profile: str, count: int = 2) -> list[zoo.BatteryRequest]:
    """The first ``count`` batteries of the layerwise chapter at ``profile`` on cached models,
    each on a different model."""
    root = Path(__file__).resolve().parents[1]
    needs = {job.entry: n for job, n in plan.needs_of(root, profile)}
    (entry,) = [e for e in needs if e.endswith("layerwise")]
    requests, models = [], set()
    for request in needs[entry].batteries:
        if request.point not in models and zoo.is_cached(request.point, profile):
            requests.append(request)
            models.add(request.point)
    if len(requests) < count:
        raise SystemExit(f"fewer than {count} layerwise models cached at {profile}: `make zoo`")
    return requests[:count]


def both_ways(function, tasks: list[tuple]) -> tuple[float, float]:
    """Seconds to run ``function(*task, None)`` for every task in this process, and in one process
    per task at once, the cores shared out among them, as `make zoo` runs attacks
    (:func:`seatbelt.book.tasks.map_tasks`; start-up counted)."""
    started = time.perf_counter()
    for task in tasks:
        function(*task, None)
    serial = time.perf_counter() - started
    started = time.perf_counter()
    map_tasks(function, [(*task, None) for task in tasks], workers=len(tasks))
    return serial, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--part", nargs="+", default=["training", "batteries"])
    args = parser.parse_args()
    cores = torch.get_num_threads()
    pd.set_option("display.width", 160)
    goals = []
    if "training" in args.part:
        rows = []
        for name, points in PAIRS.items():
            images = sum(
                args.steps * zoo.recipe(args.profile, p.dataset).batch_size for p in points
            )
            for p in points:  # the data and the compiled TC loops, so neither arm pays for them
                train_one(p, args.profile, 2, None)
            tasks = [(p, args.profile, args.steps) for p in points]
            serial, parallel = both_ways(train_one, tasks)
            rows.append(
                {
                    "models": name,
                    f"serial, {cores} threads (img/s)": images / serial,
                    f"{len(points)} processes x 1 thread (img/s)": images / parallel,
                    "speed-up": serial / parallel,
                }
            )
        table = pd.DataFrame(rows)
        print(
            f"Training throughput at profile {args.profile}, {args.steps} steps per model, "
            f"{cores} cores"
        )
        print(table.to_string(index=False, float_format=lambda v: f"{v:,.2f}"))
        speedup = float(table["speed-up"].median())
        goals.append(
            {
                "goal": "one single-thread process per core trains the zoo faster",
                "target": "> 1x serial",
                "measured": f"{speedup:.2f}x (median over model pairs)",
                "met": speedup > 1,
            }
        )
    if "batteries" in args.part:
        requests = layerwise_batteries(args.profile)
        attack_one(requests[0], args.profile, None)  # the data and the models, loaded once
        serial, parallel = both_ways(attack_one, [(r, args.profile) for r in requests])
        print(
            f"\nTwo layerwise batteries at profile {args.profile} (controls included), {cores} "
            f"cores: serial {serial:.1f} s, {len(requests)} processes x 1 thread {parallel:.1f} s, "
            f"speed-up {serial / parallel:.2f}x"
        )
        for r in requests:
            print(f"  {zoo.attack_label(r)}")
        goals.append(
            {
                "goal": "one single-thread process per core runs the batteries faster",
                "target": "> 1x serial",
                "measured": f"{serial / parallel:.2f}x (two layerwise batteries)",
                "met": serial / parallel > 1,
            }
        )
    save("zoo_parallel", goals)


if __name__ == "__main__":
    main()
