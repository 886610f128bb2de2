"""The campaign's state file, OUT/campaign.json: the plan, each run's key and outcome, and the
targets chosen, written whole or not at all after every run, so that the same command run again
knows what it may skip.

A run's key is a hash of everything its result depends on: its settings, the model file's
sha256, the dataset's path and fingerprint, the visionperf and LoadGen versions, and for an
audit the keys of the runs it is compared against. A result is reused only under the same key
(and while the cache it was run from is unchanged); otherwise it is moved aside and run again.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .. import jsonfile
from ..atomic import write_text
from ..errors import UserError

STATE_VERSION = 1
STATE_FILE = "campaign.json"

# A run's outcomes. DONE_STATUSES may be skipped on resume (under the same key).
VALID, SHORT, REFUSED, INVALID, FAILED, INTERRUPTED, SKIPPED = (
    "VALID", "SHORT", "REFUSED", "INVALID", "FAILED", "INTERRUPTED", "SKIPPED")
DONE_STATUSES = (VALID, SHORT, REFUSED)


def run_key(parts: dict) -> str:
    """sha256 of PARTS (JSON with sorted keys): the identity of a run's inputs."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


@dataclass
class RunRecord:
    """One planned run's last outcome."""

    key: str
    status: str
    why: str = ""  # what made it not VALID
    fix: str = ""  # what to do
    target_qps: float | None = None  # the target it ran with (Server: chosen by bisection)
    seconds: float = 0.0  # wall time of its last attempt
    attempts: int = 0
    cache: dict = field(default_factory=dict)  # {"path", "fingerprint"} of the cache it ran from
    finished: str = ""  # UTC, ISO 8601


@dataclass
class State:
    path: Path
    command: list[str] = field(default_factory=list)
    plan: list[str] = field(default_factory=list)
    runs: dict[str, RunRecord] = field(default_factory=dict)
    # per benchmark: the measured Offline rate (samples/s), which sizes Server's bisection and
    # the accuracy runs' estimate
    rates: dict[str, float] = field(default_factory=dict)
    # per "BENCH Server": each bisection probe {"target_qps", "valid", "why"} and the chosen target
    server: dict[str, dict] = field(default_factory=dict)

    def save(self) -> None:
        """The whole state written atomically (a reader sees the old file or the new one)."""
        doc = {"version": STATE_VERSION, "command": self.command, "plan": self.plan,
               "runs": {k: asdict(v) for k, v in self.runs.items()}, "rates": self.rates,
               "server": self.server, "saved": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        write_text(self.path, json.dumps(doc, indent=2) + "\n")


def load_state(out: Path) -> State:
    """OUT's state file, or a fresh state where there is none."""
    path = out / STATE_FILE
    if not path.exists():
        return State(path)
    fix = f"move {path} aside to start the campaign afresh (its runs will be redone)"
    doc = jsonfile.load(path, fix)
    if not isinstance(doc, dict) or doc.get("version") != STATE_VERSION or not isinstance(doc.get("runs"), dict):
        raise UserError(f"{path} is not a campaign state file this visionperf writes: {fix}")
    try:
        runs = {k: RunRecord(**v) for k, v in doc["runs"].items()}
    except TypeError:
        raise UserError(f"{path} has a run record this visionperf cannot read: {fix}") from None
    return State(path, doc.get("command") or [], doc.get("plan") or [], runs, doc.get("rates") or {},
                 doc.get("server") or {})


def move_aside(result: Path, out: Path) -> Path | None:
    """RESULT (a run's directory under OUT) moved to OUT/replaced/<time>/<its path under OUT>,
    so that a result made from other inputs is never silently kept, nor lost; None if absent."""
    if not result.exists():
        return None
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    dest = out / "replaced" / stamp / result.relative_to(out)
    n = 1
    while dest.exists():
        dest = out / "replaced" / f"{stamp}-{n}" / result.relative_to(out)
        n += 1
    dest.parent.mkdir(parents=True, exist_ok=True)
    os.replace(result, dest)
    return dest
