"""NVIDIA GPUs through TensorRT: one asynchronous device per GPU, driven like a card.

    engine driver thread (pinned to the GPU's local cores, placement.card_plan)
      submit: gather -> host-to-device copy (DMA from the page-locked staging buffer) on the
              batch's own stream -> enqueue the engine on that stream's execution context ->
              device-to-host copies into page-locked outputs -> an event; returns at once
      collect: the oldest batch's event -> its outputs (host NMS / argmax follow in the engine)

Each of `--in-flight` slots has its own CUDA stream, execution context and buffers, so copies
of one batch overlap the compute of the others, as NVIDIA's own harness does. Engines are
built from the graph models/tensorrt_graph.py makes (int8 from an explicit Q/DQ graph, fp16
from the float32 model), and cached on disk keyed by everything that makes them differ.

The CUDA calls go through backends/cuda.py's `Cuda` and the engine through `TrtEngine`; tests
drive this file with fakes of those two surfaces that run the same graphs on ONNX Runtime.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..atomic import write_bytes, write_text
from ..errors import UserError
from ..locks import DirLock

GRAPH_VERSION = "1"  # bump when models/tensorrt_graph.py changes what it builds
SWEEP_SIZES = (32, 64, 128, 256, 512, 1024)


def require_tensorrt():
    try:
        import tensorrt as trt
    except ImportError:
        raise UserError("--backend tensorrt needs tensorrt and cuda-python: pip install 'visionperf[tensorrt]' "
                        "(or make install EXTRAS=tensorrt)") from None
    return trt


def cache_dir() -> Path:
    """Where built engines and batch sweeps are kept ($VISIONPERF_TENSORRT_CACHE)."""
    env = os.environ.get("VISIONPERF_TENSORRT_CACHE")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "visionperf" / "tensorrt"


# -- options --------------------------------------------------------------------------------
@dataclass(frozen=True)
class TrtOptions:
    precision: str = "int8"  # "int8" (Q/DQ graph) | "fp16" (float32 model)
    sweep: bool = False  # Offline: find the best batch size on this GPU (remembered) instead of --batch-size
    workspace_mb: int = 0  # builder workspace limit (0: TensorRT's default)
    sizes: tuple[int, ...] = SWEEP_SIZES  # the batch sizes a sweep tries

    @classmethod
    def parse(cls, text: str, default_precision: str, default_sweep: bool = False) -> TrtOptions:
        """--backend-option "precision=fp16;sweep=1;sizes=64,128,256"."""
        values = {"precision": default_precision}
        for part in filter(None, (p.strip() for p in text.split(";"))):
            key, eq, value = part.partition("=")
            if not eq or key not in ("precision", "sweep", "workspace_mb", "sizes"):
                raise UserError(f"--backend-option {part!r}: tensorrt takes precision=int8|fp16, sweep=0|1, "
                                "sizes=N,N,... (the sweep's batch sizes), workspace_mb=N (separated by ';')")
            values[key] = value
        precision = values["precision"]
        if precision not in ("int8", "fp16"):
            raise UserError(f"--backend-option precision={precision}: choose int8 or fp16")
        try:
            sizes = tuple(sorted({int(v) for v in values["sizes"].split(",")})) if "sizes" in values else SWEEP_SIZES
            if not sizes or sizes[0] < 1:
                raise ValueError
        except ValueError:
            raise UserError(f"--backend-option sizes={values['sizes']}: give batch sizes of 1 or more, "
                            "separated by commas") from None
        try:
            sweep = values.get("sweep", "1" if default_sweep else "0") in ("1", "true", "yes")
            return cls(precision, sweep, int(values.get("workspace_mb", 0)), sizes)
        except ValueError:
            raise UserError(f"--backend-option workspace_mb={values['workspace_mb']}: give a whole number") from None


# -- engine cache ---------------------------------------------------------------------------
def model_digest(path: Path) -> str:
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def engine_key(model_digest: str, precision: str, batch: tuple[int, int, int], gpu: str, trt_version: str,
               profiles: int = 1) -> str:
    """One engine per model content, precision, batch profile (min, opt, max) and how many
    copies of it, GPU model (with its compute capability) and TensorRT version: an engine is
    only valid for exactly these."""
    text = json.dumps({"model": model_digest, "precision": precision, "batch": list(batch), "gpu": gpu,
                       "tensorrt": trt_version, "graph": GRAPH_VERSION, "profiles": profiles}, sort_keys=True)
    return hashlib.blake2b(text.encode(), digest_size=12).hexdigest()


def build_plan(trt, graph_bytes: bytes, input_name: str, row_shape: tuple[int, ...], batch: int,
               workspace_mb: int, source: Path, profiles: int = 1) -> bytes:
    """A serialised engine for batches 1..BATCH, tuned for BATCH, with PROFILES copies of that
    optimisation profile: TensorRT lets execution contexts run concurrently on a dynamic-shape
    engine only if each has a profile of its own (one per batch in flight)."""
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    # TensorRT 10 needs STRONGLY_TYPED to take the graph's types as they are; 11 always does.
    strongly = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    network = builder.create_network(0 if strongly is None else 1 << int(strongly))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(graph_bytes):
        first = str(parser.get_error(0)).splitlines()[0] if parser.num_errors else "no reason given"
        raise UserError(f"TensorRT cannot parse the graph made from {source}: {first}")
    config = builder.create_builder_config()
    if workspace_mb:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
    for _ in range(profiles):
        profile = builder.create_optimization_profile()
        profile.set_shape(input_name, (1, *row_shape), (batch, *row_shape), (batch, *row_shape))
        config.add_optimization_profile(profile)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise UserError(f"TensorRT could not build an engine from {source} (batch {batch}): see its messages above")
    return bytes(plan)


class EngineCache:
    """Built engines on disk: <key>.plan (written whole, then renamed) and <key>.json."""

    def __init__(self, root: Path | None = None):
        self.root = Path(root) if root else cache_dir()

    def path(self, key: str) -> Path:
        return self.root / f"{key}.plan"

    def get_or_build(self, key: str, describe: dict, build, log=print) -> bytes:
        p = self.path(key)
        if p.is_file():
            return p.read_bytes()
        self.root.mkdir(parents=True, exist_ok=True)
        busy = "{dir}: another visionperf (pid {pid}: {cmd}) is building this TensorRT engine: wait for it"
        with DirLock(self.root / f".{key}.building", busy).acquire(wait=3600.0):
            if p.is_file():  # another process built it while this one waited
                return p.read_bytes()
            log(f"building a TensorRT engine ({describe.get('precision')}, batch {describe.get('batch')}, "
                f"{describe.get('profiles', 1)} profile(s)): minutes the first time, cached after")
            t = time.time()
            plan = build()
            write_bytes(p, plan)
            write_text(self.root / f"{key}.json", json.dumps({**describe, "build_s": round(time.time() - t, 1)},
                                                             indent=2) + "\n")
        return plan

    # A batch sweep's answer, per engine family (model, precision, GPU, TensorRT).
    def remembered_batch(self, family: str) -> int | None:
        try:
            return int(json.loads((self.root / "sweeps.json").read_text())[family]["best"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def remember_batch(self, family: str, best: int, rates: dict[int, float]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.root / "sweeps.json"
        with DirLock(self.root / ".sweeps.writing").acquire(wait=60.0):
            try:
                table = json.loads(path.read_text())
            except (OSError, ValueError):
                table = {}
            table[family] = {"best": best, "samples_per_s": {str(b): round(r, 1) for b, r in rates.items()}}
            write_text(path, json.dumps(table, indent=2, sort_keys=True) + "\n")


# -- the engine on one GPU ------------------------------------------------------------------
@dataclass(frozen=True)
class Binding:
    name: str
    is_input: bool
    dtype: np.dtype
    sample_shape: tuple[int, ...]  # without the batch dimension

    @property
    def row_bytes(self) -> int:
        return int(np.prod(self.sample_shape, dtype=np.int64)) * self.dtype.itemsize


class TrtEngine:
    """A deserialised engine on the current GPU: its I/O tensors and execution contexts."""

    def __init__(self, trt, plan: bytes):
        self._runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = self._runtime.deserialize_cuda_engine(plan)
        if self.engine is None:
            raise UserError("TensorRT could not load a cached engine: delete "
                            f"{cache_dir()} (or $VISIONPERF_TENSORRT_CACHE) and run again to rebuild it")
        self.bindings = []
        for i in range(self.engine.num_io_tensors):
            name = self.engine.get_tensor_name(i)
            shape = tuple(self.engine.get_tensor_shape(name))
            self.bindings.append(Binding(name, self.engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT,
                                         np.dtype(trt.nptype(self.engine.get_tensor_dtype(name))), shape[1:]))

    @property
    def profiles(self) -> int:
        return self.engine.num_optimization_profiles

    def context(self):
        return self.engine.create_execution_context()


class _Slot:
    """One batch in flight: a stream, an execution context on its own optimisation profile,
    and the buffers it owns."""

    def __init__(self, cuda, engine, profile: int, batch: int, inp: Binding, outs: list[Binding]):
        self.stream = cuda.stream()
        self.handle = cuda.handle(self.stream)
        self.ctx = engine.context()
        if profile and not self.ctx.set_optimization_profile_async(profile, self.handle):
            raise UserError(f"TensorRT would not give an execution context optimisation profile {profile}: "
                            "delete the TensorRT cache and run again")
        self.done = cuda.event()
        self.copied = cuda.event()
        self.d_in = cuda.malloc(batch * inp.row_bytes)
        self.d_out = [cuda.malloc(batch * o.row_bytes) for o in outs]
        self.h_out = [cuda.host_alloc(batch * o.row_bytes) for o in outs]
        self.h_in = None  # own page-locked input, only if the engine's staging cannot be locked
        self.ctx.set_tensor_address(inp.name, self.d_in)
        for o, ptr in zip(outs, self.d_out):
            self.ctx.set_tensor_address(o.name, ptr)


class Ticket:
    __slots__ = ("looks", "ready_ns", "rows", "slot", "submitted_ns")

    def __init__(self, slot, rows, ready_ns, submitted_ns):
        self.slot, self.rows, self.ready_ns, self.submitted_ns = slot, rows, ready_ns, submitted_ns
        self.looks = 0


class TrtDevice:
    """One GPU as an AsyncDevice (backends.AsyncDevice)."""

    reads_input = True
    fixed_batch = False

    def __init__(self, name: str, partition, cuda, gpu_index: int, engine, input_shape, input_dtype,
                 batch_size: int, in_flight: int, outputs: list[str], output_dtypes=()):
        self.name, self.partition = name, partition
        self.cpus = tuple(partition.cpus)
        self.numa_node = partition.numa_node
        self.pci = partition.pci or cuda.pci_of(gpu_index)  # NVML finds the board by it
        self.input_shape, self.input_dtype = tuple(input_shape), np.dtype(input_dtype)
        self.batch_size, self.max_in_flight = int(batch_size), int(in_flight)
        self.cuda, self.gpu, self.engine = cuda, gpu_index, engine
        ins = [b for b in engine.bindings if b.is_input]
        if len(ins) != 1:
            raise UserError(f"{name}: the engine has {len(ins)} inputs, expected 1")
        self.inp = ins[0]
        if self.inp.row_bytes != int(np.prod(self.input_shape)) * self.input_dtype.itemsize:
            raise UserError(f"{name}: the engine's input {self.inp.name} holds {self.inp.row_bytes} bytes per sample, "
                            f"the cache rows {int(np.prod(self.input_shape)) * self.input_dtype.itemsize}: "
                            "rebuild the engine (delete the TensorRT cache)")
        self.outs = [b for b in engine.bindings if not b.is_input]  # TensorRT needs every output bound
        by_name = {b.name: k for k, b in enumerate(self.outs)}
        missing = [n for n in outputs if n not in by_name]
        if missing:
            raise UserError(f"{name}: the engine has no output {missing[0]}: rebuild it from this model")
        self.returned = [by_name[n] for n in outputs]  # what the post-processing reads, in its order
        # The element types the post-processing reads. An engine may answer an index output
        # (ArgMax) in int32 where the model said int64: such small outputs are widened on the
        # host; anything else that differs is refused here, not mid-run.
        self.casts: list[np.dtype | None] = [None] * len(outputs)
        for k, want in enumerate(list(output_dtypes)[: len(outputs)]):
            got = self.outs[self.returned[k]]
            if got.dtype == want:
                continue
            if got.dtype.kind in "iu" and np.dtype(want).kind in "iu" and got.row_bytes <= 64:
                self.casts[k] = np.dtype(want)
            else:
                raise UserError(f"{name}: the engine's output {got.name} is {got.dtype}, the post-processing reads "
                                f"{np.dtype(want)}: rebuild the engine from this model")
        if engine.profiles < self.max_in_flight:
            raise UserError(f"{name}: the engine has {engine.profiles} optimisation profile(s) for {self.max_in_flight} "
                            "batches in flight: rebuild it (delete the TensorRT cache)")
        cuda.set_device(gpu_index)
        self.slots = [_Slot(cuda, engine, k, self.batch_size, self.inp, self.outs) for k in range(self.max_in_flight)]
        self._next = 0
        self._staging: dict[int, bool] = {}  # engine staging address -> page-locked in place
        self._interval_ns = 0  # batch-to-batch time on this GPU (moving average)
        self._last_ready = 0
        self._last_done = 0
        self._lock = threading.Lock()  # submit and collect may come from different driver threads
        self.reset_stats()

    def reset_stats(self) -> None:
        self.batches = 0
        self.samples = 0

    def _source(self, batch: np.ndarray, slot: _Slot) -> tuple[int, bool]:
        """Where the copy to the GPU reads: the engine's staging buffer, page-locked in place
        (it is one fixed buffer of batch_size rows per device, so it is locked once, whole), or,
        where the system refuses, this slot's own page-locked buffer after a host copy."""
        ptr = batch.ctypes.data
        locked = self._staging.get(ptr)
        if locked is None:
            locked = self._staging[ptr] = self.cuda.register(ptr, self.batch_size * self.inp.row_bytes)
        if locked:
            return ptr, True
        if slot.h_in is None:
            slot.h_in = self.cuda.host_alloc(self.batch_size * self.inp.row_bytes)
        flat = batch.reshape(-1).view(np.uint8)
        np.copyto(slot.h_in[: flat.size], flat)
        return slot.h_in.ctypes.data, False

    def submit(self, batch: np.ndarray, indices) -> Ticket:
        with self._lock:
            rows = len(batch)
            if rows > self.batch_size:
                raise ValueError(f"{rows} rows for an engine of batch {self.batch_size}")
            slot = self.slots[self._next % len(self.slots)]
            self._next += 1
            self.cuda.set_device(self.gpu)
            src, in_place = self._source(batch, slot)
            nbytes = rows * self.inp.row_bytes
            self.cuda.h2d(slot.d_in, src, nbytes, slot.stream)
            self.cuda.record(slot.copied, slot.stream)
            slot.ctx.set_input_shape(self.inp.name, (rows, *self.inp.sample_shape))
            if not slot.ctx.execute_async_v3(slot.handle):
                raise RuntimeError("TensorRT could not enqueue the batch (execute_async_v3 failed)")
            for o, d, h in zip(self.outs, slot.d_out, slot.h_out):
                self.cuda.d2h(h, d, rows * o.row_bytes, slot.stream)
            self.cuda.record(slot.done, slot.stream)
            if in_place:  # the staging buffer is the engine's again once this returns
                self.cuda.wait(slot.copied)
            now = time.monotonic_ns()
            ready = max(now, self._last_ready) + self._interval_ns if self._interval_ns else 0
            self._last_ready = ready
            return Ticket(slot, rows, ready, now)

    # When to look for a batch (ready_ns) is an estimate of the GPU's batch-to-batch time. The
    # engine does not look before it, so a batch found done at the first look may have been done
    # a while: the estimate then shrinks by 1/8; a batch still running at the first look is
    # polled until done, which measures the true time. The estimate so settles just under the
    # truth, with a look or two per batch, never drifting late (each look takes the GIL).
    def _learn(self, ticket: Ticket, now: int) -> None:
        if ticket.looks == 1 and self._interval_ns:
            self._interval_ns -= self._interval_ns // 8
        else:
            took = now - max(ticket.submitted_ns, self._last_done)
            self._interval_ns = took if not self._interval_ns else self._interval_ns + (took - self._interval_ns) // 8
        self._last_done = now
        self._last_ready = min(self._last_ready, now)

    def collect(self, ticket: Ticket, timeout_s: float | None):
        slot = ticket.slot
        ticket.looks += 1
        if timeout_s is None:
            self.cuda.wait(slot.done)
        elif not self.cuda.done(slot.done):
            if timeout_s <= 0:
                return None
            end = time.monotonic() + timeout_s
            while not self.cuda.done(slot.done):
                if time.monotonic() >= end:
                    return None
                time.sleep(min(1e-4, timeout_s))
        with self._lock:
            self._learn(ticket, time.monotonic_ns())
            self.batches += 1
            self.samples += ticket.rows
        outs = []
        for k, cast in zip(self.returned, self.casts):
            o = self.outs[k]
            v = slot.h_out[k][: ticket.rows * o.row_bytes].view(o.dtype).reshape(ticket.rows, *o.sample_shape)
            outs.append(v if cast is None else v.astype(cast))
        return outs

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        """One batch start to end (the official graphs whose post-processing stays in Python)."""
        return [np.array(o) for o in self.collect(self.submit(batch, []), None)]

    def raw_rate(self, batch: int, seconds: float = 2.0) -> float:
        """Samples/s of the engine alone, as trtexec measures it: inputs already on the GPU, no
        copies, every slot's stream enqueued back to back. The harness's own loss is measured
        against this figure on the same engine."""
        batch = min(batch, self.batch_size)
        self.cuda.set_device(self.gpu)
        for s in self.slots:
            s.ctx.set_input_shape(self.inp.name, (batch, *self.inp.sample_shape))
        done = 0
        t0 = time.perf_counter()
        pending = []
        while True:
            for s in self.slots:
                if not s.ctx.execute_async_v3(s.handle):
                    raise RuntimeError("TensorRT could not enqueue the batch (execute_async_v3 failed)")
                self.cuda.record(s.done, s.stream)
                pending.append(s)
            for s in pending:
                self.cuda.wait(s.done)
                done += batch
            pending.clear()
            elapsed = time.perf_counter() - t0
            if elapsed >= seconds:
                return done / elapsed

    def close(self) -> None:
        for s in self.slots:
            for ptr in (s.d_in, *s.d_out):
                self.cuda.free(ptr)
        self.slots = []


def sweep_batch(make_device, sizes, seconds: float = 1.0, log=print) -> tuple[int, dict[int, float]]:
    """The batch size with the highest raw engine rate (the smallest one within 2% of the best:
    a larger batch only adds latency and memory). MAKE_DEVICE(max size) opens one device, on
    one engine whose profile takes every size, so the sweep costs one engine build."""
    rates: dict[int, float] = {}
    dev = make_device(max(sizes))
    try:
        for b in sizes:
            dev.raw_rate(b, seconds / 4)  # warm-up: first launches at a new shape are slow
            rates[b] = dev.raw_rate(b, seconds)
            log(f"  batch {b:>5}: {rates[b]:,.0f} samples/s (engine alone)")
    finally:
        dev.close()
    best = max(rates.values())
    return min(b for b, r in rates.items() if r >= 0.98 * best), rates


# -- making the devices ---------------------------------------------------------------------
def fp16_outputs(workload, model) -> tuple[str, ...]:
    """The outputs an engine answers in float16: a detection head's scores (cut before NMS)."""
    if workload.task != "detection" or model.kind != "raw":
        return ()
    from ..workloads import DETECTION

    return (DETECTION[workload.name].raw_outputs[1],)


def score_format(workload, model):
    """The scores' format the host NMS reads from a GPU (None: float32, or no NMS on the host)."""
    from ..postprocess.nms import ScoreFormat

    return ScoreFormat("float16") if fp16_outputs(workload, model) else None


class TensorRT:
    """What --backend tensorrt needs once per run: the CUDA runtime, TensorRT, the graph."""

    def __init__(self, model, workload, options: TrtOptions, cuda=None, trt=None, engine_cache=None, log=print):
        from ..models.tensorrt_graph import tensorrt_graph

        self.trt = trt or require_tensorrt()
        if cuda is None:
            from .cuda import Cuda

            cuda = Cuda()
        self.cuda, self.model, self.workload, self.options, self.log = cuda, model, workload, options, log
        self.cache = engine_cache or EngineCache()
        self.graph = tensorrt_graph(model, options.precision, fp16_outputs=fp16_outputs(workload, model))
        self.graph_bytes = self.graph.SerializeToString()
        self.digest = model_digest(model.path)
        self.row_shape = tuple(workload.row_shape(workload.layout))

    @classmethod
    def preflight(cls) -> None:
        """Before a run builds anything: TensorRT and CUDA Python are there, and a GPU."""
        require_tensorrt()
        from .cuda import Cuda

        Cuda()

    def family(self, gpu: str) -> str:
        return engine_key(self.digest, self.options.precision, (0, 0, 0), gpu, self.trt.__version__)

    def engine(self, gpu_index: int, batch: int, profiles: int = 1):
        self.cuda.set_device(gpu_index)
        gpu = self.cuda.device_name(gpu_index)
        key = engine_key(self.digest, self.options.precision, (1, batch, batch), gpu, self.trt.__version__, profiles)
        describe = {"model": str(self.model.path), "model_blake2b": self.digest, "precision": self.options.precision,
                    "batch": [1, batch, batch], "profiles": profiles, "gpu": gpu, "tensorrt": self.trt.__version__}
        plan = self.cache.get_or_build(key, describe, lambda: self._build(batch, profiles), log=self.log)
        return self._load(plan)

    def _build(self, batch: int, profiles: int = 1) -> bytes:
        return build_plan(self.trt, self.graph_bytes, self.model.input_name, self.row_shape, batch,
                          self.options.workspace_mb, self.model.path, profiles)

    def _load(self, plan: bytes):
        return TrtEngine(self.trt, plan)

    def device(self, name: str, part, gpu_index: int, batch: int, in_flight: int, output_dtypes=(),
               engine_batch: int | None = None) -> TrtDevice:
        """A device running batches of up to BATCH on an engine built for ENGINE_BATCH (default:
        BATCH; a swept batch runs on the sweep's engine, so it needs no second build)."""
        return TrtDevice(name, part, self.cuda, gpu_index, self.engine(gpu_index, engine_batch or batch, in_flight),
                         self.row_shape, self.model.input_dtype, batch, in_flight, list(self.model.outputs),
                         output_dtypes)

    def best_batch(self, part, gpu_index: int, in_flight: int, sizes=SWEEP_SIZES, seconds: float = 1.0) -> int:
        family = self.family(self.cuda.device_name(gpu_index)) + "-" + ",".join(map(str, sizes))
        best = self.cache.remembered_batch(family)
        if best is not None:
            self.log(f"batch {best}: the best size on this GPU, found by an earlier sweep")
            return best
        self.log(f"sweeping batch sizes {', '.join(map(str, sizes))} on {self.cuda.device_name(gpu_index)}:")
        best, rates = sweep_batch(lambda b: self.device("sweep", part, gpu_index, b, in_flight), sizes, seconds,
                                  log=self.log)
        self.cache.remember_batch(family, best, rates)
        self.log(f"batch {best} chosen (remembered for this model, precision, GPU and TensorRT)")
        return best


def gpu_index_of(cuda, part, k: int) -> int:
    """CUDA's index of the plan's K-th GPU, found by its PCI address where the plan has one."""
    return cuda.device_by_pci(part.pci) if part.pci else k


def make_tensorrt_devices(model, workload, plan, batch_size: int, in_flight: int, options_text: str,
                          offline: bool, log=print, output_dtypes=(), batch_given: bool = True, factory=None,
                          **factory_args) -> list[TrtDevice]:
    """One device per GPU of the plan. Offline without a --batch-size sweeps for the best one
    (remembered). FACTORY (and its arguments) stand in for TensorRT and CUDA in tests."""
    if model.kind == "nms":
        raise UserError(f"{model.path.name} has NMS inside the graph: --backend tensorrt runs models cut before NMS "
                        "(the host NMS follows), e.g. `visionperf build-model` ones")
    opts = TrtOptions.parse(options_text, "int8" if model.quantization is not None else "fp16",
                            default_sweep=offline and not batch_given)
    rt = (factory or TensorRT)(model, workload, opts, log=log, **factory_args)
    n = rt.cuda.device_count()
    if len(plan) > n:
        raise UserError(f"--devices {len(plan)}, but CUDA sees {n} GPU(s): pass --devices {n} or fewer")
    gpus = [gpu_index_of(rt.cuda, part, k) for k, part in enumerate(plan)]
    engine_batch = None
    if opts.sweep and offline:
        batch_size, engine_batch = rt.best_batch(plan[0], gpus[0], in_flight, opts.sizes), max(opts.sizes)
    return [rt.device(f"gpu{k}", part, gpus[k], batch_size, in_flight, output_dtypes, engine_batch)
            for k, part in enumerate(plan)]
