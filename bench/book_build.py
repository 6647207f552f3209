"""The book's build-time budgets: cold cpu build, warm rebuild, one edited chapter.

Prints a table against the goals:

* cold, at the cpu profile, every chapter and the scorecard in at most 120 minutes on 2 cores:
  the plan's estimate on an empty cache, and the minutes each chapter took in the last build
  of the profile (its stamps), when there is one;
* warm (whole cache warm, nothing changed), ``make book`` in at most 1 minute: timed here when a
  build of the profile exists (it renders the HTML again);
* the models of the cpu book, and which are shared between chapters;
* training throughput: the images per second of training of the convolutional models the
  profile's chapters need, computed from every cached model's own training record (its images and
  its seconds; the Swiss-roll MLPs left out), against 1.5x the figure of the cold cpu build before
  this wave (about 1,600 images/s, read from its progress lines). Models trained side by side
  (bench/zoo_parallel.py) each record their own seconds, so this is per process; the wall-clock
  gain of training two at once is that bench's.

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

from seatbelt import zoo
from seatbelt.book import layout, plan, toc

COLD_GOAL_MIN, WARM_GOAL_S = 120.0, 60.0
BASELINE_IMAGES_PER_S = 1600.0  # the cold cpu build before this wave (issue "Training per minute")


def training_throughput(root, profile: str) -> tuple[float, int, int]:
    """(images per second, models read, models not cached) over the convolutional models that the
    chapters of ``profile`` need, from each cached model's training record."""
    points = {}
    for job, needs in plan.needs_of(root, profile):
        chapter_profile = job.params.get("profile", profile)
        for point in needs.models:
            if point.dataset != "swissroll":
                points.setdefault(
                    point.resolve(zoo.recipe(chapter_profile, point.dataset)), chapter_profile
                )
    images = seconds = 0.0
    read = missing = 0
    for point, chapter_profile in points.items():
        path, meta = zoo._model_entry(point, chapter_profile, None)
        history = path / "history.csv"
        if not history.exists():
            missing += 1
            continue
        last = pd.read_csv(history).iloc[-1]
        images += meta["train_config"]["steps"] * meta["train_config"]["batch_size"]
        seconds += float(last["seconds"])
        read += 1
    return (images / seconds if seconds else float("nan")), read, missing


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

    rate, read, missing = training_throughput(root, args.profile)
    goal = 1.5 * BASELINE_IMAGES_PER_S
    print(
        f"training throughput: {rate:,.0f} images/s over {read} cached convolutional models "
        f"({missing} not cached); goal >= {goal:,.0f} (1.5x the {BASELINE_IMAGES_PER_S:,.0f} of "
        f"the cold build before this wave): {'met' if rate >= goal else 'NOT met'}"
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
