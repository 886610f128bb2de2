"""Baselines the benchmarks measure visionperf against, each a fresh process per trial.

* the bare C++ SUT (`bare_sut`, built with the engine from the same LoadGen source; not part of
  visionperf): Server completes every query inside IssueQuery, Offline hands batches of B to
  one worker thread that completes them;
* `visionperf run` itself, optionally pinned with taskset, optionally from another source tree
  (OLD_SRC: e.g. a worktree of the last commit before the engine, for "today's visionperf").
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path


def bare_sut_path() -> Path:
    import visionperf._engine as e

    p = Path(e.__file__).parent / "bin" / "bare_sut"
    if not p.exists():
        sys.exit(f"{p} is missing: run `make install` (the engine build makes it)")
    return p


def _taskset(cpus: str | None) -> list[str]:
    return ["taskset", "-c", cpus] if cpus else []


def bare_cpp(scenario: str, qps: float, duration: float, work: Path, batch: int = 8, cpus: str | None = None):
    """One run of the bare C++ SUT; returns its PerfResult."""
    from visionperf.results import read_result

    out = Path(tempfile.mkdtemp(dir=work, prefix="bare-"))
    conf = out / "user.conf"
    key = f"resnet50.{scenario}"
    lines = [f"{key}.target_qps = {qps}", f"{key}.min_duration = {int(duration * 1000)}"]
    if scenario == "Offline":
        lines.append(f"{key}.min_query_count = 1")
    conf.write_text("\n".join(lines) + "\n")
    subprocess.run([*_taskset(cpus), str(bare_sut_path()), scenario, str(conf), str(out), str(batch)],
                   check=True, capture_output=True, text=True)
    return read_result(out, scenario)


def visionperf(scenario: str, backend: str, devices: int, qps: float, duration: float, fixture: dict,
               work: Path, cpus: str | None = None, old_src: str | None = None, extra=(), python: str | None = None):
    """One `visionperf run` (by PYTHON: another tree's virtual environment, default this one);
    returns (PerfResult, run.json)."""
    import json

    from visionperf.results import read_result

    out = Path(tempfile.mkdtemp(dir=work, prefix=f"vp-{backend}-"))
    env = dict(os.environ)
    if old_src:
        env["PYTHONPATH"] = old_src
    cmd = [*_taskset(cpus), python or sys.executable, "-m", "visionperf", "run", fixture["workload"], "--scenario", scenario,
           "--backend", backend, "--devices", str(devices), "--target-qps", str(qps), "--duration", str(duration),
           "--model", fixture["model"], "--dataset", fixture["dataset"], "--cache", fixture["cache"],
           "--out", str(out), *map(str, extra)]
    subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
    d = out / fixture["workload"] / scenario / "performance/run_1"
    return read_result(d, scenario), json.loads((d / "run.json").read_text())


def highest_valid(trial, lo: float, hi: float, steps: int) -> float:
    """Bisection on a log scale between LO (assumed VALID) and HI; TRIAL(qps) -> bool."""
    best = 0.0
    for _ in range(steps):
        mid = (lo * hi) ** 0.5
        if trial(mid):
            best, lo = mid, mid
        else:
            hi = mid
    return best


def resnet50_fixture(work: Path, count: int = 1024, int8: bool = False) -> dict:
    """Synthetic ImageNet and a slim ResNet50 (the null and simulated devices never run it:
    it sets the input); INT8: the quantised model, so rows are uint8 as on the paper's cards."""
    from visionperf.datasets.synthetic import make_imagenet
    from visionperf.models import build_resnet50

    ds = make_imagenet(work / "imagenet", count=count, seed=0)
    model = build_resnet50(work / "resnet50_w0125.onnx", width=0.125)
    if int8:
        q = work / "resnet50_w0125_int8.onnx"
        subprocess.run([sys.executable, "-m", "visionperf", "quantize", "resnet50", "--model", str(model),
                        "--dataset", str(ds), "--calibration-list", str(ds / "cal_image_list.txt"),
                        "--out", str(q)], check=True, capture_output=True, text=True)
        model = q
    return {"workload": "resnet50", "dataset": str(ds), "model": str(model), "cache": str(work / "cache")}
