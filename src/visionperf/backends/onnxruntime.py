"""ONNX Runtime on a partition of the CPU cores: one session per device, its pool pinned.

Every device gets its own InferenceSession whose intra-op pool has exactly as many threads as
its partition has cores, each pinned to one of them; the caller (the device's slot thread) is
pinned to the partition too and acts as the pool's first thread. Devices never share a core
unless there are more devices than cores, so there is no oversubscription.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort

from ..errors import UserError
from .base import Backend, DeviceRequest


def session_options(cores: tuple[int, ...], threads: int | None = None, spin: bool = True) -> ort.SessionOptions:
    """One intra-op thread per physical core (named by its first logical CPU), pinned.

    SPIN=False stops idle pool threads from spinning: in latency scenarios the host needs those
    cycles for LoadGen's issue thread and the dispatch, and a spinning pool delays them."""
    so = ort.SessionOptions()
    if not spin:
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    n = threads or max(1, len(cores))
    so.intra_op_num_threads = n
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.log_severity_level = 3
    if cores and n > 1 and len(cores) >= n:
        # ORT pins threads 2..n (the caller is thread 1); ids are 1-based logical processors.
        so.add_session_config_entry("session.intra_op_thread_affinities",
                                    ";".join(str(c + 1) for c in cores[1:n]))
    return so


def _anchors(h: int, w: int) -> int:
    """YOLO's anchors for an H x W input: one per cell at strides 8, 16 and 32."""
    return sum((h // s) * (w // s) for s in (8, 16, 32))


class OrtDevice:
    reads_input = True
    max_in_flight = 1  # a CPU partition runs one batch at a time; its cores are the parallelism

    def __init__(self, name, model, workload, partition, batch_size: int, spin: bool = True, geometry=None):
        self.name = name
        self.cpus = tuple(partition.cpus)
        cores = tuple(partition.cores)
        # The calling slot thread is the pool's first thread: pin it to the first core, and
        # the pool's other threads one to each remaining core.
        self.thread_cpus = cores[:1]
        self.input_shape = workload.row_shape(workload.layout)
        self.input_dtype = np.dtype(model.input_dtype)
        self.fixed_batch = model.fixed_batch is not None
        self.batch_size = model.fixed_batch or batch_size
        try:
            self.session = ort.InferenceSession(str(model.path), session_options(cores, spin=spin),
                                                providers=["CPUExecutionProvider"])
        except Exception as e:  # ORT raises its own Fail/InvalidGraph types for a bad model
            raise UserError(f"ONNX Runtime cannot load {model.path}: {str(e).splitlines()[0]}") from None
        self._input = model.input_name
        self._outputs = list(model.outputs)
        pre = workload.preprocessing
        # rect (YOLO): each row holds its own (3, h, w) image at its start; the engine hands over
        # the batch's cache rows so the device can read their shapes.
        self.takes_indices = pre.method == "letterbox" and pre.shape_mode == "rect"
        self._geometry = geometry

    def run(self, batch: np.ndarray, qsl_idx=None) -> list[np.ndarray]:
        if self.takes_indices:
            return self._run_rect(batch, qsl_idx)
        return self.session.run(self._outputs, {self._input: batch})

    def _run_rect(self, batch: np.ndarray, qsl_idx) -> list[np.ndarray]:
        """One shape per batch (run.config keeps rect batches to one image): the rows' (3, h, w)
        prefixes in, the head out at the start of a row sized for the largest input (the
        post-processing reads its anchors from the same geometry)."""
        n = len(qsl_idx)
        h, w = (int(v) for v in self._geometry[qsl_idx[0], 2:])
        if any(tuple(self._geometry[i, 2:]) != (h, w) for i in qsl_idx[1:]):
            raise ValueError("a rect batch holds images of different shapes")
        x = np.ascontiguousarray(batch.reshape(n, -1)[:, : 3 * h * w]).reshape(n, 3, h, w)
        outs = self.session.run(self._outputs, {self._input: x})
        most = _anchors(self.input_shape[1], self.input_shape[2])
        padded = []
        for o in outs:  # [n, 84, A] or [n, A, 84]: the same bytes at the start of a longer row
            out = np.zeros((n, o[0].size // _anchors(h, w) * most), o.dtype)
            out[:, : o[0].size] = o.reshape(n, -1)
            padded.append(out)
        return padded

    def close(self) -> None:
        self.session = None


class OnnxRuntime(Backend):
    """CPU partitions, one session each; the model's fixed batch, if it has one, is the batch."""

    name = "onnxruntime"
    runs_model_batch = True
    devices_per_core = 1
    per_sample_shapes = True

    def software(self) -> str:
        return f"ONNX Runtime {ort.__version__} (CPU)"

    def devices(self, request: DeviceRequest, log=print) -> list:
        return [OrtDevice(f"cpu{i}", request.model, request.workload, part, request.batch_size,
                          spin=not request.latency, geometry=request.geometry)
                for i, part in enumerate(request.plan)]
