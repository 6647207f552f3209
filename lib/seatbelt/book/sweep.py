"""Run one chapter over a grid of parameters and collect every point's results into one table.

    python -m seatbelt.book sweep book/intro.ipynb --grid beta=1,4,8 --grid seed=0,1 \\
        --out sweeps/intro-beta [--profile cpu] [--grid-file grid.yaml] [--dask tcp://host:8786]

The grid is the Cartesian product of the values given per key (``--grid`` values are read
as YAML scalars, so ``1`` is an int, ``1.0e-3`` a float, ``true`` a bool; a grid file maps
keys to lists). Each point runs the notebook at the profile's parameters with the point's
values on top; every point is validated before any runs. Points run one after another, or on
an existing Dask cluster given its scheduler address (workers need this package installed and
the notebook and ``--out`` on a shared filesystem). Under ``out``:

    points.csv            one row per point: its parameters, status, seconds, notebook, error
    tables/<table>.csv    every point's ``<table>.csv`` (a chapter's tidy results; a table in a
                          subfolder ``a/b.csv`` becomes ``a__b.csv``), stacked, with the
                          columns ``point`` and ``param_<key>`` in front
    claims.csv            every point's claim checks, one row per point and claim
    notebooks/<i>.ipynb   the executed notebooks
    points/<i>/           each point's ``results_dir``
"""

from __future__ import annotations

import itertools
import time
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from .. import claims
from . import params as P
from .layout import Log
from .runner import describe_failure, execute
from .tasks import map_tasks


def parse_grid_arg(text: str) -> tuple[str, list[Any]]:
    """``"beta=1,4,8"`` -> ``("beta", [1, 4, 8])``, each value read as a YAML scalar."""
    key, sep, values = text.partition("=")
    if not sep or not key.strip() or not values.strip():
        raise P.ParameterError(f"--grid {text!r}: write KEY=V1,V2,... (e.g. beta=1,4,8).")
    return key.strip(), [yaml.safe_load(v) for v in values.split(",")]


def load_grid_file(path: str | Path) -> dict[str, list[Any]]:
    grid = yaml.safe_load(Path(path).read_text())
    if not isinstance(grid, dict) or not all(isinstance(v, list) and v for v in grid.values()):
        raise P.ParameterError(
            f"{path}: a grid file maps each parameter to a non-empty list of values."
        )
    return grid


def merge_grids(args: list[str], files: list[str | Path]) -> dict[str, list[Any]]:
    grid: dict[str, list[Any]] = {}
    parts = [dict([parse_grid_arg(a)]) for a in args] + [load_grid_file(f) for f in files]
    for part in parts:
        for key, values in part.items():
            if key in grid:
                raise P.ParameterError(f"grid key {key!r} is given twice.")
            grid[key] = values
    if not grid:
        raise P.ParameterError("an empty grid: give --grid KEY=V1,V2 or --grid-file.")
    return grid


def expand(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """The Cartesian product of the grid, the first key varying slowest."""
    keys = list(grid)
    return [dict(zip(keys, values)) for values in itertools.product(*(grid[k] for k in keys))]


def run_point(source: str, output: str, parameters: dict[str, Any]) -> dict[str, Any]:
    """Execute one point; never raises, so one failed point does not stop a sweep (or a cluster)."""
    start = time.perf_counter()
    try:
        execute(Path(source), Path(output), parameters)
        status, error = "ok", ""
    except Exception as e:  # reported in points.csv
        status, error = "failed", describe_failure(e, Path(output))
    return {"status": status, "seconds": round(time.perf_counter() - start, 2), "error": error}


def _label(point: dict[str, Any]) -> str:
    return ",".join(f"{k}={v}" for k, v in point.items())


def sweep(
    notebook: str | Path,
    grid: dict[str, list[Any]],
    out: str | Path,
    *,
    profile: str = "smoke",
    dask: str | None = None,
    log: Log = print,
) -> pd.DataFrame:
    """Run ``notebook`` at every point of ``grid``; write and return the points table."""
    notebook, out = Path(notebook).resolve(), Path(out).resolve()
    declared = P.declared_parameters(notebook)
    base = P.notebook_profile_params(notebook, profile, declared)
    points = expand(grid)
    problems = [
        p
        for i, point in enumerate(points)
        for p in P.check(point, declared, f"point {i} ({_label(point)})")
    ]
    if problems:
        raise P.ParameterError("\n".join(problems))
    points = [P.normalise(point, declared) for point in points]
    tasks = []
    for i, point in enumerate(points):
        params = {**base, **point, "results_dir": str(out / "points" / f"{i:03d}")}
        if "profile" in declared:
            params["profile"] = profile
        tasks.append((str(notebook), str(out / "notebooks" / f"{i:03d}.ipynb"), params))
    (out / "notebooks").mkdir(parents=True, exist_ok=True)

    def report(i: int, result: dict[str, Any], done: int) -> None:
        line = (
            f"[{done}/{len(points)}] {_label(points[i])}: {result['status']} in "
            f"{result['seconds']:.1f} s"
        )
        log(line + (f": {result['error']}" if result["error"] else ""))

    results = map_tasks(run_point, tasks, dask=dask, report=report)

    table = pd.DataFrame(
        [
            {
                "point": i,
                **{f"param_{k}": v for k, v in point.items()},
                **results[i],
                "notebook": tasks[i][1],
            }
            for i, point in enumerate(points)
        ]
    )
    table.to_csv(out / "points.csv", index=False)
    collect(out, points, [r["status"] == "ok" for r in results])
    return table


def collect(out: Path, points: list[dict[str, Any]], ok: list[bool]) -> list[Path]:
    """Stack each CSV table and the claim checks of the successful points; return the files
    written."""
    tables: dict[str, list[pd.DataFrame]] = {}
    checks = []
    for i, point in enumerate(points):
        if not ok[i]:
            continue
        folder = out / "points" / f"{i:03d}"
        front = {"point": i, **{f"param_{k}": v for k, v in point.items()}}
        for csv in sorted(folder.rglob("*.csv")):
            frame = pd.read_csv(csv)
            for j, (k, v) in enumerate(front.items()):
                frame.insert(j, k, v)
            tables.setdefault("__".join(csv.relative_to(folder).with_suffix("").parts), []).append(
                frame
            )
        for check in claims.load_checks(folder).values():
            e = check.effect
            checks.append(
                {
                    **front,
                    "claim": check.claim,
                    "status": check.status,
                    "effect": e.name,
                    "estimate": e.estimate,
                    "low": e.low,
                    "high": e.high,
                    "prediction": e.prediction,
                }
            )
    written = []
    (out / "tables").mkdir(exist_ok=True)
    for name, frames in tables.items():
        written.append(out / "tables" / f"{name}.csv")
        pd.concat(frames, ignore_index=True).to_csv(written[-1], index=False)
    if checks:
        written.append(out / "claims.csv")
        pd.DataFrame(checks).to_csv(written[-1], index=False)
    return written
