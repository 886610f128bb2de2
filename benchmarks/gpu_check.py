"""The GPU check (issue 14): --backend tensorrt end to end on one NVIDIA GPU, one table.

    bash benchmarks/gpu_check.sh            # on the GPU machine (installs the extra first)
    python benchmarks/gpu_check.py --fake   # the same steps on fake GPUs (tests/fake_gpu.py), any machine

Steps, each through the real LoadGen in a process of its own:
  1. data and models: synthetic ImageNet and COCO sets, ResNet50 (full width), its symmetric
     int8 Q/DQ model calibrated on the MLPerf-style calibration list, SSD-ResNet34
  2. ResNet50 int8 Offline with the batch sweep (one engine, sizes 32..1024; the best is kept)
     and the same run with device fetch (--backend-option fetch=1): samples/s and host CPU
     per sample against the host gather's
  3. the same engine alone, trtexec-style (inputs on the GPU, every stream enqueued back to
     back): the harness's own loss is Offline / this
  4. ResNet50 int8 Server at 90% of the Offline rate: Server/Offline
  5. accuracy runs, int8 and fp16, against ONNX Runtime on CPU on the same model and samples:
     top-1 agreement sample by sample
  6. SSD-ResNet34 fp16 Offline with the host NMS
and prints one table (also written to OUT/gpu_check.json). NVIDIA's v4.1 H200 ResNet50 Offline
result is 94,620 samples/s per GPU (FACTS.md section 5).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
NVIDIA_H200_OFFLINE = 94_620.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="gpu-check-out")
    ap.add_argument("--fake", action="store_true", help="fake GPUs on this machine (checks the script, not a GPU)")
    ap.add_argument("--images", type=int, default=500)
    ap.add_argument("--seconds", type=float, default=10.0, help="each performance run")
    a = ap.parse_args()
    out = Path(a.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "VISIONPERF_TENSORRT_CACHE": str(out / "engines")}
    fake = [sys.executable, str(ROOT / "tests/fake_gpu.py"), "--stats", str(out / "fake.json")]
    vp = [sys.executable, "-m", "visionperf"]
    width = "0.125" if a.fake else "1.0"  # fake GPUs compute on this machine's CPU
    images = min(a.images, 48) if a.fake else a.images
    seconds = min(a.seconds, 3.0) if a.fake else a.seconds
    rows: list[tuple[str, str]] = []

    def add(check: str, result: str) -> None:
        rows.append((check, result))
    t_all = time.time()

    def step(what: str, args: list, gpu: bool = False, check: bool = True) -> subprocess.CompletedProcess:
        t = time.time()
        cmd = (fake if (gpu and a.fake) else vp) + [str(x) for x in args] + (["--backend", "tensorrt"] if gpu else [])
        p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900, check=False)
        print(f"[{time.time() - t_all:6.0f} s] {what}: {time.time() - t:.1f} s", flush=True)
        if check and p.returncode != 0:
            print(p.stdout[-3000:], p.stderr[-3000:], sep="\n")
            raise SystemExit(f"gpu_check: {what} failed ({p.returncode})")
        return p

    d = out
    step("ImageNet sample set", ["sample-data", "imagenet", "--out", d / "imagenet", "--count", images])
    step("COCO sample set", ["sample-data", "coco", "--out", d / "coco", "--count", 32 if a.fake else 64])
    step("ResNet50", ["build-model", "resnet50", "--out", d / "resnet50.onnx", "--width", width])
    step("ResNet50 int8 (symmetric Q/DQ)", ["quantize", "resnet50", "--model", d / "resnet50.onnx", "--dataset",
                                            d / "imagenet", "--calibration-list", d / "imagenet/cal_image_list.txt",
                                            "--symmetric", "--out", d / "resnet50_int8.onnx"])
    step("SSD-ResNet34", ["build-model", "ssd-resnet34", "--out", d / "ssd_resnet34.onnx", "--width", width])
    common = ["--dataset", d / "imagenet", "--cache", d / "cache"]
    sweep_sizes = ";sizes=4,8,16" if a.fake else ""  # fake GPUs hold a batch's activations in this machine's RAM

    # 2. Offline, swept
    step("ResNet50 int8 Offline (batch sweep)", ["run", "resnet50", "--scenario", "Offline", "--model",
                                                  d / "resnet50_int8.onnx", *common, "--duration", seconds,
                                                  "--backend-option", "precision=int8;sweep=1" + sweep_sizes,
                                                  "--out", d / "runs"],
         gpu=True)
    off = json.loads((d / "runs/resnet50/Offline/performance/run_1/run.json").read_text())
    from visionperf.results import read_result

    off_res = read_result(d / "runs/resnet50/Offline/performance/run_1", "Offline")
    batch = off["batch_size"]
    add("ResNet50 int8 Offline", f"{off_res.metric:,.0f} samples/s, batch {batch} (swept), "
                 f"{'VALID' if off_res.valid else 'INVALID'}")
    add("  vs NVIDIA v4.1 H200", f"{off_res.metric / NVIDIA_H200_OFFLINE:.1%} of 94,620/s (target >= 50%)")

    # 2b. the same Offline run with device fetch (issue 27): the GPU copies rows from the
    # page-locked sample buffer itself, no host gather; same engine and batch (the sweep's, remembered)
    step("ResNet50 int8 Offline, device fetch", ["run", "resnet50", "--scenario", "Offline", "--model",
                                                  d / "resnet50_int8.onnx", *common, "--duration", seconds,
                                                  "--backend-option",  # the sweep's remembered batch
                                                  "precision=int8;sweep=1;fetch=1" + sweep_sizes,
                                                  "--out", d / "fetch"],
         gpu=True)
    fetch_dir = d / "fetch/resnet50/Offline/performance/run_1"
    fetch_rec = json.loads((fetch_dir / "run.json").read_text())
    fetch_res = read_result(fetch_dir, "Offline")
    add("  device fetch (fetch=1)", f"{fetch_res.metric:,.0f} samples/s ({fetch_res.metric / off_res.metric:.3f} of "
                 f"the host gather's), host CPU {fetch_rec['host_cpu_us_per_sample']} us/sample against "
                 f"{off['host_cpu_us_per_sample']} ({fetch_rec['input_path']} / {off['input_path']}), "
                 f"{'VALID' if fetch_res.valid else 'INVALID'}")

    # 3. the engine alone, same engine
    raw = raw_engine_rate(d / "resnet50_int8.onnx", batch, 16 if a.fake else None)
    add("  engine alone (trtexec-style)", f"{raw:,.0f} samples/s; harness/engine = "
                 f"{off_res.metric / raw:.3f} (target >= 0.9)")

    # 4. Server at 90% of Offline
    target = 0.9 * off_res.metric
    step("ResNet50 int8 Server", ["run", "resnet50", "--scenario", "Server", "--model", d / "resnet50_int8.onnx",
                                   *common, "--duration", seconds, "--target-qps", f"{target:.1f}",
                                   "--out", d / "runs"], gpu=True)
    srv = read_result(d / "runs/resnet50/Server/performance/run_1", "Server")
    add("ResNet50 int8 Server", f"{srv.metric:,.0f} samples/s at p99 "
                 f"{srv.latency_ns.get('99.00', 0) / 1e6:.2f} ms, {'VALID' if srv.valid else 'INVALID'}; "
                 f"Server/Offline = {srv.metric / off_res.metric:.1%} (target >= 85%)")

    # 5. agreement with ONNX Runtime on CPU
    for precision, model in (("int8", d / "resnet50_int8.onnx"), ("fp16", d / "resnet50.onnx")):
        run_dir = d / f"acc-{precision}"
        step(f"ResNet50 {precision} accuracy run", ["run", "resnet50", "--scenario", "Offline", "--mode", "accuracy",
                                                    "--model", model, *common, "--backend-option",
                                                    f"precision={precision}", "--out", run_dir], gpu=True)
        agree = agreement(run_dir / "resnet50/Offline/accuracy", model, d / "imagenet")
        floor = "(target >= 99%)" if precision == "fp16" else "(reported)"
        add(f"top-1 agreement {precision} vs ONNX Runtime CPU", f"{agree:.2%} of {images} images {floor}")

    # 6. SSD-ResNet34 with the host NMS
    step("SSD-ResNet34 fp16 Offline, host NMS", ["run", "ssd-resnet34", "--scenario", "Offline", "--model",
                                                  d / "ssd_resnet34.onnx", "--dataset", d / "coco", "--cache",
                                                  d / "cache", "--duration", seconds, "--batch-size", "8",
                                                  "--backend-option", "precision=fp16", "--out", d / "runs"], gpu=True)
    ssd = read_result(d / "runs/ssd-resnet34/Offline/performance/run_1", "Offline")
    ssd_rec = json.loads((d / "runs/ssd-resnet34/Offline/performance/run_1/run.json").read_text())
    post = sum(s["post_s"] for s in ssd_rec["device_stats"])
    add("SSD-ResNet34 fp16 Offline", f"{ssd.metric:,.0f} samples/s, {'VALID' if ssd.valid else 'INVALID'}; "
                 f"host NMS {post / max(ssd_rec['test_s'], 1e-9):.2f} cores busy")
    for name, rec in (("ResNet50 int8 Offline", off), ("SSD-ResNet34 Offline", ssd_rec)):
        p = rec.get("power")
        if p:
            add(f"board power, {name}", f"{p['watts_avg']:.0f} W average; "
                         f"{p.get('samples_per_s_per_watt', 0):,.2f} samples/s per watt")
    add("wall time", f"{time.time() - t_all:.0f} s" + (" (fake GPUs: the figures are this CPU's)" if a.fake else ""))

    from rich.console import Console
    from rich.table import Table

    t = Table(title="visionperf GPU check" + (" (FAKE GPUs)" if a.fake else ""), title_justify="left")
    t.add_column("check")
    t.add_column("result")
    for k, v in rows:
        t.add_row(k, v)
    Console().print(t)
    (out / "gpu_check.json").write_text(json.dumps(dict(rows), indent=2) + "\n")
    return 0


def agreement(run_dir: Path, model: Path, dataset: Path) -> float:
    import onnxruntime as ort

    from visionperf.datasets import open_dataset, preprocess_one
    from visionperf.models import check_model
    from visionperf.workloads import RESNET50

    info = check_model(model, RESNET50)
    ds = open_dataset(RESNET50, dataset)
    log = json.loads((run_dir / "mlperf_log_accuracy.json").read_text())
    got = {e["qsl_idx"]: int(np.frombuffer(bytes.fromhex(e["data"]), np.float32)[0]) for e in log}
    s = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    same = 0
    for start in range(0, len(ds), 64):
        idx = list(range(start, min(len(ds), start + 64)))
        x = np.stack([preprocess_one(RESNET50, ds.path(i), "NCHW") for i in idx])
        if info.quantization is not None:
            x = info.quantization.apply(x)
        pred = s.run([info.output_name], {info.input_name: x})[0] - 1
        same += sum(int(pred[k]) == got[i] for k, i in enumerate(idx))
    return same / len(ds)


def raw_engine_rate(model: Path, batch: int, fake_engine_batch: int | None) -> float:
    """The Offline run's engine (the sweep's, cached) alone on GPU 0, for 3 s."""
    fake = fake_engine_batch is not None
    from visionperf.backends.tensorrt import SWEEP_SIZES, TrtOptions
    from visionperf.models import check_model
    from visionperf.placement import card_plan
    from visionperf.topology import read_topology
    from visionperf.workloads import RESNET50

    info = check_model(model, RESNET50)
    if fake:
        sys.path.insert(0, str(ROOT / "tests"))
        from fake_gpu import FakeTensorRT as Factory
    else:
        from visionperf.backends.tensorrt import TensorRT as Factory
    rt = Factory(info, RESNET50, TrtOptions("int8"), log=lambda *_: None)
    part = card_plan(read_topology(), 1)[0]
    dev = rt.device("raw", part, 0, batch, 2, trt_plan_batch=fake_engine_batch or max(SWEEP_SIZES))
    try:
        dev.raw_rate(batch, 0.5)
        return dev.raw_rate(batch, 3.0)
    finally:
        dev.close()


if __name__ == "__main__":
    sys.exit(main())
