"""The system under test: the Python face of the compiled engine (engine/src/engine.h).

    LoadGen (C++) --IssueQuery--> engine: work queues (per-driver queues | shared bulk ranges)
      -> drivers, one pinned thread per core group: gather -> device submit/collect
      -> completer: post-processing (argmax | decode+NMS, no GIL) -> one completion per batch

This module only assembles the engine from a run's plan: the sample store (the cache's rows,
one replica per device or NUMA node), the devices (native `null`, `null-gather`, `simulated`
and `plugin:PATH` cards, or Python devices such as ONNX Runtime partitions through a bridge
that takes the GIL once per batch), and the post-processing. Nothing here runs per sample.
LoadGen owns time, the store owns samples, the engine owns compute.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from . import _engine
from .errors import UserError

DTYPE_CODES = dict(_engine.DTYPES)
EngineError = _engine.EngineError


def tensor(dtype, shape) -> tuple[int, list[int]]:
    """(vp_dtype code, dims) of one sample, as the engine's device ABI describes it."""
    name = np.dtype(dtype).name
    if name not in DTYPE_CODES:
        raise UserError(f"the engine cannot carry {name} tensors")
    return DTYPE_CODES[name], [int(d) for d in shape]


@dataclass
class NativeDevice:
    """A device the engine runs itself: `null`, `null-gather`, `simulated` or `plugin:PATH`."""

    kind: str
    name: str
    cpus: tuple[int, ...]
    numa_node: int
    batch_size: int
    max_in_flight: int
    input_shape: tuple[int, ...]
    input_dtype: np.dtype
    options: str = ""
    examples: list = field(default_factory=list)  # per output: [count, *sample] realistic outputs
    peak_rate: float | None = None  # samples/s it can never exceed (a simulated card's rate)

    @property
    def thread_cpus(self) -> tuple[int, ...]:
        return self.cpus


class _Bridge:
    """How the engine calls a Python device: run(view, rows, qsl_idx) once per batch, GIL held
    only around the call; ONNX Runtime releases it while it computes.

    With PACK (post-processing that must stay in Python: the official graphs with NMS
    inside), the responses are made here and handed over as one output of rows of
    [8-byte size | bytes].
    """

    def __init__(self, device, pack=None, max_bytes: int = 0):
        self.device = device
        self.shape = tuple(device.input_shape)
        self.dtype = np.dtype(device.input_dtype)
        self.pack = pack
        self.max_bytes = max_bytes
        self.takes_indices = bool(getattr(device, "takes_indices", False))  # per-sample shapes (rect)

    def run(self, view, rows: int, qsl_idx: list[int]):
        x = np.frombuffer(view, self.dtype).reshape(rows, *self.shape)
        outs = self.device.run(x, qsl_idx) if self.takes_indices else self.device.run(x)
        if self.pack is None:
            return [np.ascontiguousarray(o) for o in outs]
        data, offsets, sizes = self.pack(outs, np.asarray(qsl_idx, np.int64))
        packed = np.zeros((rows, 8 + self.max_bytes), np.uint8)
        raw = data.view(np.uint8).reshape(-1)
        for k in range(min(rows, len(sizes))):
            z = int(sizes[k])
            packed[k, :8] = np.frombuffer(np.uint64(z).tobytes(), np.uint8)
            packed[k, 8 : 8 + z] = raw[int(offsets[k]) : int(offsets[k]) + z]
        return [packed]


class _AsyncBridge:
    """How the engine drives a Python device that runs batches asynchronously (a GPU's
    streams, a remote node): submit(view, rows, qsl_idx) hands the batch over and returns
    (ticket, ready_ns) at once; collect(ticket, timeout_s) returns the outputs of the oldest
    batch, or None while it runs. The GIL is taken for each call, never per sample, and the
    device releases it while it waits (backends.AsyncDevice)."""

    def __init__(self, device):
        self.device = device
        self.shape = tuple(device.input_shape)
        self.dtype = np.dtype(device.input_dtype)
        self.reads_input = bool(getattr(device, "reads_input", True))
        # Device fetch (device.h ABI 2): the device copies each batch's rows from the sample
        # buffer itself, given their addresses; it registers (page-locks) the buffer per load.
        self.fetches_rows = bool(getattr(device, "fetches_rows", False)) and self.reads_input
        self._regions: dict[int, int] = {}  # region -> its base address
        self._tickets: dict[int, object] = {}
        self._next = 0

    def submit(self, view, rows: int, qsl_idx: list[int]):
        x = np.frombuffer(view, self.dtype).reshape(rows, *self.shape) if self.reads_input else None
        return self._keep(self.device.submit(x, qsl_idx))

    def register_region(self, region: int, base: int, nbytes: int, row_bytes: int) -> None:
        self.device.register_region(base, nbytes, row_bytes)
        self._regions[region] = base

    def unregister_region(self, region: int) -> None:
        self.device.unregister_region(self._regions.pop(region))

    def submit_rows(self, region: int, addrs, rows: int):
        return self._keep(self.device.submit_rows(np.frombuffer(addrs, np.uint64, rows).copy()))

    def _keep(self, ticket):
        self._next += 1
        self._tickets[self._next] = ticket
        return self._next, int(getattr(ticket, "ready_ns", 0) or 0)

    def collect(self, key: int, timeout_s: float | None):
        ticket = self._tickets[key]
        try:
            outs = self.device.collect(ticket, timeout_s)
        except BaseException:
            del self._tickets[key]
            raise
        if outs is None:
            return None
        del self._tickets[key]
        return [np.ascontiguousarray(o) for o in outs]


def is_async(device) -> bool:
    """A Python device driven like a card (backends.AsyncDevice)."""
    return not isinstance(device, NativeDevice) and callable(getattr(device, "submit", None)) \
        and callable(getattr(device, "collect", None))


class SystemUnderTest:
    """The engine for one run. POST is a post-processor from postprocess/ (its `engine_spec`
    says what the engine runs; Python post-processing is packed beside Python devices)."""

    def __init__(self, devices: list, cache: np.ndarray, fill_cpus, replica_of_device, post,
                 workload, batch_size: int, post_threads: int = 0):
        self.batch_timeout_s = 0.0
        row_bytes = int(np.prod(cache.shape[1:])) * cache.dtype.itemsize
        flat = cache.reshape(len(cache), -1).view(np.uint8) if len(cache) else np.zeros((0, 1), np.uint8)
        spec = post.engine_spec()
        outputs = [tensor(dt, shape[1:]) for shape, dt in post.output_shapes(batch_size, workload)]
        python_post = spec is None
        if python_post:
            if any(isinstance(d, NativeDevice) for d in devices):
                raise UserError("this model's post-processing runs in Python, beside Python devices only: "
                                "use --backend onnxruntime, or a model cut before NMS")
            spec = ("prepacked", post.max_response_bytes)
        self._engine = _engine.Engine(flat, row_bytes, [list(c) for c in fill_cpus], batch_size, spec)
        native = {id(d): k for k, d in enumerate(d for d in devices if isinstance(d, NativeDevice))}
        for k, d in enumerate(devices):
            replica = replica_of_device[k] if k < len(replica_of_device) else 0
            # a Python device may name the CPUs of its calling thread apart (thread_cpus)
            cpus = getattr(d, "thread_cpus", None)
            common = dict(name=d.name, cpus=list(d.cpus if cpus is None else cpus), numa=_numa(d), replica=replica,
                          batch_size=d.batch_size, input=tensor(d.input_dtype, d.input_shape))
            if isinstance(d, NativeDevice):
                ex = [np.ascontiguousarray(e).view(np.uint8).reshape(-1) for e in d.examples]
                self._engine.add_device(d.kind, in_flight=d.max_in_flight, outputs=outputs, options=d.options,
                                        examples=ex, example_count=len(d.examples[0]) if d.examples else 0,
                                        index=native[id(d)], count=len(native), **common)
            else:
                if python_post:
                    bridge = _Bridge(d, post, post.max_response_bytes)
                    outs = [tensor(np.uint8, (8 + post.max_response_bytes,))]
                elif is_async(d):
                    bridge, outs = _AsyncBridge(d), outputs
                else:
                    bridge, outs = _Bridge(d), outputs
                extra = dict(in_flight=int(getattr(d, "max_in_flight", 1)), reads_input=bridge.reads_input) \
                    if is_async(d) and not python_post else {}
                self._engine.add_python_device(bridge, fixed_batch=bool(d.fixed_batch), outputs=outs, **common, **extra)
        self.post_threads = post_threads
        self._started = False
        self._load_hook = None

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self, batch_timeout_s: float = 0.0, throughput_only: bool = False) -> None:
        self.batch_timeout_s = batch_timeout_s
        watchdog_s = float(os.environ.get("VISIONPERF_WATCHDOG_S", "0") or 0)  # 0: the engine's default floor
        self._engine.configure(batch_timeout_s, throughput_only, self.post_threads, watchdog_s)
        self._engine.start()
        self._started = True

    def stop(self) -> None:
        if self._started:
            self._engine.stop()
            self._started = False

    @property
    def capacity(self) -> int:
        return self._engine.capacity

    @property
    def load_cpu_s(self) -> float:
        return self._engine.load_cpu_s

    def load(self, indices) -> None:
        idx = np.ascontiguousarray(indices, np.int64)
        self._engine.load(idx)
        if self._load_hook is not None:
            self._load_hook(idx)

    def unload(self) -> None:
        self._engine.unload()
        if self._load_hook is not None:
            self._load_hook(None)

    def set_load_hook(self, hook) -> None:
        """HOOK(indices, or None on unload) after every load, LoadGen's and load()'s alike: a
        cluster's head tells its nodes which samples to load (cluster/session.py). From LoadGen's
        callbacks its exception becomes the engine's error(); from load() it is raised."""
        self._load_hook = hook
        self._engine.set_load_hook(hook)

    def serve(self, indices) -> bytes:
        """Run one forwarded batch of cache indices (a cluster node) and wait for every answer:
        rows of [8-byte size | max_response_bytes] in the order given. Releases the GIL."""
        return self._engine.serve(np.ascontiguousarray(indices, np.int64))

    @property
    def max_response_bytes(self) -> int:
        return self._engine.max_response_bytes

    def error(self) -> str:
        return self._engine.error()

    def stats(self) -> list[dict]:
        return self._engine.stats()

    def latency_log_start(self) -> None:
        """Keep per-minute latency histograms of one-sample queries from now (engine/src/latency.h)."""
        self._engine.latency_log_start()

    def live_latency(self, on: bool) -> None:
        """Count one-sample query latencies for live() from now (ON, cleared first) or stop."""
        self._engine.live_latency(bool(on))

    def live(self) -> tuple[list[int], list[int], list[float], list[tuple[float, float, int]]]:
        """(samples, batches, busy seconds) per device since reset_stats, and the latency
        histogram since live_latency(True) as [(lower s, upper s, count)]: relaxed reads of
        counters the engine keeps anyway, no lock (progress/live_test.py samples it during a test)."""
        return self._engine.live()

    def latency_by_minute(self) -> list[dict]:
        """[{minute, samples, p50_ms, p99_ms, max_ms}] from the engine's histograms: each figure is
        the upper edge of its histogram bin (bins are 4.4% wide), so never below the truth."""
        edges = np.array([_engine.Engine.latency_bin_upper_s(b) for b in range(_engine.Engine.latency_bins)])
        out = []
        for minute, counts in self._engine.latency_minutes():
            c = np.cumsum(np.asarray(counts, np.int64))
            n = int(c[-1])

            def q(p):
                return round(float(edges[int(np.searchsorted(c, p * n))]) * 1e3, 4)

            out.append({"minute": int(minute), "samples": n, "p50_ms": q(0.5), "p99_ms": q(0.99),
                        "max_ms": round(float(edges[int(np.nonzero(counts)[0][-1])]) * 1e3, 4)})
        return out

    def reset_stats(self) -> None:
        self._engine.reset_stats()
        self._engine.load_cpu_s = 0.0

    # -- warm-up -----------------------------------------------------------------------------
    # Both release the GIL and run signal handlers every 100 ms, as run_test does: Ctrl-C (or
    # the CLI's SIGTERM/SIGHUP) fails what is queued and raises within about half a second; a
    # device still holding a batch then is left running, `_engine.loadgen_abandoned()` is true
    # and the process must end with os._exit (cli.main does).
    def measure_rate(self, seconds: float = 2.0) -> list[tuple[float, int]]:
        """(seconds since start, samples) of each completion while the engine is kept fed."""
        return [(t * 1e-9, n) for t, n in self._engine.measure_rate(seconds)]

    def measure_latency(self, samples_per_query: int, seconds: float = 0.5) -> float:
        """Seconds per query, one query in flight at a time (SingleStream, MultiStream)."""
        times = self._engine.measure_latency(samples_per_query, seconds)
        return float(np.median(times[1:]))  # the first query pays for warm-up

    # -- driven directly (tests): queries without LoadGen, every response recorded ----------
    def record_responses(self) -> None:
        self._engine.record_responses()

    def issue(self, ids, indices) -> None:
        """One query, as LoadGen would issue it (one sample: Server/SingleStream; many: Offline)."""
        self._engine.issue([int(i) for i in ids], [int(i) for i in indices])

    def wait_responses(self, count: int, timeout_s: float = 10.0) -> list[tuple[int, bytes]]:
        return self._engine.wait_responses(count, timeout_s)

    # -- the test ----------------------------------------------------------------------------
    def run_test(self, user_conf, model: str, scenario: str, mode: str, outdir, audit_config,
                 total: int, performance_count: int) -> None:
        """One LoadGen test through the engine. Ctrl-C fails every queued and later sample
        and raises KeyboardInterrupt within about a second: once the test has ended (Offline),
        or with LoadGen's thread left running (Server, the streams: LoadGen cannot end their
        schedules early), and then `_engine.loadgen_abandoned()` is true and the process must
        end with os._exit (cli.main does)."""
        c = _engine.TestConfig()
        c.user_conf, c.model, c.scenario, c.mode = str(user_conf), model, scenario, mode
        c.outdir, c.audit_config = str(outdir), str(audit_config)
        c.total, c.performance_count = int(total), int(performance_count)
        self._engine.run_test(c)


def _numa(d) -> int:
    n = getattr(d, "numa_node", None)
    return -1 if n is None else int(n)
