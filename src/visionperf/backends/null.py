"""A device that completes every batch at once: it measures the harness alone."""

from __future__ import annotations

import numpy as np


class NullDevice:
    """READS_INPUT=False (backend `null`) skips the batch gather: dispatch, batching and
    completion only, comparable with a bare LoadGen SUT. READS_INPUT=True (`null-gather`) keeps
    the gather, so the host copy cost of the workload's rows is included."""

    max_in_flight = 1
    fixed_batch = False

    def __init__(self, name, model, workload, partition, batch_size: int, reads_input: bool = False):
        self.name = name
        self.reads_input = reads_input
        self.cpus = tuple(partition.cpus)
        self.batch_size = batch_size
        self.input_shape = workload.row_shape(workload.layout)
        self.input_dtype = np.dtype(model.input_dtype)
        # The output the real model would return for the chosen tensor, preallocated once.
        if model.output_name == "ArgMax:0" or model.output_name.lower().startswith("argmax"):
            self._out = np.zeros(batch_size, np.int64)
        else:
            self._out = np.zeros((batch_size, workload.num_classes), np.float32)

    def run(self, batch: np.ndarray) -> np.ndarray:
        return self._out[: len(batch)]

    def close(self) -> None:
        pass
