"""End to end: SSD Offline samples/s with host NMS on against NMS skipped, same run.

The paper's claim (section II-F): pipelined host NMS costs practically nothing. Both runs are
`visionperf run` with the ONNX Runtime backend, same devices and batch; the second adds
`--skip-postprocess` (empty responses). Repeated; medians and the ratio.

    python benchmarks/detection_offline.py [--workload ssd-mobilenet] [--seconds 15] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path


def run(fx: dict, workload: str, devices: int, seconds: float, out: Path, skip: bool) -> float:
    from visionperf.results import read_result

    cmd = [sys.executable, "-m", "visionperf", "run", workload, "--scenario", "Offline",
           "--backend", "onnxruntime", "--devices", str(devices), "--duration", str(seconds),
           "--model", fx["model"], "--dataset", fx["dataset"], "--cache", fx["cache"], "--out", str(out)]
    subprocess.run(cmd + (["--skip-postprocess"] if skip else []), check=True, capture_output=True)
    r = read_result(out / workload / "Offline/performance/run_1", "Offline")
    assert r.valid, r.reasons
    return r.metric


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workload", default="ssd-mobilenet")
    ap.add_argument("--devices", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=15)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--width", type=float, default=1.0)
    a = ap.parse_args()
    from visionperf.datasets.synthetic import make_coco
    from visionperf.models import BUILDERS

    work = Path(tempfile.mkdtemp(prefix="vp-det-"))
    fx = {"dataset": str(make_coco(work / "coco", count=64)),
          "model": str(BUILDERS[a.workload](work / "model.onnx", width=a.width)),
          "cache": str(work / "cache")}
    run(fx, a.workload, a.devices, 2, work / "warm", False)  # cache and warm-up outside timing
    on, off = [], []
    for r in range(a.repeats):
        on.append(run(fx, a.workload, a.devices, a.seconds, work / "on", False))
        off.append(run(fx, a.workload, a.devices, a.seconds, work / "off", True))
        print(f"repeat {r + 1}: NMS on {on[-1]:.1f}/s, skipped {off[-1]:.1f}/s, ratio {on[-1] / off[-1]:.3f}",
              flush=True)
    ratio = statistics.median(o / f for o, f in zip(on, off))
    print(f"\n{a.workload} Offline, {a.devices} devices, {a.seconds:g} s, medians of {a.repeats}: "
          f"NMS on {statistics.median(on):.1f}/s, skipped {statistics.median(off):.1f}/s, ratio {ratio:.3f}")


if __name__ == "__main__":
    main()
