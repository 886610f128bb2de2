"""Recorded sysfs trees of the paper's three servers (Table III), SMT on, as Linux lays them out.

The trees are materialised from these records into a temporary directory: per logical CPU its
topology (package, core, thread siblings) and cache index0..3 (L3 shared by 8 consecutive
cores, as the paper says), NUMA nodes (NPS1: one per socket), and the PCI devices: the Cloud
AI 100 cards (vendor 0x17cb, device 0xa100) on the socket Table IV implies, plus a few
unrelated devices (a NIC, a host bridge, an NVIDIA audio function) that must not count.
"""

from __future__ import annotations

from pathlib import Path

# name: (sockets, cores per socket, SMT threads, cards per socket in PCI order)
SERVERS = {
    # 2x EPYC 7282 (16 cores each). 5 cards: Table IV pins cards 0-1 to socket 0's cores, 2-3 to
    # socket 1's; the fifth is unpinned, and sits on socket 1.
    "r282-z93-5": (2, 16, 2, [0, 0, 1, 1, 1]),
    # 8 cards: cards 0-3 on cores 0-15 (socket 0), 4-7 on 16-31 (socket 1).
    "r282-z93-8": (2, 16, 2, [0, 0, 0, 0, 1, 1, 1, 1]),
    # 2x EPYC 7713 (64 cores each), 16 cards: 0-7 on cores 64-127 (socket 1), 8-15 on socket 0.
    "g292-z43-16": (2, 64, 2, [1] * 8 + [0] * 8),
}


def _w(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")


def materialise(name: str, root: Path) -> Path:
    from visionperf.topology import format_cpulist

    sockets, per_socket, smt, cards = SERVERS[name]
    cores = sockets * per_socket
    n = cores * smt
    cpu_dir = root / "sys/devices/system/cpu"
    _w(cpu_dir / "online", f"0-{n - 1}")
    _w(cpu_dir / "possible", f"0-{n - 1}")
    for cpu in range(n):
        core = cpu % cores  # Linux numbers all first threads, then all second threads
        sock = core // per_socket
        sibs = [core + k * cores for k in range(smt)]
        t = cpu_dir / f"cpu{cpu}/topology"
        _w(t / "physical_package_id", str(sock))
        _w(t / "core_id", str(core % per_socket))
        _w(t / "thread_siblings_list", format_cpulist(sibs))
        _w(t / "core_siblings_list", format_cpulist(c for c in range(n) if (c % cores) // per_socket == sock))
        group = core // 8
        l3 = [c for c in range(n) if (c % cores) // 8 == group]
        for idx, (level, typ, shared) in enumerate([(1, "Data", sibs), (1, "Instruction", sibs),
                                                    (2, "Unified", sibs), (3, "Unified", l3)]):
            c = cpu_dir / f"cpu{cpu}/cache/index{idx}"
            _w(c / "level", str(level))
            _w(c / "type", typ)
            _w(c / "shared_cpu_list", format_cpulist(shared))
    for s in range(sockets):
        cpus = [c for c in range(n) if (c % cores) // per_socket == s]
        _w(root / f"sys/devices/system/node/node{s}/cpulist", format_cpulist(cpus))
    pci = root / "sys/bus/pci/devices"
    devices = [("0000:00:00.0", "0x1022", "0x1480", "0x060000", 0),  # AMD host bridge
               ("0000:40:01.1", "0x10de", "0x10f0", "0x040300", 0),  # an NVIDIA audio function
               ("0000:c0:03.1", "0x8086", "0x1521", "0x020000", sockets - 1)]  # a NIC
    # Cards in PCI address order are cards 0, 1, 2, ... of Table IV (the G292 numbers its
    # socket-1 cards first); each reports the NUMA node of the socket it hangs off.
    for i, sock in enumerate(cards):
        devices.append((f"0000:{0x10 + 8 * i:02x}:00.0", "0x17cb", "0xa100", "0x120000", sock))
    for addr, vendor, device, cls, node in devices:
        d = pci / addr
        _w(d / "vendor", vendor)
        _w(d / "device", device)
        _w(d / "class", cls)
        _w(d / "numa_node", str(node))
    return root
