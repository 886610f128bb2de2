"""The multi-node scaling curve, beside the cards one (`visionperf scale W --nodes 1,2,4 --devices D
--cluster ADDRESS`).

For each node count K: an Offline run over K nodes of D cards each (the cluster), and beside it
one server with the same K x D cards (this machine, no cluster): how much of one server's
scaling the hop between nodes keeps, and what the head pays per sample for it. Each point is
a full `visionperf run` in its own process (scaling.study), so LoadGen's own metric is the
figure. With local:N, the K-node point starts local:K; with a cluster's address, it uses the
first K nodes of it (--nodes K).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from ..atomic import write_text
from ..errors import UserError
from ..scaling import save_plot, study
from .session import parse_address


@dataclass
class NodePoint:
    nodes: int
    cards: int  # nodes x cards per node
    metric: float  # Offline samples/s over the nodes (LoadGen's)
    valid: bool
    linear_pct: float  # of K x the first point's per-node figure
    one_node: float | None  # samples/s of one server with the same cards
    driver_cpu_us_per_sample: float | None  # the head's host CPU per sample (LoadGen, engine, Ray)
    node_cpu_us_per_sample: float | None  # the nodes' host CPU per sample, averaged over nodes
    round_trip_ms: float | None


def cluster_args(address: str, nodes: int) -> list[str]:
    """The run options for a K-node point: local:K, or the first K nodes of a real cluster."""
    a = parse_address(address)
    if a.is_local:
        if nodes > a.local_nodes:
            raise UserError(f"--nodes {nodes}: --cluster {address} starts {a.local_nodes} node(s): pass "
                            f"--cluster local:{nodes} or fewer --nodes")
        return ["--cluster", f"local:{nodes}"]
    return ["--cluster", address, "--nodes", str(nodes)]


def study_nodes(workload: str, nodes: list[int], devices: int, address: str, out: Path, run_args: list[str],
                log=print, one_node: bool = True, progress=None) -> list[NodePoint]:
    """Every K in NODES over the cluster (and, ONE_NODE, one server with K x DEVICES cards);
    PROGRESS (progress.StudyProgress) hears each run start and end."""
    out.mkdir(parents=True, exist_ok=True)
    single = {}
    if one_node:
        for p in study(workload, [k * devices for k in nodes], "Offline", out / "one-node", run_args,
                       log=lambda m: log(f"one node: {m}"), progress=progress):
            single[p.devices] = p.metric
    points: list[NodePoint] = []
    per_node = None
    for k in nodes:
        where = out / f"nodes{k}"
        (p,) = study(workload, [devices], "Offline", where, [*run_args, *cluster_args(address, k)],
                     log=lambda m, k=k: log(f"{k} node(s) x {m}"), progress=progress)
        rec = json.loads((where / f"d{devices}" / "offline" / workload / "Offline" / "performance" / "run_1" /
                          "run.json").read_text())
        nodes_rec = rec.get("cluster", {}).get("nodes", [])
        cpus = [n["host_cpu_us_per_sample"] for n in nodes_rec if n.get("host_cpu_us_per_sample")]
        per_node = per_node or p.metric / k
        points.append(NodePoint(k, k * devices, p.metric, p.valid, 100 * p.metric / (per_node * k),
                                single.get(k * devices), rec.get("host_cpu_us_per_sample"),
                                round(sum(cpus) / len(cpus), 2) if cpus else None,
                                rec.get("cluster", {}).get("round_trip_ms")))
    write_text(out / "scaling-nodes.json", json.dumps({"workload": workload, "cards_per_node": devices,
                                                       "cluster": address, "run_args": run_args,
                                                       "points": [asdict(p) for p in points]}, indent=2) + "\n")
    plot(points, workload, devices, out / "scaling-nodes.png")
    return points


def table(points: list[NodePoint], workload: str, devices: int):
    """The study as a rich table: each node count beside one server with as many cards."""
    from rich.table import Table

    t = Table(title=f"{workload} Offline scaling over nodes ({devices} card(s) each)", title_justify="left")
    for col in ("nodes", "cards", "samples/s", "% of linear", "one node, same cards", "nodes / one node",
                "driver CPU us/sample", "node CPU us/sample", "round trip ms"):
        t.add_column(col, justify="right")
    for p in points:
        t.add_row(str(p.nodes), str(p.cards), f"{p.metric:,.1f}" + ("" if p.valid else " (INVALID)"),
                  f"{p.linear_pct:.1f}%", f"{p.one_node:,.1f}" if p.one_node else "",
                  f"{100 * p.metric / p.one_node:.1f}%" if p.one_node else "",
                  _num(p.driver_cpu_us_per_sample), _num(p.node_cpu_us_per_sample), _num(p.round_trip_ms, 2))
    return t


def _num(v, digits: int = 1) -> str:
    return "n/a" if v is None else f"{v:,.{digits}f}"


def plot(points: list[NodePoint], workload: str, devices: int, path: Path) -> Path:
    """Throughput against cards: K nodes x DEVICES cards, one server with as many, and linear."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = [p.cards for p in points]
    per_card = points[0].metric / points[0].cards if points and points[0].cards else 0
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    ax.plot(xs, [per_card * x for x in xs], "--", color="grey", label="linear (from the first point)")
    if all(p.one_node for p in points):
        ax.plot(xs, [p.one_node for p in points], "s-", color="tab:orange", label="one server, N cards")
    ax.plot(xs, [p.metric for p in points], "o-", color="tab:blue", label=f"nodes x {devices} card(s) (cluster)")
    for p in points:
        ax.annotate(f"{p.nodes} node(s): {p.linear_pct:.0f}%", (p.cards, p.metric), textcoords="offset points",
                    xytext=(0, 7), ha="center", fontsize=8)
    ax.set_xlabel("cards")
    ax.set_ylabel("samples per second (Offline)")
    ax.set_title(f"{workload}: scaling over nodes, beside one server")
    return save_plot(fig, ax, xs, path)
