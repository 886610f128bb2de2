"""What long commands show while they work: a live line during a LoadGen test (`run`), a bar
over the runs of a scaling study (`scale`), and what `submission` and `report` are doing.

On a terminal it is a rich display that redraws in place; when the output is not a terminal
(CI, a pipe, a file) it is one plain line a minute instead, so that a log shows a long command
is alive without filling up; `--quiet` turns both off. Nothing here goes into LoadGen's logs
or run.json: it only prints.

The run's line reads counters the engine keeps anyway (Engine.live(): samples, batches and busy
time per device, and for one-sample queries a latency histogram), from a thread of its own a
few times a second. Those reads are relaxed atomic loads, under no lock the hot path takes, so
watching costs the drivers nothing (benchmarks/progress_overhead.py measures it).
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Self

from .targets import (
    LOADGEN_OFFLINE_SLACK,
    early_stopping_passes,
    server_queries_allowed_over,
)

REFRESH_S = 0.25  # how often a terminal's line is redrawn (and the counters read)
LINE_EVERY_S = 60.0  # one plain line this often when the output is not a terminal
RATE_WINDOW_S = 2.0  # "now" in the current rate: the last this many seconds
SHOW_DEVICES = 8  # busy share per device up to this many; beyond, the spread (min/median/max)
MIN_QUERIES_FOR_RISK = 200  # a p99 over the bound is worth a warning from this many queries
ES_EVERY_S = 2.0  # early stopping's check costs O(overlatency queries): at most this often


_quiet = False  # --quiet, for displays made deep inside a command (the preprocessing bar)


def set_quiet(on: bool) -> None:
    global _quiet
    _quiet = bool(on)


def quiet() -> bool:
    """Whether the command was given --quiet."""
    return _quiet


def is_live(console) -> bool:
    """Whether CONSOLE can redraw a line in place (a terminal that is not `dumb`)."""
    return bool(console.is_terminal) and not console.is_dumb_terminal


def fmt_duration(s: float) -> str:
    """A duration as people say it: 4.2 s, 42 s, 3 min 05 s, 10 min, 1 h 02 min."""
    s = max(0.0, s)
    if s < 60:
        return f"{s:.0f} s" if s >= 9.5 else f"{s:.1f} s"
    if s < 3600:
        m, r = divmod(round(s), 60)
        return f"{m} min {r:02d} s" if r else f"{m} min"
    h, r = divmod(round(s) // 60, 60)
    return f"{h} h {r:02d} min" if r else f"{h} h"


def fmt_latency(s: float) -> str:
    return f"{s * 1e3:.3g} ms" if s < 1 else f"{s:.3g} s"


# ---- a LoadGen test: what it will do, and what it has done so far ---------------------------

@dataclass(frozen=True)
class RunPlan:
    """What LoadGen will do in one test, from its own reading of the settings."""

    scenario: str
    mode: str
    min_duration_s: float
    queries: int | None  # queries LoadGen will issue (Server: about), when known ahead
    samples: int | None  # samples it will issue, when known ahead
    target_rate: float | None  # samples/s it aims at (Offline: expected; Server: scheduled)
    bound_s: float | None = None  # Server: the latency bound it judges
    percentile: float = 0.99  # Server: the one held against the bound; SingleStream: its own (90)
    devices: tuple[str, ...] = ()

    @property
    def latency(self) -> bool:
        """Whether the test's queries are one sample each, so the engine sees their latency."""
        return self.scenario in ("Server", "SingleStream")

    @classmethod
    def from_settings(cls, settings, scenario: str, mode: str, devices, total: int) -> RunPlan:
        """From a LoadGen TestSettings (userconf.test_settings) for a QSL of TOTAL samples."""
        names = tuple(getattr(d, "name", str(d)) for d in devices)
        dur = settings.min_duration_ms / 1000
        min_q = int(settings.min_query_count)
        if mode == "accuracy":  # every sample once
            return cls(scenario, mode, 0.0, None, int(total), None, devices=names)
        if scenario == "Offline":
            qps = float(settings.offline_expected_qps)
            n = max(min_q, int(LOADGEN_OFFLINE_SLACK * dur * qps))
            return cls(scenario, mode, dur, 1, n, qps, devices=names)
        if scenario == "Server":
            qps = float(settings.server_target_qps)
            n = max(min_q, math.ceil(qps * dur))
            return cls(scenario, mode, dur, n, n, qps, settings.server_target_latency_ns / 1e9,
                       float(settings.server_target_latency_percentile), names)
        # the streams: one query at a time, as fast as answered, for min_duration and min_query_count
        pct = float(settings.single_stream_target_latency_percentile) if scenario == "SingleStream" else 0.99
        return cls(scenario, mode, dur, None, None, None, percentile=pct, devices=names)


@dataclass(frozen=True)
class Reading:
    """One read of the engine's counters (SystemUnderTest.live())."""

    t: float  # time.monotonic()
    samples: tuple[int, ...]
    busy_s: tuple[float, ...]
    latency: tuple[tuple[float, float, int], ...] = ()  # (lower s, upper s, count) per bin

    @classmethod
    def of(cls, sut, t: float | None = None) -> Reading:
        samples, _batches, busy, bins = sut.live()
        return cls(time.monotonic() if t is None else t, tuple(samples), tuple(busy), tuple(map(tuple, bins)))


@dataclass(frozen=True)
class LatencySoFar:
    """One-sample query latencies so far, as the engine sees them: from IssueQuery to just before
    the completion goes to LoadGen. LoadGen counts from the query's scheduled time, at or before
    IssueQuery, to its own completion time, so each figure here is at most LoadGen's."""

    count: int
    p50_s: float  # each the lower edge of its histogram bin: never above the engine's figure
    pct_s: float  # at the plan's percentile
    over: int  # queries certainly over the bound (their bin starts above it)


def latency_so_far(bins, percentile: float, bound_s: float | None) -> LatencySoFar | None:
    """Percentiles of a histogram [(lower s, upper s, count)] sorted by latency."""
    bins = sorted(bins)
    n = sum(c for _, _, c in bins)
    if n == 0:
        return None

    def at(p: float) -> float:
        k = int(n * p)  # LoadGen's index into the sorted latencies
        seen = 0
        for lo, _, c in bins:
            seen += c
            if seen > k:
                return lo
        return bins[-1][0]

    over = sum(c for lo, _, c in bins if bound_s is not None and lo > bound_s)
    return LatencySoFar(n, at(0.5), at(percentile), over)


@dataclass
class Snapshot:
    """What the display says at one moment."""

    started: bool  # the first sample has completed
    elapsed_s: float
    samples: int
    rate_now: float
    rate_avg: float
    busy: list[float]  # share of the recent window each device was busy, 0..1
    latency: LatencySoFar | None = None
    left_s: float | None = None  # estimated time to the end of the test
    risk: str = ""  # why the result is in danger (yellow)
    lost: str = ""  # why it can no longer be VALID (red)


class Tracker:
    """Turns successive readings into snapshots: elapsed time from the first completed sample
    (LoadGen loads the samples first), rates over the last RATE_WINDOW_S, busy shares, and for
    Server whether the p99 can still be met."""

    def __init__(self, plan: RunPlan, t0: float):
        self.plan = plan
        self.t_begin = t0
        self.t0: float | None = None
        self.window: deque[Reading] = deque()
        self._lost = ""
        self._es_at = -math.inf
        self._es_over = -1

    def update(self, r: Reading) -> Snapshot:
        samples = sum(r.samples)
        if self.t0 is None and samples > 0:
            # first seen now: it completed since the previous reading
            self.t0 = self.window[-1].t if self.window else self.t_begin
        self.window.append(r)
        while len(self.window) > 2 and r.t - self.window[1].t >= RATE_WINDOW_S:
            self.window.popleft()
        first = self.window[0]
        dt = r.t - first.t
        rate_now = (samples - sum(first.samples)) / dt if dt > 0 else 0.0
        busy = [min(1.0, max(0.0, (b - b0) / dt)) if dt > 0 else 0.0 for b, b0 in zip(r.busy_s, first.busy_s)]
        elapsed = r.t - self.t0 if self.t0 is not None else 0.0
        snap = Snapshot(self.t0 is not None, elapsed, samples, rate_now,
                        samples / elapsed if elapsed > 0 else 0.0, busy)
        p = self.plan
        if p.latency:
            snap.latency = latency_so_far(r.latency, p.percentile, p.bound_s)
        self._estimate(snap)
        if p.mode == "performance" and p.scenario == "Server":
            self._judge_server(snap, r.t)
        elif p.mode == "performance" and p.scenario == "Offline":
            self._judge_offline(snap)
        return snap

    def _estimate(self, s: Snapshot) -> None:
        p = self.plan
        if not s.started:
            return
        if p.scenario == "Server" and p.mode == "performance" and p.queries and p.target_rate:
            # LoadGen issues on its schedule, the last query at about queries / rate; then the
            # test ends once the queries still queued are answered
            backlog = (p.queries - s.samples) / s.rate_now if s.rate_now > 0 else 0.0
            s.left_s = max(0.0, p.queries / p.target_rate - s.elapsed_s, backlog)
        elif p.samples and s.rate_now > 0:
            s.left_s = max(0.0, (p.samples - s.samples) / s.rate_now)
        elif p.min_duration_s:
            s.left_s = max(0.0, p.min_duration_s - s.elapsed_s)

    def _judge_offline(self, s: Snapshot) -> None:
        p = self.plan
        if not s.started or s.left_s is None or s.elapsed_s < 5 or not p.min_duration_s:
            return
        end = s.elapsed_s + s.left_s
        if end < 0.98 * p.min_duration_s:
            s.risk = (f"at this rate the test ends after about {fmt_duration(end)}, before its minimum "
                      f"duration {fmt_duration(p.min_duration_s)}: INVALID unless it slows down "
                      "(raise --target-qps)")

    def _judge_server(self, s: Snapshot, now: float) -> None:
        p, lat = self.plan, s.latency
        if lat is None or p.bound_s is None or not p.queries:
            return
        # The engine's latency is LoadGen's less the issue delay, so its count over the bound is
        # at most LoadGen's; and the queries may exceed the plan's estimate by a Poisson spread.
        # Either way, a test judged lost here is lost for LoadGen too.
        n = p.queries + int(3 * math.sqrt(p.queries)) + 1
        allowed = server_queries_allowed_over(n, p.percentile)
        pct = f"p{p.percentile * 100:g}"
        if not self._lost:  # once lost, always lost: the count over the bound only grows
            if lat.over > allowed:
                self._lost = "percentile"
            elif lat.over and lat.over != self._es_over and now - self._es_at >= ES_EVERY_S:
                self._es_at, self._es_over = now, lat.over
                if not early_stopping_passes(n, lat.over, p.percentile):
                    self._lost = "early stopping"
        over = f"cannot be VALID any more: {lat.over:,} queries already over the {fmt_latency(p.bound_s)} bound"
        if self._lost == "percentile":
            s.lost = f"{over}, and {pct} of about {p.queries:,} allows {allowed:,} (lower --target-qps)"
        elif self._lost:
            s.lost = f"{over}, more than early stopping allows in about {p.queries:,} (lower --target-qps)"
        elif lat.count >= MIN_QUERIES_FOR_RISK and lat.pct_s > p.bound_s:
            s.risk = f"{pct} so far is at least {fmt_latency(lat.pct_s)}, over the {fmt_latency(p.bound_s)} bound"


# ---- how a snapshot reads ----------------------------------------------------------------

def _busy_text(plan: RunPlan, busy: list[float]) -> str:
    if not busy:
        return ""
    if len(busy) <= SHOW_DEVICES:
        names = plan.devices if len(plan.devices) == len(busy) else [f"dev{k}" for k in range(len(busy))]
        return "busy " + " ".join(f"{n} {b * 100:.0f}%" for n, b in zip(names, busy))
    s = sorted(busy)
    return (f"{len(s)} devices busy {s[0] * 100:.0f}%/{s[len(s) // 2] * 100:.0f}%/{s[-1] * 100:.0f}% "
            "(min/median/max)")


def describe(plan: RunPlan, s: Snapshot) -> list[list[tuple[str, str]]]:
    """What the display says, as lines of parts (text, rich style): where the test is, what
    it does, how busy the devices are, and any warning. The terminal shows the lines, the
    plain line joins them: both say the same things."""
    head: list[tuple[str, str]] = [(f"LoadGen {plan.scenario} {plan.mode}", "bold")]
    if not s.started:
        head.append(("loading samples, waiting for the first to complete", "dim"))
        return [head]
    if plan.min_duration_s:
        head.append((f"{fmt_duration(s.elapsed_s)} of {fmt_duration(plan.min_duration_s)} minimum", ""))
    else:
        head.append((fmt_duration(s.elapsed_s), ""))
    if s.left_s is not None:
        head.append((f"about {fmt_duration(s.left_s)} left", "dim"))
    about = "about " if plan.scenario == "Server" and plan.mode == "performance" else ""  # a Poisson count
    work = [(f"{s.samples:,}" + (f" of {about}{plan.samples:,}" if plan.samples else "") + " samples", "")]
    rate = f"{s.rate_now if s.rate_now > 0 else s.rate_avg:,.0f}/s now"
    if plan.target_rate:
        rate += f" (target {plan.target_rate:,.0f}/s)"
    work.append((rate, ""))
    lat = s.latency
    if lat is not None:
        text = f"p{plan.percentile * 100:g} so far at least {fmt_latency(lat.pct_s)}"
        style = ""
        if plan.bound_s:
            text += f" (bound {fmt_latency(plan.bound_s)})"
            style = "red" if s.lost else ("yellow" if s.risk else "green")
        work.append((text, style))
    lines = [head, work]
    busy = _busy_text(plan, s.busy)
    if busy:
        lines.append([(busy, "")])
    if s.lost:
        lines.append([("INVALID: this test " + s.lost, "bold red")])
    elif s.risk:
        lines.append([("at risk: " + s.risk, "yellow")])
    return lines


def plain_line(plan: RunPlan, s: Snapshot) -> str:
    return "progress: " + "; ".join(", ".join(t for t, _ in line) for line in describe(plan, s))


def rich_lines(plan: RunPlan, s: Snapshot):
    from rich.console import Group
    from rich.text import Text

    out = []
    for line in describe(plan, s):
        t = Text(no_wrap=True, overflow="ellipsis")
        for k, (text, style) in enumerate(line):
            if k:
                t.append(" | ", style="dim")
            t.append(text, style=style)
        out.append(t)
    return Group(*out)


# ---- `run`: the watcher around one LoadGen test -----------------------------------------

class RunDisplay:
    """How `run` shows its LoadGen test: a live line on a terminal, a plain line a minute
    otherwise, nothing with QUIET. CONSOLE is the command's rich Console."""

    def __init__(self, console, quiet: bool = False, refresh_s: float = REFRESH_S,
                 line_every_s: float = LINE_EVERY_S):
        self.console = console
        self.quiet = quiet
        self.refresh_s = refresh_s
        self.line_every_s = line_every_s


class RunWatch:
    """Context manager around SystemUnderTest.run_test: a thread reads the engine's counters
    while the test runs and draws them. Its own CPU time is kept in cpu_s (the harness leaves
    it out of the host's cost per sample)."""

    def __init__(self, display: RunDisplay | None, sut, plan: RunPlan):
        self.display = display
        self.sut = sut
        self.plan = plan
        self.cpu_s = 0.0
        self.last: Snapshot | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._live = None

    @property
    def on(self) -> bool:
        # a system under test without the engine's counters (a stand-in in a test) is not watched
        return self.display is not None and not self.display.quiet and hasattr(self.sut, "live")

    def __enter__(self) -> Self:
        if not self.on:
            return self
        if self.plan.latency:
            self.sut.live_latency(True)
        if is_live(self.display.console):
            from rich.live import Live

            # Redrawn by the watcher thread only; sys.stdout and sys.stderr are left alone, so a
            # Ctrl-C's one line and any error reach them as usual once the test ends.
            self._live = Live(console=self.display.console, auto_refresh=False, transient=True,
                              redirect_stdout=False, redirect_stderr=False)
            self._live.start()
        self._thread = threading.Thread(target=self._loop, name="visionperf-progress", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
        if self._live is not None:
            self._live.stop()
        if self.on and self.plan.latency:
            self.sut.live_latency(False)

    def _loop(self) -> None:
        from rich.text import Text

        cpu0 = time.thread_time()
        con = self.display.console
        plan = self.plan
        tracker = Tracker(plan, time.monotonic())
        last_line = time.monotonic()
        warned = False
        try:
            while not self._stop.wait(self.display.refresh_s):
                snap = tracker.update(Reading.of(self.sut))
                self.last = snap
                if snap.lost and not warned:  # said at once, and kept above the live line
                    con.print(Text.assemble(("warning: ", "bold red"), f"this test {snap.lost}"), highlight=False)
                    warned = True
                if self._live is not None:
                    self._live.update(rich_lines(plan, snap), refresh=True)
                elif snap.started and time.monotonic() - last_line >= self.display.line_every_s:
                    con.print(plain_line(plan, snap), markup=False, highlight=False)
                    last_line = time.monotonic()
        except Exception as e:  # noqa: BLE001 (the display must never end a benchmark run)
            con.print(f"live progress stopped: {type(e).__name__}: {e}", markup=False, highlight=False)
        finally:
            self.cpu_s = time.thread_time() - cpu0


# ---- `scale`: a bar over the runs of a study ---------------------------------------------

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


# ---- `submission`, `report`: what is under way, once it takes a while -------------------

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
