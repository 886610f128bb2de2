"""How long LoadGen's test will take, from the settings in force, and the refusal of a test that
would not end within --max-hours.

LoadGen decides a test's length from a handful of settings: min_duration and min_query_count
(met both), target_qps (Server schedules its queries at that rate; Offline's one query holds
max(min_query_count, 1.1 x min_duration x target_qps) samples), samples_per_query (MultiStream),
max_duration and max_query_count (caps), and in accuracy mode the whole dataset once. A test
whose settings imply days (Server at target_qps 0.001 issues LoadGen's 100 queries over 28
hours) is refused before it starts, in one line naming the time and what to change.

The settings are read twice: from the confs before any work (`from_confs`, visionperf's reading
of mlperf.conf and the run's user.conf, where the target is already known), and from LoadGen's
own reading once the run's user.conf is written (`from_loadgen`), with the warm-up's rate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import UserError
from ..targets import LOADGEN_OFFLINE_SLACK
from ..userconf import conf_int, conf_setting


# LoadGen 6.0.17's TestSettings defaults (test_settings.h), where neither conf sets a key; written
# out, not read from the extension, whose import is best left to the run's LoadGen step.
LOADGEN_DEFAULTS = {"min_duration_ms": 10_000, "min_query_count": 100, "multi_stream_samples_per_query": 8}


@dataclass(frozen=True)
class LengthSettings:
    """The settings that decide how long LoadGen's test takes."""

    scenario: str
    mode: str  # performance | accuracy
    min_duration_s: float
    max_duration_s: float  # 0: no cap
    min_query_count: int
    max_query_count: int  # 0: no cap
    target_qps: float | None  # LoadGen's (the streams: 1 / expected latency); None: the warm-up's, later
    samples_per_query: int  # MultiStream's; 1 elsewhere (Offline's one query is counted apart)
    accuracy_samples: int  # accuracy_sample_count_override; 0: the whole dataset

    @classmethod
    def from_loadgen(cls, ts, scenario: str, mode: str) -> LengthSettings:
        """From LoadGen's own TestSettings (mlperf.conf, then the run's user.conf)."""
        qps = {"Server": ts.server_target_qps, "Offline": ts.offline_expected_qps,
               "SingleStream": _per_second(ts.single_stream_expected_latency_ns),
               "MultiStream": _per_second(ts.multi_stream_expected_latency_ns)}[scenario]
        return cls(scenario, mode, ts.min_duration_ms / 1000, ts.max_duration_ms / 1000, int(ts.min_query_count),
                   int(ts.max_query_count), qps,
                   int(ts.multi_stream_samples_per_query) if scenario == "MultiStream" else 1,
                   int(ts.accuracy_sample_count_override))

    @classmethod
    def from_confs(cls, conf_text: str, model: str, scenario: str, mode: str) -> LengthSettings | None:
        """From mlperf.conf and CONF_TEXT (the run's user.conf as the options write it), over
        LoadGen's defaults, as LoadGen will apply them; None where mlperf.conf cannot be read."""
        def setting(key: str, user_conf_only: bool = False):
            hit = conf_setting(conf_text, model, scenario, key)  # LookupError: no mlperf.conf
            return None if hit is None or (user_conf_only and hit[1] != "user.conf") else hit[0]

        def integer(key: str, default: int) -> int:
            v = setting(key)
            return default if v is None else conf_int(v)

        try:
            # a target the run's user.conf does not set is set from the warm-up
            if scenario in ("Server", "Offline"):
                qps = setting("target_qps", user_conf_only=True)
            else:
                latency_ms = setting("target_latency", user_conf_only=True)
                qps = None if latency_ms is None or not conf_int(latency_ms) else 1000 / conf_int(latency_ms)
            return cls(scenario, mode, integer("min_duration", LOADGEN_DEFAULTS["min_duration_ms"]) / 1000,
                       integer("max_duration", 0) / 1000,
                       integer("min_query_count", LOADGEN_DEFAULTS["min_query_count"]),
                       integer("max_query_count", 0), None if qps is None else float(qps),
                       integer("samples_per_query", LOADGEN_DEFAULTS["multi_stream_samples_per_query"])
                       if scenario == "MultiStream" else 1,
                       integer("accuracy_sample_count_override", 0))
        except LookupError:
            return None


def _per_second(latency_ns: float) -> float | None:
    return 1e9 / latency_ns if latency_ns > 0 else None


def issued(t: LengthSettings, total: int | None) -> tuple[int, int] | None:
    """(queries, samples) LoadGen issues, and keeps a record of, in the test; None where that
    depends on what is not known yet (the warm-up's target, the dataset's size)."""
    if t.mode == "accuracy":
        samples = t.accuracy_samples or total
        if not samples:
            return None
        queries = {"Offline": 1, "MultiStream": math.ceil(samples / t.samples_per_query)}.get(t.scenario, samples)
        return queries, samples
    if t.target_qps is None:
        return None
    if t.scenario == "Offline":
        return 1, max(t.min_query_count, int(LOADGEN_OFFLINE_SLACK * t.min_duration_s * t.target_qps))
    # Server schedules, and the streams generate, min_duration x target_qps queries up front
    queries = max(t.min_query_count, math.ceil(t.min_duration_s * t.target_qps))
    if t.max_query_count:
        queries = min(queries, t.max_query_count)
    return queries, queries * t.samples_per_query


@dataclass(frozen=True)
class Estimate:
    seconds: float
    why: str  # what sets the length, e.g. "100 queries at target_qps 0.001"
    fix: str  # the option(s) that shorten it


def estimate(t: LengthSettings, rate: float | None, total: int | None) -> Estimate | None:
    """How long the test takes at least, at RATE samples/s (None: not known yet) over a dataset of
    TOTAL samples (None: not known yet); None where nothing bounds it yet."""
    found: list[Estimate] = []
    rate = rate if rate and rate > 0 and math.isfinite(rate) else None
    if t.mode == "accuracy":
        samples = t.accuracy_samples or total
        if samples and t.scenario == "Server" and t.target_qps:
            found.append(Estimate(samples / t.target_qps, f"accuracy mode: {samples:,} samples at target_qps "
                                  f"{t.target_qps:g}", "raise --target-qps or pass --count"))
        if samples and rate:
            found.append(Estimate(samples / rate, f"accuracy mode: {samples:,} samples at {rate:,.3g}/s",
                                  "pass --count for fewer images"))
        return max(found, key=lambda e: e.seconds, default=None)
    found.append(Estimate(t.min_duration_s, f"min_duration {t.min_duration_s:g} s",
                          "lower --duration (or min_duration in --user-conf)"))
    counted = issued(t, total)  # what LoadGen issues, where its target is known
    if t.scenario == "Offline":
        samples = counted[1] if counted else t.min_query_count
        if rate:
            found.append(Estimate(samples / rate, f"one query of {samples:,} samples at {rate:,.3g}/s",
                                  "lower --target-qps or --duration (or min_query_count in --user-conf)"))
    else:
        # Server issues all it scheduled; the streams end once they have min_query_count queries
        queries = counted[0] if t.scenario == "Server" and counted else \
            min(t.min_query_count, t.max_query_count or t.min_query_count)
        if t.scenario == "Server" and t.target_qps:
            found.append(Estimate(queries / t.target_qps, f"{queries:,} queries at target_qps {t.target_qps:g}",
                                  "raise --target-qps (or lower min_query_count in --user-conf)"))
        if rate:
            samples = queries * t.samples_per_query
            per = f" of {t.samples_per_query:,} samples" if t.samples_per_query > 1 else ""
            found.append(Estimate(samples / rate, f"{queries:,} queries{per} at {rate:,.3g} samples/s",
                                  "lower min_query_count or samples_per_query in --user-conf"))
    longest = max(found, key=lambda e: e.seconds)
    if t.max_duration_s and longest.seconds > t.max_duration_s:
        return Estimate(t.max_duration_s, f"max_duration {t.max_duration_s:g} s", longest.fix)
    return longest


def check_length(t: LengthSettings | None, rate: float | None, total: int | None, max_hours: float) -> None:
    """Refuse, in one line, a test that would take longer than MAX_HOURS."""
    e = estimate(t, rate, total) if t is not None else None
    if e is None or e.seconds <= max_hours * 3600:
        return
    raise UserError(f"LoadGen's {t.scenario} test would take about {_duration(e.seconds)} ({e.why}), more than "
                    f"--max-hours {max_hours:g}: {e.fix}, or pass --max-hours {_hours_up(e.seconds)}")


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:,.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:,.0f} minutes"
    if seconds < 3 * 86400:
        return f"{seconds / 3600:,.1f} hours"
    if seconds < 2 * 365 * 86400:
        return f"{seconds / 86400:,.0f} days"
    return f"{seconds / (365.25 * 86400):,.3g} years"


def _hours_up(seconds: float) -> str:
    """Hours, rounded up to a figure that covers SECONDS."""
    hours = seconds / 3600
    return f"{math.ceil(hours):,}" if hours >= 1 else f"{math.ceil(hours * 100) / 100:g}"
