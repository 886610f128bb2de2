"""Linear scaling with simulated cards (issue: topology, placement, replicas, simulated cards).

ResNet50 (int8 input rows, as the paper) on simulated cards at CARD_RATE samples/s each:
1. Offline at 1, 2, 4, 8 cards through `visionperf scale` (percent of linear, host CPU time per
   sample, and from it the cores 16 full-speed cards would need);
2. Server at 4 cards: highest VALID QPS by bisection, and the Server/Offline ratio;
3. at 8 cards, alternating runs, repeated: the default (per-device replicas) against all devices
   sharing one buffer (this machine has one NUMA node: parity is expected; the number is for the
   record): throughput and host CPU time per sample.

`--card-rate 0` uses the paper's own Table II rate (22,667/s per card): then only as many cards
as this machine's memory bandwidth carries make sense (each card moves its rows twice: the
gather and the copy into the card), e.g. `--devices 1,2 --card-rate 0`.

    python benchmarks/scaling_simulated.py [--card-rate 2000] [--duration 10] [--repeats 3]
        [--devices 1,2,4,8] [--compare-at 8]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path


def vp(*args) -> str:
    return subprocess.run([sys.executable, "-m", "visionperf", *map(str, args)], check=True,
                          capture_output=True, text=True).stdout


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--card-rate", type=float, default=2000)
    ap.add_argument("--duration", type=float, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--devices", default="1,2,4,8")
    ap.add_argument("--compare-at", type=int, default=8, help="cards for the replica comparison (0: skip)")
    a = ap.parse_args()
    from visionperf.datasets.synthetic import make_imagenet
    from visionperf.models import build_resnet50
    from visionperf.results import read_result

    work = Path(tempfile.mkdtemp(prefix="vp-scale-"))
    ds = make_imagenet(work / "imagenet", count=1024)
    fp32 = build_resnet50(work / "r50.onnx", width=0.125)  # the card never runs it: it sets the input
    vp("quantize", "resnet50", "--model", fp32, "--dataset", ds, "--calibration-list",
       ds / "cal_image_list.txt", "--out", work / "r50_int8.onnx")
    common = ["--model", work / "r50_int8.onnx", "--dataset", ds, "--cache", work / "cache",
              "--duration", a.duration] + (["--card-rate", a.card_rate] if a.card_rate else [])
    print(vp("scale", "resnet50", "--backend", "simulated", "--devices", a.devices, "--scenario", "Offline",
             *common, "--out", work / "offline"))
    server_at = a.devices.split(",")[-1] if a.card_rate == 0 else "4"
    print(vp("scale", "resnet50", "--backend", "simulated", "--devices", server_at, "--scenario", "Server",
             *common, "--out", work / "server"))
    if not a.compare_at:
        return
    # Side by side, alternating, repeated: per-device replicas (the default), one shared buffer.
    variants = {"default": [], "one buffer": ["--replicas", "one"]}
    res: dict[str, list] = {k: [] for k in variants}
    for r in range(a.repeats):
        for name, extra in variants.items():
            out = work / f"rep-{name.replace(' ', '-')}"
            vp("run", "resnet50", "--scenario", "Offline", "--backend", "simulated", "--devices", a.compare_at,
               *extra, *common, "--out", out)
            run = out / "resnet50/Offline/performance/run_1"
            res[name].append((read_result(run, "Offline").metric,
                              json.loads((run / "run.json").read_text())["host_cpu_us_per_sample"]))
        print(f"repeat {r + 1}: " + ", ".join(f"{k} {v[-1][0]:,.0f}/s {v[-1][1]:.1f} us/sample"
                                               for k, v in res.items()), flush=True)
    med = {k: (statistics.median(x[0] for x in v), statistics.median(x[1] for x in v)) for k, v in res.items()}
    print(f"\n{a.compare_at} cards x {a.card_rate or 'Table II'}/s Offline, medians of {a.repeats}:")
    for k, (qps, us) in med.items():
        print(f"  {k:13s} {qps:9,.0f}/s  host CPU {us:5.1f} us/sample")
    print(f"per-device replicas / one shared buffer: throughput ratio {med['default'][0] / med['one buffer'][0]:.3f}")

if __name__ == "__main__":
    main()
