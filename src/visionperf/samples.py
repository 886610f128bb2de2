"""The QSL side: the performance sample set in one contiguous buffer, and the batch gather.

LoadGen decides which samples are loaded (load/unload callbacks) and names them by dataset
index; the SUT reads them here. Rows are copied out of the memory-mapped cache into one
contiguous in-memory buffer so that a batch gather never touches the disk, and a dataset index
maps to its buffer row through one small int array, so a batch gather is two vectorised ops.
"""

from __future__ import annotations

import threading

import numpy as np


class SampleStore:
    def __init__(self, source: np.ndarray):
        self.source = source  # the cache: [total, *row], usually a read-only memmap
        self.total = len(source)
        self.row_shape = source.shape[1:]
        self.dtype = source.dtype
        self._row_of = np.zeros(self.total, np.intp)  # dataset index -> buffer row
        self.buffer = np.empty((0, *self.row_shape), self.dtype)
        self.loaded = 0
        self.indices = np.empty(0, np.intp)  # dataset indices now in the buffer, by row
        self._lock = threading.Lock()

    def load(self, indices) -> None:
        """LoadGen's load_samples_to_ram: copy these rows into a fresh contiguous buffer."""
        idx = np.asarray(indices, np.intp)
        order = np.argsort(idx, kind="stable")  # read the memmap front to back
        buffer = np.empty((len(idx), *self.row_shape), self.dtype)
        buffer[order] = self.source[idx[order]]
        with self._lock:
            self._row_of[idx] = np.arange(len(idx))
            self.buffer = buffer
            self.indices = idx
            self.loaded = len(idx)

    def unload(self, indices) -> None:
        """LoadGen's unload_samples_from_ram: drop the buffer (LoadGen loads the next set after)."""
        with self._lock:
            self.buffer = np.empty((0, *self.row_shape), self.dtype)
            self.indices = np.empty(0, np.intp)
            self.loaded = 0

    def gather(self, indices, out: np.ndarray) -> None:
        """Copy the rows of these dataset indices into OUT[:len(indices)] (preallocated).

        `mode="clip"` lets numpy write straight into OUT; the default mode buffers the whole
        result first (2.3x slower, FACTS.md section 6). Indices are LoadGen's, so in range.
        """
        rows = self._row_of[indices]
        np.take(self.buffer, rows, axis=0, out=out[: len(rows)], mode="clip")
