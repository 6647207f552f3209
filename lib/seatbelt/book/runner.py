"""Execute the book's chapters with papermill, skipping those whose inputs have not changed.

Where a build's files go is :mod:`seatbelt.book.layout`. A chapter's key hashes its source
notebook, its final parameters, the profile, the zoo's recipe of the profile
(``params/<profile>/zoo.yaml``, less its cost estimates) and the library's modules that results
can depend on (all but the book machine and the progress lines; comments and docstrings do not
count, :mod:`seatbelt.digest`). An unchanged key with its executed notebook present means the
chapter is not re-executed; the scorecard's key also covers the claim checks it reads. Trained
models come from the model cache of :func:`seatbelt.training.fit`, so an interrupted build
resumes cheaply.

A chapter runs into ``attempts/`` and replaces its notebook in ``site/`` only when it succeeds:
a failed or interrupted run never costs the last good page, and never becomes a page.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Literal

import papermill

from .. import digest
from . import monitor
from . import params as P
from .layout import SCORECARD, Job, Log, build_dir, jobs, lock_path, results_dir

# Minutes of zoo work per chapter about to run (the caller's estimate, e.g. from the plan).
Estimate = Callable[[list[Job]], dict[str, float]]


class BuildBusy(RuntimeError):
    """Another build of the same profile is running."""


@contextmanager
def build_lock(root: Path, profile: str) -> Iterator[None]:
    """Hold ``profile``'s build lock, or raise :class:`BuildBusy` naming the lock and its holder.

    Two builds of one profile would overwrite each other's stamps, notebooks and pages; the
    lock (``flock``) is released when the holder exits, however it exits.
    """
    path = lock_path(root, profile)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "unknown"
            raise BuildBusy(
                f"another build of profile {profile!r} is running (pid {holder}) and "
                f"holds {path}; wait for it to end, or stop it."
            ) from None
        f.truncate(0)
        f.write(f"{os.getpid()}\n")
        f.flush()
        try:
            yield
        finally:
            f.truncate(0)


def _digest_files(files: list[Path], base: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(files):
        h.update(str(f.relative_to(base)).encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()


# What a chapter's pages cannot depend on: the book machine (running, rendering, checking pages)
# and the terminal's progress lines. Editing these re-runs no chapter.
NOT_IN_CHAPTER_KEYS = ("book", "progress")


def library_digest(package: Path = digest.PACKAGE) -> str:
    """A hash of the library modules a chapter's results can depend on, blind to comments and
    docstrings."""
    return digest.digest(digest.all_modules(package, exclude=NOT_IN_CHAPTER_KEYS))


def claims_digest(results: Path) -> str:
    return _digest_files(list((results / "claims").glob("*.json")), results)


def chapter_key(
    source: Path, params: dict[str, Any], profile: str, library: str, extra: str = ""
) -> str:
    payload = json.dumps(
        {"params": params, "profile": profile, "library": library, "extra": extra}, sort_keys=True
    )
    return hashlib.sha256(source.read_bytes() + payload.encode()).hexdigest()


@dataclass(frozen=True)
class Outcome:
    entry: str
    status: Literal["ran", "unchanged", "failed"]
    seconds: float
    error: str = ""


def execute(source: Path, output: Path, parameters: dict[str, Any]) -> None:
    """Run one notebook with papermill, from its own folder (as nbval and Jupyter do)."""
    output.parent.mkdir(parents=True, exist_ok=True)
    papermill.execute_notebook(
        str(source),
        str(output),
        parameters=parameters,
        cwd=str(source.parent),
        progress_bar=False,
        log_output=False,
        engine_name=monitor.ENGINE,
    )


def run_notebook(
    notebook: Path, overrides: dict[str, Any], out: Path, profile: str = "smoke"
) -> Path:
    """Execute one notebook at ``profile`` with ``overrides`` on top; return the executed notebook.

    Its results go to ``out/results``; nothing of the book's build tree is touched.
    """
    declared = P.declared_parameters(notebook)
    P.validate(overrides, declared, "the command line")
    overrides = P.normalise(overrides, declared)
    # Relative to the notebook's folder, where it runs (a relative ``out`` is the caller's).
    results = os.path.relpath(Path(out).resolve() / "results", Path(notebook).resolve().parent)
    params = {
        **P.notebook_profile_params(notebook, profile, declared),
        **overrides,
        "results_dir": results,
    }
    if "profile" in declared:
        params["profile"] = profile
    output = out / notebook.name
    with monitor.Monitor(out / "progress.log"):  # progress to the terminal, not into the notebook
        execute(notebook, output, params)
    return output


def describe_failure(e: Exception, output: Path) -> str:
    if isinstance(e, papermill.PapermillExecutionError):
        return (
            f"{e.ename}: {e.evalue} (cell In [{e.exec_count}]); the executed notebook is {output}"
        )
    return f"{type(e).__name__}: {e}"


def run(
    root: Path,
    profile: str,
    *,
    force: bool = False,
    only: tuple[str, ...] = (),
    log: Log = print,
    estimate: Estimate | None = None,
) -> list[Outcome]:
    """Execute the chapters of ``profile`` in toc order (the scorecard last).

    ``only`` restricts execution to the named entries (``book/intro`` or ``intro``); the others
    keep their last good notebooks (a chapter whose last run failed shows its last good run,
    and the terminal says so). A failed chapter does not stop the others. While a chapter runs,
    the terminal shows its cell, the kernel's training and attack progress and an ETA from
    ``estimate`` (:mod:`seatbelt.book.monitor`); none of it reaches the pages. The caller holds
    :func:`build_lock` (the command line does).
    """
    everything = jobs(root, profile)
    known = {j.entry for j in everything} | {P.chapter_name(j.entry) for j in everything}
    unknown = [o for o in only if o not in known]
    if unknown:
        names = ", ".join(j.entry for j in everything)
        raise P.ParameterError(f"--only {unknown}: not chapters of the toc ({names}).")
    selected = {
        j.entry
        for j in everything
        if not only or j.entry in only or P.chapter_name(j.entry) in only
    }
    library = library_digest()
    # Every key but the scorecard's now: a broken zoo recipe stops the build before anything runs.
    keys = {
        j.entry: _key(root, j, profile, library)
        for j in everything
        if j.entry in selected and j.entry != SCORECARD
    }
    results_dir(root, profile).mkdir(parents=True, exist_ok=True)
    todo, outcomes = [], []
    for i, job in enumerate(everything, 1):
        head = f"[{i}/{len(everything)}] {job.entry}"
        if job.entry not in selected:
            log(f"{head}: not selected{_last_failure(job)}")
            continue
        last = json.loads(job.stamp.read_text()) if job.stamp.exists() else {}
        # no scorecard key yet: it covers the claims, which the chapters before it may rewrite
        if job.entry in keys and not force and _unchanged(job, keys[job.entry], last):
            outcomes.append(_kept(job, head, last, log))
            continue
        todo.append((head, job, last))
    zoo_work = [job for _, job, _ in todo if job.entry != SCORECARD]  # the scorecard trains nothing
    estimates = estimate(zoo_work) if estimate and zoo_work else {}
    with monitor.Monitor(build_dir(root, profile) / "progress.log", estimates) as watch:
        for head, job, last in todo:
            key = keys.get(job.entry) or _key(root, job, profile, library)
            if job.entry == SCORECARD and not force and _unchanged(job, key, last):
                outcomes.append(_kept(job, head, last, log))
                continue
            eta = (
                f", about {estimates[job.entry]:.1f} min of zoo work"
                if estimates.get(job.entry)
                else ""
            )
            log(f"{head}: running{eta} ...")
            watch.chapter(job.entry)
            done = _execute_job(job, key)
            outcomes.append(done)
            failed = done.status == "failed"
            log(
                f"{head}: FAILED after {done.seconds:.1f} s: {done.error}"
                if failed
                else f"{head}: ran in {done.seconds:.1f} s"
            )
    return outcomes


def _unchanged(job: Job, key: str, last: dict[str, Any]) -> bool:
    """Whether ``job``'s notebook in site/ ran with the inputs of ``key`` (``last``: its stamp)."""
    return last.get("key") == key and job.output.exists()


def _kept(job: Job, head: str, last: dict[str, Any], log: Log) -> Outcome:
    log(f"{head}: unchanged, kept (ran in {last['seconds']:.1f} s)")
    return Outcome(job.entry, "unchanged", 0.0)


def _execute_job(job: Job, key: str) -> Outcome:
    """Run ``job`` into its attempt; on success it replaces the chapter's notebook and stamp."""
    start = time.perf_counter()
    try:
        execute(job.source, job.attempt, job.params)
    except Exception as e:  # a failed chapter is reported, and the others still run
        seconds = time.perf_counter() - start
        return Outcome(job.entry, "failed", seconds, describe_failure(e, job.attempt))
    seconds = time.perf_counter() - start
    job.output.parent.mkdir(parents=True, exist_ok=True)
    job.stamp.parent.mkdir(parents=True, exist_ok=True)
    job.stamp.unlink(missing_ok=True)  # between the two writes, no stamp vouches for a notebook
    os.replace(job.attempt, job.output)
    job.stamp.write_text(
        json.dumps(
            {
                "key": key,
                "seconds": round(seconds, 2),
                "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
            }
        )
    )
    return Outcome(job.entry, "ran", seconds)


def _last_failure(job: Job) -> str:
    """What the terminal says of an unselected chapter whose last run failed (empty if none did)."""
    if not job.attempt.exists():
        return ""
    if job.output.exists():
        return f"; its last run failed ({job.attempt}): its page shows its last good run"
    return f"; its last run failed ({job.attempt}) and it has no good run: the book cannot render"


def _key(root: Path, job: Job, profile: str, library: str) -> str:
    if job.entry == SCORECARD:
        extra = claims_digest(results_dir(root, profile))
    else:  # the zoo's recipe trains the chapter's models: a new recipe is a new chapter
        from .. import zoo

        extra = zoo.recipes_digest(job.params.get("profile", profile))
    return chapter_key(job.source, job.params, profile, library, extra)
