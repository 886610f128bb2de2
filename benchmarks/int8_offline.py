"""ResNet50 Offline: int8 model + uint8 cache against float32 model + cache, same devices/batch.

In the same run, the same two models in a plain ONNX Runtime loop give ONNX Runtime's own
int8/fp32 ratio; the harness should keep at least 95% of it.

    python benchmarks/int8_offline.py [--devices 2] [--batch 8] [--seconds 20] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parent))
from offline_onnxruntime import harness, plain_loop  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--devices", type=int, default=2)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    from visionperf.datasets.synthetic import make_imagenet
    from visionperf.models import build_resnet50

    work = Path(tempfile.mkdtemp(prefix="vp-int8-"))
    ds = make_imagenet(work / "imagenet", count=256)
    fp32 = build_resnet50(work / "resnet50.onnx")
    int8 = work / "resnet50_int8.onnx"
    subprocess.run([sys.executable, "-m", "visionperf", "quantize", "resnet50", "--model", str(fp32),
                    "--dataset", str(ds), "--calibration-list", str(ds / "cal_image_list.txt"),
                    "--out", str(int8)], check=True, capture_output=True)
    fx = {m: {"dataset": str(ds), "model": str(p), "cache": str(work / "cache")}
          for m, p in (("fp32", fp32), ("int8", int8))}
    for m in fx:  # build both caches outside the timing
        harness(fx[m], a.devices, a.batch, 2, work / f"warm-{m}")
    res = {k: [] for k in ("plain fp32", "plain int8", "visionperf fp32", "visionperf int8")}
    for r in range(a.repeats):
        res["plain fp32"].append(plain_loop(str(fp32), a.devices, a.batch, a.seconds))
        res["plain int8"].append(plain_loop(str(int8), a.devices, a.batch, a.seconds))
        res["visionperf fp32"].append(harness(fx["fp32"], a.devices, a.batch, a.seconds, work / "run"))
        res["visionperf int8"].append(harness(fx["int8"], a.devices, a.batch, a.seconds, work / "run"))
        print(f"repeat {r + 1}: " + ", ".join(f"{k} {v[-1]:.1f}" for k, v in res.items()), flush=True)
    ort_ratio = [i / f for i, f in zip(res["plain int8"], res["plain fp32"])]
    vp_ratio = [i / f for i, f in zip(res["visionperf int8"], res["visionperf fp32"])]
    print(f"\nResNet50 Offline, {a.devices} devices, batch {a.batch}, {a.seconds:g} s, medians of {a.repeats}:")
    for k, v in res.items():
        print(f"  {k:18s} {statistics.median(v):8.2f} samples/s")
    o, v = statistics.median(ort_ratio), statistics.median(vp_ratio)
    print(f"  int8/fp32: ONNX Runtime alone {o:.2f}x, visionperf {v:.2f}x -> keeps {v / o * 100:.1f}% of it")


if __name__ == "__main__":
    main()
