"""Devices: anything that takes a batch of input rows and returns the model's output rows.

Each backend makes one device per placement-plan entry. Cards (native `simulated`, and
`plugin:PATH` built against `include/visionperf/device.h`) and the `null` devices run inside
the compiled engine; a Python device (this protocol: ONNX Runtime partitions, GPU runtimes
written in Python) is called by the engine once per batch through its bridge.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from ..errors import UserError


class Device(Protocol):
    name: str
    cpus: tuple[int, ...]  # logical CPUs its host threads are pinned to (empty: unpinned)
    batch_size: int  # preferred batch; partial batches are allowed unless fixed_batch
    fixed_batch: bool  # the model only takes exactly batch_size rows (pad partial batches)
    input_shape: tuple[int, ...]  # one row
    input_dtype: np.dtype
    reads_input: bool  # False only for the null device: the pipeline then skips the gather
    # Optional: peak_rate (samples/s the device can never exceed, e.g. a simulated card's rate);
    # when every device declares one, the automatic Offline target is set from their sum.

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        """Run one batch (rows in the model's input layout); returns the model's outputs (one
        array per output the post-processing reads, first axis = rows).

        Must release the GIL while it computes: other devices' drivers need it for theirs.
        """

    def close(self) -> None: ...

    # Optional: reset_stats(), called once the warm-up is over and before LoadGen's test, for a
    # device that keeps counters of its own (they should cover the test alone).


class Ticket(Protocol):
    ready_ns: int  # time.monotonic_ns() when its outputs are expected (an estimate; 0: unknown)


class AsyncDevice(Device, Protocol):
    """A device with its own engine (a GPU's streams, a remote node), driven like a card: the
    engine's driver submits up to max_in_flight batches and collects the oldest first, taking
    the GIL once per call (sut._AsyncBridge)."""

    max_in_flight: int

    def submit(self, batch: np.ndarray | None, indices: list[int]) -> Ticket:
        """Queue BATCH (rows in the model's input layout; None when reads_input is False: the
        device loads the samples at INDICES, the batch's cache indices, itself) and return at
        once. BATCH's bytes are the engine's again when this returns: copy what is needed."""

    def collect(self, ticket: Ticket, timeout_s: float | None) -> list[np.ndarray] | None:
        """The outputs of TICKET (always the oldest batch not yet collected), as `run` returns
        them, or None if it is not done within TIMEOUT_S (0: just look; None: wait). Waits
        without the GIL. Raising ends the ticket: its samples fail."""


BACKENDS = ("onnxruntime", "tensorrt", "simulated", "null", "null-gather", "plugin:PATH")


def is_card(backend: str) -> bool:
    """Devices fed by host cores, planned like the paper's cards (Table IV)."""
    return backend in ("simulated", "tensorrt") or backend.startswith("plugin:")


def preflight(backend: str) -> None:
    """What a backend needs installed, checked before a run builds a cache: one line if not."""
    if backend == "tensorrt":
        from . import tensorrt

        tensorrt.TensorRT.preflight()


def plan_accelerators(backend: str, topology):
    """The accelerators a card backend's plan is made of (None: any the topology has)."""
    if backend == "tensorrt":
        return [a for a in topology.accelerators if a.name == "NVIDIA GPU"]
    return None


def make_devices(backend: str, model, workload, plan, batch_size: int, output_shapes=None,
                 card_rate: float | None = None, in_flight: int = 2, latency: bool = False,
                 options: str = "", log=print, batch_given: bool = True) -> list:
    """One device per placement-plan entry: native ones (run by the engine) or Python ones."""
    from ..sut import NativeDevice

    def native(kind: str, name: str, part, n_in_flight: int, opts: str = "", examples=(), peak=None):
        return NativeDevice(kind, name, tuple(part.cpus), part.numa_node, batch_size, n_in_flight,
                            workload.row_shape(workload.layout), np.dtype(model.input_dtype), opts,
                            list(examples), peak)

    if backend == "simulated":
        from .simulated import card_rate_for, output_pool

        rate, _ = card_rate_for(workload, card_rate)
        pool = output_pool(workload, model.kind, output_shapes)
        return [native("simulated", f"card{i}", part, in_flight, f"rate={rate!r}", pool, rate)
                for i, part in enumerate(plan)]
    if backend.startswith("plugin:"):
        return [native(backend, f"card{i}", part, in_flight, options) for i, part in enumerate(plan)]
    if backend == "tensorrt":
        from .tensorrt import make_tensorrt_devices

        return make_tensorrt_devices(model, workload, plan, batch_size, in_flight, options, offline=not latency,
                                     log=log, output_dtypes=[np.dtype(dt) for _, dt in output_shapes or []],
                                     batch_given=batch_given)
    if backend == "onnxruntime":
        from .onnxruntime import OrtDevice

        return [OrtDevice(f"cpu{i}", model, workload, part, batch_size, spin=not latency)
                for i, part in enumerate(plan)]
    if backend in ("null", "null-gather"):
        # null: completes each batch at once without the gather (the harness alone);
        # null-gather keeps the gather, so the host copy of the workload's rows is included.
        return [native(backend, f"null{i}", part, 1) for i, part in enumerate(plan)]
    raise UserError(f"unknown backend {backend!r}: choose one of {', '.join(BACKENDS)}")
