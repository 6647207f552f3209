"""The goals of training and of the attack solvers side by side, as each bench last left them.

bench/train_throughput.py, bench/attacks.py, bench/attack_families.py and bench/peer_attack.py
each write their goal table to _build/bench/<bench>.csv (columns goal, target, measured, met);
`make bench` runs them, then this, so one run prints every goal in one table, met or not.

    python bench/goals.py
"""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd

OUT = Path(__file__).resolve().parents[1] / "_build" / "bench"
PARTS = {
    "train_throughput": "training",
    "attacks": "attacks",
    "attack_families": "attacks per family",
    "peer_attack": "budgeted attacks against the peer's",
    "zoo_parallel": "training processes per core",
    "time_to_quality": "training time to the recipe's quality",
    "compiled_step": "a compiled training step",
    "solver_threads": "the attack solver's threads",
}


def save(bench: str, goals: list[dict]) -> Path:
    """Write one bench's goal rows (goal, target, measured, met) for :func:`main` to print."""
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"{bench}.csv"
    pd.DataFrame(goals, columns=["goal", "target", "measured", "met"]).to_csv(path, index=False)
    return path


def main() -> None:
    tables = []
    for bench, part in PARTS.items():
        path = OUT / f"{bench}.csv"
        if not path.exists():
            print(f"{part}: no results; run `python bench/{bench}.py` first")
            continue
        table = pd.read_csv(path)
        stamp = time.strftime("%Y-%m-%d %H:%M", time.localtime(path.stat().st_mtime))
        tables.append(
            table.assign(
                part=f"{part} ({stamp})", met=table["met"].map({True: "met", False: "not met"})
            )
        )
    if tables:
        print("speed goals, training and attacks (each part from its bench's last run)")
        print(
            pd.concat(tables)[["part", "goal", "target", "measured", "met"]].to_string(index=False)
        )


if __name__ == "__main__":
    main()
