"""Targets a run sets itself when the user gives none: pure arithmetic, no threads, no LoadGen.

The harness measures a warm-up and asks these functions; any SUT (the Python one, a compiled
engine) can ask them the same way.
"""

from __future__ import annotations

import math
from typing import Iterable

# LoadGen's Offline query holds max(min_query_count, kSlack * min_duration * target_qps) samples
# with kSlack = 1.1 (test_settings_internal.cc), and the run counts as long enough when its last
# sample completes at least min_duration after the query was issued (results.cc,
# MinDurationMet: max_latency >= min_duration). At an actual rate R the run lasts
# samples / R, so it is VALID whenever 1.1 * target_qps >= R.
LOADGEN_OFFLINE_SLACK = 1.1

# Expected Offline QPS = this x the fastest warm-up window. With LoadGen's 1.1 the run ends early
# only if the real run is 1.65x faster than anything the warm-up saw (issue 10's run was 1.42x
# its warm-up's average); a run that does not speed up lasts up to 1.65x min_duration.
OFFLINE_MARGIN = 1.5

# Server batch timeout: a fifth of the bound at most (NVIDIA waits 3 ms of ResNet50's 15), and a
# sample's worst wait (the timeout, one batch ahead of it, its own batch) kept inside this share
# of the bound; the rest is left for the host's own jitter.
TIMEOUT_CAP = 0.2
TIMEOUT_BUDGET = 0.8


def offline_expected_qps(window_rates: Iterable[float], ceiling: float | None = None,
                         margin: float = OFFLINE_MARGIN) -> float:
    """Expected Offline QPS (samples/s) from warm-up windows' rates, for a run that lasts at
    least min_duration.

    CEILING: a rate the devices can never exceed (simulated cards: their configured rates
    summed). With one, the answer is the smallest target that guarantees the duration,
    ceiling / 1.1 (plus 0.1% against LoadGen truncating the sample count), whatever the warm-up
    saw. Without one: the fastest window (not the mean: a rate that rises during the warm-up
    rises further in the run) times MARGIN.
    """
    rates = [r for r in window_rates if r > 0 and math.isfinite(r)]
    if ceiling is not None and ceiling > 0:
        return ceiling / LOADGEN_OFFLINE_SLACK * 1.001
    if not rates:
        raise ValueError("no warm-up rate measured")
    return max(rates) * margin


def offline_run_seconds(expected_qps: float, min_duration_s: float, actual_rate: float,
                        min_query_count: int = 1) -> float:
    """How long LoadGen's one Offline query takes at ACTUAL_RATE (what MinDurationMet checks)."""
    samples = max(min_query_count, int(LOADGEN_OFFLINE_SLACK * min_duration_s * expected_qps))
    return samples / actual_rate


def server_batch_timeout_s(bound_s: float, batch_time_s: float) -> float:
    """How long a partial Server batch may wait for more samples, given the p99 latency bound in
    force and the time a device takes for one full batch.

    A sample waits at most: the timeout (its batch filling), one batch ahead of it on the
    device, and its own batch. That must fit in TIMEOUT_BUDGET of the bound:
        timeout = min(TIMEOUT_CAP * bound, TIMEOUT_BUDGET * bound - 2 * batch_time),
    0 only when two batch times alone already fill the budget (then waiting can only hurt).
    """
    if bound_s <= 0:
        return 0.0
    return max(0.0, min(TIMEOUT_CAP * bound_s, TIMEOUT_BUDGET * bound_s - 2.0 * batch_time_s))
