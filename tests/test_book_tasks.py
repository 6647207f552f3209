"""map_tasks: in order here, or in single-thread worker processes, results in task order."""

from __future__ import annotations

import os

import torch

from seatbelt.book.tasks import default_workers, map_tasks


def test_worker_processes_return_every_result_in_task_order():
    seen = []
    results = map_tasks(
        pow, [(2, 3), (3, 2), (5, 1)], workers=2, report=lambda i, r, done: seen.append((i, r))
    )
    assert results == [8, 9, 5]
    assert sorted(seen) == [(0, 8), (1, 9), (2, 5)]


def test_workers_share_out_the_cores_rather_than_oversubscribe_them():
    threads = map_tasks(torch.get_num_threads, [(), ()], workers=2)
    assert threads == [max(1, (os.cpu_count() or 1) // 2)] * 2


def test_one_worker_runs_here_in_order():
    order = []
    assert map_tasks(abs, [(-1,), (2,)], report=lambda i, r, done: order.append(i)) == [1, 2]
    assert order == [0, 1]


def test_the_default_never_exceeds_the_cores():
    assert 1 <= default_workers() <= max(1, os.cpu_count() or 1)
