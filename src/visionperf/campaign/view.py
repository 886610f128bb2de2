"""What a campaign shows: the plan (--dry-run), a heading per run over the run's own live block
on a terminal (or a plain line per run start and end and one a minute elsewhere), and the table
it ends with."""

from __future__ import annotations

import threading
import time
from typing import Self

from ..progress import LINE_EVERY_S, fmt_duration, is_live
from .plan import PlannedRun
from .state import DONE_STATUSES, SHORT, VALID, RunRecord

STATUS_STYLE = {VALID: "green", SHORT: "yellow"}


class CampaignView:
    """Progress over the campaign: runs done and left and the time left (the estimates of the
    runs left, scaled by how the finished runs compared with theirs)."""

    def __init__(self, console, estimates: dict[str, float], quiet: bool = False,
                 line_every_s: float = LINE_EVERY_S):
        self.console = console
        self.live = is_live(console)
        self.quiet = quiet
        self.estimates = estimates  # run name -> seconds
        self.done: dict[str, float] = {}  # run name -> seconds it took (0 when skipped)
        self.current: str = ""
        self.started = 0.0
        self.t_begin = time.monotonic()
        self.line_every_s = line_every_s
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None

    def __enter__(self) -> Self:
        if not self.live and not self.quiet:
            self._ticker = threading.Thread(target=self._tick, name="visionperf-campaign-progress", daemon=True)
            self._ticker.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join()

    def left_s(self) -> float:
        ran = [n for n, s in self.done.items() if s > 0]
        est_ran = sum(self.estimates[n] for n in ran)
        scale = sum(self.done[n] for n in ran) / est_ran if est_ran > 0 else 1.0
        left = sum(s for n, s in self.estimates.items() if n not in self.done) * scale
        if self.current:
            left -= min(time.monotonic() - self.started, self.estimates.get(self.current, 0) * scale)
        return max(0.0, left)

    def status(self) -> str:
        total = len(self.estimates)
        return (f"{len(self.done)} of {total} runs done, {fmt_duration(time.monotonic() - self.t_begin)} elapsed, "
                f"about {fmt_duration(self.left_s())} left")

    def say(self, text: str) -> None:
        if not self.quiet:
            self.console.print(text, markup=False, highlight=False)

    def run_started(self, run: PlannedRun, attempt: str = "") -> None:
        self.current, self.started = run.name, time.monotonic()
        if self.quiet:
            return
        what = f"{run.name}{attempt}"
        if self.live:
            self.console.rule(f"[bold]{what}[/bold]  [dim]{self.status()}[/dim]", align="left")
        else:
            self.say(f"start {what} ({self.status()})")

    def run_finished(self, run: PlannedRun, record: RunRecord, skipped: bool = False) -> None:
        self.done[run.name] = 0.0 if skipped else time.monotonic() - self.started
        self.current = ""
        if self.quiet:
            return
        if skipped:
            self.say(f"skip  {run.name}: {record.status} under the same inputs ({record.finished})")
            return
        verdict = record.status + (f": {record.why}" if record.why and record.status != VALID else "")
        if self.live:
            style = STATUS_STYLE.get(record.status, "red")
            self.console.print(f"[{style}]{run.name}: {verdict}[/{style}] [dim]({fmt_duration(record.seconds)})[/dim]")
        else:
            self.say(f"end   {run.name}: {verdict} ({fmt_duration(record.seconds)})")

    def _tick(self) -> None:
        while not self._stop.wait(self.line_every_s):
            self.say(f"progress: {self.status()}" + (f", running {self.current}" if self.current else ""))


def plan_table(runs: list[PlannedRun], settings: dict[str, str], estimates: dict[str, float],
               todo: dict[str, str] | None = None):
    """--dry-run: each run, its settings and its estimated time; TODO (a campaign under way):
    whether each is kept or run."""
    from rich.table import Table

    t = Table(title="campaign plan", title_justify="left")
    cols = ("#", "run", "settings", "estimate") + (("resume",) if todo else ())
    for col in cols:
        t.add_column(col, justify="right" if col in ("#", "estimate") else "left")
    for i, r in enumerate(runs, 1):
        t.add_row(str(i), r.name, settings[r.name], fmt_duration(estimates[r.name]),
                  *((todo[r.name],) if todo else ()))
    return t


def outcome_table(runs: list[PlannedRun], records: dict[str, RunRecord], skipped: set[str]):
    """The table a campaign ends with: each run, VALID or not, why, and what to do."""
    from rich.table import Table

    t = Table(title="campaign runs", title_justify="left", show_lines=False)
    for col in ("run", "status", "time", "why", "what to do"):
        t.add_column(col, overflow="fold")
    for r in runs:
        rec = records.get(r.name)
        if rec is None:
            t.add_row(r.name, "[red]NOT RUN[/red]", "", "the campaign stopped before it", "rerun the same command")
            continue
        style = STATUS_STYLE.get(rec.status, "red" if rec.status not in DONE_STATUSES else "yellow")
        status = f"[{style}]{rec.status}[/{style}]" + (" (kept)" if r.name in skipped else "")
        t.add_row(r.name, status, fmt_duration(rec.seconds) if rec.seconds else "", rec.why,
                  rec.fix if rec.status != VALID else "")
    return t
