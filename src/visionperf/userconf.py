"""LoadGen settings: the mlperf.conf compiled into the wheel, plus exactly one user.conf.

`--target-qps` and `--duration` are conveniences: they are written into the user.conf that the
run uses (and that is kept beside its logs), never set behind LoadGen's back, so the logs and
the conf always agree. LoadGen reads its embedded mlperf.conf only on the first FromConfig call
in a process, so a process runs one test (`visionperf run` does).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from .errors import UserError

_from_config_calls = 0


@dataclass
class Overrides:
    target_qps: float | None = None  # Offline/Server: expected QPS; SS/MS: sets the expected latency
    duration_s: float | None = None  # min_duration; for Offline it also lifts min_query_count
    performance_sample_count: int | None = None  # only when the dataset is smaller than the rule
    notes: tuple[str, ...] = ()


def read_user_conf(path: str | Path | None) -> str:
    if not path:
        return ""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as e:
        raise UserError(f"cannot read user.conf {p}: {e.strerror}") from None
    for n, line in enumerate(text.splitlines(), 1):
        s = line.split("#", 1)[0].strip()
        if s and not re.fullmatch(r"[\w*.-]+\.[\w*]+\.\w+\s*=\s*\S+", s):
            raise UserError(f"{p}:{n}: expected 'model.scenario.key = value', got {line.strip()!r}")
    return text


def conf_has(text: str, model: str, scenario: str, key: str) -> bool:
    pat = re.compile(rf"^\s*({re.escape(model)}|\*)\.({scenario}|\*)\.{key}\s*=", re.M)
    return bool(pat.search(text))


def make_user_conf(base: str, model: str, scenario: str, o: Overrides) -> str:
    lines = [base.rstrip(), "", "# ---- written by visionperf for this run ----"] if base.strip() else \
        ["# ---- written by visionperf for this run ----"]
    lines += [f"# {n}" for n in o.notes]
    key = f"{model}.{scenario}"
    if o.target_qps is not None:
        if scenario in ("Offline", "Server"):
            lines.append(f"{key}.target_qps = {o.target_qps:.6g}")
        else:  # SingleStream / MultiStream: the expected latency of one query
            per_query = 1000.0 / o.target_qps
            lines.append(f"{key}.target_latency = {per_query:.6g}")
    if o.duration_s is not None:
        lines.append(f"{key}.min_duration = {int(o.duration_s * 1000)}")
        if scenario == "Offline":
            # Offline issues max(min_query_count, 1.1 * qps * duration) samples: with the
            # official 24,576 floor a short run could not be short.
            lines.append(f"{key}.min_query_count = 1")
    if o.performance_sample_count is not None:
        lines.append(f"{key}.performance_sample_count_override = {o.performance_sample_count}")
    return "\n".join(lines) + "\n"


def claim_test() -> None:
    """One LoadGen test per process: LoadGen reads its mlperf.conf only on the first
    FromConfig call in a process (the engine makes that call)."""
    global _from_config_calls
    if _from_config_calls:
        raise RuntimeError("LoadGen reads its mlperf.conf only on the first FromConfig call in a "
                           "process: run each test in a fresh process")
    _from_config_calls += 1
