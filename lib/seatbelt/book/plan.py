"""The build plan: what every chapter of a profile needs from the model zoo, what is cached, what it
costs.

    python -m seatbelt.book plan --profile cpu     # before anything runs
    python -m seatbelt.book zoo --profile cpu [--dask tcp://host:8786] [--workers N]
                                                   # train every model of the profile, then
                                                   # run every attack (N processes at once)

A model or battery needed by several chapters is paid by the first one (in toc order) and
listed as shared by the others. Minutes are estimates from the recipe's measured costs
(``images_per_s``, ``attack_eval_ms`` in ``params/<profile>/zoo.yaml``), never measurements.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

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


def _outcome(what: str, work: Callable[[], bool]) -> dict[str, Any]:
    """Run ``work`` (True when it found its result cached): a dict a worker process can send back,
    one failure reported rather than raised, so the other tasks still run."""
    started = time.perf_counter()
    try:
        cached = work()
    except Exception as e:
        return {
            "what": what,
            "status": "failed",
            "seconds": time.perf_counter() - started,
            "error": f"{type(e).__name__}: {e}",
        }
    return {
        "what": what,
        "status": "cached" if cached else "done",
        "seconds": time.perf_counter() - started,
        "error": "",
    }


def train_point(point: zoo.Point, profile: str) -> dict[str, Any]:
    """Train (or find) one zoo model; a dict a Dask worker can send back."""
    return _outcome(point.label, lambda: zoo.get(point, profile).cached)


def run_attack(request, profile: str) -> dict[str, Any]:
    """Run (or find) one attack request of the zoo; a dict a worker process can send back."""

    def work() -> bool:
        cached = zoo.attack_is_cached(request, profile)
        zoo.attack(request, profile)
        return cached

    return _outcome(zoo.attack_label(request), work)


def _selected(root: Path, profile: str, only: tuple[str, ...]) -> list[tuple[Job, zoo.Needs]]:
    return [
        (job, needs)
        for job, needs in needs_of(root, profile)
        if not only or job.entry in only or P.chapter_name(job.entry) in only
    ]


def _report(tasks: list, what: str, log: Log) -> Callable[[int, dict[str, Any], int], None]:
    def report(i: int, r: dict[str, Any], done: int) -> None:
        status = what if r["status"] == "done" else r["status"]
        line = f"[{done}/{len(tasks)}] {r['what']}: {status} in {r['seconds']:.1f} s"
        log(f"{line} {r['error']}".rstrip())

    return report


def build_zoo(
    root: Path,
    profile: str,
    dask: str | None = None,
    log: Log = print,
    *,
    only: tuple[str, ...] = (),
) -> pd.DataFrame:
    """Train every model that any chapter of ``profile`` (``only``: those chapters) needs,
    serially (one process on every thread: two single-thread processes train more slowly, see
    bench/zoo_parallel.py) or on a Dask cluster.

    Each model is cached as soon as it is trained, so an interrupted build resumes with what was
    done.
    """
    points: dict[zoo.Point, str] = {}
    for job, needs in _selected(root, profile, only):
        chapter_profile = job.params.get("profile", profile)
        for point in needs.models:
            points.setdefault(
                point.resolve(zoo.recipe(chapter_profile, point.dataset)), chapter_profile
            )
    tasks = [(point, chapter_profile) for point, chapter_profile in points.items()]
    log(f"zoo at {profile}: {len(tasks)} models")
    results = map_tasks(train_point, tasks, dask=dask, report=_report(tasks, "trained", log))
    return pd.DataFrame(results)


def build_attacks(
    root: Path,
    profile: str,
    *,
    workers: int = 1,
    dask: str | None = None,
    only: tuple[str, ...] = (),
    log: Log = print,
) -> pd.DataFrame:
    """Run every attack that a chapter of ``profile`` (``only``: those chapters) asks the zoo for
    and that is not cached, ``workers`` processes at a time (the attack solver barely uses a
    second thread, so two single-thread processes on two cores run about 2.5x as many batteries
    per minute: bench/zoo_parallel.py), or on a Dask cluster. Their models must be trained first
    (:func:`build_zoo`), or each worker trains its own. The longest attacks start first."""
    requests: dict[Any, str] = {}
    for job, needs in _selected(root, profile, only):
        chapter_profile = job.params.get("profile", profile)
        for request in needs.batteries:
            resolved = zoo.resolved(request, chapter_profile)
            if resolved not in requests and not zoo.attack_is_cached(request, chapter_profile):
                requests[resolved] = chapter_profile
    cost = {task: zoo.attack_minutes(*task) for task in requests.items()}
    tasks = sorted(cost, key=lambda task: -cost[task])
    minutes = sum(cost.values())
    log(
        f"attacks at {profile}: {len(tasks)} to run, about {minutes:.1f} min of solver time "
        f"by the plan, on {min(workers, max(len(tasks), 1))} process(es)"
    )
    results = map_tasks(
        run_attack, tasks, dask=dask, workers=workers, report=_report(tasks, "ran", log)
    )
    return pd.DataFrame(results, columns=["what", "status", "seconds", "error"])
