"""Run one function over many tasks: in order here, in single-thread processes on this
machine's cores, or on a Dask cluster (the zoo, its attacks, sweeps)."""

from __future__ import annotations

import multiprocessing
import os
import time
from concurrent import futures as cf
from typing import Any, Callable


def default_workers() -> int:
    """Processes for work that does not use a second thread: one per core, at most 4 (each holds
    its own copy of torch, the data and a model), and 1 where a GPU takes the work."""
    import torch

    if torch.cuda.is_available():
        return 1
    return max(1, min(os.cpu_count() or 1, 4))


def _threads(n: int) -> None:
    import torch

    torch.set_num_threads(n)


def map_tasks(
    function: Callable[..., Any],
    tasks: list[tuple],
    *,
    dask: str | None = None,
    workers: int = 1,
    report: Callable[[int, Any, int], None] | None = None,
) -> list[Any]:
    """``function(*task)`` for every task, results in task order; ``report(i, result, done)``
    as each ends. ``dask``: a scheduler address (its workers need this package installed).

    ``workers`` > 1 runs the tasks in that many fresh processes of this machine at once, the
    cores shared out so that none is oversubscribed (two processes on every thread of two cores
    each run about 4x slower): with 2 workers on 2 cores, each runs on one thread. It pays for
    work that a second thread barely speeds up, such as the attack solver (bench/zoo_parallel.py);
    ``function`` must be importable by name (a module's top-level function)."""
    results: list[Any] = [None] * len(tasks)
    if dask is None and workers > 1 and len(tasks) > 1:
        workers = min(workers, len(tasks))
        threads = max(1, (os.cpu_count() or 1) // workers)
        with cf.ProcessPoolExecutor(
            workers, multiprocessing.get_context("spawn"), _threads, (threads,)
        ) as pool:
            running = {pool.submit(function, *task): i for i, task in enumerate(tasks)}
            for done, future in enumerate(cf.as_completed(running), 1):
                i = running[future]
                results[i] = future.result()
                if report:
                    report(i, results[i], done)
        return results
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
