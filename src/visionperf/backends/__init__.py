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
    start: float  # time.perf_counter() when the device starts on the batch
    ready_at: float  # ... and when its outputs will be ready


class AsyncDevice(Device, Protocol):
    """A device with its own engine, driven like a card: the SUT gives it one driver thread per
    CPU partition (sut.py) instead of a blocking thread per batch in flight."""

    def submit(self, batch: np.ndarray) -> Ticket:
        """Take the batch (its bytes are the device's once this returns: the caller reuses the
        buffer) and queue it; returns at once. The caller holds at most max_in_flight tickets."""

    def collect(self, ticket: Ticket) -> list[np.ndarray]:
        """The batch's outputs, as `run` returns them; waits (without the GIL) until ready_at.

        Batches finish in the order they were submitted (ready_at never decreases), as on one
        engine or one stream: the driver collects the oldest first."""


BACKENDS = ("onnxruntime", "simulated", "null", "null-gather", "plugin:PATH")


def is_card(backend: str) -> bool:
    """Devices fed by host cores, planned like the paper's cards (Table IV)."""
    return backend == "simulated" or backend.startswith("plugin:")


def make_devices(backend: str, model, workload, plan, batch_size: int, output_shapes=None,
                 card_rate: float | None = None, in_flight: int = 2, latency: bool = False,
                 options: str = "") -> list:
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
    if backend == "onnxruntime":
        from .onnxruntime import OrtDevice

        return [OrtDevice(f"cpu{i}", model, workload, part, batch_size, spin=not latency)
                for i, part in enumerate(plan)]
    if backend in ("null", "null-gather"):
        # null: completes each batch at once without the gather (the harness alone);
        # null-gather keeps the gather, so the host copy of the workload's rows is included.
        return [native(backend, f"null{i}", part, 1) for i, part in enumerate(plan)]
    raise UserError(f"unknown backend {backend!r}: choose one of {', '.join(BACKENDS)}")
