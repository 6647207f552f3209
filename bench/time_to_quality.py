"""Time to quality: how many training seconds the cpu recipes need to reach their own held-out ELBO.

The cpu recipe trains every zoo model for a fixed number of steps under a cosine learning-rate
schedule (``params/<profile>/zoo.yaml``). If a larger peak learning rate gets there in fewer steps,
more of the paper's training budget fits in the same minutes. For the VAE of each dataset this
bench trains, side by side in one run:

* the recipe itself, at ``--seeds`` seeds: its held-out ELBO (the mean over seeds) is the bar, and
  the spread between its seeds is the tolerance of "equal";
* shorter cosine runs at a larger peak learning rate (``--candidates``, ``lr x steps``);
* a constant learning rate (``constant:lr x steps``) at several lengths: a schedule that does not
  depend on the total, so that snapshots of one run would serve every training budget (the reach
  issue's study). At the recipe's length its ELBO against the recipe's says what that costs.

Each row prints the training seconds (evaluation excluded), the held-out ELBO (beta = 1, one draw
per image, the same held-out images for every run) and the speed-up over the recipe. The goal: a
run at least 1.5x shorter whose ELBO is no worse than the recipe's by more than the recipe's seed
spread. A candidate that diverges (a non-finite loss) is reported as such.

    python bench/time_to_quality.py [--profile cpu] [--datasets dsprites cifar10] [--seeds 2]
        [--candidates 2e-3x400 constant:1e-3x400 ...] [--eval-images 1000]
"""

from __future__ import annotations

import argparse
import time

import pandas as pd
import torch

from goals import save
from seatbelt import heldout, training, zoo
from seatbelt.models import build_model

GOAL = 1.5


def run(
    point: zoo.Point, profile: str, *, steps: int, lr: float, schedule: str, seed: int, test
) -> dict:
    """Train the point's model with this schedule (never cached) and evaluate it."""
    point, recipe, config, data = zoo._prepare(point, profile)
    training.seed_everything(seed)  # the initial weights, as the zoo seeds them
    model = build_model(training.complete_config(config, data))
    config_run = training.TrainConfig(
        steps=steps, batch_size=recipe.batch_size, lr=lr, schedule=schedule, seed=seed
    )
    started = time.perf_counter()
    try:
        training.train(model, data, config_run, show_progress=False)
    except FloatingPointError:
        return {"seconds": time.perf_counter() - started, "elbo": float("nan"), "diverged": True}
    seconds = time.perf_counter() - started
    elbo = float(heldout.per_image(model, test, samples=1, seed=0)["elbo"].mean())
    return {"seconds": seconds, "elbo": elbo, "diverged": False}


def parse_candidate(text: str) -> tuple[str, float, int]:
    """``[schedule:]lr x steps``, e.g. ``2e-3x400`` (cosine) or ``constant:1e-3x400``."""
    schedule, _, run_text = text.lower().rpartition(":")
    lr, steps = run_text.split("x")
    return schedule or "cosine", float(lr), int(steps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--datasets", nargs="+", default=["dsprites", "cifar10"])
    parser.add_argument("--seeds", type=int, default=2, help="seeds of the recipe (its spread)")
    parser.add_argument(
        "--candidates",
        nargs="+",
        default=[
            "2e-3x400",
            "3e-3x300",
            "constant:1e-3x300",
            "constant:1e-3x400",
            "constant:1e-3x600",
        ],
    )
    parser.add_argument("--eval-images", type=int, default=1000)
    args = parser.parse_args()
    if args.seeds < 2:
        parser.error("--seeds: the tolerance is the recipe's seed spread; give at least 2.")
    candidates = [parse_candidate(c) for c in args.candidates]
    rows, goals = [], []
    for dataset in args.datasets:
        recipe = zoo.recipe(args.profile, dataset)
        point = zoo.Point("vae", dataset, 1.0)
        held_out = zoo.data(dataset, args.profile, "test")
        test = held_out.get(torch.arange(min(args.eval_images, len(held_out))))
        base = dict(point=point, profile=args.profile, test=test)
        run(steps=2, lr=recipe.lr, schedule="cosine", seed=0, **base)  # data, compiled TC loops
        runs = [("recipe", recipe.lr, recipe.steps, "cosine", seed) for seed in range(args.seeds)]
        runs += [(f"{kind}, lr {lr:g}", lr, steps, kind, 0) for kind, lr, steps in candidates]
        for name, lr, steps, schedule, seed in runs:
            out = run(steps=steps, lr=lr, schedule=schedule, seed=seed, **base)
            row = {"dataset": dataset, "run": name, "lr": f"{lr:g}", "steps": steps, "seed": seed}
            rows.append({**row, **out})
            print(f"{dataset} {name} x {steps} (seed {seed}): {out}", flush=True)
        table = pd.DataFrame([r for r in rows if r["dataset"] == dataset])
        ref = table[table["run"] == "recipe"]
        bar, spread, ref_seconds = (
            ref["elbo"].mean(),
            ref["elbo"].max() - ref["elbo"].min(),
            (ref["seconds"].mean()),
        )
        table["speed-up"] = ref_seconds / table["seconds"]
        table["elbo - recipe"] = table["elbo"] - bar
        good = table[(table["run"] != "recipe") & (table["elbo"] >= bar - spread)]
        best = float(good["speed-up"].max()) if len(good) else float("nan")
        print(
            f"\n{dataset} VAE, recipe {recipe.steps} steps of {recipe.batch_size} at lr "
            f"{recipe.lr:g}: held-out ELBO {bar:.2f} (seed spread {spread:.2f}), "
            f"{ref_seconds:.0f} s of training"
        )
        print(table.drop(columns="dataset").to_string(index=False, float_format="{:,.2f}".format))
        goals.append(
            {
                "goal": f"{dataset}: time to the recipe's held-out ELBO",
                "target": f">= {GOAL}x shorter",
                "measured": f"{best:.2f}x" if len(good) else "no candidate reached it",
                "met": bool(len(good)) and best >= GOAL,
            }
        )
    save("time_to_quality", goals)


if __name__ == "__main__":
    main()
