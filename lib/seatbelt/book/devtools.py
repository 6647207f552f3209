"""A headless Chromium driven over the DevTools protocol: the transport of the page check.

This module knows how to find a browser, launch it offline, load a page and hand back what the
page did; what counts as a problem on a page lives in :mod:`seatbelt.book.browser`.

How requests are recorded: Chromium runs headless with ``--remote-debugging-pipe`` and this
module speaks the DevTools protocol to it over that pipe (JSON messages on file descriptors 3
and 4, no port, no extra package). Each page opens in a fresh tab with the ``Network`` domain
enabled before navigation, so every request the page makes (scripts, styles, fonts, images,
fetches, including ones made by scripts after load) arrives as ``Network.requestWillBeSent``.
DNS is mapped to nothing (``--host-resolver-rules``), so an external request fails fast and is
recorded, and a check gives the same answer with or without a network. After the load event the
caller's script runs in the page (:meth:`Chromium.load`) and its value comes back.

Chromium is Debian's ``chromium`` package or any installed Chromium or Chrome (``CHROMIUM``
names one explicitly); :func:`find_chromium` returns None when there is none.
"""

from __future__ import annotations

import fcntl
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass

# Offline and quiet: no DNS (so any external request fails fast and is recorded), no updates.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--host-resolver-rules=MAP * ~NOTFOUND",
    "--remote-debugging-pipe",
)
CANDIDATES = (
    "chromium",
    "chromium-browser",
    "google-chrome",
    "google-chrome-stable",
    "chrome",
    "/Applications/Chromium.app/Contents/MacOS/Chromium",
    "/Applications/Google Chrome.app/Contents/MacOS/Google Chrome",
)
HOW_TO_GET_ONE = (
    "install Chromium or Google Chrome (Debian/Ubuntu: apt-get install chromium; "
    "macOS: brew install --cask google-chrome) or set CHROMIUM=/path/to/chrome"
)


def find_chromium() -> str | None:
    """The Chromium (or Chrome) to use: ``$CHROMIUM``, else the first of :data:`CANDIDATES`."""
    named = os.environ.get("CHROMIUM")
    if named:
        if shutil.which(named) is None:
            raise FileNotFoundError(
                f"CHROMIUM={named!r} is not an executable; unset it or name a Chromium or Chrome."
            )
        return shutil.which(named)
    return next((shutil.which(c) for c in CANDIDATES if shutil.which(c)), None)


def require(binary: str | None) -> str:
    """``binary``, or FileNotFoundError saying how to get one when it is None."""
    if binary is None:
        raise FileNotFoundError(f"no Chromium or Chrome found: {HOW_TO_GET_ONE}.")
    return binary


def chromium() -> str:
    """The Chromium to use, or FileNotFoundError saying how to get one."""
    return require(find_chromium())


@dataclass(frozen=True)
class Load:
    """What one page load gave: the value the caller's script returned (None when navigation
    failed), every URL requested, in order, and the requested URLs that failed to load."""

    value: object
    requests: tuple[str, ...] = ()
    failed: tuple[str, ...] = ()


class Chromium:
    """One headless Chromium driven over the DevTools protocol on a pipe; ``load(url, script)``.

    with Chromium(window=(1280, 900)) as browser:
        loaded = browser.load(page.as_uri(), "document.title")
    """

    def __init__(
        self, binary: str | None = None, timeout: float = 120, window: tuple[int, int] = (1280, 900)
    ):
        self.binary, self.timeout, self.window = binary or chromium(), timeout, window
        self._next_id, self._buffer, self._events = 0, b"", []

    def __enter__(self) -> Chromium:
        self._profile = tempfile.TemporaryDirectory(prefix="seatbelt-chromium-")
        # Chromium reads commands from fd 3 and writes replies to fd 4. The pipe ends are moved to
        # fds >= 10 first so that placing them at 3 and 4 in the child cannot clobber each other.
        to_child, from_us = (fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in os.pipe())
        to_us, from_child = (fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in os.pipe())

        def at_3_and_4():
            os.dup2(to_child, 3)
            os.dup2(from_child, 4)

        width, height = self.window
        command = [
            self.binary,
            *FLAGS,
            f"--window-size={width},{height}",
            f"--user-data-dir={self._profile.name}",
            "about:blank",
        ]
        self._process = subprocess.Popen(
            command,
            preexec_fn=at_3_and_4,
            pass_fds=(3, 4),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for fd in (to_child, from_child):
            os.close(fd)
        self._write, self._read = from_us, to_us
        return self

    def __exit__(self, *exc) -> None:
        try:
            self._call("Browser.close", timeout=10)
        except (OSError, RuntimeError, TimeoutError):
            pass
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        for fd in (self._write, self._read):
            os.close(fd)
        self._profile.cleanup()

    # --- the protocol: JSON messages, each ended by a NUL byte -------------------------------

    def _send(self, method: str, params: dict | None = None, session: str | None = None) -> int:
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        data = memoryview(json.dumps(message).encode() + b"\0")
        while data:
            data = data[os.write(self._write, data) :]
        return self._next_id

    def _receive(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._read], [], [], left)[0]:
                raise TimeoutError("Chromium did not answer in time")
            chunk = os.read(self._read, 1 << 16)
            if not chunk:
                raise RuntimeError(f"Chromium exited (status {self._process.poll()})")
            self._buffer += chunk
        message, _, self._buffer = self._buffer.partition(b"\0")
        return json.loads(message)

    def _call(
        self,
        method: str,
        params: dict | None = None,
        session: str | None = None,
        timeout: float | None = None,
    ) -> dict:
        sent = self._send(method, params, session)
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            message = self._receive(deadline)
            if message.get("id") == sent:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error'].get('message')}")
                return message["result"]
            self._events.append(message)

    def _wait_for(self, method: str, session: str) -> None:
        deadline = time.monotonic() + self.timeout

        def seen() -> bool:
            return any(
                e.get("method") == method and e.get("sessionId") == session for e in self._events
            )

        while not seen():
            self._events.append(self._receive(deadline))

    # --- one page ----------------------------------------------------------------------------

    def load(self, url: str, script: str) -> Load:
        """Load ``url`` in a fresh tab, then evaluate ``script`` in it (awaiting a promise) and
        return its value with the page's requests. A script that throws raises RuntimeError."""
        self._events = []
        target = self._call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self._call("Target.attachToTarget", {"targetId": target, "flatten": True})[
            "sessionId"
        ]
        try:
            self._call("Network.enable", session=session)
            self._call("Page.enable", session=session)
            navigation = self._call("Page.navigate", {"url": url}, session=session)
            if navigation.get("errorText"):
                return Load(None, requests=(url,), failed=(url,))
            self._wait_for("Page.loadEventFired", session)
            done = self._call(
                "Runtime.evaluate",
                {"expression": script, "awaitPromise": True, "returnByValue": True},
                session=session,
            )
            if "exceptionDetails" in done:
                raise RuntimeError(
                    f"{url}: the script run after load failed: "
                    f"{done['exceptionDetails'].get('text')}"
                )
        finally:
            self._call("Target.closeTarget", {"targetId": target})
        mine = [e for e in self._events if e.get("sessionId") == session]
        urls = {
            e["params"]["requestId"]: e["params"]["request"]["url"]
            for e in mine
            if e.get("method") == "Network.requestWillBeSent"
        }
        failed = [
            urls.get(e["params"]["requestId"], "?")
            for e in mine
            if e.get("method") == "Network.loadingFailed" and not e["params"].get("canceled")
        ]
        return Load(done["result"].get("value"), tuple(dict.fromkeys(urls.values())), tuple(failed))
