"""A compiled training step: ``torch.compile`` over the model and its loss together, against the
eager step that ``seatbelt.training.train`` takes (whose TC estimator loops are compiled already).

For three zoo models at the profile's recipe it times, side by side in one run, the eager step and
the compiled one (forward, backward and Adam, images channels-last as in training), and the
compile itself, the first compiled step less an eager one. A cold build pays that compile once
per model (per process and shape), so the bench also prints the steps a model must train for the
compiled step to pay for its compile, against the recipe's steps. The two steps must compute the
same loss from the same weights (checked, to float32 tolerance).

    python bench/compiled_step.py [--profile cpu] [--steps 20]
"""

from __future__ import annotations

import argparse
import copy
import time

import pandas as pd
import torch
import torch._inductor.config

from goals import save
from seatbelt import training, zoo
from seatbelt.models import build_model

# inductor draws its own random numbers unless told to call torch's: the check that both steps
# compute the same loss needs the same draws of z
torch._inductor.config.fallback_random = True

POINTS = {
    "dSprites VAE (d_z 10)": zoo.Point("vae", "dsprites", 1.0),
    "dSprites beta-TCVAE (beta 6)": zoo.Point("beta-tcvae", "dsprites", 6.0),
    "dSprites Seatbelt (L 4)": zoo.Point("seatbelt", "dsprites", 6.0, layers=4),
    "CIFAR-10 VAE": zoo.Point("vae", "cifar10", 1.0),
}


def timed_steps(loss_fn, batches, optimiser) -> tuple[list[float], float]:
    """Seconds of each step, and the first step's loss."""
    times, first = [], None
    for x in batches:
        started = time.perf_counter()
        loss = loss_fn(x)
        optimiser.zero_grad(set_to_none=True)
        loss.total.backward()
        optimiser.step()
        times.append(time.perf_counter() - started)
        first = float(loss.total) if first is None else first
    return times, first


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per arm")
    args = parser.parse_args()
    rows = []
    for name, point in POINTS.items():
        point, recipe, config, data = zoo._prepare(point, args.profile)
        training.seed_everything(0)
        eager = build_model(training.complete_config(config, data)).train()
        compiled_model = copy.deepcopy(eager)
        generator = torch.Generator().manual_seed(0)
        layout = torch.channels_last
        batches = [
            x.contiguous(memory_format=layout)
            for _, x in zip(
                range(args.steps + 3), data.batches(recipe.batch_size, generator=generator)
            )
        ]
        for model in (eager, compiled_model):
            model.to(memory_format=layout)
        arms, first = {}, {}
        for arm, model, loss_fn in (
            ("eager", eager, eager.loss),
            ("compiled", compiled_model, torch.compile(compiled_model.loss, dynamic=False)),
        ):
            optimiser = torch.optim.Adam(model.parameters(), lr=recipe.lr)
            torch.manual_seed(0)  # the same draws of z in both arms' first step
            arms[arm], first[arm] = timed_steps(loss_fn, batches, optimiser)
        # the same weights and batch give the same loss (the seeded draws of z alike)
        same = abs(first["eager"] - first["compiled"]) <= 1e-4 * abs(first["eager"])
        eager_s = float(pd.Series(arms["eager"][3:]).median())
        compiled_s = float(pd.Series(arms["compiled"][3:]).median())
        compile_s = arms["compiled"][0] - eager_s
        gain = eager_s - compiled_s
        rows.append(
            {
                "model": name,
                "eager (img/s)": recipe.batch_size / eager_s,
                "compiled (img/s)": recipe.batch_size / compiled_s,
                "speed-up": eager_s / compiled_s,
                "compile (s)": compile_s,
                "steps to pay": compile_s / gain if gain > 0 else float("inf"),
                "recipe steps": recipe.steps,
                "same loss": same,
            }
        )
        print(rows[-1], flush=True)
    table = pd.DataFrame(rows)
    pd.set_option("display.width", 180)
    print(f"\nThe training step compiled whole, profile {args.profile}, {args.steps} steps per arm")
    print(table.to_string(index=False, float_format="{:,.2f}".format))
    # a cold build pays every model's compile once: the step pays only within the recipe
    pays = bool(((table["steps to pay"] < table["recipe steps"]) & table["same loss"]).all())
    save(
        "compiled_step",
        [
            {
                "goal": "a compiled training step pays for its compile within a recipe",
                "target": "steps to pay < recipe steps, every model",
                "measured": ", ".join(
                    f"{r['model']}: {r['speed-up']:.2f}x, pays after {r['steps to pay']:.0f}"
                    for r in rows
                ),
                "met": pays,
            }
        ],
    )


if __name__ == "__main__":
    main()
