"""Harness overhead: the highest Server QPS that stays VALID with `--backend null`.

Side by side in one run, repeated: a bare LoadGen SUT that completes inside the issue callback
(the ceiling), and `visionperf run --backend null --devices 2` (dispatch, batching, completion;
no gather). Optionally `null-gather` too (adds the float32 row copy: bandwidth, not overhead).
Each point is a bisection on target QPS; each trial is a fresh process (LoadGen reads its
mlperf.conf once per process).

    python benchmarks/harness_overhead.py [--repeats 3] [--duration 3] [--gather]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def trial_bare(qps: float, duration: float, work: Path) -> bool:
    out = subprocess.run([sys.executable, str(HERE / "bare_sut.py"), str(qps), str(duration),
                          str(work / "bare")], capture_output=True, text=True, check=True).stdout
    return out.split()[0] == "VALID"


def trial_visionperf(backend: str, devices: int, fixture: dict, qps: float, duration: float, work: Path) -> bool:
    from visionperf.results import read_result
    cmd = [sys.executable, "-m", "visionperf", "run", "resnet50", "--scenario", "Server",
           "--backend", backend, "--devices", str(devices), "--target-qps", str(qps),
           "--duration", str(duration), "--model", fixture["model"], "--dataset", fixture["dataset"],
           "--cache", fixture["cache"], "--out", str(work / backend)]
    subprocess.run(cmd, capture_output=True, text=True, check=True)
    return read_result(work / backend / "resnet50/Server/performance/run_1", "Server").valid


def highest_valid(trial, lo: float, hi: float, steps: int) -> float:
    """Bisection on a log scale between LO (assumed VALID) and HI."""
    best = 0.0
    for _ in range(steps):
        mid = (lo * hi) ** 0.5
        if trial(mid):
            best, lo = mid, mid
        else:
            hi = mid
    return best


def make_fixture(work: Path) -> dict:
    from visionperf.datasets.synthetic import make_imagenet
    from visionperf.models import build_resnet50
    ds = make_imagenet(work / "imagenet", count=1024, seed=0)
    model = build_resnet50(work / "resnet50_w0125.onnx", width=0.125)  # null never runs it
    return {"dataset": str(ds), "model": str(model), "cache": str(work / "cache")}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--duration", type=float, default=3.0)
    ap.add_argument("--steps", type=int, default=7)
    ap.add_argument("--gather", action="store_true", help="also measure null-gather")
    ap.add_argument("--json", help="write the results here")
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="vp-overhead-"))
    fixture = make_fixture(work)
    points = {"bare LoadGen SUT": [], "visionperf null, 2 devices": []}
    if a.gather:
        points["visionperf null-gather, 2 devices"] = []
    for r in range(a.repeats):
        points["bare LoadGen SUT"].append(
            highest_valid(lambda q: trial_bare(q, a.duration, work), 20_000, 1_000_000, a.steps))
        points["visionperf null, 2 devices"].append(highest_valid(
            lambda q: trial_visionperf("null", 2, fixture, q, a.duration, work), 20_000, 1_000_000, a.steps))
        if a.gather:
            points["visionperf null-gather, 2 devices"].append(highest_valid(
                lambda q: trial_visionperf("null-gather", 2, fixture, q, a.duration, work), 5_000, 500_000, a.steps))
        print(f"repeat {r + 1}: " + ", ".join(f"{k} {v[-1]:,.0f}" for k, v in points.items()), flush=True)
    bare = statistics.median(points["bare LoadGen SUT"])
    print(f"\nhighest VALID Server QPS (median of {a.repeats}, {a.duration:g} s trials, {a.steps}-step bisection)")
    for k, v in points.items():
        med = statistics.median(v)
        print(f"  {k:36s} {med:>10,.0f}   ratio to bare {med / bare:5.2f}   runs {[round(x) for x in v]}")
    if a.json:
        Path(a.json).write_text(json.dumps(points, indent=2))


if __name__ == "__main__":
    main()
