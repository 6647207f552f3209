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

    python bench/zoo_parallel.py [--profile cpu] [--steps 60]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import time

import pandas as pd
import torch

from goals import save
from seatbelt import training, zoo
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--steps", type=int, default=60)
    args = parser.parse_args()
    cores = torch.get_num_threads()
    rows = []
    for name, points in PAIRS.items():
        images = sum(args.steps * zoo.recipe(args.profile, p.dataset).batch_size for p in points)
        for p in points:  # the data and the compiled TC loops, so that neither arm pays for them
            train_one(p, args.profile, 2, None)
        started = time.perf_counter()
        for p in points:
            train_one(p, args.profile, args.steps, None)
        serial = time.perf_counter() - started
        context = mp.get_context("spawn")
        started = time.perf_counter()
        with context.Pool(len(points)) as pool:
            pool.starmap(train_one, [(p, args.profile, args.steps, 1) for p in points])
        parallel = time.perf_counter() - started  # process start-up included, as the zoo pays it
        rows.append(
            {
                "models": name,
                f"serial, {cores} threads (img/s)": images / serial,
                f"{len(points)} processes x 1 thread (img/s)": images / parallel,
                "speed-up": serial / parallel,
            }
        )
    table = pd.DataFrame(rows)
    pd.set_option("display.width", 160)
    print(
        f"Training throughput at profile {args.profile}, {args.steps} steps per model, "
        f"{cores} cores"
    )
    print(table.to_string(index=False, float_format=lambda v: f"{v:,.2f}"))
    speedup = float(table["speed-up"].median())
    save(
        "zoo_parallel",
        [
            {
                "goal": "one single-thread process per core trains the zoo faster",
                "target": "> 1x serial",
                "measured": f"{speedup:.2f}x (median over model pairs)",
                "met": speedup > 1,
            }
        ],
    )


if __name__ == "__main__":
    main()
