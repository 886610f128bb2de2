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

    text.py        --quiet, live consoles, durations and latencies as people read them
    live_test.py   `run`: the LoadGen test's live block (plan, counters, display thread)
    study.py       `scale`: a bar over the study's runs
    activity.py    `submission`, `report`: the step under way
"""

from __future__ import annotations

from .activity import Activity
from .live_test import (
    REFRESH_S,
    Reading,
    RunDisplay,
    RunPlan,
    RunWatch,
    Snapshot,
    Tracker,
    latency_so_far,
    plain_line,
)
from .study import StudyProgress
from .text import LINE_EVERY_S, fmt_duration, fmt_latency, is_live, quiet, set_quiet

__all__ = ["LINE_EVERY_S", "REFRESH_S", "Activity", "Reading", "RunDisplay", "RunPlan", "RunWatch", "Snapshot",
           "StudyProgress", "Tracker", "fmt_duration", "fmt_latency", "is_live", "latency_so_far", "plain_line",
           "quiet", "set_quiet"]
