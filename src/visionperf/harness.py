"""One benchmark run end to end: check inputs, prepare samples, build devices, run LoadGen.

LoadGen owns time (it issues queries and writes the logs), the QSL (`SampleStore`) owns samples,
the SUT owns compute. This module only wires them together and files the results in the
submission layout: `OUT/<benchmark>/<Scenario>/performance/run_1/` or `.../accuracy/`.
Logs are written to a temporary directory that is renamed into place only when the run
finished cleanly, so a crashed run never leaves a result that looks complete.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from . import __version__, compliance
from .accuracy import coco_map, top1
from .atomic import replace_dir
from .atomic import write_text as write_text_atomic
from .backends import is_card, make_devices, plan_accelerators, preflight
from .cache import ensure_cache
from .datasets import open_dataset
from .errors import UserError
from .locks import Busy, DirLock
from .models import check_model
from .placement import Partition, card_plan, cpu_partitions, describe_plan, replica_plan
from .postprocess import make_postprocess
from .power import PowerSampler
from .progress import RunPlan, RunWatch
from .results import PerfResult, check_logs_complete, read_result
from .sut import EngineError, NativeDevice, SystemUnderTest
from .topology import read_topology
from .targets import (
    LOADGEN_OFFLINE_SLACK,
    OFFLINE_MARGIN,
    latency_target_qps,
    offline_expected_qps,
    server_batch_timeout_s,
)
from .userconf import Overrides, conf_has, latency_bound, make_user_conf, read_user_conf, test_settings
from .workloads import DETECTION, Workload, check_scenario, get_workload

MULTISTREAM_SAMPLES = 8  # mlperf.conf's samples per MultiStream query
WARMUP_WINDOWS = 4  # rate windows of 0.5 s when a target is derived from the warm-up


@dataclass
class RunConfig:
    workload: str
    scenario: str
    mode: str = "performance"
    model: str = ""
    dataset: str = ""
    backend: str = "onnxruntime"
    devices: int = 1
    batch_size: int | None = None
    target_qps: float | None = None
    duration: float | None = None
    user_conf: str | None = None
    out: str = "results"
    cache: str | None = None
    batch_timeout_ms: float | None = None
    count: int | None = None  # use only the first COUNT images of the dataset
    post_threads: int | None = None  # None: one per device for detection, none for classification
    replicas: str | None = None  # device | node | one (default: device for cards, one for CPU devices)
    card_rate: float | None = None  # simulated cards: samples/s each (default: the paper's Table II)
    in_flight: int = 2  # simulated cards: batches each holds at once
    compliance: str | None = None  # "TEST01" | "TEST04": an audit run, verified after
    backend_options: str = ""  # plugin:PATH devices: "key=value;..." handed to the device
    skip_postprocess: bool = False  # measurement only: empty responses
    wait: float | None = None  # seconds to wait for another visionperf holding OUT or the cache
    latency_by_minute: bool = False  # keep p50/p99 of one-sample queries per minute in run.json (soak)
    cluster: str | None = None  # run over the nodes of a Ray cluster: auto, an address or local:N (cluster/)
    nodes: int | None = None  # with cluster: use only the first NODES nodes (default: every node)


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


def result_dir(out: str | Path, workload: str, scenario: str, mode: str, compliance: str | None = None) -> Path:
    base = Path(out) / workload / scenario
    if compliance:
        return base / compliance / "performance" / "run_1"
    return base / "accuracy" if mode == "accuracy" else base / "performance" / "run_1"


def _server_timeout(scenario: str, bound_ms: float | None, batch_time_s: float, given_ms: float | None) -> float:
    """How long a partial batch may wait for more samples (seconds): --batch-timeout-ms if given;
    in Server, from the p99 bound LoadGen will judge (targets.server_batch_timeout_s); else 0."""
    if given_ms is not None:
        return max(0.0, given_ms / 1000)
    if scenario != "Server" or not bound_ms:
        return 0.0
    return server_batch_timeout_s(bound_ms / 1000, batch_time_s)


def _rate_ceiling(devices) -> float | None:
    """Samples/s the devices can never exceed together, when every one declares it (peak_rate)."""
    peaks = [getattr(d, "peak_rate", None) for d in devices]
    return float(sum(peaks)) if peaks and all(p for p in peaks) else None


def _rate(completions: list[tuple[float, int]]) -> float:
    """Samples/s from a warm-up's completions (seconds, samples), past its first 30%."""
    if not completions:
        return 0.0
    end = completions[-1][0]
    counted = [(t, n) for t, n in completions if t >= 0.3 * end]
    if len(counted) < 2 or counted[-1][0] <= counted[0][0]:
        return sum(n for _, n in completions) / max(end, 1e-9)
    return sum(n for _, n in counted[1:]) / (counted[-1][0] - counted[0][0])


def _partial_dir(cfg: RunConfig) -> Path:
    """Where this process writes a run's logs until it finished (renamed into place then)."""
    final = result_dir(cfg.out, get_workload(cfg.workload).name, check_scenario(cfg.scenario), cfg.mode,
                       cfg.compliance)
    return final.with_name(final.name + f".partial-{os.getpid()}")


def run(cfg: RunConfig, log=print, display=None) -> RunReport:
    """One run; a run that fails or is interrupted anywhere leaves no partial results behind.

    The scenario directory (OUT/<benchmark>/<Scenario>, where partial results are renamed into
    place) is locked for the whole run, so a second run into it is refused, not clobbered."""
    lock = None
    try:
        lock = _lock_results(cfg, cfg.wait)
        if cfg.cluster:
            from .cluster import Cluster

            with Cluster.open(cfg.cluster, cfg.nodes, log) as cluster:
                return _run(cfg, log, display, cluster)
        return _run(cfg, log, display)
    except BaseException:
        try:
            shutil.rmtree(_partial_dir(cfg), ignore_errors=True)
        except UserError:  # an unknown workload or scenario: nothing was written
            pass
        raise
    finally:
        if lock is not None:
            lock.release()


def _lock_results(cfg: RunConfig, wait: float | None = None) -> DirLock | None:
    """Lock OUT/<benchmark>/<Scenario> (None when --out is a file: _run says so)."""
    out = Path(cfg.out)
    if out.exists() and not out.is_dir():
        return None
    scenario_dir = out / get_workload(cfg.workload).name / check_scenario(cfg.scenario)
    try:
        lock = DirLock(scenario_dir, busy="{dir} is in use by another visionperf run (pid {pid}: {cmd}): "
                                          "wait for it to finish, or pass another --out").acquire(wait)
    except Busy:
        raise
    except OSError as e:
        raise UserError(f"cannot write the results in {scenario_dir}: {e.strerror}: choose a location "
                        "you can write (another --out)") from None
    _remove_dead_partials(scenario_dir)
    return lock


def _remove_dead_partials(scenario_dir: Path) -> None:
    """A run killed outright (SIGKILL, power loss) leaves its `run_1.partial-PID`; every run into
    SCENARIO_DIR holds its lock, so with the lock held, any partial directory there is dead."""
    # performance/run_1.partial-PID, accuracy.partial-PID, TEST01/..., and a replaced run's
    # .run_1.old-PID whose deletion was cut short
    for d in [*scenario_dir.glob("**/*.partial-*"), *scenario_dir.glob("**/.*.old-*")]:
        if d.is_dir() and d.name.rsplit("-", 1)[-1] != str(os.getpid()):
            shutil.rmtree(d, ignore_errors=True)


@dataclass
class Local:
    """What one machine runs for a run: its plan and buffer replicas, devices and engine (a
    cluster node builds the same, cluster/node.py)."""

    plan: list[Partition]
    rp: object  # placement.ReplicaPlan
    devices: list
    batch_size: int
    sut: SystemUnderTest


def build_local(cfg: RunConfig, w: Workload, model, data, scenario: str, notes: list[str], log=print) -> Local:
    """Plan this machine's devices for CFG and build its engine over DATA (the cache's rows)."""
    fixed = model.fixed_batch if cfg.backend == "onnxruntime" else None  # ORT runs the model's batch
    topology = read_topology()
    card = is_card(cfg.backend)
    plan = card_plan(topology, cfg.devices, plan_accelerators(cfg.backend, topology)) if card \
        else cpu_partitions(topology, cfg.devices)
    rp = replica_plan(topology, plan, cfg.replicas or ("device" if card else "one"))
    if cfg.in_flight < 1:
        raise UserError(f"--in-flight must be at least 1, got {cfg.in_flight}")
    batch_size = cfg.batch_size or fixed or w.default_batch_size
    if batch_size < 1:
        raise UserError(f"--batch-size must be at least 1, got {batch_size}")
    fmt = None
    if cfg.backend == "simulated":
        from .backends.simulated import score_format
        fmt = score_format(w)
    elif cfg.backend == "tensorrt":  # fp16 scores from the engine (half the bytes to the host)
        from .backends.tensorrt import score_format as gpu_score_format
        fmt = gpu_score_format(w, model)
    postprocess = make_postprocess(w, model, skip=cfg.skip_postprocess, score_format=fmt)
    if cfg.skip_postprocess:
        notes.append("post-processing skipped (empty responses): for measuring its cost only")
    devices = make_devices(cfg.backend, model, w, plan, batch_size, postprocess.output_shapes(batch_size, w),
                           card_rate=cfg.card_rate, in_flight=cfg.in_flight, latency=scenario != "Offline",
                           options=cfg.backend_options, log=log, batch_given=cfg.batch_size is not None)
    batch_size = max(d.batch_size for d in devices)  # a GPU's batch sweep may have chosen it
    log("plan:\n" + describe_plan(plan, rp))
    post_threads = cfg.post_threads if cfg.post_threads is not None else (
        len(devices) if w.task == "detection" else 0)
    if post_threads < 0:
        raise UserError(f"--post-threads must be 0 or more, got {post_threads}")
    try:
        sut = SystemUnderTest(devices, data, rp.fill_cpus, rp.of_device, postprocess, w, batch_size,
                              post_threads=post_threads)
    except EngineError as e:
        raise UserError(str(e)) from None
    return Local(plan, rp, devices, batch_size, sut)


def _run(cfg: RunConfig, log=print, display=None, cluster=None) -> RunReport:
    t_start = time.time()
    w = get_workload(cfg.workload)
    scenario = check_scenario(cfg.scenario)
    if cfg.mode not in ("performance", "accuracy"):
        raise UserError(f"unknown mode {cfg.mode!r}: choose performance or accuracy")
    if scenario == "Server" and not w.server_latency_bound_ms:
        raise UserError(f"{w.name} has no Server scenario (Edge only)")
    if cfg.latency_by_minute and scenario not in ("Server", "SingleStream"):
        raise UserError(f"--latency-by-minute times one-sample queries (Server, SingleStream); {scenario} issues "
                        "many samples per query: drop the option")
    if Path(cfg.out).exists() and not Path(cfg.out).is_dir():
        raise UserError(f"--out {cfg.out} is a file: pass a directory for the results")
    model = check_model(cfg.model, w)
    preflight(cfg.backend)
    fixed = model.fixed_batch if cfg.backend == "onnxruntime" else None  # ORT runs the model's batch
    if fixed and cfg.batch_size is not None and cfg.batch_size != fixed:
        raise UserError(f"--batch-size {cfg.batch_size}: {model.path.name} only takes batches of {fixed} "
                        f"(a fixed batch dimension): pass --batch-size {fixed}, or export the model with a "
                        "dynamic batch dimension")
    dataset = open_dataset(w, cfg.dataset, cfg.count)
    base_conf = read_user_conf(cfg.user_conf)
    notes: list[str] = []
    if model.synthetic_weights:
        notes.append(f"model {model.path.name} has synthetic weights: its accuracy is meaningless")
    if dataset.synthetic:
        notes.append(f"dataset {dataset.root} is synthetic (made by sample-data): not a real accuracy figure")

    if cluster is None:
        cache = ensure_cache(w, dataset, cfg.cache, dtype=model.input_dtype, layout=w.layout,
                             quantization=model.quantization, log=log, lock_wait=cfg.wait)
    else:  # the nodes' caches, checked alike; the driver keeps no pixels
        cache = cluster.prepare_cache(cfg, w, dataset, model, log)
    labels = dataset.labels[cache.dataset_index]  # rows of the cache: skipped images left out
    total = len(cache.data)
    if cache.skipped:
        notes.append(f"{len(cache.skipped)} bad image(s) were skipped when the cache was built "
                     f"(listed in {cache.path / 'skipped.txt'}): not a submittable run")
    if cluster is None:
        local = build_local(cfg, w, model, cache.data, scenario, notes, log)
    else:
        local = cluster.start(cfg, w, model, cache, scenario, notes, log)
    plan, devices, batch_size, sut = local.plan, local.devices, local.batch_size, local.sut
    sut.start(throughput_only=scenario == "Offline")
    if cfg.compliance and cfg.mode != "performance":
        raise UserError("--compliance runs are performance runs: drop --mode accuracy")
    audit = compliance.audit_config(cfg.compliance, w) if cfg.compliance else None
    final = result_dir(cfg.out, w.name, scenario, cfg.mode, cfg.compliance)
    partial = _partial_dir(cfg)
    try:
        # Warm-up on a few loaded samples: first runs are slow, and Offline needs a rate.
        sut.load(range(min(total, 4 * batch_size * len(devices))))
        target_key = "target_qps" if scenario in ("Offline", "Server") else "target_latency"
        need_target = cfg.target_qps is None and cfg.mode == "performance" \
            and not conf_has(base_conf, w.name, scenario, target_key)
        # Rate windows: Offline's target follows the fastest (a rate rising during the warm-up
        # rises further in the run), the batch time and Server's target the median.
        windows = WARMUP_WINDOWS if need_target and scenario in ("Offline", "Server") else 1
        rates = [_rate(sut.measure_rate(0.5)) for _ in range(windows)]
        rate = sorted(rates)[len(rates) // 2]
        query_s = None
        if need_target and scenario in ("SingleStream", "MultiStream"):
            per_query = 1 if scenario == "SingleStream" else MULTISTREAM_SAMPLES
            query_s = sut.measure_latency(per_query)
        sut.unload()
        sut.stop()  # restarted below with the run's batch timeout; its counters start at zero
        sut.reset_stats()
        for d in devices:
            if hasattr(d, "reset_stats"):  # a Python device's own counters: the test's alone
                d.reset_stats()
        batch_time = batch_size * len(devices) / rate if rate > 0 else 0.0
        if cluster is not None:  # a forwarded batch also waits for the hop there and back
            batch_time += cluster.round_trip_s / 2

        over = Overrides(target_qps=cfg.target_qps, duration_s=cfg.duration)
        if need_target and query_s is not None:
            over.target_qps, spare = latency_target_qps(query_s, cfg.duration)
            notes.append(f"expected latency {query_s * 1000 / spare:.3f} ms set from a warm-up (1/{spare:g} of the "
                         "measured query latency); pass --target-qps to choose it")
        elif need_target and scenario == "Offline":
            # Aim high. Set too high, the run only lasts longer than min_duration; set low (a
            # warm-up slower than the run), it ends early and is INVALID.
            ceiling = _rate_ceiling(devices)
            over.target_qps = offline_expected_qps(rates, ceiling)
            how = (f"the devices' peak rate {ceiling:,.0f}/s / {LOADGEN_OFFLINE_SLACK}: the run cannot "
                   "end early" if ceiling else
                   f"fastest of {len(rates)} warm-up windows {max(rates):,.1f}/s x {OFFLINE_MARGIN}")
            notes.append(f"target_qps {over.target_qps:,.1f} set from {how}; pass --target-qps to choose it")
        elif need_target:
            over.target_qps = rate * 0.5
            notes.append(f"target_qps {over.target_qps:,.1f} set from a warm-up (half the measured "
                         "Offline rate); pass --target-qps to choose it")
        psc = min(w.performance_sample_count, total)
        if total < w.performance_sample_count:
            over.performance_sample_count = psc
            notes.append(f"dataset has {total} images, fewer than the performance sample "
                         f"count {w.performance_sample_count}: not a submittable run")
        over.notes = tuple(f"{n}" for n in notes)
        conf_text = make_user_conf(base_conf, w.name, scenario, over)

        if partial.exists():
            shutil.rmtree(partial)
        partial.mkdir(parents=True)
        if audit:
            (partial / "audit.config").write_text(audit)
        user_conf = partial / "user.conf"
        user_conf.write_text(conf_text)
        # LoadGen's own reading of the settings (the wheel's copy of the same LoadGen release;
        # the engine's copy makes its own first FromConfig call when the test starts).
        settings = test_settings(user_conf, w.name, scenario, cfg.mode)
        bound = latency_bound(conf_text, w.name, scenario)
        bound_ms = None
        if scenario == "Server":
            # The bound in force is LoadGen's (mlperf.conf, then this user.conf); the resolver
            # says where it came from, and LoadGen's own reading wins should they ever differ.
            bound_ms = settings.server_target_latency_ns / 1e6
            if bound is None or bound.ms != bound_ms:
                notes.append(f"LoadGen's p99 bound {bound_ms:g} ms differs from visionperf's reading of "
                             f"the confs ({bound}): the timeout follows LoadGen's")
                bound = None
            if w.server_latency_bound_ms and bound_ms != w.server_latency_bound_ms:
                where = f"{bound.source} {bound.key}" if bound else "LoadGen"
                notes.append(f"LoadGen judges the p99 against {bound_ms:g} ms ({where}); {w.name}'s rule "
                             f"is {w.server_latency_bound_ms:g} ms: set {w.name}.Server.target_latency = "
                             f"{w.server_latency_bound_ms:g} in --user-conf for the rule's bound")
        timeout_s = _server_timeout(scenario, bound_ms, batch_time, cfg.batch_timeout_ms)
        if scenario == "Server" and cfg.batch_timeout_ms is None and bound_ms and not timeout_s:
            notes.append(f"batch timeout 0: two batch times ({2 * batch_time * 1000:.3g} ms) already fill "
                         f"80% of the {bound_ms:g} ms bound, so partial batches go at once")
        sut.start(timeout_s, throughput_only=scenario == "Offline")
        timeout_text = ""
        if scenario == "Server":
            why = ("--batch-timeout-ms" if cfg.batch_timeout_ms is not None else
                   f"p99 bound {bound_ms:g} ms" + (f" from {bound.source} {bound.key}" if bound else "")
                   + f", batch time {batch_time * 1000:.3g} ms")
            timeout_text = f", batch timeout {sut.batch_timeout_s * 1000:.3f} ms ({why})"
        where = (f"{len(devices)} node(s) x {cfg.devices} {cfg.backend} device(s), forwarded in batches of"
                 if cluster is not None else f"{len(devices)} {cfg.backend} device(s), batch")
        log(f"running {w.name} {scenario} {cfg.mode} on {where} {batch_size}" + timeout_text)
        # An audit.config in the working directory would silently change the run.
        t_test, cpu0, py0 = time.perf_counter(), os.times(), time.thread_time()
        if cfg.latency_by_minute:
            sut.latency_log_start()
        # DISPLAY (progress.RunDisplay; None: nothing) watches the test from a thread of its own.
        watch = RunWatch(display, sut, RunPlan.from_settings(settings, scenario, cfg.mode, devices, total))
        # GPU board power over the test alone, where the devices are GPUs NVML can see.
        gpus = [d.pci for d in devices if getattr(d, "pci", None)]
        sampler = PowerSampler(gpus) if gpus else None
        try:
            with watch:
                if sampler:
                    sampler.start()
                try:
                    sut.run_test(user_conf, w.name, scenario, cfg.mode, partial, partial / "audit.config", total, psc)
                finally:
                    power = sampler.stop() if sampler else None
        except EngineError as e:
            raise UserError(str(e)) from None
        run_s, cpu1, py_cpu = time.perf_counter() - t_test, os.times(), time.thread_time() - py0
        # the display's own thread is not the harness's cost per sample
        cpu_s = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system) - watch.cpu_s
    finally:
        sut.stop()
    if sut.error():
        raise UserError(f"the run failed: {sut.error()} (every sample it held was failed to LoadGen; "
                        "no results kept)")
    stats = sut.stats()
    by_minute = sut.latency_by_minute() if cfg.latency_by_minute else None
    check_logs_complete(partial, cfg.mode)

    result = read_result(partial, scenario) if cfg.mode == "performance" else None
    acc = None
    if cfg.mode == "accuracy":
        log_path = partial / "mlperf_log_accuracy.json"
        if w.task == "classification":
            acc = top1(log_path, labels)
        else:
            acc = coco_map(log_path, dataset, DETECTION[w.name].coco_label_map)
        write_text_atomic(partial / "accuracy.txt", acc.text())
    report = RunReport(cfg, final, result, acc, plan, stats, batch_size,
                       sut.batch_timeout_s * 1000, notes, time.time() - t_start, run_s)
    record = _run_record(report, model, w)
    record["dataset"] = {"path": str(dataset.root), "synthetic": bool(dataset.synthetic), "images": len(labels)}
    samples = sum(st["samples"] for st in stats)
    # Host CPU per sample: every thread of this process during the test (LoadGen's, the SUT's,
    # post-processing), less two costs reported separately: what simulated cards spent on the
    # copies that a real card's DMA engine does, and the one-off fill of the sample buffer
    # replicas before LoadGen's timed run (it does not grow with the run's length).
    card_cpu = sum(st["card_copy_cpu_s"] for st in stats)
    host_cpu = cpu_s - card_cpu - sut.load_cpu_s
    record["host_cpu_s"] = round(host_cpu, 3)
    record["simulated_card_copy_cpu_s"] = round(card_cpu, 3)
    record["sample_load_cpu_s"] = round(sut.load_cpu_s, 3)
    record["host_cpu_us_per_sample"] = round(host_cpu / samples * 1e6, 2) if samples else None
    # The serial share: with native devices only, the main thread is the only one that runs
    # Python during the test (it waits for LoadGen, waking to check for Ctrl-C), so its CPU
    # time bounds the time under the GIL; Python devices also take it once per batch.
    record["python_thread_cpu_s"] = round(py_cpu, 4)
    if all(isinstance(d, NativeDevice) for d in devices) and host_cpu > 0:
        record["gil_free_share"] = round(1 - py_cpu / host_cpu, 5)
    record["cache"] = {"path": str(cache.path), "dtype": cache.manifest["dtype"],
                       "quantization": cache.manifest["quantization"],
                       "skipped_dataset_indices": [int(b[0]) for b in cache.skipped]}
    if by_minute is not None:
        record["latency_by_minute"] = by_minute
    if power is not None:
        record["power"] = power.to_json(samples / run_s if run_s > 0 and cfg.mode == "performance" else None)
        report.power = record["power"]
    if cluster is not None:  # each node's throughput and host CPU; the figures above are the driver's
        record["cluster"] = cluster.record(run_s)
        for line in cluster.describe(record["cluster"]):
            log(line)
    write_text_atomic(partial / "run.json", json.dumps(record, indent=2) + "\n")
    if final.exists():
        log(f"replacing the previous results in {final}")
    replace_dir(partial, final)
    if cfg.compliance:
        base = Path(cfg.out) / w.name / scenario
        out = base / cfg.compliance
        report.compliance = {"performance": compliance.verify_performance(
            cfg.compliance, scenario, final, base / "performance/run_1", out)}
        if cfg.compliance == "TEST01":
            report.compliance["accuracy"] = compliance.verify_accuracy(final, base / "accuracy", out, w, dataset)
    return report


def _run_record(r: RunReport, model, w: Workload) -> dict:
    """Everything needed to tell later how a result was made (read by report/submission)."""
    import numpy
    import onnxruntime

    rec = {
        "visionperf": __version__,
        "config": asdict(r.config),
        "model": {"path": str(model.path), "input": model.input_name, "output": model.output_name,
                  "synthetic_weights": model.synthetic_weights},
        "plan": [asdict(p) for p in r.plan],
        "replicas": r.config.replicas,
        "batch_size": r.batch_size,
        "batch_timeout_ms": r.batch_timeout_ms,
        "device_stats": r.device_stats,
        "notes": r.notes,
        "wall_s": round(r.wall_s, 3),
        "test_s": round(r.run_s, 3),
        "environment": {"python": sys.version.split()[0], "platform": platform.platform(),
                        "onnxruntime": onnxruntime.__version__, "numpy": numpy.__version__},
    }
    if r.result is not None:
        rec["result"] = {"valid": r.result.valid, "metric": r.result.metric_name,
                         "value": r.result.metric, "reasons": r.result.reasons,
                         "latency_ns": r.result.latency_ns}
    if r.accuracy is not None:
        rec["accuracy"] = {"metric": w.accuracy_metric, "value": r.accuracy.percent,
                           "target": w.accuracy_target, **{k: v for k, v in asdict(r.accuracy).items()
                                                           if k not in ("log_hash", "map")}}
    return rec
