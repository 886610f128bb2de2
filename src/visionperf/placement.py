"""The plan: which cores serve which device, and which NUMA node holds which buffer replica.

Two kinds of device need two kinds of plan:

* CPU devices (`onnxruntime`): the cores are the device. `cpu_partitions` splits the physical
  cores into N contiguous, equal-as-possible groups; none is left idle.
* Cards (`simulated`, GPUs, the paper's Cloud AI 100): the cores only feed the card.
  `card_plan` is the paper's section II-E and Table IV: each card's threads run on cores of its
  own socket (II-D), one L3 group per card where they fit, cards splitting a group when there
  are more cards than groups, and cards that find no place left unpinned (the paper's fifth
  card on the 5-card R282). Each card's buffer replica lives on its card's NUMA node (II-C),
  and the plan checks the memory bandwidth each node must then deliver.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from .errors import UserError
from .topology import Topology, format_cpulist

DDR4_3200_CHANNEL_GBS = 25.6  # the paper's figure for one DDR4-3200 channel (section II-C)


@dataclass(frozen=True)
class Partition:
    index: int
    cores: tuple[int, ...]  # physical cores, by first logical CPU
    cpus: tuple[int, ...]  # logical CPUs its threads are pinned to
    numa_node: int
    shared: bool = False  # another device uses some of the same cores
    pinned: bool = True  # False: runs on every CPU (no place was left for it)
    socket: int = 0
    pci: str | None = None  # the accelerator it drives, if any


def _cpus_of(topology: Topology, cores) -> tuple[int, ...]:
    return tuple(sorted(cpu for c in cores for cpu in topology.core(c).cpus))


def cpu_partitions(topology: Topology, n: int) -> list[Partition]:
    """Split the physical cores into N contiguous, equal-as-possible groups (CPU devices).

    Contiguous groups keep a device's threads on neighbouring cores (one socket, shared L3)
    when the count divides evenly. With more devices than cores, devices share cores
    round-robin and the plan says so.
    """
    if n < 1:
        raise UserError(f"--devices must be at least 1, got {n}")
    cores = list(topology.cores)
    if not cores:
        raise UserError("no usable CPU cores found in the topology")
    parts: list[Partition] = []
    if n > len(cores):
        for i in range(n):
            c = cores[i % len(cores)]
            parts.append(Partition(i, (c.cpu,), c.cpus, c.numa_node, shared=True, socket=c.socket))
        return parts
    base, extra = divmod(len(cores), n)
    start = 0
    for i in range(n):
        size = base + (1 if i < extra else 0)
        group = cores[start : start + size]
        start += size
        parts.append(Partition(i, tuple(c.cpu for c in group), tuple(cpu for c in group for cpu in c.cpus),
                               group[0].numa_node, socket=group[0].socket))
    return parts


def card_plan(topology: Topology, n: int, accelerators=None) -> list[Partition]:
    """Cores for N cards (Table IV). Cards are ACCELERATORS (default: all of the topology's) in
    PCI order when there are N of them; otherwise (simulated cards) they are spread evenly over
    the sockets."""
    if n < 1:
        raise UserError(f"--devices must be at least 1, got {n}")
    if not topology.cores:
        raise UserError("no usable CPU cores found in the topology")
    sockets = topology.sockets
    accelerators = topology.accelerators if accelerators is None else tuple(accelerators)
    if len(accelerators) >= n:
        accs = accelerators[:n]
        card_socket = [a.socket if a.socket in sockets else sockets[0] for a in accs]
        card_node = [a.numa_node for a in accs]
        card_pci = [a.pci for a in accs]
    else:
        card_socket = [sockets[i * len(sockets) // n] for i in range(n)]
        card_node = [next(c.numa_node for c in topology.cores if c.socket == s) for s in card_socket]
        card_pci = [None] * n
    groups = topology.l3_groups
    per_group = 1 if n <= len(groups) else n // len(groups)
    slots = []  # (socket, cores, shared)
    for g in groups:
        socket = topology.core(g[0]).socket
        if per_group <= len(g):
            size = len(g) // per_group
            slots += [(socket, g[k * size:(k + 1) * size], per_group > 1) for k in range(per_group)]
        else:  # more cards than cores in a group: they take turns on its cores
            slots += [(socket, (g[k % len(g)],), True) for k in range(per_group)]
    taken = [False] * len(slots)
    chosen: list[int | None] = [None] * n
    for i in range(n):  # local socket first (section II-D)
        for k, (sock, _, _) in enumerate(slots):
            if not taken[k] and sock == card_socket[i]:
                taken[k], chosen[i] = True, k
                break
    for i in range(n):  # then any free place, across the socket link
        if chosen[i] is None:
            for k in range(len(slots)):
                if not taken[k]:
                    taken[k], chosen[i] = True, k
                    break
    all_cores = tuple(c.cpu for c in topology.cores)
    plan = []
    for i in range(n):
        if chosen[i] is None:  # no place left: let it use the whole machine, as the paper does
            plan.append(Partition(i, all_cores, _cpus_of(topology, all_cores), card_node[i], shared=True,
                                  pinned=False, socket=card_socket[i], pci=card_pci[i]))
        else:
            sock, cores, shared = slots[chosen[i]]
            plan.append(Partition(i, tuple(cores), _cpus_of(topology, cores), card_node[i], shared=shared,
                                  socket=card_socket[i], pci=card_pci[i]))
    return plan


@dataclass
class ReplicaPlan:
    """Which buffer replica each device gathers from, and where each replica lives."""

    mode: str  # "device" | "node" | "one"
    of_device: list[int]  # replica index per device
    nodes: list[int]  # NUMA node per replica
    fill_cpus: list[tuple[int, ...]]  # CPUs of the thread that fills each replica (first touch)
    bandwidth_gbs: dict[int, float] = field(default_factory=dict)  # per node, at the devices' rates
    warnings: list[str] = field(default_factory=list)


def replica_plan(topology: Topology, devices: list[Partition], mode: str = "device",
                 rates: list[float] | None = None, bytes_per_sample: int = 0,
                 node_bandwidth_gbs: float = DDR4_3200_CHANNEL_GBS) -> ReplicaPlan:
    if mode == "device":
        of_device = list(range(len(devices)))
        nodes = [d.numa_node for d in devices]
        fill = [d.cpus for d in devices]
    elif mode == "node":
        nodes = sorted({d.numa_node for d in devices})
        of_device = [nodes.index(d.numa_node) for d in devices]
        fill = [tuple(x for c in topology.cores if c.numa_node == n for x in c.cpus) for n in nodes]
    elif mode == "one":
        of_device, nodes, fill = [0] * len(devices), [devices[0].numa_node], [()]
    else:
        raise UserError(f"unknown --replicas {mode!r}: choose device, node or one")
    replicas = ReplicaPlan(mode, of_device, nodes, fill)
    if rates and bytes_per_sample:
        for d, r in zip(devices, of_device):
            node = nodes[r]
            replicas.bandwidth_gbs[node] = replicas.bandwidth_gbs.get(node, 0.0) + rates[d.index] * bytes_per_sample / 1e9
        for node, need in sorted(replicas.bandwidth_gbs.items()):
            if need > node_bandwidth_gbs:
                replicas.warnings.append(
                    f"NUMA node {node} must deliver {need:.1f} GB/s of samples, more than the "
                    f"{node_bandwidth_gbs:g} GB/s assumed per node: replicate per device or node, "
                    "or spread the cards")
    return replicas


@dataclass
class CoreBudget:
    """Host cores each device's threads need at its rate, against the cores the plan gives it."""

    host_us_per_sample: float
    needed: list[float]  # cores, per device
    given: list[int]  # physical cores, per device (an unpinned device may use them all)
    warnings: list[str] = field(default_factory=list)
    source: str | None = None  # where the figure was measured: "device fetch, RUN.json" (None: given)


def core_budget(topology: Topology, devices: list[Partition], rates: list[float],
                host_us_per_sample: float, source: str | None = None) -> CoreBudget:
    """The cores N cards at these rates need, from a measured host CPU time per sample.

    `run` and `scale` measure the time per sample (`host_cpu_us_per_sample` in run.json, on the
    path its devices took: `input_path`, host gather or device fetch); a device at R samples/s
    then keeps R * time cores busy. Devices that share cores add up.
    """
    if host_us_per_sample <= 0:
        raise UserError(f"--host-us-per-sample must be positive, got {host_us_per_sample}")
    needed = [r * host_us_per_sample / 1e6 for r in rates]
    given = [len(d.cores) if d.pinned else len(topology.cores) for d in devices]
    b = CoreBudget(host_us_per_sample, needed, given, source=source)
    load: dict[tuple[int, ...], float] = {}
    for d, need in zip(devices, needed):
        key = d.cores if d.pinned else ()
        load[key] = load.get(key, 0.0) + need
    for key, need in load.items():
        have = len(key) if key else len(topology.cores)
        if need > have:
            who = f"cores {format_cpulist(key)}" if key else "the unpinned devices"
            b.warnings.append(f"{who} must do {need:.2f} cores of host work, more than the {have} "
                              "they have: the cards will wait for the host")
    return b


def plan_json(devices: list[Partition], replicas: ReplicaPlan | None = None) -> dict:
    out = {"devices": []}
    for d in devices:
        rec = asdict(d)
        rec["cores"], rec["cpus"] = list(d.cores), list(d.cpus)
        if replicas is not None:
            rec["replica"] = replicas.of_device[d.index]
            rec["replica_node"] = replicas.nodes[replicas.of_device[d.index]]
        out["devices"].append(rec)
    if replicas is not None:
        out["replicas"] = {"mode": replicas.mode, "nodes": replicas.nodes,
                           "bandwidth_gbs_per_node": {str(k): round(v, 3) for k, v in replicas.bandwidth_gbs.items()},
                           "warnings": replicas.warnings}
    return out


def describe_budget(b: CoreBudget) -> str:
    total = sum(b.needed)
    lines = [f"  host CPU at {b.host_us_per_sample:g} us/sample" + (f" (measured: {b.source})" if b.source else "")
             + f": {total:.2f} cores in all, per device "
             + ", ".join(f"{n:.2f} of {g}" for n, g in zip(b.needed, b.given))]
    return "\n".join(lines + [f"  warning: {w}" for w in b.warnings])


def describe_plan(devices: list[Partition], replicas: ReplicaPlan | None = None) -> str:
    lines = []
    for d in devices:
        where = (f"cores {format_cpulist(d.cores)}" if d.pinned else "unpinned (every CPU)")
        extra = " (shares an L3 group)" if d.shared and d.pinned else ""
        card = f" [{d.pci}]" if d.pci else ""
        rep = f", buffer replica {replicas.of_device[d.index]} on node {replicas.nodes[replicas.of_device[d.index]]}" if replicas else ""
        lines.append(f"  device {d.index:2d}{card}: socket {d.socket}, node {d.numa_node}, {where}{extra}{rep}")
    if replicas is not None:
        for node, need in sorted(replicas.bandwidth_gbs.items()):
            lines.append(f"  node {node}: {need:.2f} GB/s of sample reads at the devices' rates")
        lines += [f"  warning: {w}" for w in replicas.warnings]
    return "\n".join(lines)
