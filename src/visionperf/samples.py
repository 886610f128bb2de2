"""The QSL side: the performance sample set in contiguous buffers, one per replica, and the gather.

LoadGen decides which samples are loaded (load/unload callbacks) and names them by dataset
index; the SUT reads them here. Rows are copied out of the memory-mapped cache into contiguous
in-memory buffers so that a batch gather never touches the disk, and a dataset index maps to
its buffer row through one small int array, so a batch gather is two vectorised ops.

Replicas (the paper's section II-C): one buffer per device or per NUMA node, each filled by a
thread pinned to the CPUs of its device or node, so first touch puts its pages on that node and
each device reads only local memory.
"""

from __future__ import annotations

import os
import threading

import numpy as np


def _process_cpu() -> float:
    t = os.times()
    return t.user + t.system


class SampleStore:
    def __init__(self, source: np.ndarray, fill_cpus: list[tuple[int, ...]] | None = None,
                 replica_of_device: list[int] | None = None):
        self.source = source  # the cache: [total, *row], usually a read-only memmap
        self.total = len(source)
        self.row_shape = source.shape[1:]
        self.dtype = source.dtype
        self.fill_cpus = fill_cpus or [()]
        self.replica_of_device = replica_of_device or [0]
        self._row_of = np.zeros(self.total, np.intp)  # dataset index -> buffer row
        self.buffers = [self._empty() for _ in self.fill_cpus]
        self.loaded = 0
        self.indices = np.empty(0, np.intp)  # dataset indices now in the buffers, by row
        self._lock = threading.Lock()
        # Process CPU seconds spent in load/unload. LoadGen calls them before its timed run
        # (and between sample sets, with no query in flight), so the harness can report the
        # steady-state host CPU per sample without this one-off cost of filling the replicas.
        self.load_cpu_s = 0.0

    def _empty(self) -> np.ndarray:
        return np.empty((0, *self.row_shape), self.dtype)

    @property
    def buffer(self) -> np.ndarray:
        return self.buffers[0]

    def load(self, indices) -> None:
        """LoadGen's load_samples_to_ram: copy these rows into fresh buffers, one per replica."""
        c0 = _process_cpu()
        idx = np.asarray(indices, np.intp)
        order = np.argsort(idx, kind="stable")  # read the memmap front to back
        rows = idx[order]
        fresh: list = [None] * len(self.fill_cpus)

        def fill(r: int) -> None:
            cpus = self.fill_cpus[r]
            if cpus:
                try:
                    os.sched_setaffinity(0, set(cpus))  # this thread only: first touch is local
                except OSError:
                    pass
            buf = np.empty((len(idx), *self.row_shape), self.dtype)
            for s in range(0, len(rows), 64):  # bounded temporaries for big rows
                buf[order[s : s + 64]] = self.source[rows[s : s + 64]]
            fresh[r] = buf

        if len(self.fill_cpus) == 1 and not self.fill_cpus[0]:
            fill(0)
        else:
            threads = [threading.Thread(target=fill, args=(r,)) for r in range(len(self.fill_cpus))]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        with self._lock:
            self._row_of[idx] = np.arange(len(idx))
            self.buffers = fresh
            self.indices = idx
            self.loaded = len(idx)
        self.load_cpu_s += _process_cpu() - c0

    def unload(self, indices) -> None:
        """LoadGen's unload_samples_from_ram: free every replica (LoadGen loads the next set after)."""
        c0 = _process_cpu()
        with self._lock:
            self.buffers = [self._empty() for _ in self.fill_cpus]
            self.indices = np.empty(0, np.intp)
            self.loaded = 0
        self.load_cpu_s += _process_cpu() - c0  # freeing gigabytes of pages is not free

    def gather(self, indices, out: np.ndarray, replica: int = 0) -> None:
        """Copy the rows of these dataset indices from one replica into OUT[:len(indices)].

        `mode="clip"` lets numpy write straight into OUT; the default mode buffers the whole
        result first (2.3x slower, FACTS.md section 6). Indices are LoadGen's, so in range.
        """
        rows = self._row_of[indices]
        self.buffers[replica].take(rows, 0, out[: len(rows)], "clip")  # the method: no wrapper
