"""OpenVINO on a partition of the CPU cores: one compiled model per device, run asynchronously.

    engine driver thread (pinned to the partition)
      submit: the batch's rows copied into a free infer request's own input buffer -> start_async;
              returns at once, the request's streams compute without the GIL
      collect: the oldest request, done or not yet (wait_for releases the GIL) -> its outputs

Each partition (placement.cpu_partitions, the same as ONNX Runtime's) gets its own compiled model
with INFERENCE_NUM_THREADS = its cores and the THROUGHPUT hint (Offline) or LATENCY (the latency
scenarios); precision f32 unless --backend-option precision=bf16|f16 (OpenVINO's own default on
a CPU with bf16 is bf16). A model alone in the process (--devices 1) is pinned by OpenVINO, one
stream thread per core (ENABLE_CPU_PINNING); beside others it is not, since OpenVINO then pins
every model to the same cores (see OvDevice). The engine keeps OpenVINO's optimal number of
infer requests in flight (OPTIMAL_NUMBER_OF_INFER_REQUESTS; run.json says it), twice that in
Offline.

Inputs are the cache's rows as they are (float32, or the uint8/int8 rows of a Q/DQ model: its
DequantizeLinear reads them); outputs are the ONNX graph's, by name, in the dtypes the
post-processing reads. The batch dimension stays dynamic as in the file (measured: as fast as a
static reshape here), so partial batches run as they are.
"""

from __future__ import annotations

import os
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from ..errors import UserError
from .base import Backend, DeviceRequest

PRECISIONS = {"f32": "f32", "fp32": "f32", "float32": "f32", "bf16": "bf16", "f16": "f16", "fp16": "f16"}


def require_openvino():
    try:
        import openvino
    except ImportError:
        raise UserError("--backend openvino needs OpenVINO: pip install 'visionperf[openvino]' "
                        "(or make install EXTRAS=openvino)") from None
    return openvino


@dataclass(frozen=True)
class OvOptions:
    precision: str = "f32"  # INFERENCE_PRECISION_HINT: f32 (default: the ONNX model's own accuracy), bf16, f16
    streams: int = 0  # NUM_STREAMS per partition (0: what the performance hint picks)
    requests: int = 0  # infer requests in flight per partition (0: OPTIMAL_NUMBER_OF_INFER_REQUESTS, x2 Offline)

    @classmethod
    def parse(cls, text: str) -> OvOptions:
        """--backend-option "precision=bf16;streams=2;requests=4"."""
        values: dict[str, str] = {}
        for part in filter(None, (p.strip() for p in text.split(";"))):
            key, eq, value = part.partition("=")
            if not eq or key not in ("precision", "streams", "requests"):
                raise UserError(f"--backend-option {part!r}: openvino takes precision=f32|bf16|f16, streams=N, "
                                "requests=N (separated by ';')")
            values[key] = value.strip()
        precision = PRECISIONS.get(values.get("precision", "f32").lower())
        if precision is None:
            raise UserError(f"--backend-option precision={values['precision']}: choose f32, bf16 or f16")
        counts = {}
        for key in ("streams", "requests"):
            try:
                counts[key] = int(values.get(key, 0))
                if counts[key] < 0:
                    raise ValueError
            except ValueError:
                raise UserError(f"--backend-option {key}={values[key]}: give a whole number, 1 or more") from None
        return cls(precision, counts["streams"], counts["requests"])


def _anchors(h: int, w: int) -> int:
    """YOLO's anchors for an H x W input: one per cell at strides 8, 16 and 32."""
    return sum((h // s) * (w // s) for s in (8, 16, 32))


@contextmanager
def on_cpus(cpus: tuple[int, ...]):
    """This thread runs on CPUS meanwhile (all it may run on, if CPUS is empty)."""
    before = os.sched_getaffinity(0)
    try:
        if cpus:
            os.sched_setaffinity(0, cpus)
        yield
    finally:
        os.sched_setaffinity(0, before)


def compile_on(core, model, properties: dict, cpus: tuple[int, ...], first_input: np.ndarray | None = None):
    """MODEL compiled for the CPU with this thread's affinity set to CPUS (OpenVINO's own pinning
    picks its cores among them), and FIRST_INPUT run once on every stream, so that the first
    batch of a run does not pay for the streams' start."""
    with on_cpus(cpus):
        compiled = core.compile_model(model, "CPU", properties)
        if first_input is not None:
            import openvino as ov
            import openvino.properties as props

            queue = ov.AsyncInferQueue(compiled, int(compiled.get_property(props.optimal_number_of_infer_requests)))
            for _ in range(len(queue)):
                queue.start_async({0: first_input})
            queue.wait_all()
    return compiled


class _Request:
    """One infer request and the input buffer it reads (batch_size rows, filled per batch)."""

    def __init__(self, compiled, rows: int, row_shape: tuple[int, ...], dtype: np.dtype):
        self.request = compiled.create_infer_request()
        self.buffer = np.empty((rows, *row_shape), dtype)


class Ticket:
    __slots__ = ("looks", "ready_ns", "request", "rows", "shape", "submitted_ns")

    def __init__(self, request: _Request, rows: int, shape, ready_ns: int, submitted_ns: int):
        self.request, self.rows, self.shape = request, rows, shape
        self.ready_ns, self.submitted_ns = ready_ns, submitted_ns
        self.looks = 0


class OvDevice:
    """One CPU partition as an AsyncDevice (backends.AsyncDevice)."""

    reads_input = True

    def __init__(self, name: str, core, model, workload, partition, batch_size: int, latency: bool,
                 options: OvOptions, output_dtypes=(), geometry=None, alone: bool = True):
        import openvino as ov
        import openvino.properties as props
        import openvino.properties.hint as hint

        self.name = name
        self.cpus = tuple(partition.cpus)
        self.numa_node = partition.numa_node
        self.input_shape = tuple(workload.row_shape(workload.layout))
        self.input_dtype = np.dtype(model.input_dtype)
        self.fixed_batch = model.fixed_batch is not None
        self.batch_size = model.fixed_batch or batch_size
        pre = workload.preprocessing
        # rect (YOLO): each row holds its own (3, h, w) image at its start (as for ONNX Runtime)
        self.takes_indices = pre.method == "letterbox" and pre.shape_mode == "rect"
        self._geometry = geometry
        try:
            graph = core.read_model(str(model.path))
        except Exception as e:  # OpenVINO raises RuntimeError subclasses of its own for a bad graph
            raise UserError(f"OpenVINO cannot read {model.path}: {str(e).strip().splitlines()[0]}") from None
        mode = hint.PerformanceMode.LATENCY if latency else hint.PerformanceMode.THROUGHPUT
        # OpenVINO's own pinning puts every compiled model of a process on the same cores
        # (measured: two one-core partitions ran at the speed of one, whatever the affinity of
        # the thread that compiled or first ran them), so it pins only a model alone in the
        # process (one thread per core); beside others, the threads of each model's streams (as
        # many as its partition's cores) run unpinned, the process's scheduler spreading them.
        pinning = ("openvino" if alone else "none") if partition.pinned and self.cpus else "none"
        properties = {hint.performance_mode: mode,
                      props.inference_num_threads: max(1, len(partition.cores)),
                      hint.enable_cpu_pinning: pinning == "openvino",
                      hint.inference_precision: getattr(ov.Type, options.precision)}
        if options.streams:
            properties[props.num_streams] = options.streams
        try:
            first = np.zeros((self.batch_size, *self.input_shape), self.input_dtype)
            self.compiled = compile_on(core, graph, properties, self.cpus if partition.pinned else (), first)
        except Exception as e:
            raise UserError(f"OpenVINO cannot compile {model.path} for the CPU: "
                            f"{str(e).strip().splitlines()[0]}") from None
        names = [set(o.get_names()) for o in self.compiled.outputs]
        self._outputs = []
        for want in model.outputs:
            found = [k for k, n in enumerate(names) if want in n]
            if not found:
                raise UserError(f"{name}: OpenVINO's graph of {model.path.name} has no output {want}")
            self._outputs.append(found[0])
        # ONNX Runtime's dtypes: an output OpenVINO answers in another type (an index in int32
        # where the graph says int64) is cast to what the post-processing reads.
        self._casts: list[np.dtype | None] = []
        for k, idx in enumerate(self._outputs):
            got = self.compiled.outputs[idx].get_element_type().to_dtype()
            want = np.dtype(output_dtypes[k]) if k < len(output_dtypes) else got
            self._casts.append(None if got == want else want)
        self.optimal_requests = int(self.compiled.get_property(props.optimal_number_of_infer_requests))
        # Offline keeps one more request queued behind each of OpenVINO's optimal number, so no
        # stream waits for the engine to collect its batch and submit the next (measured, int8
        # ResNet50 on 2 cores: 2 -> 4 requests 90 -> 106..186 samples/s, and --devices 2's
        # 1 -> 2 each 108..119 -> 166); the latency scenarios keep the optimal number.
        self.max_in_flight = options.requests or self.optimal_requests * (1 if latency else 2)
        self.settings = {"hint": "LATENCY" if latency else "THROUGHPUT",
                         "streams": int(self.compiled.get_property(props.num_streams)),
                         "threads": int(self.compiled.get_property(props.inference_num_threads)),
                         "precision": self.compiled.get_property(hint.inference_precision).to_string(),
                         "pinning": pinning}
        self._requests = [_Request(self.compiled, self.batch_size, self.input_shape, self.input_dtype)
                          for _ in range(self.max_in_flight)]
        self._tensor = ov.Tensor
        self._next = 0
        self._spacing_ns = 0  # time between two completions (moving average): when to look for a batch
        self._last_ready = 0
        self._last_done = 0
        self._lock = threading.Lock()
        self.reset_stats()

    def reset_stats(self) -> None:
        self.batches = 0
        self.samples = 0

    def _input(self, req: _Request, batch: np.ndarray, indices) -> tuple[np.ndarray, tuple | None]:
        """BATCH's rows copied into REQ's buffer (the engine's staging is its own again once submit
        returns), as the model's input: a rect batch's (3, h, w) prefixes at their own shape."""
        rows = len(batch)
        if not self.takes_indices:
            np.copyto(req.buffer[:rows], batch)
            return req.buffer[:rows], None
        h, w = (int(v) for v in self._geometry[indices[0], 2:])
        if any(tuple(self._geometry[i, 2:]) != (h, w) for i in indices[1:]):
            raise ValueError("a rect batch holds images of different shapes")
        x = req.buffer.reshape(len(req.buffer), -1)[:rows, : 3 * h * w].reshape(rows, 3, h, w)
        np.copyto(x, batch.reshape(rows, -1)[:, : 3 * h * w].reshape(rows, 3, h, w))
        return (x if x.flags.c_contiguous else np.ascontiguousarray(x)), (h, w)

    def submit(self, batch: np.ndarray, indices) -> Ticket:
        with self._lock:
            rows = len(batch)
            if rows > self.batch_size:
                raise ValueError(f"{rows} rows for a device of batch {self.batch_size}")
            req = self._requests[self._next % len(self._requests)]
            self._next += 1
            x, shape = self._input(req, batch, indices)
            req.request.set_input_tensor(self._tensor(x, shared_memory=True))
            req.request.start_async()
            now = time.monotonic_ns()
            ready = max(now, self._last_ready) + self._spacing_ns if self._spacing_ns else 0
            self._last_ready = ready
            return Ticket(req, rows, shape, ready, now)

    # When to look (ready_ns) is an estimate of the time between two completions. A batch found
    # done at the first look may have been done a while, so the estimate then shrinks by 1/8; one
    # still running is polled until done, which measures the true time. It so settles just under
    # the truth with a look or two per batch (each look takes the GIL).
    def _learn(self, ticket: Ticket, now: int) -> None:
        if ticket.looks == 1 and self._spacing_ns:
            self._spacing_ns -= self._spacing_ns // 8
        else:
            took = now - max(ticket.submitted_ns, self._last_done)
            self._spacing_ns = took if not self._spacing_ns else self._spacing_ns + (took - self._spacing_ns) // 8
        self._last_done = now
        self._last_ready = min(self._last_ready, now)

    def collect(self, ticket: Ticket, timeout_s: float | None):
        request = ticket.request.request
        ticket.looks += 1
        if timeout_s is None:
            request.wait()
        elif not request.wait_for(max(0, int(timeout_s * 1000))):
            return None
        with self._lock:
            self._learn(ticket, time.monotonic_ns())
            self.batches += 1
            self.samples += ticket.rows
        outs = []
        for idx, cast in zip(self._outputs, self._casts):
            out = request.get_output_tensor(idx).data[: ticket.rows]
            if ticket.shape is not None:
                out = self._pad_rect(out, *ticket.shape)
            outs.append(out if cast is None else out.astype(cast))
        return outs

    def _pad_rect(self, out: np.ndarray, h: int, w: int) -> np.ndarray:
        """A rect batch's head at the start of a row sized for the largest input (the
        post-processing reads its anchors from the same geometry)."""
        n = len(out)
        most = _anchors(self.input_shape[1], self.input_shape[2])
        padded = np.zeros((n, out[0].size // _anchors(h, w) * most), out.dtype)
        padded[:, : out[0].size] = out.reshape(n, -1)
        return padded

    def run(self, batch: np.ndarray, qsl_idx=None) -> list[np.ndarray]:
        """One batch start to end (the official graphs whose post-processing stays in Python)."""
        return [np.array(o) for o in self.collect(self.submit(batch, qsl_idx or []), None)]

    def runtime_record(self) -> dict:
        """run.json's figures of this device's runtime."""
        return {"device": self.name, "optimal_infer_requests": self.optimal_requests,
                "infer_requests": self.max_in_flight, **self.settings}

    def close(self) -> None:
        for req in self._requests:
            req.request.wait()  # nothing may still write into a buffer about to be freed
        self._requests = []
        self.compiled = None


class OpenVino(Backend):
    """CPU partitions, one compiled model each, driven asynchronously like a card."""

    name = "openvino"
    runs_model_batch = True
    devices_per_core = 1
    per_sample_shapes = True

    def preflight(self) -> None:
        require_openvino()

    def software(self) -> str:
        return f"OpenVINO {version()} (CPU)"

    def devices(self, request: DeviceRequest, log=print) -> list:
        ov = require_openvino()
        options = OvOptions.parse(request.options)
        core = ov.Core()
        dtypes = [np.dtype(dt) for _, dt in request.output_shapes or []]
        devices = [OvDevice(f"cpu{i}", core, request.model, request.workload, part, request.batch_size,
                            request.latency, options, dtypes, request.geometry, alone=len(request.plan) == 1)
                   for i, part in enumerate(request.plan)]
        d = devices[0].settings if devices else {}
        log(f"OpenVINO {version()}: {d.get('hint')} hint, {d.get('streams')} stream(s) and "
            f"{devices[0].max_in_flight if devices else 0} infer request(s) per device, {d.get('precision')}")
        return devices


def version() -> str:
    """OpenVINO's release (2026.4.1), without its build suffix."""
    return require_openvino().__version__.split("-")[0]
