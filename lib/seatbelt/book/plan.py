"""The build plan: what every chapter of a profile needs from the model zoo, what is cached, what it
costs.

    python -m seatbelt.book plan --profile cpu     # before anything runs
    python -m seatbelt.book zoo --profile cpu [--dask tcp://host:8786]
                                                   # train every model of the profile

A model or battery needed by several chapters is paid by the first one (in toc order) and
listed as shared by the others. Minutes are estimates from the recipe's measured costs
(``images_per_s``, ``attack_eval_ms`` in ``params/<profile>/zoo.yaml``), never measurements.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pandas as pd

from .. import chapters, zoo
from . import params as P
from .layout import Job, Log, jobs
from .tasks import map_tasks


def chapter_parameters(job: Job) -> dict[str, Any]:
    """A chapter's full parameters: its declared defaults under the profile's values."""
    declared = P.declared_parameters(job.source)
    return {**{name: d.default for name, d in declared.items()}, **job.params}


def needs_of(root: Path, profile: str) -> list[tuple[Job, zoo.Needs]]:
    """Every chapter's needs at ``profile``, in build order (validated before anything runs)."""
    out = []
    for job in jobs(root, profile):
        params = chapter_parameters(job)
        out.append((job, chapters.needs(P.chapter_name(job.entry), **params)))
    return out


def table(root: Path, profile: str, cache_dir=None) -> pd.DataFrame:
    """One row per model and battery of each chapter: whether it is cached, and the minutes it
    costs."""
    rows, seen = [], set()
    for job, needs in needs_of(root, profile):
        chapter, chapter_profile = P.chapter_name(job.entry), job.params.get("profile", profile)
        items = [
            ("model", p, p.resolve(zoo.recipe(chapter_profile, p.dataset))) for p in needs.models
        ]
        items += [("battery", b, zoo.resolved(b, chapter_profile)) for b in needs.batteries]
        mine = (
            set()
        )  # two requests of one chapter may name one model (the VAE is the beta-TCVAE at beta = 1)
        for kind, request, resolved in items:
            key = (kind, chapter_profile, resolved)
            if key in mine:
                continue
            mine.add(key)
            shared = key in seen
            seen.add(key)
            if kind == "model":
                cached = zoo.is_cached(request, chapter_profile, cache_dir=cache_dir)
                cost, what, todo = zoo.training_minutes, resolved.label, "to train"
            else:
                cached = zoo.attack_is_cached(request, chapter_profile, cache_dir=cache_dir)
                cost, what, todo = zoo.attack_minutes, zoo.attack_label(resolved), "to run"
            dataset = (resolved if kind == "model" else resolved.point).dataset
            rows.append(
                {
                    "chapter": chapter,
                    "kind": kind,
                    "what": what,
                    "dataset": dataset,
                    "state": "cached" if cached else ("shared" if shared else todo),
                    "minutes": 0.0 if cached or shared else cost(request, chapter_profile),
                }
            )
    return pd.DataFrame(rows, columns=["chapter", "kind", "what", "dataset", "state", "minutes"])


def minutes_by_chapter(plan: pd.DataFrame) -> dict[str, float]:
    return plan.groupby("chapter", sort=False)["minutes"].sum().to_dict()


def estimates(root: Path, profile: str, todo: list[Job], log: Log = print) -> dict[str, float]:
    """Minutes of zoo work per chapter of ``todo`` (0 when all is cached), for a build's ETA.

    Never raises: an estimate must not stop a build, so a failed plan is one line and no ETA.
    """
    try:
        minutes = minutes_by_chapter(table(root, profile))
    except Exception as e:
        log(f"(no ETA: the plan failed with {type(e).__name__}: {e})")
        return {}
    found = {job.entry: minutes.get(P.chapter_name(job.entry), 0.0) for job in todo}
    log(
        f"plan: about {sum(found.values()):.1f} min of training and attacks "
        f"for {len(todo)} chapter(s)"
    )
    return found


def report(root: Path, profile: str, log: Log = print, cache_dir=None) -> pd.DataFrame:
    """Print the plan chapter by chapter, with a total; return it."""
    plan = table(root, profile, cache_dir)
    for job in jobs(root, profile):
        name = P.chapter_name(job.entry)
        rows = plan[plan["chapter"] == name]
        if rows.empty:
            log(f"{name}: nothing from the zoo")
            continue
        log(
            f"{name}: {int((rows['kind'] == 'model').sum())} models, "
            f"{int((rows['kind'] == 'battery').sum())} batteries, about "
            f"{rows['minutes'].sum():.1f} min"
        )
        for _, r in rows.iterrows():
            cost = f"{r['minutes']:6.1f} min" if r["minutes"] > 0 else "          "
            log(f"  {cost}  {r['kind']:<7} {r['state']:<8} {r['dataset']:<9} {r['what']}")
    counts = plan["state"].value_counts()
    log(
        f"total: about {plan['minutes'].sum():.1f} min for {int(counts.get('to train', 0))} models "
        f"to train and {int(counts.get('to run', 0))} batteries to run; "
        f"{int(counts.get('cached', 0))} cached, {int(counts.get('shared', 0))} shared between "
        f"chapters (estimates from params/{profile}/zoo.yaml)"
    )
    return plan


def train_point(point: zoo.Point, profile: str) -> dict[str, Any]:
    """Train (or find) one zoo model; a dict a Dask worker can send back."""
    started = time.perf_counter()
    try:
        trained = zoo.get(point, profile)
    except Exception as e:  # one failed model is reported; the others still train
        return {
            "what": point.label,
            "status": "failed",
            "seconds": time.perf_counter() - started,
            "error": f"{type(e).__name__}: {e}",
        }
    return {
        "what": point.label,
        "status": "cached" if trained.cached else "trained",
        "seconds": time.perf_counter() - started,
        "error": "",
    }


def build_zoo(root: Path, profile: str, dask: str | None = None, log: Log = print) -> pd.DataFrame:
    """Train every model that any chapter of ``profile`` needs, serially or on a Dask cluster.

    Each model is cached as soon as it is trained, so an interrupted build resumes with what was
    done.
    """
    points: dict[zoo.Point, str] = {}
    for job, needs in needs_of(root, profile):
        chapter_profile = job.params.get("profile", profile)
        for point in needs.models:
            points.setdefault(
                point.resolve(zoo.recipe(chapter_profile, point.dataset)), chapter_profile
            )
    tasks = [(point, chapter_profile) for point, chapter_profile in points.items()]
    log(f"zoo at {profile}: {len(tasks)} models")

    def report(i: int, r: dict[str, Any], done: int) -> None:
        line = f"[{done}/{len(tasks)}] {r['what']}: {r['status']} in {r['seconds']:.1f} s"
        log(f"{line} {r['error']}".rstrip())

    results = map_tasks(train_point, tasks, dask=dask, report=report)
    return pd.DataFrame(results)
