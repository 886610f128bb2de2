"""Server's target as a careful engineer finds it: short probes bisecting for the highest
target_qps whose p99 latency stays inside the bound, then the full run; a full run found
INVALID is run again one step lower. (Offline and the streams need none of this: `run` sets
their targets from its own warm-up, and the campaign reuses what it chose for their audits.)"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

FIRST_PROBE = 0.9  # x the Offline rate: Server's scheduling and latency bound leave it below Offline
# Where the first probe misses, the next ones divide by this until one passes: an Offline rate
# far above what Server can sustain (a device that answers at once) costs a few probes, not many.
DESCENT = 4.0
STEP_DOWN = 0.9  # a full run found INVALID is run again at this x its target
PROBES = 7  # probes in all: the descent, then bisection between the last passing and failing targets
RESOLUTION = 1.1  # bisection stops once the failing target is within 10% of the passing one
PROBE_S = 10.0  # a probe's min_duration (the campaign's --duration where that is shorter)


@dataclass
class Probe:
    target_qps: float
    valid: bool  # the p99 latency stayed inside the bound
    why: str = ""


def bisect_server(probe: Callable[[float], Probe], ceiling: float, probes: int = PROBES) -> tuple[float, list[Probe]]:
    """(the target for the full run, the probes made): the highest target PROBE found VALID
    below CEILING (the measured Offline rate): FIRST_PROBE x CEILING first (kept if it passes),
    then down by DESCENT until one passes, then bisection between the highest target that
    passed and the lowest that failed, to RESOLUTION or PROBES; where none passed, half the
    lowest target tried."""
    tried: list[Probe] = []
    lo, hi = None, None
    q = FIRST_PROBE * ceiling
    while len(tried) < probes:
        p = probe(q)
        tried.append(p)
        if p.valid:
            lo = q
            if hi is None:
                break  # the first probe passed: as high as Server goes on this machine, near enough
        else:
            hi = q
        if lo is not None and hi <= lo * RESOLUTION:
            break
        q = q / DESCENT if lo is None else (lo + hi) / 2
    return (lo if lo is not None else min(t.target_qps for t in tried) / 2), tried


def step_down(target_qps: float) -> float:
    return target_qps * STEP_DOWN
