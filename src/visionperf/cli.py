"""The `visionperf` command. User errors end as one line on stderr and exit status 2."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

from .errors import Terminated, UserError
from .workloads import SCENARIOS, WORKLOADS


# Numeric options are checked where they are parsed: argparse's `type=` functions below
# refuse a bad value with one line naming the option, the value and what to pass (exit 2);
# what depends on the machine (cores, memory) is checked when the run is planned (cmd_run).
MAX_DEVICES = 1024  # more than any real host holds: a larger count is a typo
MAX_DURATION_S = 1e6  # ~11.6 days: LoadGen keeps min_duration in ms
MAX_BATCH_TIMEOUT_MS = 60_000.0
LOADGEN_BYTES_PER_SAMPLE = 216  # a query's 16 B plus its per-sample metadata, assumed ~200 B
LOADGEN_DEFAULT_DURATION_S = 600.0  # mlperf.conf's min_duration when neither --duration nor a user.conf says


class _Parser(argparse.ArgumentParser):
    """argparse, with a usage error as one line (the option, the value and the fix) and exit 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _int_range(lo: int, hi: int | None = None):
    want = f"a whole number from {lo} to {hi}" if hi is not None else f"a whole number of at least {lo}"

    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number: pass {want}") from None
        if v < lo or (hi is not None and v > hi):
            raise argparse.ArgumentTypeError(f"got {v}: pass {want}")
        return v

    parse.__name__ = "int"
    return parse


def _float_range(lo: float, hi: float | None = None, lo_open: bool = True):
    want = (f"a finite number {'above' if lo_open else 'of at least'} {lo:g}"
            + (f" and at most {hi:g}" if hi is not None else ""))

    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number: pass {want}") from None
        if not math.isfinite(v) or v < lo or (lo_open and v == lo) or (hi is not None and v > hi):
            raise argparse.ArgumentTypeError(f"got {text}: pass {want}")
        return v

    parse.__name__ = "float"
    return parse


positive_int = _int_range(1)
non_negative_int = _int_range(0)
device_count = _int_range(1, MAX_DEVICES)
finite_positive_float = _float_range(0.0)
non_negative_float = _float_range(0.0, lo_open=False)
duration_s = _float_range(0.0, MAX_DURATION_S)


def device_list(text: str) -> list[int]:
    """--devices for scale: a comma-separated list of device counts."""
    want = f"a list like 1,2,4,8 of whole numbers from 1 to {MAX_DEVICES}"
    try:
        counts = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"got {text!r}: pass {want}") from None
    if not counts or min(counts) < 1 or max(counts) > MAX_DEVICES:
        raise argparse.ArgumentTypeError(f"got {text!r}: pass {want}")
    return counts


def _mem_available() -> int | None:
    """Bytes the kernel says can be had without swapping (None where it does not say)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _check_run_machine(a) -> None:
    """What a run's options ask of this machine, refused before anything is read or written."""
    from .topology import read_topology

    if a.backend == "onnxruntime":
        cores = len(read_topology().cores)
        if a.devices > cores:
            raise UserError(f"--devices {a.devices}: this machine has {cores} physical core(s) and each "
                            f"onnxruntime device needs one: pass --devices {cores} or fewer")
    if a.target_qps is not None and a.scenario in ("Offline", "Server"):
        duration = a.duration or LOADGEN_DEFAULT_DURATION_S
        need = a.target_qps * duration * 1.1 * LOADGEN_BYTES_PER_SAMPLE
        avail = _mem_available()
        if avail and need > avail / 2:
            fit = avail / 2 / (duration * 1.1 * LOADGEN_BYTES_PER_SAMPLE)
            raise UserError(f"--target-qps {a.target_qps:g}: LoadGen would hold {a.target_qps * duration * 1.1:,.0f} "
                            f"samples ({need / 2**30:,.1f} GiB) for a {duration:g} s {a.scenario} test, more than "
                            f"half of the {avail / 2**30:,.1f} GiB available: pass --target-qps {fit:,.0f} or less, "
                            "or a shorter --duration")


def _console(width: int | None = None):
    from rich.console import Console

    return Console(highlight=False, soft_wrap=True, width=width)


def cmd_sample_data(a) -> int:
    from .datasets.synthetic import make_coco, make_imagenet, make_openimages

    if a.kind == "imagenet":
        out = make_imagenet(a.out, a.count, a.seed)
        print(f"wrote {a.count} synthetic ImageNet-layout JPEGs, val_map.txt and cal_image_list.txt "
              f"to {out} (synthetic: drawn shapes, random labels)")
    elif a.kind == "coco":
        out = make_coco(a.out, a.count, a.seed)
        print(f"wrote {a.count} synthetic COCO-layout JPEGs and annotations/instances_val2017.json to "
              f"{out} (synthetic: drawn rectangles, their exact boxes annotated)")
    elif a.kind == "openimages":
        out = make_openimages(a.out, a.count, a.seed)
        print(f"wrote {a.count} synthetic OpenImages-MLPerf-layout JPEGs and annotations/openimages-mlperf.json "
              f"to {out} (synthetic: drawn rectangles, their exact boxes annotated)")
    else:
        raise UserError(f"unknown sample dataset {a.kind!r}: choose imagenet, coco or openimages")
    return 0


def cmd_build_model(a) -> int:
    from .models import BUILDERS

    if a.workload not in BUILDERS:
        raise UserError(f"no builder for {a.workload!r}: choose one of {', '.join(BUILDERS)}")
    if not 0 < a.width <= 4:
        raise UserError(f"--width must be in (0, 4], got {a.width}")
    out = BUILDERS[a.workload](a.out, seed=a.seed, width=a.width)
    size = out.stat().st_size / 1e6
    print(f"wrote {out} ({size:.1f} MB): {a.workload} architecture"
          + (f" at width {a.width}" if a.width != 1 else "")
          + ", synthetic weights (seeded; accuracy meaningless), official tensor names")
    return 0


def cmd_preprocess(a) -> int:
    from .cache import Quantization, preprocess_to
    from .datasets import open_dataset
    from .models import check_model
    from .workloads import get_workload

    w = get_workload(a.workload)
    layout = (a.layout or w.layout).upper()
    quant = None
    if a.model:
        info = check_model(a.model, w)
        quant = info.quantization
        if a.dtype and quant and a.dtype != quant.dtype:
            raise UserError(f"--dtype {a.dtype} does not match {a.model}, whose input is {quant.dtype}")
        dtype = quant.dtype if quant else (a.dtype or info.input_dtype)
    else:
        dtype = a.dtype or w.input_dtype
        if dtype != "float32":
            if a.scale is None or a.zero_point is None:
                raise UserError(f"--dtype {dtype} needs the model's input quantisation: pass --model "
                                "INT8_MODEL, or --scale and --zero-point")
            lo, hi = (-128, 127) if dtype == "int8" else (0, 255)
            if not lo <= a.zero_point <= hi:
                raise UserError(f"--zero-point {a.zero_point} is outside {dtype}: pass {lo} to {hi}")
            quant = Quantization(a.scale, a.zero_point, dtype)
    if a.workers is not None and a.workers < 1:
        raise UserError(f"--workers must be at least 1, got {a.workers}")
    if a.cluster:  # on every node, from its own --dataset (the same path there)
        from .cluster import preprocess_everywhere

        con = _console()
        preprocess_everywhere(a.cluster, w.name, a.dataset, a.count, a.out, dtype, layout, quant, a.workers,
                              a.chunk_size, a.skip_bad, log=lambda m: con.print(m, style="dim", markup=False))
        return 0
    dataset = open_dataset(w, a.dataset, a.count)
    preprocess_to(Path(a.out), w, dataset, dtype, layout, quant, workers=a.workers,
                  chunk=a.chunk_size, skip_bad=a.skip_bad, lock_wait=a.wait)
    return 0


def cmd_quantize(a) -> int:
    from .datasets import open_dataset
    from .models.quantize import default_calibration, quantize, read_calibration_list
    from .workloads import get_workload

    w = get_workload(a.workload)
    dataset = open_dataset(w, a.dataset)
    if a.calibration_list:
        cal = read_calibration_list(a.calibration_list, dataset)
    else:
        cal = default_calibration(dataset, a.calibration_count)
        print(f"no --calibration-list: calibrating on {len(cal)} images spread over the dataset")
    out = quantize(a.model, a.out, w, dataset, cal, symmetric=a.symmetric)
    from .models import check_model

    q = check_model(out, w).quantization
    acts = "symmetric int8 activations (TensorRT's int8)" if a.symmetric else "uint8 activations"
    print(f"wrote {out}: int8 weights (per channel), {acts}, input {q.dtype} "
          f"(scale {q.scale:.6g}, zero point {q.zero_point}) fed straight from a {q.dtype} cache")
    return 0


def cmd_include_dir(a) -> int:
    """Where visionperf/device.h is: build a plug-in with `cc -shared -fPIC -I$(visionperf include-dir)`."""
    print(Path(__file__).resolve().parent / "include")
    return 0


def cmd_topology(a) -> int:
    from .topology import describe, read_topology, topology_json

    t = read_topology(a.sysfs_root)
    print(topology_json(t) if a.json else describe(t))
    return 0


def cmd_plan(a) -> int:
    from .placement import card_plan, core_budget, describe_budget, describe_plan, plan_json, replica_plan
    from .topology import read_topology
    from .workloads import get_workload

    t = read_topology(a.sysfs_root)
    devices = card_plan(t, a.devices)
    rates, nbytes = None, 0
    if a.workload:
        w = get_workload(a.workload)
        rates = [a.card_rate or w.card_rate] * a.devices
        nbytes = a.bytes_per_sample or 3 * w.input_size ** 2  # int8 rows, as the paper's arithmetic
    rp = replica_plan(t, devices, a.replicas, rates, nbytes, a.node_bandwidth_gbs)
    budget = None
    if a.host_us_per_sample is not None:
        if not rates:
            raise UserError("--host-us-per-sample needs --workload (the cards' rate)")
        budget = core_budget(t, devices, rates, a.host_us_per_sample)
    if a.json:
        out = plan_json(devices, rp)
        if budget:
            out["host_cores"] = {"host_us_per_sample": budget.host_us_per_sample,
                                 "needed": [round(n, 3) for n in budget.needed], "given": budget.given,
                                 "warnings": budget.warnings}
        print(json.dumps(out, indent=2))
    else:
        print(f"plan for {a.devices} card(s)" + (f", {a.workload} at {rates[0]:,.0f} samples/s each"
                                                   if rates else "") + f", replicas per {a.replicas}:")
        print(describe_plan(devices, rp))
        if budget:
            print(describe_budget(budget))
    return 0


def cmd_scale(a) -> int:
    from rich.table import Table

    from .backends.simulated import card_rate_for
    from .scaling import study
    from .workloads import check_scenario, get_workload

    w = get_workload(a.workload)
    scenario = check_scenario(a.scenario)
    if scenario not in ("Offline", "Server"):
        raise UserError("--scenario must be Offline or Server for a scaling study")
    counts = device_list(a.devices) if isinstance(a.devices, str) else a.devices
    if a.nodes or a.cluster:
        return cmd_scale_nodes(a, w.name, scenario, counts)
    if a.backend == "onnxruntime":
        from .topology import read_topology

        cores = len(read_topology().cores)
        if max(counts) > cores:
            raise UserError(f"--devices {','.join(map(str, counts))}: this machine has {cores} physical "
                            f"core(s) and each onnxruntime device needs one: pass counts up to {cores}")
    run_args = _study_run_args(a)
    con = _console()
    from .progress import StudyProgress
    from .scaling import runs_in_study

    with StudyProgress(con, runs_in_study(counts, scenario, a.steps), quiet=a.quiet) as progress:
        points = study(w.name, counts, scenario, Path(a.out), run_args, steps=a.steps,
                       log=lambda m: con.print(m, style="dim", markup=False), progress=progress)
    t = Table(title=f"{w.name} {scenario} scaling ({a.backend})", title_justify="left")
    for col in ("devices", "samples/s", "% of linear", "host CPU us/sample", "Server/Offline"):
        t.add_column(col, justify="right")
    for p in points:
        t.add_row(str(p.devices), f"{p.metric:,.1f}", f"{p.linear_pct:.1f}%",
                  f"{p.host_cpu_us_per_sample:.1f}" if p.host_cpu_us_per_sample else "n/a",
                  f"{p.server_offline_pct:.1f}%" if p.server_offline_pct is not None else "")
    con.print(t)
    last = points[-1]
    if last.host_cpu_us_per_sample:
        rate, _ = card_rate_for(w, None)
        cores = 16 * rate * last.host_cpu_us_per_sample / 1e6
        con.print(f"host CPU {last.host_cpu_us_per_sample:.1f} us/sample at {last.devices} device(s): 16 cards at "
                  f"the paper's {rate:,.0f} samples/s each would need about {cores:.1f} cores for the harness")
    con.print(f"wrote {Path(a.out) / 'scaling.json'} and {Path(a.out) / 'scaling.png'}")
    return 0


def _study_run_args(a) -> list[str]:
    """The `visionperf run` options every point of a scaling study shares."""
    run_args = ["--backend", a.backend, "--model", a.model, "--dataset", a.dataset, "--duration", repr(a.duration)]
    for flag, val in (("--cache", a.cache), ("--card-rate", a.card_rate), ("--replicas", a.replicas),
                      ("--batch-size", a.batch_size)):
        if val is not None:
            run_args += [flag, str(val)]
    return run_args


def cmd_scale_nodes(a, workload: str, scenario: str, counts: list[int]) -> int:
    """scale --nodes K,... --devices D --cluster ADDRESS: the multi-node curve beside one server's."""
    from .cluster.scaling import study_nodes, table

    if not (a.nodes and a.cluster):
        raise UserError("--nodes and --cluster go together: scale --nodes 1,2,4 --devices D --cluster ADDRESS")
    if scenario != "Offline" or len(counts) != 1:
        raise UserError("a scaling study over nodes is Offline, with --devices the cards of each node (one "
                        "number): e.g. --nodes 1,2,4 --devices 2")
    run_args = _study_run_args(a)
    con = _console()
    from .progress import StudyProgress

    nodes = device_list(a.nodes)
    with StudyProgress(con, 2 * len(nodes), quiet=a.quiet) as progress:  # each count, and one server beside it
        points = study_nodes(workload, nodes, counts[0], a.cluster, Path(a.out), run_args,
                             log=lambda m: con.print(m, style="dim", markup=False), progress=progress)
    con.print(table(points, workload, counts[0]))
    con.print(f"wrote {Path(a.out) / 'scaling-nodes.json'} and {Path(a.out) / 'scaling-nodes.png'}")
    return 0


def cmd_report(a) -> int:
    import shutil

    from . import report
    from .progress import Activity

    root = Path(a.dir)
    if not root.is_dir():
        raise UserError(f"{root} is not a directory: pass the --out directory of your runs")
    con = _console(max(150, shutil.get_terminal_size().columns))
    with Activity(con, quiet=a.quiet) as say:
        rows = report.find(root, say)
        if not rows:
            raise UserError(f"no runs found under {root}")
        con.print(report.table(rows))
        out = Path(a.plots or root)
        out.mkdir(parents=True, exist_ok=True)
        for p in report.plots(rows, out, say):
            con.print(f"wrote {p}")
    return 0


def cmd_submission(a) -> int:
    from .rounds import DEFAULT_ROUND
    from .submission import assemble
    from .systems import load_user_json

    user = load_user_json(a.system_json)
    if a.round is None:
        print(f"round {DEFAULT_ROUND}: the round whose seeds the LoadGen visionperf runs (6.0.17) carries "
              "(--round to choose)")
    from .progress import Activity

    with Activity(_console(), quiet=a.quiet) as say:
        final, waived, rnd = assemble(Path(a.runs), Path(a.out), a.submitter, a.system, user, a.allow_short,
                                      a.round, a.system_json, say=say)
    for w in waived:
        print(f"waived (--allow-short): {w}")
    print(f"wrote {final} (round {rnd.version})" + (" (practice tree: NOT a valid submission; the waived rules are "
                                                    "listed in its documentation/README.md)" if waived else ""))
    return 0


def cmd_run(a) -> int:
    from .harness import RunConfig, run

    cfg = RunConfig(
        workload=a.workload, scenario=a.scenario, mode=a.mode, model=a.model, dataset=a.dataset,
        backend=a.backend, devices=a.devices, batch_size=a.batch_size, target_qps=a.target_qps,
        duration=a.duration, user_conf=a.user_conf, out=a.out, cache=a.cache,
        batch_timeout_ms=a.batch_timeout_ms, count=a.count, post_threads=a.post_threads,
        skip_postprocess=a.skip_postprocess, replicas=a.replicas, card_rate=a.card_rate,
        in_flight=a.in_flight, compliance=a.compliance, backend_options=a.backend_option,
        wait=a.wait, latency_by_minute=a.latency_by_minute, cluster=a.cluster, nodes=a.nodes,
    )
    if a.nodes and not a.cluster:
        raise UserError("--nodes chooses nodes of a --cluster: pass --cluster ADDRESS too, or drop --nodes")
    if not a.cluster:  # a cluster's nodes plan on their own cores
        _check_run_machine(a)
    elif a.compliance:
        raise UserError("--compliance runs on one node: drop --cluster for the audit run")
    con = _console()
    from .progress import RunDisplay

    report = run(cfg, log=lambda m: con.print(f"[dim]{m}[/dim]"), display=RunDisplay(con, quiet=a.quiet))
    print_report(con, report)
    return 0


def print_report(con, r) -> None:
    from rich.table import Table

    c = r.config
    t = Table(title=f"{c.workload} {c.scenario} {c.mode}", show_header=False, title_justify="left")
    t.add_column(style="bold")
    t.add_column()
    t.add_row("backend", f"{c.backend} x {len(r.plan)} device(s), batch {r.batch_size}"
              + (f", timeout {r.batch_timeout_ms:.3f} ms" if c.scenario == "Server" else ""))
    t.add_row("plan", "; ".join(f"dev{p.index}: cpus {','.join(map(str, p.cpus))}" for p in r.plan))
    if r.result is not None:
        res = r.result
        t.add_row(res.metric_name, res.metric_text())
        verdict = "[green]VALID[/green]" if res.valid else "[red]INVALID[/red]"
        if res.reasons:
            verdict += ": " + "; ".join(res.reasons)
        t.add_row("result", verdict)
        if res.latency_ns:
            t.add_row("latency", ", ".join(f"p{float(k):g} {v / 1e6:.2f} ms" for k, v in res.latency_ns.items()
                                           if k in ("50.00", "90.00", "99.00")))
    if r.accuracy is not None:
        from .workloads import get_workload

        w = get_workload(c.workload)
        a = r.accuracy
        mark = "meets" if a.percent >= w.accuracy_target else "below"
        what = (f"top-1 {a.percent:.3f}% ({a.good}/{a.total})" if w.task == "classification"
                else f"mAP {a.percent:.3f}% ({a.detections} detections on {a.images} images)")
        t.add_row("accuracy", f"{what}, {mark} target {w.accuracy_target}%")
    run_s = r.run_s or 1.0
    for s in r.device_stats:
        per = 1e6 / max(1, s["samples"])
        t.add_row(s["name"], f"{s['samples']:,} samples in {s['batches']:,} batches, device busy "
                  f"{s['busy_s'] / run_s * 100:.0f}%, gather and submit {s['host_s'] * per:.1f} us/sample"
                  + (f", post-processing busy {s['post_s'] / run_s * 100:.1f}% of the run "
                     f"({s['post_s'] * per:.1f} us/sample)" if s["post_s"] else ""))
    for check, ok in r.compliance.items():
        t.add_row(f"{c.compliance} {check}", "[green]TEST PASS[/green]" if ok else "[red]TEST FAIL[/red]"
                  + f" (see {r.log_dir.parent.parent / ('verify_' + check + '.txt')})")
    if r.power:
        per_watt = r.power.get("samples_per_s_per_watt")
        t.add_row("board power", f"{r.power['watts_avg']:,.1f} W average, {r.power['watts_max']:,.1f} W peak (NVML)"
                  + (f", {per_watt:,.2f} samples/s per watt" if per_watt else ""))
    t.add_row("logs", str(r.log_dir))
    con.print(t)
    for n in r.notes:
        con.print(f"[yellow]note:[/yellow] {n}")


def cmd_accuracy(a) -> int:
    from .accuracy import top1
    from .atomic import write_text as write_text_atomic
    from .datasets import open_dataset
    from .workloads import get_workload

    import numpy as np

    w = get_workload(a.workload)
    dataset = open_dataset(w, a.dataset)
    labels = dataset.labels
    # A visionperf run leaves run.json beside its log: it says whether the weights were
    # synthetic and which bad images its cache left out (qsl_idx counts only the rest).
    record = {}
    run_json = Path(a.log).with_name("run.json")
    if run_json.exists():
        try:
            record = json.loads(run_json.read_text())
        except ValueError:
            record = None
        cache = record.get("cache", {}) if isinstance(record, dict) else None
        skipped = cache.get("skipped_dataset_indices") or [] if isinstance(cache, dict) else None
        if not isinstance(record, dict) or not isinstance(skipped, list) or not all(
                isinstance(i, int) and 0 <= i < len(labels) for i in skipped):
            raise UserError(f"{run_json} (beside the log) is not the run.json of a visionperf run: it tells "
                            "which images the run left out, so restore it, or move the log elsewhere")
    skipped = record.get("cache", {}).get("skipped_dataset_indices") or []
    if w.task == "classification":
        if skipped:
            labels = np.delete(labels, skipped)
        acc = top1(a.log, labels)
    else:
        from .accuracy import coco_map
        from .workloads import DETECTION

        if skipped:
            raise UserError(f"the run behind {a.log} left bad images out; compute its mAP with the "
                            "dataset it ran on (remove the bad images from the annotation file)")
        acc = coco_map(a.log, dataset, DETECTION[w.name].coco_label_map)
    out = Path(a.out) if a.out else Path(a.log).with_name("accuracy.txt")
    write_text_atomic(out, acc.text())
    print(acc.text().splitlines()[0])
    if isinstance(record.get("model"), dict) and record["model"].get("synthetic_weights"):
        print("note: the model that wrote this log has synthetic weights: accuracy is meaningless")
    if skipped:
        print(f"note: {len(skipped)} bad image(s) were left out of that run")
    if dataset.synthetic:
        print(f"note: {dataset.root} is a synthetic dataset (random labels)")
    print(f"wrote {out}")
    return 0


def _add_cluster(s, run: bool = False) -> None:
    s.add_argument("--cluster", metavar="ADDRESS",
                   help="run over the nodes of a Ray cluster (pip install 'visionperf[cluster]'): auto, the "
                   "head's address (host:port), or local:N (N node processes on this machine, for tests and "
                   "demos). One LoadGen here; each node runs its own devices (--devices per node) from its own "
                   "cache")
    if run:
        s.add_argument("--nodes", type=_int_range(1, MAX_DEVICES),
                       help="with --cluster: use only the first NODES nodes (default: every node)")


def _add_quiet(s, what: str) -> None:
    s.add_argument("--quiet", action="store_true",
                   help=f"no {what} (on a terminal it redraws in place; otherwise it is a line a minute)")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="visionperf", description="MLPerf Inference vision benchmarks on the real LoadGen, across many devices.")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("sample-data", help="write a synthetic dataset in a real on-disk layout")
    s.add_argument("kind", help="imagenet, coco or openimages")
    s.add_argument("--out", required=True)
    s.add_argument("--count", type=positive_int, default=256)
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(func=cmd_sample_data)

    s = sub.add_parser("build-model", help="write an architecture-faithful ONNX model (synthetic weights)")
    s.add_argument("workload")
    s.add_argument("--out", required=True)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--width", type=_float_range(0.0, 4.0), default=1.0,
                   help="channel multiplier; < 1 gives a thinner test-sized variant (default 1)")
    s.set_defaults(func=cmd_build_model)

    s = sub.add_parser("preprocess", help="preprocess a dataset into a cache (parallel, resumable)")
    s.add_argument("workload")
    s.add_argument("--dataset", required=True)
    s.add_argument("--out", required=True, help="the cache directory to write")
    s.add_argument("--dtype", choices=("float32", "int8", "uint8"))
    s.add_argument("--layout", choices=("NCHW", "NHWC"))
    s.add_argument("--model", help="take dtype, scale and zero point from this (quantised) model")
    s.add_argument("--scale", type=finite_positive_float)
    s.add_argument("--zero-point", type=int)
    s.add_argument("--workers", type=_int_range(1, MAX_DEVICES), help="processes (default: one per CPU)")
    s.add_argument("--count", type=positive_int, help="only the first COUNT images")
    s.add_argument("--chunk-size", type=positive_int, help="images per resumable work unit (default: by dataset size, at most 64)")
    s.add_argument("--skip-bad", action="store_true",
                   help="leave corrupt images out (listed in skipped.txt) instead of stopping")
    s.add_argument("--wait", type=_float_range(0.0, lo_open=False), metavar="SECONDS",
                   help="if another visionperf is building this cache, wait up to SECONDS for it "
                   "(default: refuse at once)")
    _add_quiet(s, "progress bar")
    _add_cluster(s)
    s.set_defaults(func=cmd_preprocess)

    s = sub.add_parser("quantize", help="static int8 quantisation, input QuantizeLinear removed")
    s.add_argument("workload")
    s.add_argument("--model", required=True, help="the float32 model")
    s.add_argument("--dataset", required=True, help="where the calibration images are")
    s.add_argument("--calibration-list", help="MLPerf calibration list: one file name per line")
    s.add_argument("--calibration-count", type=positive_int, default=100)
    s.add_argument("--symmetric", action="store_true",
                   help="int8 activations with zero points of 0: what --backend tensorrt runs as int8 "
                        "(default: uint8 activations, faster for ONNX Runtime on CPU)")
    s.add_argument("--out", required=True)
    s.set_defaults(func=cmd_quantize)

    s = sub.add_parser("include-dir", help="the directory of visionperf/device.h, the C plug-in ABI "
                       "(cc -shared -fPIC -I$(visionperf include-dir) mydevice.c -o libmydevice.so)")
    s.set_defaults(func=cmd_include_dir)

    s = sub.add_parser("topology", help="sockets, NUMA nodes, cores, L3 groups, accelerators")
    s.add_argument("--sysfs-root", default="/", help="read a recorded sysfs tree instead of /")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_topology)

    s = sub.add_parser("plan", help="placement plan for N cards: cores, replicas, bandwidth")
    s.add_argument("--devices", type=device_count, required=True)
    s.add_argument("--sysfs-root", default="/")
    s.add_argument("--json", action="store_true")
    s.add_argument("--replicas", default="device", help="device (default), node or one")
    s.add_argument("--workload", help="check memory bandwidth at this workload's card rate")
    s.add_argument("--card-rate", type=finite_positive_float, help="samples/s per card (default: the paper's Table II)")
    s.add_argument("--bytes-per-sample", type=positive_int, help="default: the int8 input row")
    s.add_argument("--node-bandwidth-gbs", type=finite_positive_float, default=25.6,
                   help="memory bandwidth assumed per NUMA node (default: one DDR4-3200 channel)")
    s.add_argument("--host-us-per-sample", type=finite_positive_float,
                   help="host CPU time per sample measured by run or scale (run.json): check that "
                   "each card's cores can feed it at the workload's rate")
    s.set_defaults(func=cmd_plan)

    s = sub.add_parser("run", help="run a benchmark through the real LoadGen")
    s.add_argument("workload", help=", ".join(WORKLOADS))
    s.add_argument("--scenario", required=True, help=", ".join(SCENARIOS))
    s.add_argument("--mode", default="performance", help="performance (default) or accuracy")
    s.add_argument("--model", required=True)
    s.add_argument("--dataset", required=True)
    s.add_argument("--backend", default="onnxruntime", help="onnxruntime (default), simulated (cards at a set rate), null (completes at once, no gather: the harness alone), null-gather (the same plus the batch gather), or plugin:PATH (a device built against visionperf/device.h; see `visionperf include-dir`)")
    s.add_argument("--devices", type=device_count, default=1)
    s.add_argument("--batch-size", type=_int_range(1, 65536))
    s.add_argument("--target-qps", type=finite_positive_float, help="written into the user.conf used")
    s.add_argument("--duration", type=duration_s, help="seconds; written into the user.conf used")
    s.add_argument("--user-conf")
    s.add_argument("--batch-timeout-ms", type=_float_range(0.0, MAX_BATCH_TIMEOUT_MS, lo_open=False),
                   help="Server: how long a partial batch may wait for more samples. Default: from "
                   "the p99 bound LoadGen will judge (its mlperf.conf, then --user-conf: e.g. "
                   "resnet50 15 ms, or a user.conf's target_latency) and the warm-up's batch time: "
                   "min(0.2 x bound, 0.8 x bound - 2 x batch time), since a sample waits at most the "
                   "timeout, one batch ahead and its own batch; 0 only when two batch times already "
                   "fill 0.8 x bound. The run prints the timeout it used")
    s.add_argument("--count", type=positive_int, help="use only the first COUNT images")
    s.add_argument("--post-threads", type=_int_range(0, 256),
                   help="post-processing threads (default: one per device for detection, 0 = inline)")
    s.add_argument("--skip-postprocess", action="store_true",
                   help="complete with empty responses (to measure what NMS costs; not a result)")
    s.add_argument("--replicas", help="sample buffer per device, node or one "
                   "(default: device for cards, one for CPU devices)")
    s.add_argument("--card-rate", type=finite_positive_float,
                   help="simulated: samples/s per card (default: the paper's Table II rate)")
    s.add_argument("--in-flight", type=_int_range(1, 64), default=2, help="simulated: batches a card holds at once")
    s.add_argument("--backend-option", default="",
                   help="plugin: options passed to the device, 'key=value;key=value'")
    s.add_argument("--compliance", choices=("TEST01", "TEST04"),
                   help="run a compliance test (audit.config) and verify it against the runs in --out")
    s.add_argument("--cache", help="preprocessed cache dir (default: per-user cache)")
    s.add_argument("--out", required=True)
    s.add_argument("--wait", type=_float_range(0.0, lo_open=False), metavar="SECONDS",
                   help="if another visionperf is writing these results or building the cache, "
                   "wait up to SECONDS for it (default: refuse at once)")
    s.add_argument("--latency-by-minute", action="store_true",
                   help="Server, SingleStream: keep p50/p99 latency per minute of the test in run.json "
                   "(for long runs: is the last minute like the first?)")
    _add_cluster(s, run=True)
    _add_quiet(s, "live progress (elapsed time, samples, rates, latency so far, device busy shares) or "
               "preprocessing bar")
    s.set_defaults(func=cmd_run)

    s = sub.add_parser("scale", help="throughput against device count (the paper's Figure 1)")
    s.add_argument("workload")
    s.add_argument("--backend", default="simulated")
    s.add_argument("--devices", type=device_list, default="1,2,4,8", help="comma-separated device counts")
    s.add_argument("--scenario", default="Offline", help="Offline, or Server (also runs Offline per point)")
    s.add_argument("--model", required=True)
    s.add_argument("--dataset", required=True)
    s.add_argument("--duration", type=duration_s, default=10.0, help="seconds per run")
    s.add_argument("--card-rate", type=finite_positive_float)
    s.add_argument("--replicas")
    s.add_argument("--batch-size", type=_int_range(1, 65536))
    s.add_argument("--steps", type=positive_int, default=5, help="Server: bisection steps per point")
    s.add_argument("--cache")
    s.add_argument("--out", required=True)
    _add_quiet(s, "progress bar over the runs")
    s.add_argument("--nodes", help="a multi-node study: comma-separated node counts (e.g. 1,2,4), each node "
                   "with --devices cards, beside one server with as many cards; needs --cluster")
    _add_cluster(s)
    s.set_defaults(func=cmd_scale)

    s = sub.add_parser("report", help="a table of every run under DIR, and PNG plots")
    s.add_argument("dir")
    s.add_argument("--plots", help="where to write the PNGs (default: DIR)")
    _add_quiet(s, "word of what it is doing when a step takes more than a second")
    s.set_defaults(func=cmd_report)

    s = sub.add_parser("submission", help="assemble a closed-division submission tree from runs")
    s.add_argument("--submitter", required=True)
    s.add_argument("--system", required=True)
    s.add_argument("--runs", required=True, help="the --out directory of your runs")
    s.add_argument("--out", required=True)
    s.add_argument("--system-json", help="system description fields the machine cannot tell")
    s.add_argument("--allow-short", action="store_true",
                   help="practice mode: waive only what a short run on synthetic data must break (duration, "
                   "sample and query counts, early stopping, accuracy coverage and target, synthetic data or "
                   "weights, simulated devices), listing every waived rule in the tree")
    s.add_argument("--round", help="the MLPerf Inference round whose layout and rules to follow (default: v6.1, "
                   "the round of the LoadGen visionperf runs)")
    _add_quiet(s, "word of what it is doing when a step takes more than a second")
    s.set_defaults(func=cmd_submission)

    s = sub.add_parser("accuracy", help="accuracy from any mlperf_log_accuracy.json")
    s.add_argument("workload")
    s.add_argument("--log", required=True)
    s.add_argument("--dataset", required=True)
    s.add_argument("--out", help="accuracy.txt path (default: beside the log)")
    s.set_defaults(func=cmd_accuracy)
    return p


def _on_sigterm(signum, frame):
    import signal

    # One stop request, one cleanup: a second SIGTERM (a scheduler repeating itself, a group
    # signal plus `scale`'s own to its child) must not interrupt the cleanup the first started.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise Terminated()


# What an interrupted command leaves, for the one line it prints.
KEPT = {
    "run": "nothing of this run was kept (no partial results)",
    "scale": "runs that finished are kept under --out, scaling.json only when every point has run",
    "preprocess": "finished chunks of the cache are kept: rerun the same command to resume",
    "sample-data": "images written so far are kept, but the dataset is not usable until a rerun "
                   "writes its list file",
    "build-model": "no model was written",
    "quantize": "no model was written",
    "submission": "no tree was written",
    "accuracy": "no accuracy.txt was written",
    "report": "plots already written are complete; the others were not written",
}


def _os_error_line(e: OSError, out: str | None = None) -> str:
    """One line for a file the machine would not let us write (or read): which file, why, the fix.
    A failed write() names no file: then OUT, the command's --out, is where it was writing."""
    import errno

    where = e.filename or (f"writing under {out}" if out else "writing a file")
    if e.filename2:
        where = f"{e.filename} -> {e.filename2}"
    why = e.strerror or str(e)
    fix = {
        errno.EACCES: "choose a location you can write (another --out) or fix its permissions",
        errno.EPERM: "choose a location you can write (another --out) or fix its permissions",
        errno.EROFS: "the file system is read-only: choose another --out",
        errno.ENOSPC: "the disk is full: free space there or choose another --out",
        errno.EDQUOT: "your disk quota is used up: free space there or choose another --out",
        errno.EFBIG: "a file size limit (ulimit -f) was reached: raise it or write less",
        errno.ENOTDIR: "a file stands where a directory is needed: remove it or choose another --out",
        errno.EEXIST: "a file is in the way: remove it or choose another --out",
        errno.EISDIR: "a directory stands where a file is needed: remove it or choose another path",
        errno.ENOENT: "check the path",
        errno.EMFILE: "too many open files: raise the limit (ulimit -n)",
    }.get(e.errno, "check the path and the disk")
    return f"{where}: {why}: {fix}"


def main(argv: list[str] | None = None) -> int:
    import signal

    args = build_parser().parse_args(argv)
    from . import progress

    progress.set_quiet(getattr(args, "quiet", False))
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        return args.func(args)
    except UserError as e:
        print(f"visionperf: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        code, what = (143, "terminated") if isinstance(e, Terminated) else (130, "interrupted")
        kept = KEPT.get(args.command, "")
        print(f"visionperf: {what}" + (f": {kept}" if kept else ""), file=sys.stderr)
        engine = sys.modules.get("visionperf._engine")
        if engine is not None and engine.loadgen_abandoned():
            # LoadGen cannot end a Server or stream test early: its thread is still running,
            # and its static logger would abort the process on a normal exit.
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
        return code
    except BrokenPipeError as e:
        try:
            sys.stdout.flush()
        except BrokenPipeError:
            # stdout closed early (`visionperf report DIR | head`): nothing to say to anyone
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 141
        print(f"visionperf: error: {_os_error_line(e, getattr(args, 'out', None))}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"visionperf: error: {_os_error_line(e, getattr(args, 'out', None))}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
