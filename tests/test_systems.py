"""Issue 13: the system description from a recorded machine (the paper's 16-card G292-Z43 sysfs
tree, plus /proc, disks, NICs and SMBIOS memory records written the way Linux lays them out)."""

from __future__ import annotations

import struct

import pytest

from sysfs_fixtures import materialise
from visionperf.errors import UserError
from visionperf.rounds import V6_1
from visionperf.systems import describe_system, machine_facts


def _w(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    (path.write_bytes if isinstance(data, bytes) else path.write_text)(data)


def dimm(size_mb: int, kind: int = 0x22, speed: int = 4800) -> bytes:
    """An SMBIOS type 17 (memory device) record: size at 0x0C (MB, or 0x7FFF + extended size at
    0x1C), memory type at 0x12, speed (MT/s) at 0x15."""
    raw = bytearray(0x28)
    raw[0], raw[1] = 17, 0x28
    if size_mb >= 0x7FFF:
        struct.pack_into("<H", raw, 0x0C, 0x7FFF)
        struct.pack_into("<I", raw, 0x1C, size_mb)
    else:
        struct.pack_into("<H", raw, 0x0C, size_mb)
    raw[0x12] = kind
    struct.pack_into("<H", raw, 0x15, speed)
    return bytes(raw)


@pytest.fixture(scope="module")
def g292(tmp_path_factory):
    root = materialise("g292-z43-16", tmp_path_factory.mktemp("g292"))
    _w(root / "proc/cpuinfo", "processor\t: 0\nmodel name\t: AMD EPYC 7713 64-Core Processor\n")
    _w(root / "proc/meminfo", "MemTotal:       1056000000 kB\n")
    _w(root / "proc/mounts", "/dev/nvme0n1p2 / ext4 rw 0 0\n/dev/sda1 /data xfs rw 0 0\ntmpfs /tmp tmpfs rw 0 0\n")
    for name, sectors, rot in (("nvme0n1", 3_750_748_848, "0"), ("sda", 7_814_037_168, "1"), ("loop0", 100, "0")):
        _w(root / f"sys/block/{name}/size", f"{sectors}\n")
        _w(root / f"sys/block/{name}/queue/rotational", rot + "\n")
        if name != "loop0":
            (root / f"sys/block/{name}/device").mkdir(parents=True)
    (root / "sys/block/nvme0n1/nvme0n1p2").mkdir()  # partitions sit under their disk
    (root / "sys/block/sda/sda1").mkdir()
    for nic, speed in (("enp65s0f0", "100000"), ("enp65s0f1", "-1"), ("lo", "")):
        _w(root / f"sys/class/net/{nic}/speed", speed + "\n")
        if nic != "lo":
            (root / f"sys/class/net/{nic}/device").mkdir()
    for k in range(16):
        _w(root / f"sys/firmware/dmi/entries/17-{k}/raw", dimm(65536 if k < 15 else 65536))
    _w(root / "sys/firmware/dmi/entries/17-16/raw", dimm(0))  # an empty slot
    _w(root / "etc/os-release", 'NAME="Ubuntu"\nPRETTY_NAME="Ubuntu 22.04.4 LTS"\n')
    _w(root / "sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq", "3720000\n")
    return root


def test_the_machine_fills_what_it_can_read(g292):
    f = machine_facts({"plugin:/opt/libqaic.so"}, g292)
    assert f["host_processor_model_name"] == "AMD EPYC 7713 64-Core Processor"
    assert f["host_processors_per_node"] == "2" and f["host_processor_core_count"] == "64"
    assert f["host_processor_frequency"] == "3720 MHz (max)"
    assert f["host_memory_capacity"] == "1007 GB"
    assert f["host_memory_configuration"] == "16x 64GB DDR5 4800 MT/s"
    assert f["host_storage_type"] == "HDD, NVMe SSD"
    assert f["host_storage_capacity"] == "5.9 TB"  # 1.92 TB + 4 TB; the loop device is not a disk
    assert f["host_networking"] == "enp65s0f0 100 Gb/s, enp65s0f1" and f["host_network_card_count"] == "2"
    assert f["accelerators_per_node"] == "16"
    assert f["operating_system"].startswith("Ubuntu 22.04.4 LTS (kernel ")
    assert "device plug-in libqaic.so" in f["framework"]


def test_cpu_only_runs_say_no_accelerator_as_the_checker_wants(g292):
    f = machine_facts({"onnxruntime"}, g292)
    assert f["accelerators_per_node"] == "0" and f["accelerator_model_name"] == "N/A"
    assert "ONNX Runtime" in f["framework"]


def test_every_empty_required_field_is_named_at_once(g292):
    facts = machine_facts({"plugin:/opt/libqaic.so"}, g292)
    with pytest.raises(UserError) as e:
        describe_system(V6_1, "Acme", "g292", "edge", {}, facts)
    msg = str(e.value)
    for k in ("accelerator_memory_capacity", "accelerator_host_interconnect", "accelerator_memory_configuration",
              "accelerator_interconnect", "cooling"):
        assert k in msg
    assert "host_memory_configuration" not in msg and "5 field(s)" in msg
    desc = describe_system(V6_1, "Acme", "g292", "edge", {
        "accelerator_memory_capacity": "32 GB", "accelerator_host_interconnect": "PCIe Gen4 x8",
        "accelerator_memory_configuration": "LPDDR4x", "accelerator_interconnect": "N/A", "cooling": "air"}, facts)
    assert sorted(desc) == sorted(V6_1.system_fields)
    assert desc["system_type"] == "edge" and desc["status"] == "available"
