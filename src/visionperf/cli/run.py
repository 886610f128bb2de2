"""`visionperf run`: one benchmark run, what it asks of this machine, and `include-dir` for its plug-in devices."""

from __future__ import annotations

from functools import partial
from pathlib import Path

from ..workloads import SCENARIOS, WORKLOADS
from .options import (MAX_BATCH_TIMEOUT_MS, add_cluster, add_max_hours, add_model_and_dataset, add_quiet,
                      batch_size, device_count, duration_s, finite_positive_float, float_range, int_range,
                      path, positive_int, wait_s)
from .tables import console, print_report


def add_run_args(sub) -> None:
    s = sub.add_parser("run", help="run a benchmark through the real LoadGen")
    s.add_argument("workload", help=", ".join(WORKLOADS))
    s.add_argument("--scenario", required=True, help=", ".join(SCENARIOS))
    s.add_argument("--mode", default="performance", help="performance (default) or accuracy")
    add_model_and_dataset(s)
    s.add_argument("--backend", default="onnxruntime", help="onnxruntime (default), openvino (OpenVINO on the same CPU partitions; --backend-option 'precision=bf16' runs bf16 where the CPU has it, or f16: off by default, every run keeps the model's float32; also streams=N, requests=N), simulated (cards at a set rate), null (completes at once, no gather: the harness alone), null-gather (the same plus the batch gather), or plugin:PATH (a device built against visionperf/device.h; see `visionperf include-dir`)")
    s.add_argument("--devices", type=device_count, default=1)
    s.add_argument("--batch-size", type=batch_size)
    s.add_argument("--target-qps", type=finite_positive_float, help="written into the user.conf used")
    s.add_argument("--duration", type=duration_s, help="seconds; written into the user.conf used")
    s.add_argument("--user-conf")
    s.add_argument("--batch-timeout-ms", type=float_range(0.0, MAX_BATCH_TIMEOUT_MS, lo_open=False),
                   help="Server: how long a partial batch may wait for more samples. Default: from "
                   "the p99 bound LoadGen will judge (its mlperf.conf, then --user-conf: e.g. "
                   "resnet50 15 ms, or a user.conf's target_latency) and the warm-up's batch time: "
                   "min(0.2 x bound, 0.8 x bound - 2 x batch time), since a sample waits at most the "
                   "timeout, one batch ahead and its own batch; 0 only when two batch times already "
                   "fill 0.8 x bound. The run prints the timeout it used")
    s.add_argument("--count", type=positive_int, help="use only the first COUNT images")
    s.add_argument("--shape-mode", choices=("auto", "square", "rect"), default="auto",
                   help="yolo: square (640x640 inputs, batches) or rect (the reference's minimum "
                   "rectangle per image, equal to it tensor for tensor; needs a dynamic-shape model and "
                   "batch 1). auto (default): rect for a dynamic-shape model at batch 1, else square")
    s.add_argument("--post-threads", type=int_range(0, 256),
                   help="post-processing threads (default: one per device for detection, 0 = inline)")
    s.add_argument("--skip-postprocess", action="store_true",
                   help="complete with empty responses (to measure what NMS costs; not a result)")
    s.add_argument("--replicas", help="sample buffer per device, node or one "
                   "(default: device for cards, one for CPU devices)")
    s.add_argument("--card-rate", type=finite_positive_float,
                   help="simulated: samples/s per card (default: the paper's Table II rate)")
    s.add_argument("--in-flight", type=int_range(1, 64), default=2, help="simulated: batches a card holds at once")
    s.add_argument("--backend-option", default="",
                   help="plugin: options passed to the device, 'key=value;key=value'")
    s.add_argument("--compliance", choices=("TEST01", "TEST04"),
                   help="run a compliance test (audit.config) and verify it against the runs in --out")
    s.add_argument("--cache", type=path, help="preprocessed cache dir (default: per-user cache)")
    s.add_argument("--out", type=path, required=True)
    s.add_argument("--wait", type=wait_s, metavar="SECONDS",
                   help="if another visionperf is writing these results or building the cache, "
                   "wait up to SECONDS for it (default: refuse at once)")
    s.add_argument("--latency-by-minute", action="store_true",
                   help="Server, SingleStream: keep p50/p99 latency per minute of the test in run.json "
                   "(for long runs: is the last minute like the first?)")
    add_max_hours(s)
    add_cluster(s, run=True)
    add_quiet(s, "live progress (elapsed time, samples, rates, latency so far, device busy shares) or "
              "preprocessing bar")
    s.set_defaults(func=cmd_run)


def cmd_run(a) -> int:
    from ..run import LocalMachine, RunConfig, run

    cfg = RunConfig(
        workload=a.workload, scenario=a.scenario, mode=a.mode, model=a.model, dataset=a.dataset,
        backend=a.backend, devices=a.devices, batch_size=a.batch_size, target_qps=a.target_qps,
        duration=a.duration, user_conf=a.user_conf, out=a.out, cache=a.cache,
        batch_timeout_ms=a.batch_timeout_ms, count=a.count, post_threads=a.post_threads,
        skip_postprocess=a.skip_postprocess, replicas=a.replicas, card_rate=a.card_rate,
        in_flight=a.in_flight, compliance=a.compliance, backend_options=a.backend_option,
        wait=a.wait, latency_by_minute=a.latency_by_minute, cluster=a.cluster, nodes=a.nodes,
        max_hours=a.max_hours, shape_mode=a.shape_mode,
    )
    con = console()
    from ..progress import RunDisplay

    report = run(cfg, log=lambda m: con.print(f"[dim]{m}[/dim]"), display=RunDisplay(con, quiet=a.quiet),
                 machine=_open_cluster(a) if a.cluster else LocalMachine.open)
    print_report(con, report)
    return 0


def _open_cluster(a):
    """Opens the nodes of --cluster as the run's machine (once its options are checked)."""
    from ..cluster import Cluster

    return partial(Cluster.open, a.cluster, a.nodes)


def add_include_dir_args(sub) -> None:
    s = sub.add_parser("include-dir", help="the directory of visionperf/device.h, the C plug-in ABI "
                       "(cc -shared -fPIC -I$(visionperf include-dir) mydevice.c -o libmydevice.so)")
    s.set_defaults(func=cmd_include_dir)


def cmd_include_dir(a) -> int:
    """Where visionperf/device.h is: build a plug-in with `cc -shared -fPIC -I$(visionperf include-dir)`."""
    print(Path(__file__).resolve().parent.parent / "include")
    return 0
