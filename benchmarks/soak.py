"""Soak (issue 12, `make soak`; minutes, not part of CI): long Server runs through the real
command, watched from outside.

For each backend (the null device: the harness alone; simulated cards: the harness feeding
cards that copy every batch), one `visionperf run resnet50 --scenario Server` of MINUTES
minutes with --latency-by-minute, and, every 10 s, the resident memory (VmRSS) of its process.
Reported: the RSS series, its growth after the first minute (MB per minute, least squares),
LoadGen's verdict, and p50/p99 per minute of the test from the engine's histograms (upper edges
of 4.4%-wide bins).

LoadGen itself grows by design: it keeps one 8-byte latency per completed sample for the whole
test (AsyncLog::RecordSampleCompletion, `latencies_.resize(i + 1)`, logging.cc in LoadGen
6.0.17), so its RSS rises by 8 B x QPS per second however well the SUT behaves: 5.5 MB per minute
at 12,000 QPS. The figure that tells a leak is the growth beyond that: `residual`.

    python benchmarks/soak.py [--minutes 10] [--backends null,simulated] [--out soak.json]

Run it on a quiet machine: another job on these cores shows up as p99 spikes, not as a leak.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Server load per backend: well inside what this 2-core machine holds VALID (the demo runs the
# null device at 50,000 QPS), so that the soak watches for drift, not for the ceiling.
PLANS = {
    "null": ["--backend", "null", "--devices", "2", "--target-qps", "30000"],
    "simulated": ["--backend", "simulated", "--devices", "2", "--card-rate", "10000", "--target-qps", "12000"],
}


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (t, y)."""
    n = len(points)
    if n < 2:
        return 0.0
    mt = sum(t for t, _ in points) / n
    my = sum(y for _, y in points) / n
    var = sum((t - mt) ** 2 for t, _ in points)
    return sum((t - mt) * (y - my) for t, y in points) / var if var else 0.0


def steady_part(series: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """(minutes, MB) while the test runs: from 2 minutes after the start (warm-up, the sample
    buffers, and LoadGen's whole query schedule, generated before the test, are in place by
    then) to 20 s before the process ended (after the test, LoadGen frees its schedule)."""
    if not series:
        return []
    end = series[-1][0]
    return [(t / 60, r) for t, r in series if 120 <= t <= end - 20]


def soak(backend: str, minutes: float, work: Path, common: list) -> dict:
    out = work / f"out-{backend}"
    cmd = [sys.executable, "-m", "visionperf", "run", "resnet50", "--scenario", "Server", *PLANS[backend],
           "--duration", str(minutes * 60), "--latency-by-minute", *map(str, common), "--out", str(out)]
    t0 = time.monotonic()
    log = work / f"run-{backend}.log"  # a file, not a pipe: a pipe nobody reads fills and stops the run
    p = subprocess.Popen(cmd, stdout=open(log, "w"), stderr=subprocess.STDOUT, text=True)
    series = []
    while p.poll() is None:
        r = rss_mb(p.pid)
        if r is not None:
            series.append((round(time.monotonic() - t0, 1), round(r, 1)))
        for _ in range(100):
            if p.poll() is not None:
                break
            time.sleep(0.1)
    text = log.read_text()
    if p.returncode != 0:
        raise SystemExit(f"{backend}: the run failed ({p.returncode}):\n{text}")
    d = out / "resnet50/Server/performance/run_1"
    rec = json.loads((d / "run.json").read_text())
    summary = (d / "mlperf_log_summary.txt").read_text()
    valid = "Result is : VALID" in summary
    steady = steady_part(series)
    by_minute = rec.get("latency_by_minute", [])
    qps = float(PLANS[backend][PLANS[backend].index("--target-qps") + 1])
    loadgen_mb_per_min = 8 * qps * 60 / 2**20  # LoadGen's per-sample latency record
    growth = slope(steady)
    return {
        "backend": backend, "command": " ".join(cmd[1:]), "valid": valid,
        "rss_series_s_mb": series,
        "rss_growth_mb_per_min_steady": round(growth, 3),
        "loadgen_latency_record_mb_per_min": round(loadgen_mb_per_min, 3),
        "residual_growth_mb_per_min": round(growth - loadgen_mb_per_min, 3),
        "rss_range_steady_mb": round(max(r for _, r in steady) - min(r for _, r in steady), 1) if steady else None,
        "latency_by_minute": by_minute,
        "p99_spread_ms": (round(max(m["p99_ms"] for m in by_minute) - min(m["p99_ms"] for m in by_minute), 4)
                          if by_minute else None),
        "summary_line": next((ln for ln in summary.splitlines() if "Completed samples per second" in ln), ""),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--backends", default="null,simulated")
    ap.add_argument("--out", default="soak.json")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="vp-soak-") as tmp:
        soak_in(Path(tmp), a)


def soak_in(work: Path, a) -> None:
    from visionperf.datasets.synthetic import make_imagenet
    from visionperf.models import build_resnet50

    ds = make_imagenet(work / "imagenet", count=1024)
    fp32 = build_resnet50(work / "r50.onnx", width=0.125)  # neither backend runs it: it sets the input
    subprocess.run([sys.executable, "-m", "visionperf", "quantize", "resnet50", "--model", str(fp32), "--dataset",
                    str(ds), "--calibration-list", str(ds / "cal_image_list.txt"), "--out", str(work / "r50_int8.onnx")],
                   check=True, capture_output=True)
    # uint8 rows, as the paper's cards take them (a quarter of the bytes of float32)
    common = ["--model", work / "r50_int8.onnx", "--dataset", ds, "--cache", work / "cache"]
    results = []
    for backend in a.backends.split(","):
        r = soak(backend, a.minutes, work, common)
        results.append(r)
        print(f"\n{backend}: {'VALID' if r['valid'] else 'INVALID'}, {r['summary_line'].strip()}")
        print(f"  RSS (s, MB) every 10 s: {r['rss_series_s_mb']}")
        print(f"  RSS during the test (from 2 min): growth {r['rss_growth_mb_per_min_steady']} MB/min "
              f"(LoadGen's latency record alone: {r['loadgen_latency_record_mb_per_min']} MB/min; residual "
              f"{r['residual_growth_mb_per_min']} MB/min), range {r['rss_range_steady_mb']} MB")
        for m in r["latency_by_minute"]:
            print(f"  minute {m['minute']}: {m['samples']:,} samples, p50 {m['p50_ms']} ms, p99 {m['p99_ms']} ms, "
                  f"max {m['max_ms']} ms")
    Path(a.out).write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwrote {a.out}")


if __name__ == "__main__":
    main()
