"""Run one function over many tasks, in order here or on a Dask cluster (the zoo, sweeps)."""

from __future__ import annotations

import time
from typing import Any, Callable


def map_tasks(
    function: Callable[..., Any],
    tasks: list[tuple],
    *,
    dask: str | None = None,
    report: Callable[[int, Any, int], None] | None = None,
) -> list[Any]:
    """``function(*task)`` for every task, results in task order; ``report(i, result, done)``
    as each ends. ``dask``: a scheduler address (its workers need this package installed)."""
    results: list[Any] = [None] * len(tasks)
    if dask is None:
        for i, task in enumerate(tasks):
            results[i] = function(*task)
            if report:
                report(i, results[i], i + 1)
        return results
    from dask.distributed import Client, as_completed  # optional: only work on a cluster needs it

    with Client(dask) as client:
        futures = {
            client.submit(function, *task, pure=False, key=f"seatbelt-{i}-{time.time_ns()}"): i
            for i, task in enumerate(tasks)
        }
        for done, future in enumerate(as_completed(futures), 1):
            i = futures[future]
            results[i] = future.result()
            if report:
                report(i, results[i], done)
    return results
