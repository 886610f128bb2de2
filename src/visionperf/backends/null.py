"""A device that completes every batch at once: it measures the harness alone."""

from __future__ import annotations

import numpy as np


class NullDevice:
    """READS_INPUT=False (backend `null`) skips the batch gather: dispatch, batching and
    completion only, comparable with a bare LoadGen SUT. READS_INPUT=True (`null-gather`) keeps
    the gather, so the host copy cost of the workload's rows is included."""

    max_in_flight = 1
    fixed_batch = False

    def __init__(self, name, model, workload, partition, batch_size: int, output_shapes,
                 reads_input: bool = False):
        self.name = name
        self.reads_input = reads_input
        self.cpus = tuple(partition.cpus)
        self.batch_size = batch_size
        self.input_shape = workload.row_shape(workload.layout)
        self.input_dtype = np.dtype(model.input_dtype)
        # The outputs the real model would return, preallocated once (zero scores: no detections).
        self._out = [np.zeros(shape, dtype) for shape, dtype in output_shapes]

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        return [o[: len(batch)] for o in self._out]

    def close(self) -> None:
        pass
