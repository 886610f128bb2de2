"""The harness's own ceiling: `--backend null` (dispatch, batching, completion; no gather, no
device time) against the bare C++ SUT on the same LoadGen, side by side in one run, repeated.

1. Offline, ResNet50 shapes, batch 8, `--devices 2`: samples/s against the bare C++ SUT
   (batches of 8 to one worker thread), and visionperf on all cores against visionperf on one
   (`taskset -c 0`): does it scale with cores, or is something serial?
2. Server: the highest VALID QPS (bisection), against the bare C++ SUT (which completes inside
   IssueQuery) and, with --old-src, against the visionperf of another source tree (e.g. a
   worktree of the last commit before the engine: `git worktree add /tmp/old c062448`).

    python benchmarks/harness_ceiling.py [--repeats 3] [--duration 3] [--offline-qps 6e6]
        [--old-src /tmp/old/src] [--skip-server]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
from pathlib import Path

from baselines import bare_cpp, highest_valid, resnet50_fixture, visionperf


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--duration", type=float, default=3.0)
    ap.add_argument("--offline-qps", type=float, default=12e6, help="Offline target: above every rate measured")
    ap.add_argument("--steps", type=int, default=7)
    ap.add_argument("--old-src", help="also measure the visionperf in this source tree (Server)")
    ap.add_argument("--skip-server", action="store_true")
    ap.add_argument("--json")
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="vp-ceiling-"))
    fx = resnet50_fixture(work, count=1024)
    one = str(sorted(os.sched_getaffinity(0))[0])
    off: dict[str, list[float]] = {"bare C++ SUT, batch 8": [], "visionperf null, 2 devices": [],
                                   "visionperf null, 2 devices, 1 core": [], "bare C++ SUT, 1 core": []}
    srv: dict[str, list[float]] = {"bare C++ SUT": [], "visionperf null, 2 devices": []}
    if a.old_src:
        srv["visionperf before the engine"] = []
    q, d = a.offline_qps, a.duration
    for r in range(a.repeats):
        off["bare C++ SUT, batch 8"].append(bare_cpp("Offline", q, d, work).metric)
        off["visionperf null, 2 devices"].append(visionperf("Offline", "null", 2, q, d, fx, work)[0].metric)
        off["visionperf null, 2 devices, 1 core"].append(visionperf("Offline", "null", 2, q, d, fx, work, cpus=one)[0].metric)
        off["bare C++ SUT, 1 core"].append(bare_cpp("Offline", q, d, work, cpus=one).metric)
        if not a.skip_server:
            srv["bare C++ SUT"].append(highest_valid(
                lambda x: bare_cpp("Server", x, d, work).valid, 20_000, 2_000_000, a.steps))
            srv["visionperf null, 2 devices"].append(highest_valid(
                lambda x: visionperf("Server", "null", 2, x, d, fx, work)[0].valid, 20_000, 2_000_000, a.steps))
            if a.old_src:
                srv["visionperf before the engine"].append(highest_valid(
                    lambda x: visionperf("Server", "null", 2, x, d, fx, work, old_src=a.old_src)[0].valid,
                    10_000, 1_000_000, a.steps))
        print(f"repeat {r + 1}: Offline " + ", ".join(f"{k} {v[-1]:,.0f}" for k, v in off.items())
              + "; Server " + ", ".join(f"{k} {v[-1]:,.0f}" for k, v in srv.items() if v), flush=True)

    def table(title, rows, base):
        b = statistics.median(rows[base])
        print(f"\n{title} (median of {a.repeats}; {d:g} s runs)")
        for k, v in rows.items():
            if v:
                m = statistics.median(v)
                print(f"  {k:40s} {m:>12,.0f}   ratio to {base}: {m / b:5.2f}   runs {[round(x) for x in v]}")

    table("Offline samples/s, --backend null, batch 8", off, "bare C++ SUT, batch 8")
    ratio = statistics.median(off["visionperf null, 2 devices"]) / statistics.median(off["visionperf null, 2 devices, 1 core"])
    print(f"  visionperf all cores / 1 core: {ratio:.2f}x")
    if not a.skip_server:
        table(f"Server highest VALID QPS ({a.steps}-step bisection)", srv, "bare C++ SUT")
    if a.json:
        Path(a.json).write_text(json.dumps({"offline": off, "server": srv}, indent=2))


if __name__ == "__main__":
    main()
