"""Offline throughput: `visionperf run --backend onnxruntime` against a plain ONNX Runtime loop.

Same model, batch and threads, side by side, repeated; the ratio is the harness's efficiency.
The plain loop is what a benchmark without LoadGen would do: D threads, each with its own
session of (cores / D) intra-op threads, running one preallocated batch over and over.

    python benchmarks/offline_onnxruntime.py [--devices 2] [--batch 8] [--seconds 20] [--repeats 3]
        [--width 1.0]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np


def plain_loop(model: str, devices: int, batch: int, seconds: float) -> float:
    """DEVICES threads, each with its own session of (cores / DEVICES) threads, one batch over
    and over; a quantised-input model is fed its input already quantised."""
    import onnxruntime as ort

    from visionperf.models import check_model
    from visionperf.workloads import RESNET50

    info = check_model(model, RESNET50)
    per = max(1, len(os.sched_getaffinity(0)) // devices)
    sessions = []
    for _ in range(devices):
        so = ort.SessionOptions()
        so.intra_op_num_threads = per
        so.inter_op_num_threads = 1
        so.log_severity_level = 3
        sessions.append(ort.InferenceSession(str(model), so, providers=["CPUExecutionProvider"]))
    x = np.random.default_rng(0).normal(0, 60, (batch, 3, 224, 224)).astype(np.float32)
    if info.quantization:
        x = info.quantization.apply(x)
    for s in sessions:
        s.run(["ArgMax:0"], {"input_tensor:0": x})
    counts = [0] * devices
    stop = time.perf_counter() + seconds

    def work(d: int) -> None:
        while time.perf_counter() < stop:
            sessions[d].run(["ArgMax:0"], {"input_tensor:0": x})
            counts[d] += batch

    t = time.perf_counter()
    threads = [threading.Thread(target=work, args=(d,)) for d in range(devices)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return sum(counts) / (time.perf_counter() - t)


def harness(fixture: dict, devices: int, batch: int, seconds: float, out: Path) -> float:
    from visionperf.results import read_result

    subprocess.run([sys.executable, "-m", "visionperf", "run", "resnet50", "--scenario", "Offline",
                    "--backend", "onnxruntime", "--devices", str(devices), "--batch-size", str(batch),
                    "--duration", str(seconds), "--model", fixture["model"], "--dataset", fixture["dataset"],
                    "--cache", fixture["cache"], "--out", str(out)], check=True, capture_output=True)
    r = read_result(out / "resnet50/Offline/performance/run_1", "Offline")
    assert r.valid, r.reasons
    return r.metric


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--devices", type=int, default=2)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--width", type=float, default=1.0, help="model width (1.0 = full ResNet50)")
    a = ap.parse_args()

    from visionperf.datasets.synthetic import make_imagenet
    from visionperf.models import build_resnet50

    work = Path(tempfile.mkdtemp(prefix="vp-offline-"))
    fixture = {"dataset": str(make_imagenet(work / "imagenet", count=256)),
               "model": str(build_resnet50(work / "resnet50.onnx", width=a.width)),
               "cache": str(work / "cache")}
    harness(fixture, a.devices, a.batch, 2, work / "warm")  # builds the cache outside the timing
    plain, ours = [], []
    for r in range(a.repeats):
        plain.append(plain_loop(fixture["model"], a.devices, a.batch, a.seconds))
        ours.append(harness(fixture, a.devices, a.batch, a.seconds, work / "run"))
        print(f"repeat {r + 1}: plain {plain[-1]:.2f}/s, visionperf {ours[-1]:.2f}/s, "
              f"ratio {ours[-1] / plain[-1]:.3f}", flush=True)
    ratios = [o / p for o, p in zip(ours, plain)]
    print(f"\nResNet50 (width {a.width}) Offline, {a.devices} devices, batch {a.batch}, {a.seconds:g} s, "
          f"median of {a.repeats}:")
    print(f"  plain ONNX Runtime loop  {statistics.median(plain):8.2f} samples/s")
    print(f"  visionperf (LoadGen)     {statistics.median(ours):8.2f} samples/s")
    print(f"  ratio (median of per-repeat ratios) {statistics.median(ratios):.3f}")


if __name__ == "__main__":
    main()
