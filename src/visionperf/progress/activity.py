"""`submission` and `report`: what is under way, once a step takes a while."""

from __future__ import annotations

import threading
import time
from typing import Self

from .text import LINE_EVERY_S, fmt_duration, is_live


class Activity:
    """Says what a command is doing once a step has taken more than AFTER_S: a spinner with
    the step on a terminal, a plain line a minute otherwise, nothing with QUIET. Call it with
    each step as it starts (cheap: it only keeps the text)."""

    def __init__(self, console, quiet: bool = False, after_s: float = 1.0, line_every_s: float = LINE_EVERY_S,
                 poll_s: float = 0.1):
        self.console = console
        self.quiet = quiet
        self.after_s = after_s
        self.line_every_s = line_every_s
        self.poll_s = poll_s
        self.what = ""
        self._since = time.monotonic()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._status = None

    def __call__(self, what: str) -> None:
        self.what = what
        self._since = time.monotonic()

    def __enter__(self) -> Self:
        self._since = time.monotonic()
        if not self.quiet:
            self._thread = threading.Thread(target=self._watch, name="visionperf-activity", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self._status is not None:
            self._status.stop()

    def _watch(self) -> None:
        live = is_live(self.console)
        t_begin = last_line = time.monotonic()
        while not self._stop.wait(self.poll_s):
            now = time.monotonic()
            what = self.what
            if live:
                if self._status is None and what and now - self._since >= self.after_s:
                    self._status = self.console.status(what)
                    self._status.start()
                elif self._status is not None:
                    self._status.update(what)
            elif what and now - last_line >= self.line_every_s:
                self.console.print(f"progress: {what} ({fmt_duration(now - t_begin)} so far)",
                                   markup=False, highlight=False)
                last_line = now
