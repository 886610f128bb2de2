from pathlib import Path

import pytest

from visionperf.errors import UserError
from visionperf.placement import cpu_partitions
from visionperf.topology import parse_cpulist, read_topology


def fake_sysfs(root: Path, sockets: int, cores_per_socket: int, smt: int) -> Path:
    """A sysfs tree like Linux numbers SMT: siblings of core c are c and c + total cores."""
    cpu = root / "sys/devices/system/cpu"
    total = sockets * cores_per_socket
    n = total * smt
    cpu.mkdir(parents=True)
    (cpu / "online").write_text(f"0-{n - 1}\n")
    for c in range(n):
        core = c % total
        t = cpu / f"cpu{c}/topology"
        t.mkdir(parents=True)
        (t / "thread_siblings_list").write_text(",".join(str(core + k * total) for k in range(smt)) + "\n")
        (t / "physical_package_id").write_text(f"{core // cores_per_socket}\n")
        (t / "core_id").write_text(f"{core % cores_per_socket}\n")
    for s in range(sockets):
        node = root / f"sys/devices/system/node/node{s}"
        node.mkdir(parents=True)
        cpus = [c for c in range(n) if (c % total) // cores_per_socket == s]
        (node / "cpulist").write_text(",".join(map(str, cpus)) + "\n")
    return root


def test_parse_cpulist():
    assert parse_cpulist("0-3,8,10-11\n") == [0, 1, 2, 3, 8, 10, 11]
    assert parse_cpulist("") == []


def test_topology_folds_smt_siblings(tmp_path):
    topo = read_topology(fake_sysfs(tmp_path, sockets=2, cores_per_socket=4, smt=2))
    assert [c.cpu for c in topo.cores] == list(range(8))
    assert topo.cores[0].cpus == (0, 8) and topo.cores[5].cpus == (5, 13)
    assert topo.sockets == [0, 1] and topo.numa_nodes == [0, 1]
    assert topo.cores[4].socket == 1 and topo.cores[4].numa_node == 1


def test_partitions_are_contiguous_and_cover_every_core(tmp_path):
    topo = read_topology(fake_sysfs(tmp_path, sockets=2, cores_per_socket=64, smt=2))
    parts = cpu_partitions(topo, 16)
    assert [p.cores for p in parts][:2] == [tuple(range(0, 8)), tuple(range(8, 16))]
    assert parts[8].numa_node == 1 and parts[7].numa_node == 0
    assert parts[0].cpus == tuple(c for core in range(8) for c in (core, core + 128))
    assert sorted(c for p in parts for c in p.cores) == list(range(128))
    uneven = cpu_partitions(topo, 3)
    assert [len(p.cores) for p in uneven] == [43, 43, 42]


def test_more_devices_than_cores_share_round_robin(tmp_path):
    topo = read_topology(fake_sysfs(tmp_path, sockets=1, cores_per_socket=2, smt=1))
    parts = cpu_partitions(topo, 5)
    assert [p.cores for p in parts] == [(0,), (1,), (0,), (1,), (0,)]
    assert all(p.shared for p in parts)
    with pytest.raises(UserError, match="at least 1"):
        cpu_partitions(topo, 0)


def test_live_topology_is_this_process_cpus():
    import os
    topo = read_topology()
    assert {c for core in topo.cores for c in core.cpus} <= os.sched_getaffinity(0)
    assert topo.cores
