"""Linear scaling with simulated cards (issue: topology, placement, replicas, simulated cards).

ResNet50 (int8 input rows, as the paper) on simulated cards at CARD_RATE samples/s each:
1. Offline at 1, 2, 4, 8 cards through `visionperf scale` (percent of linear, host CPU time per
   sample, and from it the cores 16 full-speed cards would need);
2. Server at 4 cards: highest VALID QPS by bisection, and the Server/Offline ratio;
3. at 8 cards, alternating runs, repeated: the default (per-device replicas) against all devices
   sharing one buffer (this machine has one NUMA node: parity is expected; the number is for the
   record): throughput and host CPU time per sample.

`--card-rate 0` uses the paper's own Table II rate (22,667/s per card): then only as many cards
as this machine's memory bandwidth carries make sense, e.g. `--devices 1,2 --card-rate 0`.

`--paths` (issue 27) runs only the side by side of the two ways rows reach a card, at each
count of --devices, alternating, repeated, medians: the card's own fetch from the sample buffer
(device.h ABI 2, the default: every row crosses memory once, into the card) against the host
gather (`--backend-option fetch=0`: the host copies the rows into a staging buffer, the card
copies them again). Per path: throughput, percent of linear (N x the card rate), host CPU per
sample (run.json, the cards' own copies apart), and the largest count at 95% of linear or better.

    python benchmarks/scaling_simulated.py [--card-rate 2000] [--duration 10] [--repeats 3]
        [--devices 1,2,4,8] [--compare-at 8]
    python benchmarks/scaling_simulated.py --paths --card-rate 0 --devices 1,2,3 --duration 6 [--in-flight 4]
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
    ap.add_argument("--paths", action="store_true", help="only device fetch against host gather, side by side")
    ap.add_argument("--in-flight", type=int, default=2, help="batches a card holds at once (run's --in-flight)")
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
    if a.paths:
        return compare_paths(a, work, common)
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

def compare_paths(a, work: Path, common: list) -> None:
    """Device fetch against host gather at each card count, alternating, repeated; medians."""
    from visionperf.results import read_result
    from visionperf.workloads import RESNET50

    rate = a.card_rate or RESNET50.card_rate
    paths = {"device fetch": [], "host gather": ["--backend-option", "fetch=0"]}
    counts = [int(n) for n in a.devices.split(",")]
    res: dict = {(p, n): [] for p in paths for n in counts}
    for r in range(a.repeats):
        for n in counts:
            for name, extra in paths.items():
                out = work / f"paths-{r}-{n}-{name.replace(' ', '-')}"
                vp("run", "resnet50", "--scenario", "Offline", "--backend", "simulated", "--devices", n, *extra,
                   "--in-flight", a.in_flight, *common, "--out", out)
                run = out / "resnet50/Offline/performance/run_1"
                rec = json.loads((run / "run.json").read_text())
                assert rec["input_path"] == name, (rec["input_path"], name)
                res[name, n].append((read_result(run, "Offline").metric, rec["host_cpu_us_per_sample"]))
                print(f"repeat {r + 1}, {n} card(s), {name}: {res[name, n][-1][0]:,.0f}/s "
                      f"({res[name, n][-1][0] / (n * rate) * 100:.1f}% of linear), "
                      f"host CPU {res[name, n][-1][1]:.2f} us/sample", flush=True)
    print(f"\nOffline, simulated cards at {rate:,.0f}/s each, {a.in_flight} batches in flight, ResNet50 int8 rows, "
          f"medians of {a.repeats}:")
    print(f"  {'cards':>5}  {'path':12}  {'samples/s':>10}  {'% linear':>8}  {'host us/sample':>14}")
    best = {}
    for n in counts:
        for name in paths:
            qps = statistics.median(x[0] for x in res[name, n])
            us = statistics.median(x[1] for x in res[name, n])
            lin = qps / (n * rate) * 100
            if lin >= 95:
                best[name] = max(best.get(name, 0), n)
            print(f"  {n:>5}  {name:12}  {qps:>10,.0f}  {lin:>7.1f}%  {us:>14.2f}")
    for name in paths:
        print(f"  {name}: largest count at >= 95% of linear: {best.get(name, 0)}")


if __name__ == "__main__":
    main()
