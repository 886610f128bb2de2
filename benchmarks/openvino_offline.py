"""ResNet50 Offline on the CPU: --backend openvino against --backend onnxruntime (issue 26).

The same float32 model (build-model resnet50) and its int8 Q/DQ copy (quantize), through
visionperf on the same partitions (--devices 1 and 2), the two backends alternating, medians of
the repeats; then OpenVINO through the engine against a plain OpenVINO loop (an AsyncInferQueue
of its optimal number of requests, the same compiled-model settings, batch and input dtype);
then the top-1 agreement of the two backends' accuracy runs on the same cache rows. With
--detection, one Offline run of SSD-ResNet34 and of YOLO11n (square 640) on each backend.

    python benchmarks/openvino_offline.py [--seconds 10] [--repeats 3] [--batch 8] [--detection]

Targets (issue 26): OpenVINO/ONNX Runtime >= 1.5x float32, >= 1.1x int8; engine/plain >= 0.98;
top-1 agreement 100% float32, >= 99% int8.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def run(workload: str, backend: str, devices: int, batch: int | None, seconds: float, model: Path, dataset: Path,
        cache: Path, out: Path, mode: str = "performance", count: int | None = None) -> Path:
    """One `visionperf run WORKLOAD --scenario Offline` (BACKEND "openvino-bf16": precision=bf16);
    its run directory."""
    backend, _, option = backend.partition("-")
    args = [sys.executable, "-m", "visionperf", "run", workload, "--scenario", "Offline", "--mode", mode,
            *(["--backend-option", f"precision={option}"] if option else []), "--backend", backend, "--devices", str(devices), "--model", str(model), "--dataset", str(dataset),
            "--cache", str(cache), "--out", str(out)]
    args += ["--batch-size", str(batch)] if batch else []
    args += ["--duration", str(seconds)] if mode == "performance" else []
    args += ["--count", str(count)] if count else []
    p = subprocess.run(args, capture_output=True, text=True)
    if p.returncode:
        raise SystemExit(f"{' '.join(args)} failed:\n{p.stdout}\n{p.stderr}")
    return out / workload / "Offline" / (f"{mode}/run_1" if mode == "performance" else mode)


def samples_per_s(run_dir: Path) -> float:
    from visionperf.results import read_result

    r = read_result(run_dir, "Offline")
    return r.metric


def plain_loop(model: Path, rows: np.ndarray, seconds: float) -> tuple[float, int]:
    """OpenVINO alone on every core, as --backend openvino --devices 1 compiles it: samples/s of
    an AsyncInferQueue of as many requests as the engine keeps in flight, kept full with one
    batch of cache rows, and that number of requests."""
    import openvino as ov
    import openvino.properties as props
    import openvino.properties.hint as hint

    from visionperf.backends.openvino import compile_on
    from visionperf.placement import cpu_partitions
    from visionperf.topology import read_topology

    part = cpu_partitions(read_topology(), 1)[0]
    core = ov.Core()
    compiled = compile_on(core, core.read_model(str(model)),
                          {hint.performance_mode: hint.PerformanceMode.THROUGHPUT,
                           props.inference_num_threads: len(part.cores), hint.enable_cpu_pinning: True,
                           hint.inference_precision: ov.Type.f32}, tuple(part.cpus))
    n = 2 * int(compiled.get_property(props.optimal_number_of_infer_requests))  # as the engine keeps in Offline
    queue = ov.AsyncInferQueue(compiled, n)
    for _ in range(2 * n):  # warm-up
        queue.start_async({0: rows})
    queue.wait_all()
    done, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        queue.start_async({0: rows})
        done += len(rows)
    queue.wait_all()
    return done / (time.perf_counter() - t0), n


def top1(run_dir: Path) -> dict[int, int]:
    log = json.loads((run_dir / "mlperf_log_accuracy.json").read_text())
    return {r["qsl_idx"]: int(np.frombuffer(bytes.fromhex(r["data"]), np.float32)[0]) for r in log}


def load() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=10, help="each Offline run's min_duration")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--images", type=int, default=256)
    ap.add_argument("--devices", default="1,2")
    ap.add_argument("--work", type=Path, help="keep models and caches here (default: a new temporary folder)")
    ap.add_argument("--detection", action="store_true", help="also SSD-ResNet34 and YOLO11n, one run each")
    a = ap.parse_args()
    from visionperf.cache import open_cache
    from visionperf.datasets.synthetic import make_imagenet
    from visionperf.models import build_resnet50

    work = a.work or Path(tempfile.mkdtemp(prefix="vp-openvino-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"load average at start: {load()} ({os.cpu_count()} CPUs); work: {work}", flush=True)
    ds = work / "imagenet"
    if not ds.exists():
        make_imagenet(ds, count=a.images, seed=1)
    models = {"fp32": work / "resnet50.onnx", "int8": work / "resnet50_int8.onnx"}
    if not models["fp32"].exists():
        build_resnet50(models["fp32"])
    if not models["int8"].exists():
        subprocess.run([sys.executable, "-m", "visionperf", "quantize", "resnet50", "--model", str(models["fp32"]),
                        "--dataset", str(ds), "--calibration-list", str(ds / "cal_image_list.txt"),
                        "--out", str(models["int8"])], check=True, capture_output=True)
    cache, out = work / "cache", work / "out"
    devices = [int(d) for d in a.devices.split(",")]
    backends = ("onnxruntime", "openvino")

    # top-1 agreement on the same cache rows (this also builds both caches outside the timing)
    agree = {}
    for prec, model in models.items():
        got = {b: top1(run("resnet50", b, 2, a.batch, 0, model, ds, cache, out / f"acc-{prec}-{b}", "accuracy"))
               for b in (*backends, *(["openvino-bf16"] if prec == "fp32" else []))}
        for b in got:
            if b != "onnxruntime":
                same = sum(got[b][i] == got["onnxruntime"][i] for i in got["onnxruntime"])
                agree[prec if b == "openvino" else "bf16"] = (same, len(got["onnxruntime"]))

    rates = {(p, d, b): [] for p in models for d in devices for b in (*backends, "openvino-bf16", "plain")}
    requests = {}
    for r in range(a.repeats):
        for prec, model in models.items():
            for d in devices:
                both = (*backends, "openvino-bf16") if prec == "fp32" else backends
                order = both if r % 2 == 0 else both[::-1]  # alternate who goes first
                for b in order:
                    rd = run("resnet50", b, d, a.batch, a.seconds, model, ds, cache, out / f"{prec}-{d}-{b}")
                    rates[prec, d, b].append(samples_per_s(rd))
                    if b.startswith("openvino"):
                        rt = json.loads((rd / "run.json").read_text())["runtime"]["devices"]
                        requests[prec, d] = [x["optimal_infer_requests"] for x in rt]
            manifest = json.loads(next(iter((out / f"acc-{prec}-openvino").rglob("run.json"))).read_text())
            rows = np.asarray(open_cache(Path(manifest["cache"]["path"])).data[: a.batch])
            rate, n = plain_loop(model, rows, a.seconds)
            rates[prec, 1, "plain"].append(rate)
            requests[prec, "plain"] = n
        print(f"repeat {r + 1} (load {load()}): " + ", ".join(
            f"{p} d{d} {b} {v[-1]:.1f}" for (p, d, b), v in rates.items() if v), flush=True)

    med = {k: statistics.median(v) for k, v in rates.items() if v}
    print(f"\nResNet50 Offline, batch {a.batch}, {a.seconds:g} s runs, medians of {a.repeats} (samples/s):")
    for prec in models:
        for d in devices:
            ov, ort_ = med[prec, d, "openvino"], med[prec, d, "onnxruntime"]
            print(f"  {prec} --devices {d}: ONNX Runtime {ort_:7.1f}  OpenVINO {ov:7.1f}  ratio {ov / ort_:.2f}x"
                  f"  (OpenVINO optimal requests per device {requests[prec, d]})")
            if (prec, d, "openvino-bf16") in med:
                bf = med[prec, d, "openvino-bf16"]
                print(f"  {prec} --devices {d}: OpenVINO precision=bf16 {bf:7.1f}  ratio to ONNX Runtime float32 "
                      f"{bf / ort_:.2f}x")
        e, p = med[prec, 1, "openvino"], med[prec, 1, "plain"]
        print(f"  {prec} engine/plain: visionperf --devices 1 {e:.1f}, plain AsyncInferQueue "
              f"({requests[prec, 'plain']} requests) {p:.1f}: {e / p:.3f}")
        same, total = agree[prec]
        print(f"  {prec} top-1 agreement with ONNX Runtime: {same}/{total} = {100 * same / total:.1f}%")
    same, total = agree["bf16"]
    print(f"  bf16 (OpenVINO precision=bf16) top-1 agreement with ONNX Runtime float32: {same}/{total} = "
          f"{100 * same / total:.1f}%")

    if a.detection:
        detection(work, a.seconds)
    print(f"load average at end: {load()}")


def detection(work: Path, seconds: float) -> None:
    """SSD-ResNet34 (full size) and YOLO11n (square 640, batch 2): one Offline run per backend."""
    from visionperf.datasets.synthetic import make_coco
    from visionperf.models import build_ssd_resnet34
    from visionperf.models.yolo11 import build_yolo11

    coco = work / "coco"
    if not coco.exists():
        make_coco(coco, 64, 0)
    cases = [("ssd-resnet34", work / "ssd_resnet34.onnx", None), ("yolo", work / "yolo11n-640-b2.onnx", None)]
    if not cases[0][1].exists():
        build_ssd_resnet34(cases[0][1])
    if not cases[1][1].exists():
        build_yolo11(cases[1][1], "n", input_size=640, batch=2)
    print(f"\nDetection Offline, one {seconds:g} s run each (samples/s):")
    for workload, model, batch in cases:
        got = {b: samples_per_s(run(workload, b, 1, batch, seconds, model, coco, work / "cache",
                                    work / "out" / f"{workload}-{b}"))
               for b in ("onnxruntime", "openvino")}
        print(f"  {workload}: ONNX Runtime {got['onnxruntime']:.2f}  OpenVINO {got['openvino']:.2f}  "
              f"ratio {got['openvino'] / got['onnxruntime']:.2f}x", flush=True)


if __name__ == "__main__":
    main()
