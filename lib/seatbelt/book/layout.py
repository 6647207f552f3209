"""Where one profile's build lives, and which notebooks it runs with which parameters.

Layout of one profile's build, ``_build/<profile>/``:

    site/        what Jupyter Book renders: _config.yml, _toc.yml and the executed notebooks at
                 the same relative paths as their sources (book/intro.ipynb, ...); a notebook
                 lands here only when its run succeeded
    attempts/    a chapter's run in progress, at the same relative path, moved into site/ when
                 it succeeds; after a failure it stays, for reading, until the next success
    results/     the chapters' shared ``results_dir``: tidy CSVs and claims/<id>.json
    stamps/      one JSON per chapter: the key of the inputs its notebook in site/ ran with
    html/        the rendered book (see :mod:`seatbelt.book.render`; open html/index.html)
    build.lock   held by the build of this profile that is running, with its pid inside

Nothing here imports the zoo or torch: every command can afford it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

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


def lock_path(root: Path, profile: str) -> Path:
    return build_dir(root, profile) / "build.lock"


@dataclass(frozen=True)
class Job:
    """One chapter of a build: its notebook, where its run goes, and its final parameters."""

    entry: str
    source: Path
    output: Path  # the executed notebook that is rendered (site/)
    attempt: Path  # where a run executes before it replaces ``output`` (attempts/)
    stamp: Path  # the key of the inputs ``output`` ran with (stamps/)
    params: dict[str, Any]


def jobs(root: Path, profile: str) -> list[Job]:
    """Every notebook of the toc with its final parameters; all validated before any runs.

    Raises :class:`~seatbelt.book.params.ParameterError` listing every problem of every chapter.
    """
    problems = toc.problems(root)
    if problems:
        raise P.ParameterError("the toc and book/ disagree:\n" + "\n".join(problems))
    found, errors = [], []
    build = build_dir(root, profile)
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
        inside = source.relative_to(root)
        found.append(
            Job(
                entry,
                source,
                build / "site" / inside,
                build / "attempts" / inside,
                build / "stamps" / f"{entry.replace('/', '__')}.json",
                params,
            )
        )
    if errors:
        raise P.ParameterError("\n".join(errors))
    # The scorecard reads what every other chapter wrote: it runs last wherever the toc puts it.
    return sorted(found, key=lambda j: j.entry == SCORECARD)
