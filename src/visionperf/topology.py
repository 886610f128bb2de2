"""What the machine is: sockets, NUMA nodes, physical cores, L3 groups and accelerators.

Everything is read from a sysfs tree under a root directory (default `/`), so the tests can
use recorded trees of the paper's servers. A physical core is named by its first logical CPU;
SMT siblings fold into it. Accelerators are PCI devices of known vendors/classes, numbered in
PCI address order, each with the NUMA node the kernel reports for it.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .errors import UserError

# (vendor, device or None for any, human name). Qualcomm Cloud AI 100 first: the paper's card.
ACCELERATORS = (
    ("0x17cb", "0xa100", "Qualcomm Cloud AI 100"),
    ("0x10de", None, "NVIDIA GPU"),
)
NVIDIA_CLASSES = ("0x030000", "0x030200")  # VGA / 3D controller (not its audio or bridges)
MAX_CPUS = 1 << 16  # far above any machine; a larger number in a cpulist is damage, not a CPU


def parse_cpulist(text: str) -> list[int]:
    """'0-3,8,10-11' -> [0, 1, 2, 3, 8, 10, 11] (the kernel's cpulist format)."""
    cpus: list[int] = []
    for part in text.strip().split(","):
        if not part:
            continue
        if "-" in part:
            lo, hi = part.split("-")
            cpus.extend(range(int(lo), int(hi) + 1))
        else:
            cpus.append(int(part))
    return cpus


def format_cpulist(cpus) -> str:
    """[0, 1, 2, 3, 8] -> '0-3,8'."""
    cpus = sorted(set(cpus))
    out, i = [], 0
    while i < len(cpus):
        j = i
        while j + 1 < len(cpus) and cpus[j + 1] == cpus[j] + 1:
            j += 1
        out.append(f"{cpus[i]}-{cpus[j]}" if j > i else str(cpus[i]))
        i = j + 1
    return ",".join(out)


@dataclass(frozen=True)
class Core:
    cpu: int  # first logical CPU: the core's name
    cpus: tuple[int, ...]  # all its logical CPUs (SMT siblings)
    socket: int
    numa_node: int
    l3: int  # index of its L3 group (Topology.l3_groups)


@dataclass(frozen=True)
class Accelerator:
    index: int  # in PCI address order
    pci: str
    name: str
    numa_node: int  # -1 where the kernel does not know
    socket: int  # the socket of that node (-1 if unknown)


@dataclass(frozen=True)
class Topology:
    cores: tuple[Core, ...]  # in order of first logical CPU
    l3_groups: tuple[tuple[int, ...], ...]  # cores (by first CPU) sharing one L3, in CPU order
    accelerators: tuple[Accelerator, ...] = field(default_factory=tuple)
    online: tuple[int, ...] = field(default_factory=tuple)

    @property
    def sockets(self) -> list[int]:
        return sorted({c.socket for c in self.cores})

    @property
    def numa_nodes(self) -> list[int]:
        return sorted({c.numa_node for c in self.cores})

    def core(self, cpu: int) -> Core:
        return next(c for c in self.cores if c.cpu == cpu)

    def to_json(self) -> dict:
        return {
            "sockets": self.sockets,
            "numa_nodes": {n: [c.cpu for c in self.cores if c.numa_node == n] for n in self.numa_nodes},
            "physical_cores": len(self.cores),
            "online_cpus": format_cpulist(self.online),
            "cores": [asdict(c) for c in self.cores],
            "l3_groups": [list(g) for g in self.l3_groups],
            "accelerators": [asdict(a) for a in self.accelerators],
        }


def _read(path: Path, default: str = "") -> str:
    try:
        return path.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return default


def _read_cpus(path: Path, default: str = "") -> list[int]:
    """A cpulist file; a malformed one is a UserError naming it."""
    text = _read(path, default)
    numbers = re.findall(r"\d+", text)
    if text and (not re.fullmatch(r"\d+(-\d+)?(,\d+(-\d+)?)*,?", text) or
                 any(len(n) > 6 or int(n) >= MAX_CPUS for n in numbers)):
        raise UserError(f"{path} holds {text[:40]!r}, not a list of CPUs (e.g. 0-3,8): is this a sysfs tree?")
    return parse_cpulist(text)


def _read_int(path: Path, default: int) -> int:
    """A number file (a node, a package id); a malformed one is a UserError naming it."""
    text = _read(path)
    if not text:
        return default
    try:
        return int(text)
    except ValueError:
        raise UserError(f"{path} holds {text[:40]!r}, not a whole number: is this a sysfs tree?") from None


def _check_root(root: Path) -> None:
    """A --sysfs-root that is missing, not a directory, or holds no CPUs, refused: reading it
    anyway would describe a machine with nothing in it."""
    online = root / "sys/devices/system/cpu/online"
    if not root.exists():
        raise UserError(f"--sysfs-root {root} does not exist: pass the directory holding a sysfs tree (sys/)")
    if not root.is_dir():
        raise UserError(f"--sysfs-root {root} is not a directory: pass the directory holding a sysfs tree (sys/)")
    if not _read(online):
        raise UserError(f"--sysfs-root {root} holds no {online.relative_to(root)}: pass the directory "
                        "holding a sysfs tree (sys/)")


def _accelerators(root: Path, socket_of_node: dict[int, int]) -> tuple[Accelerator, ...]:
    pci = root / "sys/bus/pci/devices"
    found = []
    for d in sorted(pci.glob("*")):  # directory names are PCI addresses: sorted = address order
        vendor, device, cls = _read(d / "vendor"), _read(d / "device"), _read(d / "class")
        for v, dev, name in ACCELERATORS:
            if vendor != v or (dev is not None and device != dev):
                continue
            if v == "0x10de" and cls not in NVIDIA_CLASSES:
                continue
            node = _read_int(d / "numa_node", -1)
            found.append((d.name, name, node))
            break
    return tuple(Accelerator(i, addr, name, node, socket_of_node.get(node, -1))
                 for i, (addr, name, node) in enumerate(found))


def read_topology(sysfs_root: str | Path = "/", allowed: set[int] | None = None) -> Topology:
    """The machine under SYSFS_ROOT; on the live system, only the CPUs this process may use."""
    root = Path(sysfs_root)
    live = str(root) == "/"
    if not live:
        _check_root(root)
    cpu_dir = root / "sys/devices/system/cpu"
    online = _read_cpus(cpu_dir / "online")
    if not online and live:
        online = sorted(os.sched_getaffinity(0))
    if allowed is None and live:
        allowed = set(os.sched_getaffinity(0))
    usable = [c for c in online if allowed is None or c in allowed]
    node_of: dict[int, int] = {}
    for d in sorted(d for d in (root / "sys/devices/system/node").glob("node[0-9]*") if d.name[4:].isdigit()):
        for cpu in _read_cpus(d / "cpulist"):
            node_of[cpu] = int(d.name[4:])
    first_of: dict[int, int] = {}
    for cpu in usable:
        siblings = _read_cpus(cpu_dir / f"cpu{cpu}/topology/thread_siblings_list", str(cpu))
        siblings = [s for s in siblings if s in usable] or [cpu]
        first_of[cpu] = min(siblings)
    # L3 groups: the cores whose logical CPUs share cpu*/cache/index3 (level 3).
    l3_key: dict[int, str] = {}
    for cpu in usable:
        shared = ""
        for idx in sorted((cpu_dir / f"cpu{cpu}/cache").glob("index*")):
            if _read(idx / "level") == "3":
                shared = _read(idx / "shared_cpu_list")
        l3_key[first_of[cpu]] = l3_key.get(first_of[cpu]) or shared or f"core{first_of[cpu]}"
    groups: dict[str, list[int]] = {}
    for first in sorted(set(first_of.values())):
        groups.setdefault(l3_key[first], []).append(first)
    l3_groups = tuple(tuple(g) for g in sorted(groups.values(), key=lambda g: g[0]))
    group_of = {c: i for i, g in enumerate(l3_groups) for c in g}
    cores = []
    for first in sorted(set(first_of.values())):
        sibs = tuple(sorted(c for c, f in first_of.items() if f == first))
        socket = _read_int(cpu_dir / f"cpu{first}/topology/physical_package_id", 0)
        cores.append(Core(first, sibs, socket, node_of.get(first, 0), group_of[first]))
    socket_of_node = {c.numa_node: c.socket for c in cores}
    return Topology(tuple(cores), l3_groups, _accelerators(root, socket_of_node), tuple(online))


def describe(t: Topology) -> str:
    """A plain-text table of the machine (the `visionperf topology` output)."""
    lines = [f"sockets {len(t.sockets)}, NUMA nodes {len(t.numa_nodes)}, physical cores {len(t.cores)}, "
             f"logical CPUs online {format_cpulist(t.online)}"]
    for n in t.numa_nodes:
        cores = [c for c in t.cores if c.numa_node == n]
        lines.append(f"  node {n} (socket {cores[0].socket}): cores {format_cpulist(c.cpu for c in cores)}, "
                     f"logical CPUs {format_cpulist(x for c in cores for x in c.cpus)}")
    lines.append(f"L3 groups: {len(t.l3_groups)} of {len(t.l3_groups[0]) if t.l3_groups else 0} cores: "
                 + "  ".join(format_cpulist(g) for g in t.l3_groups))
    if t.accelerators:
        lines.append("accelerators (PCI address order):")
        for a in t.accelerators:
            lines.append(f"  {a.index:2d}  {a.pci}  {a.name}  NUMA node {a.numa_node}  socket {a.socket}")
    else:
        lines.append("accelerators: none found")
    return "\n".join(lines)


def topology_json(t: Topology) -> str:
    return json.dumps(t.to_json(), indent=2)
