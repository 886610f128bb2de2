"""Server's target as a careful engineer finds it: short probes bisecting for the highest
target_qps whose p99 latency stays inside the bound, then the full run; a full run found
INVALID is run again one step lower. (Offline and the streams need none of this: `run` sets
their targets from its own warm-up, and the campaign reuses what it chose for their audits.)"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

FIRST_PROBE = 0.9  # x the Offline rate: Server's scheduling and latency bound leave it below Offline
STEP_DOWN = 0.9  # a full run found INVALID is run again at this x its target
PROBES = 5  # the first probe, then bisection: the target known to about 0.9 / 16 of the ceiling
PROBE_S = 10.0  # a probe's min_duration (the campaign's --duration where that is shorter)


@dataclass
class Probe:
    target_qps: float
    valid: bool  # the p99 latency stayed inside the bound
    why: str = ""


def bisect_server(probe: Callable[[float], Probe], ceiling: float, probes: int = PROBES) -> tuple[float, list[Probe]]:
    """(the target for the full run, the probes made): the highest target PROBE found VALID,
    searching below CEILING (the measured Offline rate) from FIRST_PROBE x CEILING down by
    halving the interval; where none passed, half the lowest target tried."""
    tried: list[Probe] = []
    lo, hi = 0.0, ceiling
    q = FIRST_PROBE * ceiling
    best = None
    for _ in range(probes):
        p = probe(q)
        tried.append(p)
        if p.valid:
            best, lo = q, q
            if q >= FIRST_PROBE * ceiling:
                break  # as high as Server goes on this machine, near enough
        else:
            hi = q
        q = (lo + hi) / 2
    return (best if best is not None else min(t.target_qps for t in tried) / 2), tried


def step_down(target_qps: float) -> float:
    return target_qps * STEP_DOWN
