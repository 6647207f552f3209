"""Progress of long work (training, attacks), written where a person watches and never into a page.

Inside the book runner, $SEATBELT_PROGRESS names a file that the runner tails to the terminal
(:mod:`seatbelt.book.runner`), so progress bars reach the person running ``make book`` and
never the executed notebooks, which become the rendered pages. Outside the runner (a user's
own notebook or script) progress goes to standard error, as tqdm's does by default.
$SEATBELT_PROGRESS=off silences it.
"""

from __future__ import annotations

import atexit
import os
import sys
import time
from typing import TextIO

ENV = "SEATBELT_PROGRESS"
_streams: dict[str, TextIO] = {}


def stream() -> TextIO | None:
    """Where progress goes now: the runner's file, standard error, or None when switched off."""
    target = os.environ.get(ENV, "")
    if target == "off":
        return None
    if not target:
        return sys.stderr
    if target not in _streams:
        handle = open(target, "a", buffering=1, encoding="utf-8")
        atexit.register(handle.close)
        _streams[target] = handle
    return _streams[target]


def enabled() -> bool:
    return stream() is not None


class Ticker:
    """One progress line at most every ``every`` seconds (and always the last one)."""

    def __init__(self, label: str, total: int, every: float = 2.0):
        self.label, self.total, self.every = label, total, every
        self.started = time.perf_counter()
        self.last = -float("inf")

    def update(self, done: int, detail: str = "") -> None:
        out = stream()
        now = time.perf_counter()
        if out is None or (done < self.total and now - self.last < self.every):
            return
        self.last = now
        extra = f", {detail}" if detail else ""
        out.write(f"{self.label}: {done:,}/{self.total:,}{extra} ({now - self.started:.0f} s)\n")
        out.flush()
