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
DEFAULT_MAX_HOURS = 4.0  # --max-hours: a LoadGen test expected to take longer is refused (run.length)
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


SPARE_QUERY_BUDGET = 1_000_000  # queries a SingleStream/MultiStream run may generate beyond need
OFFICIAL_MIN_DURATION_S = 600.0  # mlperf.conf's min_duration, when --duration is not given


def latency_target_qps(query_s: float, duration_s: float | None,
                       max_queries: int | None = None) -> tuple[float, float]:
    """(target_qps, spare) for a SingleStream/MultiStream run whose warm-up measured QUERY_S a
    query: LoadGen generates min_duration x target_qps queries up front and stops at
    min_duration, so an expected latency set low only generates spare queries, while one set
    high runs out of queries and the run is INVALID. A warm-up on a busy machine can measure
    several times the test's latency, so the expected latency is 1/SPARE of the measured one:
    up to 8x for short runs, whose spare queries cost little, and at least 2x, with the spare
    kept within about SPARE_QUERY_BUDGET queries (LoadGen holds each in memory). MAX_QUERIES,
    the most LoadGen can hold, wins over all of these: a spare below 1 then means a run that
    may run out of queries before min_duration, where more would not fit in memory."""
    seconds = duration_s or OFFICIAL_MIN_DURATION_S
    spare = min(8.0, max(2.0, SPARE_QUERY_BUDGET * query_s / seconds))
    if max_queries is not None and seconds * spare / query_s > max_queries:
        spare = max_queries * query_s / seconds
    return spare / query_s, spare


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


def early_stopping_passes(queries: int, overlatency: int, percentile: float = 0.99,
                          confidence: float = 0.99) -> bool:
    """Whether LoadGen's Server early stopping passes for a test of QUERIES queries of which
    OVERLATENCY exceeded the bound (early_stopping.cc, tolerance 0): with t over and h within,
    P[Binomial(h + t, 1 - percentile) <= t] <= 1 - confidence. One pass over t terms."""
    import numpy as np

    n, t = int(queries), max(0, int(overlatency))
    if n <= t:
        return False
    q = 1.0 - percentile
    x = np.arange(t, dtype=np.float64)
    # log P[X = k] for k = 0..t, each from the one before: C(n, k+1)/C(n, k) = (n - k)/(k + 1)
    log_terms = n * math.log1p(-q) + np.concatenate(
        ([0.0], np.cumsum(np.log((n - x) / (x + 1)) + math.log(q / (1.0 - q)))))
    top = float(log_terms.max())
    return top + math.log(float(np.exp(log_terms - top).sum())) <= math.log(1.0 - confidence)


def early_stopping_queries(overlatency: int, percentile: float = 0.99, confidence: float = 0.99) -> int:
    """The fewest queries a Server test with OVERLATENCY queries over its bound must have issued
    for early stopping to pass (h + t; the same figures as LoadGen's MinPassingQueriesFinder)."""
    t = max(0, int(overlatency))
    lo, hi = t + 1, t + max(2, int(2 * (t + 1) / (1.0 - percentile)))
    while not early_stopping_passes(hi, t, percentile, confidence):
        hi *= 2
    while lo < hi:
        mid = (lo + hi) // 2
        if early_stopping_passes(mid, t, percentile, confidence):
            hi = mid
        else:
            lo = mid + 1
    return lo


def server_queries_allowed_over(queries: int, percentile: float = 0.99) -> int:
    """How many of QUERIES may exceed the latency bound with the percentile still inside it:
    LoadGen takes the latency at index int(queries x percentile) of the sorted latencies."""
    n = max(0, int(queries))
    return max(0, n - int(n * percentile) - 1)
