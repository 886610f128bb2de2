"""Backends and their devices: anything that takes a batch of input rows and returns the model's
output rows.

A backend is an object (`base.Backend`) found by name in the registry below; it makes one
device per placement-plan entry. Cards (native `simulated`, and
`plugin:PATH` built against `include/visionperf/device.h`) and the `null` devices run inside
the compiled engine; a Python device (this protocol: ONNX Runtime partitions, GPU runtimes
written in Python) is called by the engine once per batch through its bridge.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from ..errors import UserError
from .base import Backend


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


# name -> (module, class): modules are imported when a backend is asked for, so a run pays
# only for its own runtime (ONNX Runtime, TensorRT), never for the others.
_REGISTRY = {
    "onnxruntime": ("onnxruntime", "OnnxRuntime"),
    "openvino": ("openvino", "OpenVino"),
    "tensorrt": ("tensorrt", "TensorRTBackend"),
    "simulated": ("simulated", "Simulated"),
    "null": ("null", "Null"),
    "null-gather": ("null", "Null"),
    "plugin:PATH": ("plugin", "Plugin"),
}
BACKENDS = tuple(_REGISTRY)


def get_backend(name: str) -> Backend:
    """The backend called NAME (`plugin:PATH` for a C plug-in); one line naming the choices if none is."""
    import importlib

    key = "plugin:PATH" if name.startswith("plugin:") else name
    if key not in _REGISTRY:
        raise UserError(f"unknown backend {name!r}: choose one of {', '.join(BACKENDS)}")
    module, cls = _REGISTRY[key]
    return getattr(importlib.import_module(f".{module}", __name__), cls)(name)

