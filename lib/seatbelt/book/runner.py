"""Execute the book's chapters with papermill, skipping those whose inputs have not changed.

Layout of one profile's build, ``_build/<profile>/``:

    site/      what Jupyter Book renders: _config.yml, _toc.yml and the executed notebooks
               at the same relative paths as their sources (book/intro.ipynb, ...)
    results/   the chapters' shared ``results_dir``: tidy CSVs and claims/<id>.json
    stamps/    one JSON per chapter: the key of the inputs it last ran with, and its time
    html/      the rendered book (see :mod:`seatbelt.book.render`; open html/index.html)

A chapter's key hashes its source notebook, its final parameters, the profile, the zoo's recipe
of the profile (``params/<profile>/zoo.yaml``, less its cost estimates) and the library's modules
that results can depend on (all but the book machine and the progress lines; comments and
docstrings do not count, :mod:`seatbelt.digest`). An unchanged key with its executed
notebook present means the chapter is not re-executed; the scorecard's key also covers the
claim checks it reads. Trained models come from the model cache of
:func:`seatbelt.training.fit`, so an interrupted build resumes cheaply.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal

import papermill

from .. import digest
from . import monitor
from . import params as P
from . import toc

SCORECARD = "book/scorecard"
Log = Callable[[str], None]


def build_dir(root: Path, profile: str) -> Path:
    return root / "_build" / profile


def site_dir(root: Path, profile: str) -> Path:
    return build_dir(root, profile) / "site"


def results_dir(root: Path, profile: str) -> Path:
    return build_dir(root, profile) / "results"


def _digest_files(files: list[Path], base: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(files):
        h.update(str(f.relative_to(base)).encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()


# What a chapter's pages cannot depend on: the book machine (running, rendering, checking pages)
# and the terminal's progress lines. Editing these re-runs no chapter.
NOT_IN_CHAPTER_KEYS = ("book", "progress")


def library_digest(package: Path = digest.PACKAGE) -> str:
    """A hash of the library modules a chapter's results can depend on, blind to comments and docstrings."""
    return digest.digest(digest.all_modules(package, exclude=NOT_IN_CHAPTER_KEYS))


def claims_digest(results: Path) -> str:
    return _digest_files(list((results / "claims").glob("*.json")), results)


def chapter_key(source: Path, params: dict[str, Any], profile: str, library: str, extra: str = "") -> str:
    payload = json.dumps({"params": params, "profile": profile, "library": library, "extra": extra}, sort_keys=True)
    return hashlib.sha256(source.read_bytes() + payload.encode()).hexdigest()


@dataclass(frozen=True)
class Job:
    entry: str
    source: Path
    output: Path
    params: dict[str, Any]


@dataclass(frozen=True)
class Outcome:
    entry: str
    status: Literal["ran", "unchanged", "failed"]
    seconds: float
    error: str = ""


def plan(root: Path, profile: str) -> list[Job]:
    """Every notebook of the toc with its final parameters; all validated before any runs.

    Raises :class:`~seatbelt.book.params.ParameterError` listing every problem of every chapter.
    """
    problems = toc.problems(root)
    if problems:
        raise P.ParameterError("the toc and book/ disagree:\n" + "\n".join(problems))
    jobs, errors = [], []
    for entry, source in toc.notebooks(root):
        try:
            declared = P.declared_parameters(source)
            params = P.profile_params(root, profile, entry, declared)
        except P.ParameterError as e:
            errors.append(str(e))
            continue
        # Relative to the notebook's folder (where it runs): the rendered page shows the
        # injected parameters, and it must not show this machine's paths.
        params["results_dir"] = os.path.relpath(results_dir(root, profile), source.parent)
        if "profile" in declared:
            params["profile"] = profile
        jobs.append(Job(entry, source, site_dir(root, profile) / source.relative_to(root), params))
    if errors:
        raise P.ParameterError("\n".join(errors))
    # The scorecard reads what every other chapter wrote: it runs last wherever the toc puts it.
    return sorted(jobs, key=lambda j: j.entry == SCORECARD)


def execute(source: Path, output: Path, parameters: dict[str, Any]) -> None:
    """Run one notebook with papermill, from its own folder (as nbval and Jupyter do)."""
    output.parent.mkdir(parents=True, exist_ok=True)
    papermill.execute_notebook(
        str(source), str(output), parameters=parameters, cwd=str(source.parent),
        progress_bar=False, log_output=False, engine_name=monitor.ENGINE,
    )


def run_notebook(notebook: Path, overrides: dict[str, Any], out: Path, profile: str = "smoke") -> Path:
    """Execute one notebook at ``profile`` with ``overrides`` on top; return the executed notebook.

    Its results go to ``out/results``; nothing of the book's build tree is touched.
    """
    declared = P.declared_parameters(notebook)
    P.validate(overrides, declared, "the command line")
    overrides = P.normalise(overrides, declared)
    # Relative to the notebook's folder, where it runs (a relative ``out`` is the caller's).
    results = os.path.relpath(Path(out).resolve() / "results", Path(notebook).resolve().parent)
    params = {**P.notebook_profile_params(notebook, profile, declared), **overrides, "results_dir": results}
    if "profile" in declared:
        params["profile"] = profile
    output = out / notebook.name
    with monitor.Monitor(out / "progress.log"):  # progress to the terminal, not into the notebook
        execute(notebook, output, params)
    return output


def describe_failure(e: Exception, output: Path) -> str:
    if isinstance(e, papermill.PapermillExecutionError):
        return f"{e.ename}: {e.evalue} (cell In [{e.exec_count}]); the executed notebook is {output}"
    return f"{type(e).__name__}: {e}"


def run(root: Path, profile: str, *, force: bool = False, only: tuple[str, ...] = (), log: Log = print) -> list[Outcome]:
    """Execute the chapters of ``profile`` in toc order (the scorecard last).

    ``only`` restricts execution to the named entries (``book/intro`` or ``intro``); the others
    keep their last executed notebooks. A failed chapter does not stop the others. While a
    chapter runs, the terminal shows its cell, the kernel's training and attack progress and
    an ETA from the plan (:mod:`seatbelt.book.monitor`); none of it reaches the pages.
    """
    jobs = plan(root, profile)
    known = {j.entry for j in jobs} | {P.chapter_name(j.entry) for j in jobs}
    unknown = [o for o in only if o not in known]
    if unknown:
        raise P.ParameterError(f"--only {unknown}: not chapters of the toc ({', '.join(j.entry for j in jobs)}).")
    stamps = build_dir(root, profile) / "stamps"
    stamps.mkdir(parents=True, exist_ok=True)
    results_dir(root, profile).mkdir(parents=True, exist_ok=True)
    library = library_digest()
    todo = []
    outcomes = []
    for i, job in enumerate(jobs, 1):
        head = f"[{i}/{len(jobs)}] {job.entry}"
        if only and job.entry not in only and P.chapter_name(job.entry) not in only:
            log(f"{head}: not selected")
            continue
        stamp = stamps / f"{job.entry.replace('/', '__')}.json"
        last = json.loads(stamp.read_text()) if stamp.exists() else {}
        # the scorecard's key covers the claims, which the chapters before it may still rewrite
        if job.entry != SCORECARD and not force and last.get("key") == _key(root, job, profile, library) and job.output.exists():
            log(f"{head}: unchanged, kept (ran in {last['seconds']:.1f} s)")
            outcomes.append(Outcome(job.entry, "unchanged", 0.0))
            continue
        todo.append((head, job, stamp, last))
    estimates = _estimates(root, profile, [job for _, job, _, _ in todo], log) if todo else {}
    with monitor.Monitor(build_dir(root, profile) / "progress.log", estimates) as watch:
        for head, job, stamp, last in todo:
            key = _key(root, job, profile, library)
            if job.entry == SCORECARD and not force and last.get("key") == key and job.output.exists():
                log(f"{head}: unchanged, kept (ran in {last['seconds']:.1f} s)")
                outcomes.append(Outcome(job.entry, "unchanged", 0.0))
                continue
            eta = f", about {estimates[job.entry]:.1f} min of zoo work" if estimates.get(job.entry) else ""
            log(f"{head}: running{eta} ...")
            watch.chapter(job.entry)
            stamp.unlink(missing_ok=True)
            start = time.perf_counter()
            try:
                execute(job.source, job.output, job.params)
            except Exception as e:  # a failed chapter is reported, and the others still run
                seconds = time.perf_counter() - start
                outcomes.append(Outcome(job.entry, "failed", seconds, describe_failure(e, job.output)))
                log(f"{head}: FAILED after {seconds:.1f} s: {outcomes[-1].error}")
                continue
            seconds = time.perf_counter() - start
            stamp.write_text(json.dumps({"key": key, "seconds": round(seconds, 2), "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}))
            outcomes.append(Outcome(job.entry, "ran", seconds))
            log(f"{head}: ran in {seconds:.1f} s")
    return outcomes


def _key(root: Path, job: Job, profile: str, library: str) -> str:
    if job.entry == SCORECARD:
        extra = claims_digest(results_dir(root, profile))
    else:  # the zoo's recipe trains the chapter's models: a new recipe is a new chapter
        from .. import zoo

        extra = zoo.recipes_digest(job.params.get("profile", profile))
    return chapter_key(job.source, job.params, profile, library, extra)


def _estimates(root: Path, profile: str, jobs: list[Job], log: Log) -> dict[str, float]:
    """Minutes of zoo work per chapter about to run, from the plan (an estimate; 0 when all is cached)."""
    from . import plan as build_plan  # the plan needs the zoo, which only a build with work to do pays for

    try:
        table = build_plan.table(root, profile)
    except Exception as e:  # an estimate must never stop a build
        log(f"(no ETA: the plan failed with {type(e).__name__}: {e})")
        return {}
    minutes = build_plan.minutes_by_chapter(table)
    estimates = {job.entry: minutes.get(P.chapter_name(job.entry), 0.0) for job in jobs}
    log(f"plan: about {sum(estimates.values()):.1f} min of training and attacks for {len(jobs)} chapter(s)")
    return estimates


def map_tasks(function: Callable[..., Any], tasks: list[tuple], *, dask: str | None = None,
              report: Callable[[int, Any, int], None] | None = None) -> list[Any]:
    """``function(*task)`` for every task, in order or on a Dask cluster; ``report(i, result, done)`` as each ends."""
    results: list[Any] = [None] * len(tasks)
    if dask is None:
        for i, task in enumerate(tasks):
            results[i] = function(*task)
            if report:
                report(i, results[i], i + 1)
        return results
    from dask.distributed import Client, as_completed  # optional: only work on a cluster needs it

    with Client(dask) as client:
        futures = {client.submit(function, *task, pure=False, key=f"seatbelt-{i}-{time.time_ns()}"): i
                   for i, task in enumerate(tasks)}
        for done, future in enumerate(as_completed(futures), 1):
            i = futures[future]
            results[i] = future.result()
            if report:
                report(i, results[i], done)
    return results


def stage_site(root: Path, profile: str) -> Path:
    """Copy the book's config, toc and non-notebook pages beside the executed notebooks."""
    site = site_dir(root, profile)
    site.mkdir(parents=True, exist_ok=True)
    for name in ("_config.yml", toc.TOC):
        shutil.copy2(root / name, site / name)
    for entry in toc.entries(root):
        page = toc.page(root, entry)
        if page is not None and page.suffix != ".ipynb":
            (site / page.relative_to(root)).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(page, site / page.relative_to(root))
    return site
