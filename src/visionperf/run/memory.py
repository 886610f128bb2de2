"""The memory a run needs, estimated before anything is allocated, and the refusal of a run that
needs more than this machine has available.

What a run holds is known from its options: the sample buffers (one replica per device, NUMA
node or one in all, each of the samples loaded at once), and per device the engine's staging
batch and its output batches (in flight, plus the engine's spare ones in post-processing), a
simulated card's own copy of the batches it holds and the output examples it returns, and
LoadGen's own record of every sample it issues. `--devices 1000` with a replica per device, or
`--batch-size 65536`, would otherwise allocate until the kernel's OOM killer ends the run (and
other processes with it).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import UserError
from .config import RunSpec
from .length import LengthSettings, issued

WARMUP_BATCHES = 4  # batches per device the warm-up loads (run.warmup) and this estimate counts

# LoadGen 6.0.17's own records, measured (the peak RSS of null-device runs of millions of queries,
# less a run of a few): about 90 B a sample issued, and per query (one-sample queries in
# SingleStream and Server, eight samples in MultiStream, one query in all in Offline) the rest.
LOADGEN_SAMPLE_BYTES = 96
LOADGEN_QUERY_BYTES = {"Offline": 0, "Server": 256, "MultiStream": 640, "SingleStream": 896}
LOADGEN_SHARE = 0.5  # of the memory available, what a target the run sets itself may have LoadGen hold
ENGINE_SPARE_BATCHES = 4  # output batches per device beyond those in flight (engine.cc, kSpareBatches)

# Parts already allocated once the devices and the engine are built (the sample buffers are
# loaded again for the test, and LoadGen's records are made during it).
BUILT = frozenset({"staging", "outputs", "card copies", "output examples"})


@dataclass(frozen=True)
class Part:
    bytes: int
    what: str  # how it is made up, e.g. "1000 replicas x 1,024 samples x 588 KiB"
    fix: str  # the option(s) that lower it


@dataclass(frozen=True)
class MemoryEstimate:
    parts: dict[str, Part]

    @property
    def total(self) -> int:
        return sum(p.bytes for p in self.parts.values())

    def without(self, names: frozenset[str]) -> MemoryEstimate:
        return MemoryEstimate({k: p for k, p in self.parts.items() if k not in names})


def mem_available() -> int | None:
    """Bytes this process can still have: what the kernel says can be had without swapping,
    within the process's address-space limit (ulimit -v) and its cgroup's memory.max (None
    where none of them says)."""
    limits = [n for n in (_meminfo_available(), _address_space_left(), _cgroup_left()) if n is not None]
    return min(limits) if limits else None


def _meminfo_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _address_space_left() -> int | None:
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY:
        return None
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmSize:"):
                return max(0, soft - int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    return soft


def _cgroup_left() -> int | None:
    """cgroup v2: memory.max less memory.current of this process's cgroup."""
    try:
        path = next(line[3:] for line in Path("/proc/self/cgroup").read_text().splitlines() if line.startswith("0::"))
        d = Path("/sys/fs/cgroup") / path.lstrip("/")
        limit = (d / "memory.max").read_text().strip()
        if limit == "max":
            return None
        return max(0, int(limit) - int((d / "memory.current").read_text()))
    except (OSError, ValueError, StopIteration):
        return None


def memory_needed(spec: RunSpec, total: int | None, length: LengthSettings | None) -> MemoryEstimate:
    """What SPEC's run holds at its peak over a dataset of TOTAL samples (None: not known yet),
    with LoadGen's test as LENGTH describes it (None: its size is not known yet)."""
    parts: dict[str, Part] = {}
    counts = issued(length, total) if length is not None else None
    if counts:
        queries, samples = counts
        parts["LoadGen's records"] = Part(loadgen_bytes(length.scenario, queries, samples),
                                          f"{queries:,} quer{'y' if queries == 1 else 'ies'} of {samples:,} "
                                          "samples in all",
                                          "lower --target-qps or --duration")
    if not spec.config.cluster:  # a cluster's nodes hold the samples and devices, each in its own memory
        parts.update(_devices_parts(spec, total))
    return MemoryEstimate(parts)


def _devices_parts(spec: RunSpec, total: int | None) -> dict[str, Part]:
    """The sample buffers and what each device holds, on this server."""
    cfg, w, backend = spec.config, spec.workload, spec.backend
    devices, batch, in_flight = cfg.devices, spec.default_batch_size, cfg.in_flight
    row, out = _sample_bytes(spec)
    replicas = _replicas(spec.replicas_mode, devices)
    rows = max(WARMUP_BATCHES * batch * devices, w.performance_sample_count)
    rows = min(rows, total) if total else rows
    fewer = "lower --devices or pass --replicas one" if replicas > 1 else "lower --batch-size or --devices"
    each = f"{devices:,} device(s) x"
    parts = {
        "sample buffers": Part(replicas * rows * row, f"{replicas:,} replica(s) x {rows:,} samples x {_size(row)}",
                               fewer),
        "staging": Part(devices * batch * row, f"{each} a batch of {batch:,} x {_size(row)}",
                        "lower --batch-size or --devices"),
        "outputs": Part(devices * (in_flight + ENGINE_SPARE_BATCHES) * batch * out,
                        f"{each} {in_flight + ENGINE_SPARE_BATCHES} batches of {batch:,} x {_size(out)} of outputs",
                        "lower --batch-size, --in-flight or --devices"),
    }
    copies = backend.card_memory_bytes(in_flight, batch, row)  # cards that copy their input batches (simulated)
    if copies:
        parts["card copies"] = Part(devices * copies,
                                    f"{devices:,} card(s) x {in_flight} batches of {batch:,} x {_size(row)}",
                                    "lower --batch-size, --in-flight or --devices")
        parts["output examples"] = Part(backend.examples_bytes(w, out), "the cards' output examples",
                                        "lower --devices")
    return parts


def _sample_bytes(spec: RunSpec) -> tuple[int, int]:
    """(one sample's input row, one sample's outputs) in bytes."""
    from ..postprocess import make_postprocess

    w, model, backend = spec.workload, spec.model, spec.backend
    row = int(np.prod(w.row_shape(w.layout))) * np.dtype(model.input_dtype).itemsize
    post = make_postprocess(w, model, skip=spec.config.skip_postprocess, score_format=backend.score_format(w, model))
    out = sum(int(np.prod(shape[1:])) * np.dtype(dtype).itemsize for shape, dtype in post.output_shapes(1, w))
    return row, out


def loadgen_bytes(scenario: str, queries: int, samples: int) -> int:
    """What LoadGen holds for a test of QUERIES queries of SAMPLES samples in all."""
    return queries * LOADGEN_QUERY_BYTES[scenario] + samples * LOADGEN_SAMPLE_BYTES


def loadgen_queries_fitting(scenario: str, samples_per_query: int) -> int | None:
    """The most queries a target the run sets itself may have LoadGen generate (None: no limit known)."""
    available = mem_available()
    if available is None:
        return None
    return int(LOADGEN_SHARE * available / loadgen_bytes(scenario, 1, samples_per_query))


def check_memory(need: MemoryEstimate, available: int | None) -> None:
    """Refuse, in one line, a run that needs more than AVAILABLE bytes (None: not known)."""
    if available is None or need.total <= available:
        return
    name, part = max(need.parts.items(), key=lambda kv: kv[1].bytes)
    raise UserError(f"the run needs about {_gib(need.total)} of memory, more than the {_gib(available)} available "
                    f"(the most, {_gib(part.bytes)}, is {name}: {part.what}): {part.fix}")


def _replicas(mode: str, devices: int) -> int:
    """Sample buffer replicas: one per device, per NUMA node (at most one per device) or one."""
    if mode == "node":
        from ..topology import read_topology

        return min(devices, max(1, len({c.numa_node for c in read_topology().cores})))
    return devices if mode == "device" else 1


def _size(n: int) -> str:
    return f"{n / 2**20:,.1f} MiB" if n >= 2**20 else f"{n / 2**10:,.1f} KiB" if n >= 2**10 else f"{n} B"


def _gib(n: int) -> str:
    return f"{n / 2**30:,.1f} GiB"
