"""A simulated accelerator card: real bytes in and out, time from a configured rate.

So that scaling can be studied without the card, each simulated card behaves like one at the
host interface: it copies every input batch into its own memory (real bytes, like the DMA into
a card), keeps its compute engine busy for `batch / rate` seconds (batches queue on the engine
in order, up to `max_in_flight` of them held at once), and returns outputs of the real size and
layout (for the SSD models, realistic raw boxes and scores in the paper's formats: fp16 scores
for SSD-ResNet34, uint8 for SSD-MobileNet) so that host post-processing does its real work.
Waiting is a sleep (no GIL held, no CPU burnt), accurate to about a tenth of a millisecond.

Like a real card's driver, it is asynchronous: `submit` takes a batch's bytes and returns a
ticket at once, `collect` returns that batch's outputs once the engine is done with it, and the
ticket says when that will be (`ready_at`), so one host thread can keep several batches and
several cards busy (sut.py).
"""

from __future__ import annotations

import queue
import threading
import time

import numpy as np

from ..workloads import Workload

# The paper's Table II: samples/s and batch size of one Cloud AI 100 card, Offline.
PRESETS = {"resnet50": (22667.0, 8), "ssd-resnet34": (435.0, 1), "ssd-mobilenet": (19363.0, 4)}
POOL = 8  # distinct realistic output samples cycled through


def score_format(workload: Workload):
    """The raw score format the simulated card returns (the paper's section II-F)."""
    from ..postprocess.nms import ScoreFormat

    if workload.name == "ssd-resnet34":
        return ScoreFormat("float16")
    if workload.name == "ssd-mobilenet":
        return ScoreFormat("uint8", 1 / 255, 0)
    return None


def _output_pool(workload: Workload, kind: str, output_shapes) -> list[np.ndarray]:
    """POOL samples per output, in the card's formats: [POOL, *one sample's shape]."""
    rng = np.random.default_rng(0)
    if workload.task == "detection" and kind == "raw":
        from ..postprocess.heads import raw_heads

        boxes, scores = zip(*(raw_heads(workload.name, rng, objects=int(rng.integers(0, 12))) for _ in range(POOL)))
        fmt = score_format(workload)
        s = np.stack(scores)
        if fmt.dtype == "float16":
            s = s.astype(np.float16)
        elif fmt.dtype == "uint8":
            s = np.clip(np.rint(s / fmt.scale) + fmt.zero_point, 0, 255).astype(np.uint8)
        return [np.stack(boxes), s]
    pools = []
    for shape, dtype in output_shapes:
        one = shape[1:]
        if np.issubdtype(dtype, np.integer):
            pools.append(rng.integers(1, 1001, (POOL, *one)).astype(dtype))
        else:
            pools.append(rng.random((POOL, *one), dtype=np.float32).astype(dtype))
    return pools


class _Ticket:
    """One batch on the card: its memory slot, and when the engine finishes it."""

    __slots__ = ("slot", "n", "first", "start", "ready_at")

    def __init__(self, slot: int, n: int, first: int, start: float, ready_at: float):
        self.slot, self.n, self.first, self.start, self.ready_at = slot, n, first, start, ready_at


class SimulatedCard:
    reads_input = True
    fixed_batch = False

    def __init__(self, name: str, model, workload: Workload, partition, batch_size: int, output_shapes,
                 rate: float, in_flight: int = 2):
        self.name = name
        self.cpus = tuple(partition.cpus)
        self.thread_cpus = self.cpus
        self.batch_size = batch_size
        self.max_in_flight = in_flight
        self.rate = rate
        self.input_shape = workload.row_shape(workload.layout)
        self.input_dtype = np.dtype(model.input_dtype)
        self.numa_node = partition.numa_node
        # The card's own memory: one input buffer per batch it can hold.
        self._mem = np.empty((in_flight, batch_size, *self.input_shape), self.input_dtype)
        self._free_mem: queue.SimpleQueue = queue.SimpleQueue()
        for k in range(in_flight):
            self._free_mem.put(k)
        self._engine_free_at = 0.0
        self._lock = threading.Lock()
        self._pool = _output_pool(workload, model.kind, output_shapes)
        self._next = 0
        self.card_cpu_s = 0.0
        self.late_s = 0.0  # summed lateness of wake-ups after the engine finished (timing accuracy)
        self.batches = 0

    @property
    def peak_rate(self) -> float:
        """Samples/s it can never exceed: its engine takes n / rate for every batch of n."""
        return self.rate

    def submit(self, batch: np.ndarray) -> _Ticket:
        """Take one batch: copy its bytes into the card and queue it on the engine; returns at once.

        The caller holds at most `max_in_flight` batches at a time (the card's memory slots).
        """
        n = len(batch)
        c0 = time.thread_time()
        try:
            slot = self._free_mem.get_nowait()
        except queue.Empty:
            raise RuntimeError(f"{self.name}: more than {self.max_in_flight} batches submitted at once") from None
        try:
            np.copyto(self._mem[slot, :n], batch)  # host -> card: the real bytes
        except BaseException:
            self._free_mem.put(slot)
            raise
        with self._lock:
            start = max(time.perf_counter(), self._engine_free_at)
            done = start + n / self.rate
            self._engine_free_at = done
            first = self._next
            self._next = (self._next + n) % POOL
        # CPU time spent doing what a real card's DMA engine would do, so that the host's own
        # share can be reported without it.
        self.card_cpu_s += time.thread_time() - c0
        return _Ticket(slot, n, first, start, done)

    def collect(self, ticket: _Ticket) -> list[np.ndarray]:
        """The batch's outputs, waiting (a sleep, no GIL) until the engine has finished it."""
        wait = ticket.ready_at - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
        self.late_s += max(0.0, time.perf_counter() - ticket.ready_at)
        c0 = time.thread_time()
        try:
            rows = (np.arange(ticket.n) + ticket.first) % POOL
            outputs = [np.take(p, rows, axis=0) for p in self._pool]  # card -> host: real bytes
        finally:
            self._free_mem.put(ticket.slot)
        self.card_cpu_s += time.thread_time() - c0
        self.batches += 1
        return outputs

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        return self.collect(self.submit(batch))

    def close(self) -> None:
        self._mem = None


def card_rate_for(workload: Workload, card_rate: float | None) -> tuple[float, int]:
    rate, batch = PRESETS[workload.name]
    return (card_rate or rate), batch

