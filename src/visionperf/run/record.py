"""What a run leaves: its accuracy (accuracy mode), run.json (everything needed to tell later
how a result was made, read by report/submission) and, for an audit, its verification."""

from __future__ import annotations

import json
import platform
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .. import __version__, compliance
from ..accuracy import coco_map, top1
from ..atomic import write_text as write_text_atomic
from ..placement import Partition
from ..results import PerfResult, read_result
from ..sut import NativeDevice
from ..workloads import coco_label_map
from .config import RunConfig, RunSpec
from .cpu import host_cpu
from .loadgen_test import Measured
from .machine import Built, Machine
from .outdir import result_dir
from .samples import Samples


@dataclass
class RunReport:
    config: RunConfig
    log_dir: Path
    result: PerfResult | None
    accuracy: object  # accuracy.Top1 | accuracy.CocoMap | None
    plan: list[Partition]
    device_stats: list = field(default_factory=list)
    batch_size: int = 0
    batch_timeout_ms: float = 0.0
    notes: list[str] = field(default_factory=list)
    wall_s: float = 0.0
    run_s: float = 0.0  # LoadGen's test alone (StartTest to its return)
    compliance: dict = field(default_factory=dict)  # check -> passed
    power: dict | None = None  # GPU board power over the test (run.json "power"), where NVML reads it
    memory_estimate_bytes: int | None = None  # what the run was estimated to need (run.memory)


def report_run(spec: RunSpec, built: Built, measured: Measured, samples: Samples, partial: Path, final: Path,
               notes: list[str], started: float) -> RunReport:
    """LoadGen's result (performance) or the accuracy scored from its log (accuracy.txt beside it)."""
    cfg = spec.config
    result = read_result(partial, spec.scenario) if cfg.mode == "performance" else None
    accuracy = None
    if cfg.mode == "accuracy":
        log_path = partial / "mlperf_log_accuracy.json"
        if spec.workload.task == "classification":
            accuracy = top1(log_path, samples.labels)
        else:
            accuracy = coco_map(log_path, samples.dataset, coco_label_map(spec.workload))
        write_text_atomic(partial / "accuracy.txt", accuracy.text())
    return RunReport(cfg, final, result, accuracy, built.plan, measured.device_stats, built.batch_size,
                     built.sut.batch_timeout_s * 1000, notes, time.time() - started, measured.times.run_s)


def write_record(report: RunReport, spec: RunSpec, samples: Samples, built: Built, measured: Measured,
                 machine: Machine, partial: Path, log=print) -> None:
    """PARTIAL's run.json; the machine's own figures logged too."""
    record = _run_record(report, spec)
    dataset = samples.dataset
    record["dataset"] = {"path": str(dataset.root), "synthetic": bool(dataset.synthetic),
                         "images": len(samples.labels)}
    record.update(_cpu_fields(built, measured))
    runtime = [d.runtime_record() for d in built.devices if callable(getattr(d, "runtime_record", None))]
    if runtime:  # OpenVINO's own settings per device: its optimal number of infer requests, streams, precision
        record["runtime"] = {"software": spec.backend.software(), "devices": runtime}
    cache = samples.cache
    record["cache"] = {"path": str(cache.path), "dtype": cache.manifest["dtype"],
                       "quantization": cache.manifest["quantization"],
                       "skipped_dataset_indices": [int(b[0]) for b in cache.skipped]}
    if "shape_mode" in cache.manifest:  # YOLO: square (640 x 640) or rect (each image's own rectangle)
        record["cache"]["shape_mode"] = cache.manifest["shape_mode"]
    if measured.latency_by_minute is not None:
        record["latency_by_minute"] = measured.latency_by_minute
    times = measured.times
    if times.power is not None:
        done = sum(device["samples"] for device in measured.device_stats)
        rate = done / times.run_s if times.run_s > 0 and spec.config.mode == "performance" else None
        record["power"] = report.power = times.power.to_json(rate)
    machine_fields = machine.record(times.run_s)  # a cluster's nodes; the figures above are this process's
    record.update(machine_fields)
    for line in machine.describe(machine_fields):
        log(line)
    write_text_atomic(partial / "run.json", json.dumps(record, indent=2) + "\n")


def input_path(device_stats: list) -> str | None:
    """The one path every device's rows took, "mixed", or None without devices."""
    paths = {d.get("input_path", "host gather") for d in device_stats}
    return paths.pop() if len(paths) == 1 else ("mixed" if paths else None)


def _cpu_fields(built: Built, measured: Measured) -> dict:
    samples = sum(device["samples"] for device in measured.device_stats)
    cpu = host_cpu(measured.times.cpu_s, measured.device_stats, built.sut.load_cpu_s)
    py_cpu = measured.times.python_cpu_s
    fields = {"host_cpu_s": round(cpu.host_s, 3), "simulated_card_copy_cpu_s": round(cpu.card_copy_s, 3),
              "sample_load_cpu_s": round(built.sut.load_cpu_s, 3),
              "host_cpu_us_per_sample": cpu.us_per_sample(samples),
              # The serial share: with native devices only, the main thread is the only one that
              # runs Python during the test (it waits for LoadGen, waking to check for Ctrl-C), so
              # its CPU time bounds the time under the GIL; Python devices also take it once per batch.
              "python_thread_cpu_s": round(py_cpu, 4)}
    if all(isinstance(d, NativeDevice) for d in built.devices) and cpu.host_s > 0:
        fields["gil_free_share"] = round(1 - py_cpu / cpu.host_s, 5)
    return fields


def _run_record(r: RunReport, spec: RunSpec) -> dict:
    import numpy
    import onnxruntime

    model = spec.model
    rec = {
        "visionperf": __version__,
        "config": asdict(r.config),
        "model": {"path": str(model.path), "input": model.input_name, "output": model.output_name,
                  "synthetic_weights": model.synthetic_weights},
        "plan": [asdict(p) for p in r.plan],
        "replicas": r.config.replicas,
        "batch_size": r.batch_size,
        "batch_timeout_ms": r.batch_timeout_ms,
        # how rows reached the devices: "host gather" (into a staging buffer) or "device fetch"
        # (the device read the sample buffer itself, device.h ABI 2); "mixed" when both
        "input_path": input_path(r.device_stats),
        "device_stats": r.device_stats,
        "notes": r.notes,
        "wall_s": round(r.wall_s, 3),
        "test_s": round(r.run_s, 3),
        "memory_estimate_bytes": r.memory_estimate_bytes,
        "environment": {"python": sys.version.split()[0], "platform": platform.platform(),
                        "onnxruntime": onnxruntime.__version__, "numpy": numpy.__version__},
    }
    if r.result is not None:
        rec["result"] = {"valid": r.result.valid, "metric": r.result.metric_name,
                         "value": r.result.metric, "reasons": r.result.reasons,
                         "latency_ns": r.result.latency_ns}
    if r.accuracy is not None:
        w = spec.workload
        rec["accuracy"] = {"metric": w.accuracy_metric, "value": r.accuracy.percent,
                           "target": w.accuracy_target, **{k: v for k, v in asdict(r.accuracy).items()
                                                           if k not in ("log_hash", "map")}}
    return rec


def verify_audit(spec: RunSpec, final: Path, dataset) -> dict:
    """A --compliance run's checks against the submission's own runs (check -> passed); {} for other runs."""
    cfg, w = spec.config, spec.workload
    if not cfg.compliance:
        return {}
    out = Path(cfg.out) / w.name / spec.scenario / cfg.compliance
    submitted = {mode: result_dir(cfg.out, w.name, spec.scenario, mode) for mode in ("performance", "accuracy")}
    checks = {"performance": compliance.verify_performance(cfg.compliance, spec.scenario, final,
                                                           submitted["performance"], out)}
    if cfg.compliance == "TEST01":
        checks["accuracy"] = compliance.verify_accuracy(final, submitted["accuracy"], out, w, dataset)
    return checks
