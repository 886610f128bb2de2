"""One GPU as an asynchronous device (backends.AsyncDevice), driven by the engine like a card.

    engine driver thread (pinned to the GPU's local cores, placement.card_plan)
      submit: gather -> host-to-device copy (DMA from the page-locked staging buffer) on the
              batch's own stream -> enqueue the plan on that stream's execution context ->
              device-to-host copies into page-locked outputs -> an event; returns at once
      or, with --backend-option fetch=1 (device fetch, device.h ABI 2): no gather; the sample
              buffer is page-locked once per LoadGen load (cudaHostRegister) and submit_rows
              copies each row host-to-device straight from it (rows next to each other in one
              copy), the host touching no pixel; the rest as above
      collect: the oldest batch's event -> its outputs (host NMS / argmax follow in the engine)

Each of `--in-flight` slots has its own CUDA stream, execution context and buffers, so copies
of one batch overlap the compute of the others, as NVIDIA's own harness does.
"""

from __future__ import annotations

import threading
import time

import numpy as np

from ...errors import UserError
from .trt_plans import Binding


class _Slot:
    """One batch in flight: a stream, an execution context on its own optimisation profile,
    and the buffers it owns."""

    def __init__(self, cuda, trt_plan, profile: int, batch: int, inp: Binding, outs: list[Binding]):
        self.stream = cuda.stream()
        self.handle = cuda.handle(self.stream)
        self.ctx = trt_plan.context()
        if profile and not self.ctx.set_optimization_profile_async(profile, self.handle):
            raise UserError(f"TensorRT would not give an execution context optimisation profile {profile}: "
                            "delete the TensorRT cache and run again")
        self.done = cuda.event()
        self.copied = cuda.event()
        self.d_in = cuda.malloc(batch * inp.row_bytes)
        self.d_out = [cuda.malloc(batch * o.row_bytes) for o in outs]
        self.h_out = [cuda.host_alloc(batch * o.row_bytes) for o in outs]
        self.h_in = None  # own page-locked input, only if the engine's staging cannot be locked
        self.ctx.set_tensor_address(inp.name, self.d_in)
        for o, ptr in zip(outs, self.d_out):
            self.ctx.set_tensor_address(o.name, ptr)


class Ticket:
    __slots__ = ("looks", "ready_ns", "rows", "slot", "submitted_ns")

    def __init__(self, slot, rows, ready_ns, submitted_ns):
        self.slot, self.rows, self.ready_ns, self.submitted_ns = slot, rows, ready_ns, submitted_ns
        self.looks = 0


class TrtDevice:
    """One GPU as an AsyncDevice (backends.AsyncDevice)."""

    reads_input = True
    fixed_batch = False

    def __init__(self, name: str, partition, cuda, gpu_index: int, trt_plan, input_shape, input_dtype,
                 batch_size: int, in_flight: int, outputs: list[str], output_dtypes=(), fetch: bool = False):
        self.name, self.partition = name, partition
        self.fetches_rows = bool(fetch)
        self.cpus = tuple(partition.cpus)
        self.numa_node = partition.numa_node
        self.pci = partition.pci or cuda.pci_of(gpu_index)  # NVML finds the board by it
        self.input_shape, self.input_dtype = tuple(input_shape), np.dtype(input_dtype)
        self.batch_size, self.max_in_flight = int(batch_size), int(in_flight)
        self.cuda, self.gpu, self.trt_plan = cuda, gpu_index, trt_plan
        ins = [b for b in trt_plan.bindings if b.is_input]
        if len(ins) != 1:
            raise UserError(f"{name}: the engine has {len(ins)} inputs, expected 1")
        self.inp = ins[0]
        if self.inp.row_bytes != int(np.prod(self.input_shape)) * self.input_dtype.itemsize:
            raise UserError(f"{name}: the engine's input {self.inp.name} holds {self.inp.row_bytes} bytes per sample, "
                            f"the cache rows {int(np.prod(self.input_shape)) * self.input_dtype.itemsize}: "
                            "rebuild the engine (delete the TensorRT cache)")
        self.outs = [b for b in trt_plan.bindings if not b.is_input]  # TensorRT needs every output bound
        by_name = {b.name: k for k, b in enumerate(self.outs)}
        missing = [n for n in outputs if n not in by_name]
        if missing:
            raise UserError(f"{name}: the engine has no output {missing[0]}: rebuild it from this model")
        self.returned = [by_name[n] for n in outputs]  # what the post-processing reads, in its order
        # The element types the post-processing reads. An engine may answer an index output
        # (ArgMax) in int32 where the model said int64: such small outputs are widened on the
        # host; anything else that differs is refused here, not mid-run.
        self.casts: list[np.dtype | None] = [None] * len(outputs)
        for k, want in enumerate(list(output_dtypes)[: len(outputs)]):
            got = self.outs[self.returned[k]]
            if got.dtype == want:
                continue
            if got.dtype.kind in "iu" and np.dtype(want).kind in "iu" and got.row_bytes <= 64:
                self.casts[k] = np.dtype(want)
            else:
                raise UserError(f"{name}: the engine's output {got.name} is {got.dtype}, the post-processing reads "
                                f"{np.dtype(want)}: rebuild the engine from this model")
        if trt_plan.profiles < self.max_in_flight:
            raise UserError(f"{name}: the engine has {trt_plan.profiles} optimisation profile(s) for {self.max_in_flight} "
                            "batches in flight: rebuild it (delete the TensorRT cache)")
        cuda.set_device(gpu_index)
        self.slots = [_Slot(cuda, trt_plan, k, self.batch_size, self.inp, self.outs) for k in range(self.max_in_flight)]
        self._next = 0
        self._staging: dict[int, bool] = {}  # engine staging address -> page-locked in place
        self._interval_ns = 0  # batch-to-batch time on this GPU (moving average)
        self._last_ready = 0
        self._last_done = 0
        self._lock = threading.Lock()  # submit and collect may come from different driver threads
        self.reset_stats()

    def reset_stats(self) -> None:
        self.batches = 0
        self.samples = 0

    def _source(self, batch: np.ndarray, slot: _Slot) -> tuple[int, bool]:
        """Where the copy to the GPU reads: the engine's staging buffer, page-locked in place
        (it is one fixed buffer of batch_size rows per device, so it is locked once, whole), or,
        where the system refuses, this slot's own page-locked buffer after a host copy."""
        ptr = batch.ctypes.data
        locked = self._staging.get(ptr)
        if locked is None:
            locked = self._staging[ptr] = self.cuda.register(ptr, self.batch_size * self.inp.row_bytes)
        if locked:
            return ptr, True
        if slot.h_in is None:
            slot.h_in = self.cuda.host_alloc(self.batch_size * self.inp.row_bytes)
        flat = batch.reshape(-1).view(np.uint8)
        np.copyto(slot.h_in[: flat.size], flat)
        return slot.h_in.ctypes.data, False

    def submit(self, batch: np.ndarray, indices) -> Ticket:
        with self._lock:
            rows = len(batch)
            if rows > self.batch_size:
                raise ValueError(f"{rows} rows for an engine of batch {self.batch_size}")
            slot = self.slots[self._next % len(self.slots)]
            self._next += 1
            self.cuda.set_device(self.gpu)
            src, in_place = self._source(batch, slot)
            nbytes = rows * self.inp.row_bytes
            self.cuda.h2d(slot.d_in, src, nbytes, slot.stream)
            self.cuda.record(slot.copied, slot.stream)
            return self._enqueue(slot, rows, wait_copied=in_place)

    # -- device fetch (device.h ABI 2, through sut._AsyncBridge) ---------------------------------
    def register_region(self, base: int, nbytes: int, row_bytes: int) -> None:
        """Page-lock the sample buffer (once per LoadGen load) so the rows copy by DMA."""
        self.cuda.set_device(self.gpu)
        if not self.cuda.register(base, nbytes):
            raise RuntimeError(f"cudaHostRegister refused the {nbytes:,}-byte sample buffer: "
                               "run with --backend-option fetch=0 (the host gather)")

    def unregister_region(self, base: int) -> None:
        self.cuda.unregister(base)

    def submit_rows(self, addrs: np.ndarray) -> Ticket:
        """A batch as its rows' addresses in the registered buffer: one host-to-device copy per
        run of adjacent rows, on the batch's stream; the rows stay valid until it is collected,
        so nothing here waits for the copy."""
        with self._lock:
            rows = len(addrs)
            if rows > self.batch_size:
                raise ValueError(f"{rows} rows for an engine of batch {self.batch_size}")
            slot = self.slots[self._next % len(self.slots)]
            self._next += 1
            self.cuda.set_device(self.gpu)
            rb = self.inp.row_bytes
            start = 0
            for k in range(1, rows + 1):  # coalesce rows that follow each other in the buffer
                if k == rows or int(addrs[k]) != int(addrs[k - 1]) + rb:
                    self.cuda.h2d(slot.d_in + start * rb, int(addrs[start]), (k - start) * rb, slot.stream)
                    start = k
            return self._enqueue(slot, rows, wait_copied=False)

    def _enqueue(self, slot: _Slot, rows: int, wait_copied: bool) -> Ticket:
        """The batch's input is on its way to the GPU on SLOT's stream: run the plan, copy the
        outputs back, record its event (called under the lock)."""
        slot.ctx.set_input_shape(self.inp.name, (rows, *self.inp.sample_shape))
        if not slot.ctx.execute_async_v3(slot.handle):
            raise RuntimeError("TensorRT could not enqueue the batch (execute_async_v3 failed)")
        for o, d, h in zip(self.outs, slot.d_out, slot.h_out):
            self.cuda.d2h(h, d, rows * o.row_bytes, slot.stream)
        self.cuda.record(slot.done, slot.stream)
        if wait_copied:  # the staging buffer is the engine's again once submit returns
            self.cuda.wait(slot.copied)
        now = time.monotonic_ns()
        ready = max(now, self._last_ready) + self._interval_ns if self._interval_ns else 0
        self._last_ready = ready
        return Ticket(slot, rows, ready, now)

    # When to look for a batch (ready_ns) is an estimate of the GPU's batch-to-batch time. The
    # engine does not look before it, so a batch found done at the first look may have been done
    # a while: the estimate then shrinks by 1/8; a batch still running at the first look is
    # polled until done, which measures the true time. The estimate so settles just under the
    # truth, with a look or two per batch, never drifting late (each look takes the GIL).
    def _learn(self, ticket: Ticket, now: int) -> None:
        if ticket.looks == 1 and self._interval_ns:
            self._interval_ns -= self._interval_ns // 8
        else:
            took = now - max(ticket.submitted_ns, self._last_done)
            self._interval_ns = took if not self._interval_ns else self._interval_ns + (took - self._interval_ns) // 8
        self._last_done = now
        self._last_ready = min(self._last_ready, now)

    def collect(self, ticket: Ticket, timeout_s: float | None):
        slot = ticket.slot
        ticket.looks += 1
        if timeout_s is None:
            self.cuda.wait(slot.done)
        elif not self.cuda.done(slot.done):
            if timeout_s <= 0:
                return None
            end = time.monotonic() + timeout_s
            while not self.cuda.done(slot.done):
                if time.monotonic() >= end:
                    return None
                time.sleep(min(1e-4, timeout_s))
        with self._lock:
            self._learn(ticket, time.monotonic_ns())
            self.batches += 1
            self.samples += ticket.rows
        outs = []
        for k, cast in zip(self.returned, self.casts):
            o = self.outs[k]
            v = slot.h_out[k][: ticket.rows * o.row_bytes].view(o.dtype).reshape(ticket.rows, *o.sample_shape)
            outs.append(v if cast is None else v.astype(cast))
        return outs

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        """One batch start to end (the official graphs whose post-processing stays in Python)."""
        return [np.array(o) for o in self.collect(self.submit(batch, []), None)]

    def raw_rate(self, batch: int, seconds: float = 2.0) -> float:
        """Samples/s of the engine alone, as trtexec measures it: inputs already on the GPU, no
        copies, every slot's stream enqueued back to back. The harness's own loss is measured
        against this figure on the same engine."""
        batch = min(batch, self.batch_size)
        self.cuda.set_device(self.gpu)
        for s in self.slots:
            s.ctx.set_input_shape(self.inp.name, (batch, *self.inp.sample_shape))
        done = 0
        t0 = time.perf_counter()
        pending = []
        while True:
            for s in self.slots:
                if not s.ctx.execute_async_v3(s.handle):
                    raise RuntimeError("TensorRT could not enqueue the batch (execute_async_v3 failed)")
                self.cuda.record(s.done, s.stream)
                pending.append(s)
            for s in pending:
                self.cuda.wait(s.done)
                done += batch
            pending.clear()
            elapsed = time.perf_counter() - t0
            if elapsed >= seconds:
                return done / elapsed

    def close(self) -> None:
        for s in self.slots:
            for ptr in (s.d_in, *s.d_out):
                self.cuda.free(ptr)
        self.slots = []
