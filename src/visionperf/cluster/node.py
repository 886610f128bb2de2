"""The node side of a cluster run: one NodeServer actor per node, an ordinary single-node engine
behind it (run.build_engine), its end of the stream that carries the forwarded batches
(stream.NodeStream), and `visionperf preprocess` as a Ray task on a node."""

from __future__ import annotations

import dataclasses
import os
import platform
import socket
import threading
import time
from pathlib import Path

import numpy as np

from .. import __version__, _engine, progress
from ..cache import _KEYED, Quantization, locate_cache, open_cache
from ..datasets import open_dataset
from ..preprocess import preprocess_to
from ..run import RunConfig, build_engine
from ..workloads import get_workload
from .stream import PORTS_ENV, NodeStream, port_range

MAX_STREAM_WORKERS = 64  # batches a node's stream runs at once, at most (the driver's credits are fewer)


class NodeServer:
    """One per node, pinned there: this node's devices, behind an ordinary single-node engine.

    Ray calls set it up (describe, open_cache, build, open_stream), load LoadGen's samples,
    report (stats) and watch it (watch, held open by the driver: it fails when this actor
    dies); the forwarded batches come on the stream open_stream opens, several at once, each
    run by a worker thread that waits in the engine with the GIL released. A threaded actor:
    the small calls are answered beside one another. `run` (one batch as an actor call) is the
    old path, kept for the benchmark's comparison."""

    def __init__(self, name: str):
        self.name = name
        self._sut = None
        self._devices: list = []
        self._cache = None
        self._load_error: str | None = None
        self._loaded = False
        self._t0 = time.perf_counter()
        self._cpu0 = _process_cpu_s()
        self._serve_s = 0.0
        self._served = 0  # forwarded batches served since reset_stats
        self._streamed0 = 0  # the stream's count of batches at reset_stats
        self._first = self._last = 0.0
        self._lock = threading.Lock()  # loads and unloads, one at a time
        self._stats_lock = threading.Lock()
        self._seq = 0
        self._stream: NodeStream | None = None

    def describe(self) -> dict:
        """Who this node is, and what it runs: the head refuses nodes that differ from it."""
        import ray

        return {"pid": os.getpid(), "hostname": socket.gethostname(), "visionperf": __version__,
                "python": platform.python_version(), "ray": ray.__version__,
                "engine_abi": int(_engine.DEVICE_ABI_VERSION), "machine": platform.machine(),
                "cpus": len(os.sched_getaffinity(0))}

    def ping(self) -> int:
        return time.monotonic_ns()

    def open_cache(self, cache_arg: str | None, wanted: dict) -> dict:
        """Find this node's cache for WANTED (cache.locate_cache, as a single-node run looks)."""
        path = locate_cache(cache_arg, wanted)
        if not (path / "manifest.json").exists():
            raise MissingCache(str(path))
        self._cache = open_cache(path, wanted)  # a cache built from other sources or settings: refused
        m = self._cache.manifest
        return {"path": str(path), "rows": len(self._cache.data), "manifest": m,
                "identity": cache_identity(m)}

    def build(self, cfg: RunConfig) -> dict:
        """This node's plan, devices and engine (run.build_engine, as on one server)."""
        if self._cache is None:
            raise RuntimeError("open_cache comes first")
        spec = cfg.checked_options()
        spec.backend.check_device_count(cfg.devices, where="this node")  # a node plans on its own cores
        lines: list[str] = []
        notes: list[str] = []
        built = build_engine(spec, self._cache, notes, lines.append)
        self._sut, self._devices = built.sut, built.devices
        self._sut.start(0.0, throughput_only=spec.scenario == "Offline")
        return {"plan": [dataclasses.asdict(p) for p in built.plan], "log": lines, "notes": notes,
                "devices": [{"name": d.name, "batch_size": int(d.batch_size),
                             "max_in_flight": int(getattr(d, "max_in_flight", 1)),
                             "peak_rate": getattr(d, "peak_rate", None)} for d in built.devices],
                "max_response_bytes": int(self._sut.max_response_bytes)}

    def load(self, indices, seq: int) -> None:
        """LoadGen's sample set (indices into the cache), into this node's buffer replicas. SEQ
        orders loads and unloads (calls to a threaded actor may arrive out of order): an unload
        older than the last load is ignored."""
        with self._lock:
            if seq < self._seq:
                return
            self._seq = seq
            try:
                self._sut.load(indices)
                self._load_error, self._loaded = None, True
            except BaseException as e:
                self._load_error, self._loaded = f"loading {len(indices)} samples failed: {e}", False
                raise

    def unload(self, seq: int) -> None:
        with self._lock:
            if seq < self._seq:
                return
            self._seq, self._loaded = seq, False
            self._sut.unload()

    def open_stream(self, ports: str | None = None) -> list[str]:
        """This node's end of the batches' stream, bound on the address Ray knows for this node
        (reachable from the driver, unlike localhost) at ports from VISIONPERF_STREAM_PORTS here,
        else PORTS (the driver's setting), else the default range: [batches in, answers out]."""
        import ray

        if self._sut is None:
            raise RuntimeError("build comes first")
        self.close_stream()
        lo_hi = port_range() if os.environ.get(PORTS_ENV, "").strip() else port_range(ports or "")
        self._stream = NodeStream(self.run, ray.util.get_node_ip_address(), lo_hi, MAX_STREAM_WORKERS, self.name)
        return self._stream.addresses

    def watch(self) -> None:
        """Held open by the driver for the whole run: returns when this node closes its stream,
        and fails (in Ray's words) when this actor dies, so the driver learns of a death at once."""
        stream = self._stream
        if stream is not None:
            stream.closed.wait()

    def close_stream(self) -> None:
        if self._stream is not None:
            self._stream.close()

    def run(self, indices) -> bytes:
        """One forwarded batch (its cache indices, int64 bytes): its responses, rows of
        [8-byte size | response bytes] in order."""
        if not self._loaded:
            raise RuntimeError(self._load_error or "a batch came before its samples were loaded")
        t0 = time.perf_counter()
        rows = self._sut.serve(np.frombuffer(indices, np.int64))
        t1 = time.perf_counter()
        with self._stats_lock:  # batches end on several threads at once
            self._serve_s += t1 - t0
            self._served += 1
            self._first = self._first or t0
            self._last = max(self._last, t1)
        return rows

    def reset_stats(self) -> None:
        """Counters from now (the head's warm-up is over, LoadGen's test is next)."""
        self._sut.reset_stats()
        for d in self._devices:
            if hasattr(d, "reset_stats"):
                d.reset_stats()
        self._t0, self._cpu0, self._serve_s, self._served = time.perf_counter(), _process_cpu_s(), 0.0, 0
        self._streamed0 = self._stream.batches if self._stream else 0
        self._first = self._last = 0.0  # the first batch's start, the last one's end

    def stats(self) -> dict:
        """Since reset_stats: this node's devices, its process's CPU time and wall time."""
        return {"devices": self._sut.stats() if self._sut else [], "cpu_s": _process_cpu_s() - self._cpu0,
                "wall_s": time.perf_counter() - self._t0, "serve_s": self._serve_s, "served": self._served,
                "streamed": (self._stream.batches - self._streamed0) if self._stream else 0,
                "serving_s": max(0.0, self._last - self._first),
                "sample_load_cpu_s": self._sut.load_cpu_s if self._sut else 0.0,
                "error": self._sut.error() if self._sut else ""}

    def close(self) -> None:
        self.close_stream()
        if self._sut is not None:
            self._sut.stop()
        for d in self._devices:
            if hasattr(d, "close"):
                d.close()


class MissingCache(Exception):
    """A node has no cache where it looked (the path is the message)."""


def _process_cpu_s() -> float:
    return time.process_time()  # user + system, to the ns (os.times counts 10 ms ticks)


def cache_identity(manifest: dict) -> dict:
    """What must be equal on every node: the fields that name a cache (sources, settings), the
    images left out, and the fingerprint of the bytes themselves."""
    out = {k: manifest.get(k) for k in _KEYED}
    out["skipped"] = [int(b[0]) for b in manifest.get("skipped", [])]
    out["data_fingerprint"] = manifest.get("data_fingerprint")
    return out


def preprocess_on_node(workload: str, dataset: str, count: int | None, out: str, dtype: str, layout: str,
                       quantization: dict | None, workers: int | None, chunk: int | None,
                       skip_bad: bool) -> dict:
    """`visionperf preprocess`, run as a Ray task on one node: its cache, from its dataset.
    Nodes that share storage wait for one another's build (the cache's lock) and then find it."""
    progress.set_quiet(True)  # no progress bar in a node's log
    w = get_workload(workload)
    lines: list[str] = []
    q = Quantization(**quantization) if quantization else None
    cache = preprocess_to(Path(out), w, open_dataset(w, dataset, count), dtype, layout, q, log=lines.append,
                          workers=workers, chunk=chunk, skip_bad=skip_bad, lock_wait=24 * 3600.0)
    return {"log": lines, "identity": cache_identity(cache.manifest), "path": str(cache.path),
            "hostname": socket.gethostname()}
