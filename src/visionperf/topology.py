"""What the machine is: sockets, NUMA nodes and physical cores, read from a sysfs tree.

Reading from a root directory (default `/`) rather than calling into the OS lets tests use
recorded trees of the paper's servers. A physical core is named by its first logical CPU;
SMT siblings fold into it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


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


@dataclass(frozen=True)
class Core:
    cpu: int  # first logical CPU: the core's name
    cpus: tuple[int, ...]  # all its logical CPUs (SMT siblings)
    socket: int
    numa_node: int


@dataclass(frozen=True)
class Topology:
    cores: tuple[Core, ...]  # in order of first logical CPU

    @property
    def sockets(self) -> list[int]:
        return sorted({c.socket for c in self.cores})

    @property
    def numa_nodes(self) -> list[int]:
        return sorted({c.numa_node for c in self.cores})


def _read(path: Path, default: str = "") -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return default


def read_topology(sysfs_root: str | Path = "/", allowed: set[int] | None = None) -> Topology:
    """Cores of the online CPUs under SYSFS_ROOT; on the live system, only those this process may use."""
    root = Path(sysfs_root)
    cpu_dir = root / "sys/devices/system/cpu"
    online = parse_cpulist(_read(cpu_dir / "online"))
    if not online:
        online = sorted(os.sched_getaffinity(0)) if str(root) == "/" else []
    if allowed is None and str(root) == "/":
        allowed = set(os.sched_getaffinity(0))
    node_of: dict[int, int] = {}
    node_dir = root / "sys/devices/system/node"
    for d in sorted(node_dir.glob("node[0-9]*")):
        for cpu in parse_cpulist(_read(d / "cpulist")):
            node_of[cpu] = int(d.name[4:])
    cores: dict[int, Core] = {}
    for cpu in online:
        if allowed is not None and cpu not in allowed:
            continue
        topo = cpu_dir / f"cpu{cpu}/topology"
        siblings = parse_cpulist(_read(topo / "thread_siblings_list", str(cpu))) or [cpu]
        siblings = [s for s in siblings if s in online and (allowed is None or s in allowed)] or [cpu]
        first = min(siblings)
        if first not in cores:
            cores[first] = Core(first, tuple(siblings), int(_read(topo / "physical_package_id", "0")),
                                node_of.get(first, 0))
    return Topology(tuple(cores[k] for k in sorted(cores)))
