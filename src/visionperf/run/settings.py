"""LoadGen's settings for the test: the run's user.conf, LoadGen's own reading of it, the
Server latency bound in force, and the batch timeout the engine runs under."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..targets import server_batch_timeout_s
from ..userconf import LatencyBound, Overrides, latency_bound, make_user_conf, test_settings
from .config import RunSpec
from .length import LengthSettings, check_length
from .memory import BUILT, MemoryEstimate, check_memory, mem_available, memory_needed
from .machine import Built


@dataclass
class Settings:
    user_conf: Path  # the run's user.conf, in its partial directory
    loadgen: object  # mlperf_loadgen.TestSettings, LoadGen's own reading
    bound_ms: float | None  # Server: the p99 bound LoadGen judges
    bound: LatencyBound | None  # where visionperf read that bound (None where LoadGen's reading differs)


def write_settings(spec: RunSpec, partial: Path, overrides: Overrides, notes: list[str]) -> Settings:
    """PARTIAL's user.conf (the run's notes so far as its comments), as LoadGen reads it."""
    w, scenario = spec.workload, spec.scenario
    overrides.notes = tuple(notes)
    conf_text = make_user_conf(spec.base_conf, w.name, scenario, overrides)
    user_conf = partial / "user.conf"
    user_conf.write_text(conf_text)
    # LoadGen's own reading of the settings (the wheel's copy of the same LoadGen release;
    # the engine's copy makes its own first FromConfig call when the test starts).
    loadgen = test_settings(user_conf, w.name, scenario, spec.config.mode)
    bound = latency_bound(conf_text, w.name, scenario)
    if scenario != "Server":
        return Settings(user_conf, loadgen, None, bound)
    # The bound in force is LoadGen's (mlperf.conf, then this user.conf); the resolver says
    # where it came from, and LoadGen's own reading wins should they ever differ.
    bound_ms = loadgen.server_target_latency_ns / 1e6
    if bound is None or bound.ms != bound_ms:
        notes.append(f"LoadGen's p99 bound {bound_ms:g} ms differs from visionperf's reading of "
                     f"the confs ({bound}): the timeout follows LoadGen's")
        bound = None
    if w.server_latency_bound_ms and bound_ms != w.server_latency_bound_ms:
        where = f"{bound.source} {bound.key}" if bound else "LoadGen"
        notes.append(f"LoadGen judges the p99 against {bound_ms:g} ms ({where}); {w.name}'s rule "
                     f"is {w.server_latency_bound_ms:g} ms: set {w.name}.Server.target_latency = "
                     f"{w.server_latency_bound_ms:g} in --user-conf for the rule's bound")
    return Settings(user_conf, loadgen, bound_ms, bound)


def check_test(spec: RunSpec, settings: Settings, rate: float, total: int) -> MemoryEstimate:
    """LoadGen's own reading of the settings, refused in one line where its test would outlast
    --max-hours at the devices' RATE (their ceiling where known, else the warm-up's) or need more
    memory than is available beside what the devices and the engine already hold; returns the
    run's memory estimate."""
    length = LengthSettings.from_loadgen(settings.loadgen, spec.scenario, spec.config.mode)
    check_length(length, rate, total, spec.config.max_hours)
    need = memory_needed(spec, total, length)
    check_memory(need.without(BUILT), mem_available())
    return need


def batch_timeout_s(scenario: str, bound_ms: float | None, batch_time_s: float, given_ms: float | None) -> float:
    """How long a partial batch may wait for more samples (seconds): --batch-timeout-ms if given;
    in Server, from the p99 bound LoadGen will judge (targets.server_batch_timeout_s); else 0."""
    if given_ms is not None:
        return max(0.0, given_ms / 1000)
    if scenario != "Server" or not bound_ms:
        return 0.0
    return server_batch_timeout_s(bound_ms / 1000, batch_time_s)


def start_for_test(spec: RunSpec, built: Built, settings: Settings, batch_time_s: float,
                   notes: list[str]) -> str:
    """The engine started under the run's batch timeout; returns the timeout's part of the log line."""
    cfg, scenario, bound_ms = spec.config, spec.scenario, settings.bound_ms
    timeout_s = batch_timeout_s(scenario, bound_ms, batch_time_s, cfg.batch_timeout_ms)
    if scenario == "Server" and cfg.batch_timeout_ms is None and bound_ms and not timeout_s:
        notes.append(f"batch timeout 0: two batch times ({2 * batch_time_s * 1000:.3g} ms) already fill "
                     f"80% of the {bound_ms:g} ms bound, so partial batches go at once")
    built.sut.start(timeout_s, throughput_only=scenario == "Offline")
    if scenario != "Server":
        return ""
    bound = settings.bound
    why = ("--batch-timeout-ms" if cfg.batch_timeout_ms is not None else
           f"p99 bound {bound_ms:g} ms" + (f" from {bound.source} {bound.key}" if bound else "")
           + f", batch time {batch_time_s * 1000:.3g} ms")
    return f", batch timeout {built.sut.batch_timeout_s * 1000:.3f} ms ({why})"
