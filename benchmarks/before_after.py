"""A change against the tree before it, side by side: the same runs alternate between two
visionperf installs (this one and OLD, another checkout's virtual environment, e.g.
`git worktree add /tmp/base REV && make -C /tmp/base install`), repeated, medians.

1. `--backend null`, 2 devices, Offline: samples/s (the harness's ceiling), on all cores and on
   one (`taskset`: a serial share would show as no gain from the second core);
2. `--backend null`, 2 devices, Server: the highest VALID QPS (bisection);
3. simulated cards at the paper's Table II rate (22,667/s, int8 rows), Offline: host CPU per
   sample (the figure `plan` turns into cores) and samples/s.
Beside them, in the same repeats, the bare C++ SUT on the same LoadGen (Offline on all cores and
on one, Server): the ceiling neither visionperf can pass.

    python benchmarks/before_after.py --old /tmp/base/.venv/bin/python [--repeats 3] [--duration 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path

from baselines import bare_cpp, highest_valid, resnet50_fixture, visionperf

PAPER_CARD_RATE = 22667.0
ONE_CORE = str(sorted(os.sched_getaffinity(0))[0])


def measure(python: str | None, fx: dict, fx8: dict, work: Path, a) -> dict[str, float]:
    d = a.duration
    offline, off_rec = visionperf("Offline", "null", 2, a.offline_qps, d, fx, work, python=python)
    one_core = visionperf("Offline", "null", 2, a.offline_qps, d, fx, work, python=python, cpus=ONE_CORE)[0].metric
    server = highest_valid(lambda q: visionperf("Server", "null", 2, q, d, fx, work, python=python)[0].valid,
                           20_000, 2_000_000, a.steps)
    result, rec = visionperf("Offline", "simulated", a.cards, 1.2 * a.cards * PAPER_CARD_RATE, d, fx8, work, python=python,
                             extra=("--card-rate", PAPER_CARD_RATE))
    return {"Offline null samples/s": offline.metric, "Offline null samples/s, 1 core": one_core,
            # the serial share: the main thread's CPU (it alone runs Python) over all host CPU
            "Offline null: share of host CPU outside Python": off_rec.get("gil_free_share") or 0.0,
            "Server null highest VALID QPS": server,
            f"{a.cards} card(s) at 22,667/s: samples/s": result.metric,
            f"{a.cards} card(s) at 22,667/s: host CPU us/sample": rec["host_cpu_us_per_sample"]}


def bare(work: Path, a) -> dict[str, float]:
    """The bare C++ SUT (batches of 8 to one worker; Server completes inside IssueQuery)."""
    q, d = a.offline_qps, a.duration
    return {"Offline null samples/s": bare_cpp("Offline", q, d, work).metric,
            "Offline null samples/s, 1 core": bare_cpp("Offline", q, d, work, cpus=ONE_CORE).metric,
            "Server null highest VALID QPS": highest_valid(lambda x: bare_cpp("Server", x, d, work).valid,
                                                           20_000, 2_000_000, a.steps)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--old", required=True, help="the other install's python (its .venv/bin/python)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--duration", type=float, default=3.0)
    ap.add_argument("--offline-qps", type=float, default=12e6)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--cards", type=int, default=1)
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="vp-before-after-"))
    fx, fx8 = resnet50_fixture(work, count=1024), resnet50_fixture(work / "int8", count=1024, int8=True)
    runs: dict[str, list[dict[str, float]]] = {"before": [], "after": [], "bare C++ SUT": []}
    for r in range(a.repeats):
        runs["bare C++ SUT"].append(bare(work, a))
        order = [("before", a.old), ("after", None)] if r % 2 == 0 else [("after", None), ("before", a.old)]
        for name, python in order:  # alternating which goes first cancels a trend in the machine's load
            runs[name].append(measure(python, fx, fx8, work, a))
            print(f"repeat {r + 1} {name}: " + ", ".join(f"{k} {v:,.5g}" for k, v in runs[name][-1].items()),
                  flush=True)
    print(f"\nmedians of {a.repeats} (before | after | after/before | bare C++ SUT | after/bare):")
    for key in runs["after"][0]:
        before, after = (statistics.median(x[key] for x in runs[n]) for n in ("before", "after"))
        line = f"  {key:42s} {before:12,.5g} | {after:12,.5g} | {after / before:.3f}"
        if key in runs["bare C++ SUT"][0]:
            base = statistics.median(x[key] for x in runs["bare C++ SUT"])
            line += f" | {base:12,.5g} | {after / base:.3f}"
        print(line)


if __name__ == "__main__":
    main()
