"""Progress of a book build on the terminal: the chapter, its cell, the kernel's training and attack
progress, and a running ETA from the plan. Nothing of it reaches the executed notebooks.

The kernel writes its progress (:mod:`seatbelt.progress`) to a file named by $SEATBELT_PROGRESS;
a thread of the runner tails that file and prints each update with the build's state in front.
Cell starts come from papermill through :class:`Engine`, which also starts the kernels on Unix
sockets (:class:`IPCKernelManager`).
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Callable, TextIO

from jupyter_client.manager import AsyncKernelManager
from papermill.engines import NBClientEngine, papermill_engines
from traitlets import default

from .. import progress

ENGINE = "seatbelt"
_active: "Monitor | None" = None


class Monitor:
    """Relays kernel progress from ``path`` to ``out``, throttled to one line per ``every``
    seconds."""

    def __init__(
        self,
        path: Path,
        estimates: dict[str, float] | None = None,
        out: TextIO | None = None,
        every: float = 10.0,
    ):
        # absolute: the kernel that writes it runs from its notebook's folder
        self.path, self.estimates, self.every = Path(path).absolute(), dict(estimates or {}), every
        self.out = out or sys.stderr
        self.entry, self.order = "", list(self.estimates)
        self.cell_text = ""
        self.chapter_started = time.perf_counter()
        self._stop = threading.Event()
        self._last_print = 0.0
        self._thread: threading.Thread | None = None
        self._previous_env: str | None = None

    def __enter__(self) -> "Monitor":
        global _active
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text("")
        self._previous_env = os.environ.get(progress.ENV)
        os.environ[progress.ENV] = str(self.path)  # the kernels papermill starts inherit it
        self._thread = threading.Thread(target=self._tail, daemon=True)
        self._thread.start()
        _active = self
        return self

    def __exit__(self, *exc) -> None:
        global _active
        _active = None
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._previous_env is None:
            os.environ.pop(progress.ENV, None)
        else:
            os.environ[progress.ENV] = self._previous_env

    def chapter(self, entry: str) -> None:
        self.entry, self.cell_text = entry, ""
        self.chapter_started = time.perf_counter()

    def cell(self, index: int, total: int) -> None:
        self.cell_text = f"cell {index}/{total}"

    def eta_minutes(self) -> float | None:
        """Estimated minutes left: this chapter's estimate less its elapsed time, plus every later
        chapter's."""
        if self.entry not in self.estimates:
            return None
        later = self.order[self.order.index(self.entry) + 1 :]
        elapsed = (time.perf_counter() - self.chapter_started) / 60
        return max(0.0, self.estimates[self.entry] - elapsed) + sum(
            self.estimates[e] for e in later
        )

    def status(self) -> str:
        eta = self.eta_minutes()
        parts = [self.entry, self.cell_text, f"ETA {eta:.0f} min" if eta is not None else ""]
        return " · ".join(p for p in parts if p)

    def say(self, text: str, force: bool = False) -> None:
        now = time.perf_counter()
        if not force and now - self._last_print < self.every:
            return
        self._last_print = now
        self.out.write(f"  [{self.status()}] {text}\n")
        self.out.flush()

    def _tail(self) -> None:
        position, pending = 0, ""
        while not self._stop.is_set():
            time.sleep(0.5)
            try:
                with open(self.path, encoding="utf-8", errors="replace") as f:
                    f.seek(position)
                    chunk = f.read()
                    position = f.tell()
            except OSError:
                continue
            fragments = re.split(r"[\r\n]", pending + chunk)
            pending = fragments.pop()  # an incomplete last fragment waits for the rest
            updates = [f.strip() for f in fragments if f.strip()]
            for i, text in enumerate(updates):
                # the last update of a bar (100%) and plain lines always show; bar updates are
                # throttled
                done = "100%" in text or "|" not in text
                if done or i == len(updates) - 1:
                    self.say(text, force=done)


class IPCKernelManager(AsyncKernelManager):
    """A kernel on Unix sockets in the temporary folder rather than on TCP ports, so that ipykernel
    does not print, at every chapter, that TCP is unencrypted. Each kernel gets its own socket
    names (the default ones are relative to the notebook's folder and shared by every kernel)."""

    @default("transport")
    def _transport_default(self) -> str:
        return "ipc"

    @default("ip")
    def _ip_default(self) -> str:
        # short: a socket's path has at most about 100 characters (macOS's temp folder is long)
        return os.path.join(tempfile.gettempdir(), f"seatbelt-kernel-{uuid.uuid4().hex[:16]}")


class Engine(NBClientEngine):
    """papermill's nbclient engine with :class:`IPCKernelManager`, telling the active
    :class:`Monitor` when each code cell starts."""

    @classmethod
    def execute_managed_notebook(cls, nb_man, kernel_name, **kwargs):
        kwargs.setdefault("kernel_manager_class", IPCKernelManager)
        monitor = _active
        if monitor is not None:
            code = [i for i, c in enumerate(nb_man.nb.cells) if c.cell_type == "code"]
            original: Callable = nb_man.cell_start

            def cell_start(cell, cell_index=None, **kw):
                if cell_index in code:
                    monitor.cell(code.index(cell_index) + 1, len(code))
                    monitor.say("running")
                return original(cell, cell_index, **kw)

            nb_man.cell_start = cell_start
        return super().execute_managed_notebook(nb_man, kernel_name, **kwargs)


papermill_engines.register(ENGINE, Engine)
