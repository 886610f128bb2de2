"""The system description of a submission (`systems/<system>.json`): what this machine can
tell about itself, read from /proc and /sys, and the user's JSON for the rest.

Every field the round requires is present; the machine fills what it can read (processors,
caches, memory, storage from /sys/block and /proc/mounts, network cards from /sys/class/net,
memory modules from the DMI tables where readable, accelerators from PCI), the runs fill what
they imply (framework, accelerators for CPU-only runs), and every field the round needs a value
for that is still empty is named in one message, all at once, before anything is written.
"""

from __future__ import annotations

import platform
import re
import struct
from pathlib import Path

from . import jsonfile
from .backends import get_backend
from .errors import UserError
from .rounds import Round


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return ""


def _size(n_bytes: float) -> str:
    for unit, div in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6)):
        if n_bytes >= div:
            return f"{n_bytes / div:.1f} {unit}".replace(".0 ", " ")
    return f"{n_bytes:.0f} B"


def processor_facts(root: Path) -> dict:
    from .topology import read_topology

    t = read_topology(root)
    model = ""
    for line in _read(root / "proc/cpuinfo").splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    cpu0 = root / "sys/devices/system/cpu/cpu0"
    khz = _read(cpu0 / "cpufreq/cpuinfo_max_freq")
    freq = f"{int(khz) / 1000:.0f} MHz (max)" if khz.isdigit() else ""
    caches = []
    for idx in sorted((cpu0 / "cache").glob("index*")):
        level, kind, size = _read(idx / "level"), _read(idx / "type"), _read(idx / "size")
        if level and size:
            shared = _read(idx / "shared_cpu_list")
            caches.append(f"L{level}{'d' if kind == 'Data' else 'i' if kind == 'Instruction' else ''} {size}"
                          + (f" (shared by CPUs {shared})" if shared and ("," in shared or "-" in shared) else ""))
    sockets = max(1, len(t.sockets))
    return {
        "host_processor_model_name": model,
        "host_processors_per_node": str(sockets),
        "host_processor_core_count": str(len(t.cores) // sockets),
        "host_processor_frequency": freq,
        "host_processor_caches": ", ".join(caches),
    }


def memory_facts(root: Path) -> dict:
    m = re.search(r"MemTotal:\s+(\d+)", _read(root / "proc/meminfo"))
    out = {"host_memory_capacity": f"{int(m.group(1)) / 1024 ** 2:.0f} GB" if m else ""}
    out["host_memory_configuration"] = _dimms(root)
    return out


_DDR = {0x12: "DDR", 0x13: "DDR2", 0x18: "DDR3", 0x1A: "DDR4", 0x1E: "LPDDR4", 0x22: "DDR5", 0x23: "LPDDR5"}


def _dimms(root: Path) -> str:
    """'8x 32GB DDR5 4800 MT/s' from the SMBIOS memory device records (type 17), readable by root
    in /sys/firmware/dmi/entries; '' where they cannot be read (a user's JSON then says)."""
    mods = []
    for e in sorted((root / "sys/firmware/dmi/entries").glob("17-*")):
        try:
            raw = (e / "raw").read_bytes()
        except OSError:
            continue
        if len(raw) < 0x17:
            continue
        size = struct.unpack_from("<H", raw, 0x0C)[0]
        if size in (0, 0xFFFF):
            continue  # empty slot, or unknown
        if size == 0x7FFF:  # the size is in the Extended Size field, in MB
            if len(raw) < 0x20:
                continue  # a record too short to hold it: unknown
            mb = struct.unpack_from("<I", raw, 0x1C)[0]
        else:  # bit 15 set: the size is in KB
            mb = (size & 0x7FFF) // 1024 if size & 0x8000 else size
        kind = _DDR.get(raw[0x12], "")
        speed = struct.unpack_from("<H", raw, 0x15)[0] if len(raw) >= 0x17 else 0
        mods.append(f"{mb // 1024}GB {kind} {speed} MT/s".replace("  ", " ").strip())
    if not mods:
        return ""
    groups = {m: mods.count(m) for m in mods}
    return ", ".join(f"{n}x {m}" for m, n in groups.items())


def storage_facts(root: Path) -> dict:
    """The physical disks behind this machine's mounted file systems (/proc/mounts ->
    /sys/block): type (NVMe SSD, SSD, HDD) and total capacity."""
    mounted = set()
    for line in _read(root / "proc/mounts").splitlines():
        dev = line.split()[0] if line.split() else ""
        if dev.startswith("/dev/"):
            mounted.add(Path(dev).name)
    # LVM, LUKS and md devices stand on disks: follow their slaves down to the disks
    todo = [m for m in mounted if (root / "sys/block" / m / "slaves").is_dir()]
    while todo:
        for s in (root / "sys/block" / todo.pop() / "slaves").glob("*"):
            if s.name not in mounted:
                mounted.add(s.name)
                if (root / "sys/block" / s.name / "slaves").is_dir():
                    todo.append(s.name)
    kinds, total = set(), 0
    for blk in sorted((root / "sys/block").glob("*")):
        name = blk.name
        if re.match(r"(loop|ram|zram|dm-|md|sr|fd)", name) or not (blk / "device").exists():
            continue
        parts = {name} | {p.name for p in blk.glob(f"{name}*")}
        if mounted and not parts & mounted:
            continue
        sectors = _read(blk / "size")
        total += int(sectors) * 512 if sectors.isdigit() else 0
        rot = _read(blk / "queue/rotational")
        kinds.add("NVMe SSD" if name.startswith("nvme") else "virtual disk (virtio)" if name.startswith("vd")
                  else "HDD" if rot == "1" else "SSD")
    return {"host_storage_type": ", ".join(sorted(kinds)), "host_storage_capacity": _size(total) if total else ""}


def network_facts(root: Path) -> dict:
    """Physical network cards (/sys/class/net/* with a device behind them) and their speeds."""
    nics = []
    for n in sorted((root / "sys/class/net").glob("*")):
        if not (n / "device").exists():
            continue  # lo, bridges, ifb, veth: not cards
        speed = _read(n / "speed")
        nics.append(f"{n.name}" + (f" {int(speed) // 1000} Gb/s" if speed.lstrip("-").isdigit() and int(speed) >= 1000
                                   else f" {speed} Mb/s" if speed.isdigit() and int(speed) > 0 else ""))
    return {"host_networking": ", ".join(nics) if nics else "",
            "host_network_card_count": str(len(nics)) if nics else ""}


def os_facts(root: Path) -> dict:
    pretty = ""
    for line in _read(root / "etc/os-release").splitlines():
        if line.startswith("PRETTY_NAME="):
            pretty = line.split("=", 1)[1].strip().strip('"')
    return {"operating_system": f"{pretty or platform.system()} (kernel {platform.release()})"}


def software_facts(backends: set[str]) -> dict:
    """framework and other_software_stack from the versions in use."""
    import cv2
    import numpy

    from . import __version__

    stack = [f"Python {platform.python_version()}", f"numpy {numpy.__version__}", f"OpenCV {cv2.__version__}",
             "MLCommons LoadGen 6.0.17 (built from source)"]
    framework = f"visionperf {__version__}"
    for part in sorted(filter(None, (get_backend(b).software() for b in backends))):
        framework += f", {part}"
    return {"framework": framework, "other_software_stack": ", ".join(stack)}


def machine_facts(backends: set[str], sysfs_root: str | Path = "/") -> dict:
    """Every system field this machine and the runs' backends can tell."""
    root = Path(sysfs_root)
    facts = {"number_of_nodes": "1", "host_networking_topology": "N/A (single node)",
             "host_processor_interconnect": ""}
    for part in (processor_facts(root), memory_facts(root), storage_facts(root), network_facts(root),
                 os_facts(root), software_facts(backends)):
        facts.update(part)
    if backends and all(get_backend(b).host_cpu_only for b in backends):
        # Runs on the host's CPU alone (the null and simulated backends are the harness without a
        # device): no accelerator. The checker needs "0" as a string (0 reads as empty).
        facts.update({"accelerators_per_node": "0", "accelerator_model_name": "N/A",
                      "accelerator_memory_capacity": "N/A", "accelerator_memory_configuration": "N/A",
                      "accelerator_host_interconnect": "N/A", "accelerator_interconnect": "N/A",
                      "accelerator_interconnect_topology": "N/A"})
    else:
        from .topology import read_topology

        accs = read_topology(root).accelerators
        if accs:
            facts.update({"accelerators_per_node": str(len(accs)), "accelerator_model_name": accs[0].name})
    return facts


def describe_system(rnd: Round, submitter: str, system: str, system_type: str, user: dict, facts: dict,
                    user_file: str | None = None) -> dict:
    """The system description: the round's every field, from the machine, then the user's JSON.
    Refuses (one message, every field at once) unknown fields and required fields left empty."""
    src = user_file or "--system-json"
    unknown = sorted(set(user) - set(rnd.system_fields))
    if unknown:
        raise UserError(f"{src} has field(s) round {rnd.version} does not know: {', '.join(unknown)} "
                        f"(its fields: {', '.join(rnd.system_fields)})")
    fixed = {"submitter": submitter, "system_name": system, "division": "closed", "system_type": system_type}
    clash = sorted(k for k in fixed if k in user and str(user[k]) != fixed[k])
    if clash:
        raise UserError(f"{src} sets {', '.join(clash)}, which the submission decides ("
                        + ", ".join(f"{k}={fixed[k]!r}" for k in clash) + "): remove them")
    desc = {k: "" for k in rnd.system_fields}
    desc.update({"status": "available", "system_type_detail": "", "hw_notes": "", "sw_notes": ""})
    desc.update({k: v for k, v in facts.items() if k in desc and v not in ("", None)})
    desc.update(user)
    desc.update(fixed)
    if str(desc["status"]).strip().lower() not in ("available", "preview", "rdi"):
        raise UserError(f"{src}: status {desc['status']!r} is not one of available, preview, rdi")
    empty = [k for k in rnd.system_meaningful if not str(desc.get(k, "")).strip() or desc.get(k) == 0]
    if empty:
        raise UserError(f"the system description needs a value for {len(empty)} field(s) this machine cannot tell: "
                        f"{', '.join(empty)}: put them in a JSON file given with --system-json (e.g. "
                        '{"cooling": "air"})')
    return desc


def load_user_json(path: str | None) -> dict:
    if not path:
        return {}
    try:
        user = jsonfile.load(path, "fix it")
    except OSError as e:
        raise UserError(f"cannot read {path}: {e.strerror}") from None
    if not isinstance(user, dict):
        raise UserError(f"{path} must hold one JSON object of system fields")
    return user

