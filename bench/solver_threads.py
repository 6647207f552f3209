"""The attack solver at one and at two threads, at the chapters' own settings.

Raising the attack caps (the attacker's controls) costs solver time, and the chapters' batteries
run on every thread of the machine. This bench solves the same batteries (the book's attacker: the
layerwise chapter's solver, cap, pairs and lambdas) on the layerwise chapter's
VAE and Seatbelt at 1 and at ``--threads`` threads, side by side in one run, and prints seconds,
problems per second and the speed-up. The controls (10x cap, scipy reference) are left out: they
are the same solver on fewer problems.

    python bench/solver_threads.py [--profile cpu] [--threads 2]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd
import torch

from goals import save
from seatbelt import zoo
from seatbelt.attacks import SOLVERS, Attack, AttackProtocol, run_battery
from seatbelt.book import layout, plan

SEATBELT = zoo.Point("seatbelt", "dsprites", 6.0, layers=4)
CASES = {
    "VAE d_z 64, KL": (zoo.Point("vae", "dsprites", 1.0, 64), "kl"),
    "Seatbelt L 4, KL": (SEATBELT, "kl"),
    "Seatbelt L 4, KL on z_L": (SEATBELT, Attack("kl", "top")),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    root = Path(__file__).resolve().parents[1]
    (job,) = [j for j in layout.jobs(root, args.profile) if j.entry.endswith("layerwise")]
    chapter = plan.chapter_parameters(job)
    test = zoo.data("dsprites", args.profile, "test")
    rows = []
    for name, (point, attack) in CASES.items():
        model = zoo.get(point, args.profile).model
        protocol = AttackProtocol(
            n_pairs=chapter["n_pairs"],
            n_lambdas=chapter["n_lambdas"],
            attacks=(attack,),
            seed=0,
            log2_lambda_range=(chapter["log2_lambda_min"], chapter["log2_lambda_max"]),
            cap_check=0,
            reference_check=0,
        )
        cap = chapter["max_iter"]
        seconds = {}
        for threads in (1, args.threads):
            torch.set_num_threads(threads)
            solver = SOLVERS[chapter["solver"]](max_iter=cap, max_evals=2 * cap)
            started = time.perf_counter()
            frame = run_battery(model, test, protocol, solver=solver).frame
            seconds[threads] = time.perf_counter() - started
        problems = len(frame)
        rows.append(
            {
                "battery": name,
                "problems": problems,
                "1 thread (s)": seconds[1],
                f"{args.threads} threads (s)": seconds[args.threads],
                "speed-up": seconds[1] / seconds[args.threads],
                "mean iterations": frame["iterations"].mean(),
            }
        )
        print(rows[-1], flush=True)
    table = pd.DataFrame(rows)
    print(
        f"\nThe {chapter['solver']} solver at cap {chapter['max_iter']}, profile {args.profile}: "
        f"1 against {args.threads} threads"
    )
    print(table.to_string(index=False, float_format="{:,.2f}".format))
    speedup = float(table["speed-up"].median())
    save(
        "solver_threads",
        [
            {
                "goal": f"the solver uses {args.threads} threads",
                "target": "> 1x one thread",
                "measured": f"{speedup:.2f}x (median over batteries)",
                "met": speedup > 1,
            }
        ],
    )


if __name__ == "__main__":
    main()
