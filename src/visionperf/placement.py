"""The plan: which cores serve which device, and which NUMA node holds its sample buffer."""

from __future__ import annotations

from dataclasses import dataclass

from .errors import UserError
from .topology import Topology


@dataclass(frozen=True)
class Partition:
    index: int
    cores: tuple[int, ...]  # physical cores, by first logical CPU
    cpus: tuple[int, ...]  # logical CPUs its threads are pinned to
    numa_node: int
    shared: bool = False  # True when more devices than cores forced sharing


def cpu_partitions(topology: Topology, n: int) -> list[Partition]:
    """Split the physical cores into N contiguous, equal-as-possible groups.

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
            parts.append(Partition(i, (c.cpu,), c.cpus, c.numa_node, shared=True))
        return parts
    base, extra = divmod(len(cores), n)
    start = 0
    for i in range(n):
        size = base + (1 if i < extra else 0)
        group = cores[start : start + size]
        start += size
        parts.append(Partition(
            i, tuple(c.cpu for c in group), tuple(cpu for c in group for cpu in c.cpus),
            group[0].numa_node,
        ))
    return parts
