"""The warm-up before LoadGen's test, and the targets set from it.

First runs are slow, and a run without --target-qps (or its user.conf key) needs one: the
warm-up runs a few loaded samples, measures the rate (and, for the streams, a query's
latency), and leaves the engine stopped with its counters at zero for the test.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..targets import LOADGEN_OFFLINE_SLACK, OFFLINE_MARGIN, latency_target_qps, offline_expected_qps
from ..userconf import Overrides, conf_has
from .config import RunSpec
from .machine import Built
from .memory import WARMUP_BATCHES, loadgen_queries_fitting

MULTISTREAM_SAMPLES = 8  # mlperf.conf's samples per MultiStream query
WARMUP_WINDOWS = 4  # rate windows of 0.5 s when a target is derived from the warm-up


@dataclass
class WarmUp:
    rates: list[float]  # samples/s in each window
    query_s: float | None  # a stream query's latency, measured when its target is derived
    batch_time_s: float  # one batch on every device at the median rate, plus half the machine's round trip
    need_target: bool  # neither --target-qps nor the user.conf sets the target

    @property
    def rate(self) -> float:
        return _median(self.rates)


def completion_rate(completions: list[tuple[float, int]]) -> float:
    """Samples/s from a warm-up's completions (seconds, samples), past its first 30%."""
    if not completions:
        return 0.0
    end = completions[-1][0]
    counted = [(t, n) for t, n in completions if t >= 0.3 * end]
    if len(counted) < 2 or counted[-1][0] <= counted[0][0]:
        return sum(n for _, n in completions) / max(end, 1e-9)
    return sum(n for _, n in counted[1:]) / (counted[-1][0] - counted[0][0])


def warm_up(spec: RunSpec, built: Built, total: int, round_trip_s: float) -> WarmUp:
    """The started engine warmed on a few loaded samples, then stopped with its counters reset."""
    cfg, scenario, sut = spec.config, spec.scenario, built.sut
    sut.load(range(min(total, WARMUP_BATCHES * built.batch_size * len(built.devices))))
    target_key = "target_qps" if scenario in ("Offline", "Server") else "target_latency"
    need_target = cfg.target_qps is None and cfg.mode == "performance" \
        and not conf_has(spec.base_conf, spec.workload.name, scenario, target_key)
    # Rate windows: Offline's target follows the fastest (a rate rising during the warm-up
    # rises further in the run), the batch time and Server's target the median.
    windows = WARMUP_WINDOWS if need_target and scenario in ("Offline", "Server") else 1
    rates = [completion_rate(sut.measure_rate(0.5)) for _ in range(windows)]
    query_s = None
    if need_target and scenario in ("SingleStream", "MultiStream"):
        query_s = sut.measure_latency(1 if scenario == "SingleStream" else MULTISTREAM_SAMPLES)
    sut.unload()
    sut.stop()  # restarted with the run's batch timeout; its counters start at zero
    sut.reset_stats()
    for d in built.devices:
        if hasattr(d, "reset_stats"):  # a Python device's own counters: the test's alone
            d.reset_stats()
    rate = _median(rates)
    # a batch sent elsewhere also waits for the hop there and back
    batch_time_s = (built.batch_size * len(built.devices) / rate if rate > 0 else 0.0) + round_trip_s / 2
    return WarmUp(rates, query_s, batch_time_s, need_target)


def _median(rates: list[float]) -> float:
    return sorted(rates)[len(rates) // 2]


def rate_ceiling(devices) -> float | None:
    """Samples/s the devices can never exceed together, when every one declares it (peak_rate)."""
    peaks = [getattr(d, "peak_rate", None) for d in devices]
    return float(sum(peaks)) if peaks and all(p for p in peaks) else None


def targets(spec: RunSpec, warm: WarmUp, devices: list, total: int, notes: list[str]) -> Overrides:
    """The user.conf overrides: the options', a target set from WARM where none is given, and
    a smaller performance sample count for a dataset too small for the rule."""
    cfg, w, scenario = spec.config, spec.workload, spec.scenario
    over = Overrides(target_qps=cfg.target_qps, duration_s=cfg.duration)
    if warm.need_target and warm.query_s is not None:
        fitting = loadgen_queries_fitting(scenario, 1 if scenario == "SingleStream" else MULTISTREAM_SAMPLES)
        over.target_qps, spare = latency_target_qps(warm.query_s, cfg.duration, fitting)
        if spare >= 1:
            notes.append(f"expected latency {warm.query_s * 1000 / spare:.3f} ms set from a warm-up (1/{spare:g} "
                         "of the measured query latency); pass --target-qps to choose it")
        else:
            notes.append(f"expected latency {warm.query_s * 1000 / spare:.3f} ms set so that LoadGen's {fitting:,} "
                         f"queries fit in the memory available (the warm-up's {warm.query_s * 1000:.3g} ms queries "
                         "would need more): the test may end before its min_duration (INVALID); pass a shorter "
                         "--duration")
    elif warm.need_target and scenario == "Offline":
        # Aim high. Set too high, the run only lasts longer than min_duration; set low (a
        # warm-up slower than the run), it ends early and is INVALID.
        ceiling = rate_ceiling(devices)
        over.target_qps = offline_expected_qps(warm.rates, ceiling)
        how = (f"the devices' peak rate {ceiling:,.0f}/s / {LOADGEN_OFFLINE_SLACK}: the run cannot "
               "end early" if ceiling else
               f"fastest of {len(warm.rates)} warm-up windows {max(warm.rates):,.1f}/s x {OFFLINE_MARGIN}")
        notes.append(f"target_qps {over.target_qps:,.1f} set from {how}; pass --target-qps to choose it")
    elif warm.need_target:
        over.target_qps = warm.rate * 0.5
        notes.append(f"target_qps {over.target_qps:,.1f} set from a warm-up (half the measured "
                     "Offline rate); pass --target-qps to choose it")
    if total < w.performance_sample_count:
        over.performance_sample_count = total
        notes.append(f"dataset has {total} images, fewer than the performance sample "
                     f"count {w.performance_sample_count}: not a submittable run")
    return over
