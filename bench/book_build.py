"""The book's build-time budgets: cold cpu build, warm rebuild, one edited chapter.

Prints a table against the goals:

* cold, at the cpu profile, every chapter and the scorecard in at most 90 minutes on 2 cores:
  the plan's estimate on an empty cache, and the minutes each chapter took in the last build
  of the profile (its stamps), when there is one;
* warm (whole cache warm, nothing changed), ``make book`` in at most 1 minute: timed here when a
  build of the profile exists (it renders the HTML again);
* the models of the cpu book, and which are shared between chapters.

    python bench/book_build.py [--profile cpu] [--skip-warm]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time

import pandas as pd

from seatbelt.book import layout, plan, toc

COLD_GOAL_MIN, WARM_GOAL_S = 90.0, 60.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--skip-warm", action="store_true", help="do not time a warm rebuild")
    args = parser.parse_args()
    root = toc.find_root(".")

    with tempfile.TemporaryDirectory() as empty:
        cold = plan.table(root, args.profile, cache_dir=empty)
    per_chapter = cold.groupby("chapter", sort=False)["minutes"].sum()
    stamps = layout.build_dir(root, args.profile) / "stamps"
    measured = {
        p.stem.split("__")[-1]: json.loads(p.read_text())["seconds"] / 60
        for p in stamps.glob("*.json")
    }
    rows = [
        {
            "chapter": c,
            "estimated cold min": round(m, 1),
            "last build min": round(measured[c], 1) if c in measured else None,
        }
        for c, m in per_chapter.items()
    ]
    print(pd.DataFrame(rows).to_string(index=False))
    models = cold[cold["kind"] == "model"]
    print(
        f"\nmodels: {int((models['state'] == 'to train').sum())} to train, "
        f"{int((models['state'] == 'shared').sum())} requests shared with an earlier chapter"
    )
    total = cold["minutes"].sum()
    goal = "met" if total <= COLD_GOAL_MIN else "NOT met"
    print(
        f"cold {args.profile} build, estimated: {total:.1f} min of training and attacks (goal "
        f"{COLD_GOAL_MIN:.0f} min: {goal})"
    )
    if measured:
        print(
            f"last build, measured: {sum(measured.values()):.1f} min over {len(measured)} chapters"
        )

    if args.skip_warm or not measured:
        print("warm rebuild: not timed (no build of this profile yet, or --skip-warm)")
        return
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "seatbelt.book", "build", "--profile", args.profile],
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - start
    ran = [line for line in done.stdout.splitlines() if ": ran in" in line]
    print(
        f"warm rebuild: {seconds:.0f} s, {len(ran)} chapter(s) re-executed, exit {done.returncode} "
        f"(goal {WARM_GOAL_S:.0f} s: "
        f"{'met' if seconds <= WARM_GOAL_S and done.returncode == 0 else 'NOT met'})"
    )


if __name__ == "__main__":
    main()
