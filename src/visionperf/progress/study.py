"""`scale`'s progress: a bar over the runs of a study."""

from __future__ import annotations

import threading
import time
from typing import Self
from dataclasses import dataclass, field

from .text import LINE_EVERY_S, fmt_duration, is_live


@dataclass
class _StudyState:
    total: int
    done: int = 0
    durations: list[float] = field(default_factory=list)
    current: str = ""
    started: float = 0.0
    t_begin: float = 0.0

    def left_s(self, now: float) -> float | None:
        """Mean time of a finished run x the runs left, less the current run's time so far."""
        if not self.durations:
            return None
        mean = sum(self.durations) / len(self.durations)
        running = now - self.started if self.current else 0.0
        return max(0.0, mean * (self.total - self.done) - min(running, mean))


class StudyProgress:
    """`scale`'s progress: a bar over its runs with the one under way and the time left
    (mean run time so far x runs left); a plain line a minute when the output is not a
    terminal; nothing with QUIET. (The study prints each result as it finishes.)"""

    def __init__(self, console, total_runs: int, quiet: bool = False, line_every_s: float = LINE_EVERY_S):
        self.console = console
        self.quiet = quiet
        self.state = _StudyState(total_runs)
        self.line_every_s = line_every_s
        self._progress = None
        self._task = None
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None

    def __enter__(self) -> Self:
        self.state.t_begin = time.monotonic()
        if self.quiet:
            return self
        if is_live(self.console):
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                SpinnerColumn,
                TextColumn,
                TimeElapsedColumn,
            )

            state = self.state

            class Left(TextColumn):
                def render(self, task):
                    left = state.left_s(time.monotonic())
                    from rich.text import Text

                    return Text("" if left is None else f"about {fmt_duration(left)} left", style="dim")

            self._progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                                      MofNCompleteColumn(), TextColumn("runs"), TimeElapsedColumn(), Left(""),
                                      console=self.console, transient=True, redirect_stdout=False,
                                      redirect_stderr=False)
            self._progress.start()
            self._task = self._progress.add_task("starting", total=self.state.total)
        else:
            self._ticker = threading.Thread(target=self._tick, name="visionperf-progress", daemon=True)
            self._ticker.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join()
        if self._progress is not None:
            self._progress.stop()

    def run_started(self, what: str) -> None:
        self.state.current, self.state.started = what, time.monotonic()
        if self._progress is not None:
            self._progress.update(self._task, description=what)

    def run_finished(self) -> None:
        s = self.state
        s.done += 1
        s.durations.append(time.monotonic() - s.started)
        s.current = ""
        if self._progress is not None:
            self._progress.update(self._task, completed=s.done)

    def line(self) -> str:
        s, now = self.state, time.monotonic()
        left = s.left_s(now)
        return (f"progress: {s.done} of {s.total} runs done" + (f", running {s.current}" if s.current else "")
                + f", {fmt_duration(now - s.t_begin)} elapsed"
                + (f", about {fmt_duration(left)} left" if left is not None else ""))

    def _tick(self) -> None:
        while not self._stop.wait(self.line_every_s):
            self.console.print(self.line(), markup=False, highlight=False)
