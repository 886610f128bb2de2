"""`run`'s live block: what a LoadGen test will do (RunPlan), what it has done so far (Tracker,
from the engine's counters), and the thread that shows it (RunWatch, RunDisplay)."""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Self

from ..targets import (
    LOADGEN_OFFLINE_SLACK,
    early_stopping_passes,
    server_queries_allowed_over,
)

from .text import LINE_EVERY_S, fmt_duration, fmt_latency, is_live

REFRESH_S = 0.25  # how often a terminal's line is redrawn (and the counters read)
RATE_WINDOW_S = 2.0  # "now" in the current rate: the last this many seconds
SHOW_DEVICES = 8  # busy share per device up to this many; beyond, the spread (min/median/max)
MIN_QUERIES_FOR_RISK = 200  # a p99 over the bound is worth a warning from this many queries
ES_EVERY_S = 2.0  # early stopping's check costs O(overlatency queries): at most this often


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
