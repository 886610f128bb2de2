"""The commands about the machine and how throughput grows with it: topology, plan and scale."""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import UserError
from .options import (add_cluster, add_max_hours, add_model_and_dataset, add_quiet, batch_size, device_count,
                      device_list, duration_s, finite_positive_float, path, positive_int)
from .tables import console, print_scaling


def add_topology_args(sub) -> None:
    s = sub.add_parser("topology", help="sockets, NUMA nodes, cores, L3 groups, accelerators")
    s.add_argument("--sysfs-root", default="/", help="read a recorded sysfs tree instead of /")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_topology)


def cmd_topology(a) -> int:
    from ..topology import describe, read_topology, topology_json

    t = read_topology(a.sysfs_root)
    print(topology_json(t) if a.json else describe(t))
    return 0


def add_plan_args(sub) -> None:
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
    s.add_argument("--host-us-per-sample", metavar="US|RUN.json",
                   help="host CPU time per sample measured by run or scale, or the run.json that "
                   "holds it (its host_cpu_us_per_sample, measured on the path its devices took: "
                   "host gather or device fetch): check that each card's cores can feed it at the "
                   "workload's rate")
    s.set_defaults(func=cmd_plan)


def host_us_per_sample(text: str) -> tuple[float, str | None]:
    """(us per sample, where it was measured) from --host-us-per-sample: a number, or a run.json
    (its figure, and the path its devices' rows took: host gather or device fetch)."""
    try:
        return finite_positive_float(text), None
    except Exception:
        pass
    f = Path(text)
    if f.is_dir():
        f = f / "run.json"
    try:
        rec = json.loads(f.read_text())
        us = float(rec["host_cpu_us_per_sample"])
    except (OSError, ValueError, KeyError, TypeError):
        raise UserError(f"--host-us-per-sample {text}: give microseconds (a number > 0) or a run.json that holds "
                        "host_cpu_us_per_sample (a run's performance/run_N/run.json)") from None
    return us, f"{rec.get('input_path') or 'host gather'}, {f}"


def cmd_plan(a) -> int:
    from ..placement import card_plan, core_budget, describe_budget, describe_plan, plan_json, replica_plan
    from ..topology import read_topology
    from ..workloads import get_workload

    t = read_topology(a.sysfs_root)
    devices = card_plan(t, a.devices)
    rates, nbytes = None, 0
    if a.workload:
        w = get_workload(a.workload)
        if not (a.card_rate or w.card_rate):
            raise UserError(f"{w.name} has no cited per-card rate yet (issue 24): pass --card-rate")
        rates = [a.card_rate or w.card_rate] * a.devices
        nbytes = a.bytes_per_sample or 3 * w.input_size ** 2  # int8 rows, as the paper's arithmetic
    rp = replica_plan(t, devices, a.replicas, rates, nbytes, a.node_bandwidth_gbs)
    budget = None
    if a.host_us_per_sample is not None:
        if not rates:
            raise UserError("--host-us-per-sample needs --workload (the cards' rate)")
        us, source = host_us_per_sample(a.host_us_per_sample)
        budget = core_budget(t, devices, rates, us, source)
    if a.json:
        out = plan_json(devices, rp)
        if budget:
            out["host_cores"] = {"host_us_per_sample": budget.host_us_per_sample, "measured": budget.source,
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


def add_scale_args(sub) -> None:
    s = sub.add_parser("scale", help="throughput against device count (the paper's Figure 1)")
    s.add_argument("workload")
    s.add_argument("--backend", default="simulated")
    s.add_argument("--devices", type=device_list, default="1,2,4,8", help="comma-separated device counts")
    s.add_argument("--scenario", default="Offline", help="Offline, or Server (also runs Offline per point)")
    add_model_and_dataset(s)
    s.add_argument("--duration", type=duration_s, default=10.0, help="seconds per run")
    s.add_argument("--card-rate", type=finite_positive_float)
    s.add_argument("--replicas")
    s.add_argument("--batch-size", type=batch_size)
    s.add_argument("--steps", type=positive_int, default=5, help="Server: bisection steps per point")
    add_max_hours(s, "each ")
    s.add_argument("--cache", type=path)
    s.add_argument("--out", type=path, required=True)
    add_quiet(s, "progress bar over the runs")
    s.add_argument("--nodes", help="a multi-node study: comma-separated node counts (e.g. 1,2,4), each node "
                   "with --devices cards, beside one server with as many cards; needs --cluster")
    add_cluster(s)
    s.set_defaults(func=cmd_scale)


def cmd_scale(a) -> int:
    from ..scaling import study
    from ..workloads import check_scenario, get_workload

    w = get_workload(a.workload)
    scenario = check_scenario(a.scenario)
    if scenario not in ("Offline", "Server"):
        raise UserError("--scenario must be Offline or Server for a scaling study")
    counts = device_list(a.devices) if isinstance(a.devices, str) else a.devices
    if a.nodes or a.cluster:
        return cmd_scale_nodes(a, w.name, scenario, counts)
    from ..backends import get_backend

    get_backend(a.backend).check_device_count(counts)
    run_args = _study_run_args(a)
    con = console()
    from ..progress import StudyProgress
    from ..scaling import runs_in_study

    with StudyProgress(con, runs_in_study(counts, scenario, a.steps), quiet=a.quiet) as progress:
        points = study(w.name, counts, scenario, Path(a.out), run_args, steps=a.steps,
                       log=lambda m: con.print(m, style="dim", markup=False), progress=progress)
    print_scaling(con, points, w, scenario, a.backend)
    con.print(f"wrote {Path(a.out) / 'scaling.json'} and {Path(a.out) / 'scaling.png'}")
    return 0


def _study_run_args(a) -> list[str]:
    """The `visionperf run` options every point of a scaling study shares."""
    run_args = ["--backend", a.backend, "--model", a.model, "--dataset", a.dataset, "--duration", repr(a.duration)]
    for flag, val in (("--cache", a.cache), ("--card-rate", a.card_rate), ("--replicas", a.replicas),
                      ("--batch-size", a.batch_size), ("--max-hours", a.max_hours)):
        if val is not None:
            run_args += [flag, str(val)]
    return run_args


def cmd_scale_nodes(a, workload: str, scenario: str, counts: list[int]) -> int:
    """scale --nodes K,... --devices D --cluster ADDRESS: the multi-node curve beside one server's."""
    from ..cluster.scaling import study_nodes, table

    if not (a.nodes and a.cluster):
        raise UserError("--nodes and --cluster go together: scale --nodes 1,2,4 --devices D --cluster ADDRESS")
    if scenario != "Offline" or len(counts) != 1:
        raise UserError("a scaling study over nodes is Offline, with --devices the cards of each node (one "
                        "number): e.g. --nodes 1,2,4 --devices 2")
    run_args = _study_run_args(a)
    con = console()
    from ..progress import StudyProgress

    nodes = device_list(a.nodes)
    with StudyProgress(con, 2 * len(nodes), quiet=a.quiet) as progress:  # each count, and one server beside it
        points = study_nodes(workload, nodes, counts[0], a.cluster, Path(a.out), run_args,
                             log=lambda m: con.print(m, style="dim", markup=False), progress=progress)
    con.print(table(points, workload, counts[0]))
    con.print(f"wrote {Path(a.out) / 'scaling-nodes.json'} and {Path(a.out) / 'scaling-nodes.png'}")
    return 0
