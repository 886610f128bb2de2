"""The system under test: LoadGen hands it queries, it hands back responses. Nothing else.

    issue (LoadGen's thread)     one shared work queue      per-device pipelines
    ----------------------  ->  -------------------------  ->  gather -> run -> post -> complete

* The issue callback only records and hands off (FastSUT: no QuerySample objects). A one-sample
  query (Server, SingleStream) is queued as a tuple; a many-sample query (Offline, MultiStream)
  is cut into device batches with numpy, without Python work per sample.
* Whichever device is free takes the next batch, so load balances itself. A batch is everything
  already queued, up to the batch size, waiting for more only until the batch timeout (counted
  from the oldest sample's arrival) runs out.
* Two kinds of device, two kinds of pipeline:
  - a blocking device (`run`: an ONNX Runtime partition computing on the host's own cores) gets
    `max_in_flight` slot threads pinned to its cores, each running gather -> run -> complete;
  - an asynchronous device (`submit`/`collect`, like a card's driver: the simulated card) is
    driven by one thread per CPU partition, which keeps every device pinned there fed with up
    to `max_in_flight` batches: it gathers and submits while they compute, completes each batch
    when it is ready, and otherwise sleeps until the next batch is due or new work arrives.
    The paper's host and card threads (its section II-E) are thus one thread per core group:
    on a small host with more cards than cores, threads never outnumber the cores they are
    pinned to, and every thread fewer is GIL hand-offs and wake-ups saved per batch.
* The gather writes into a preallocated input buffer; the device run and numpy copies release
  the GIL; there is one QuerySamplesComplete per batch, whose response buffer lives until the
  call returns.
"""

from __future__ import annotations

import math
import os
import queue
import threading
import time
from dataclasses import dataclass, field
from collections import deque
from typing import Callable

import numpy as np

from .samples import SampleStore

_NOTHING = object()


def _urgency(lane) -> float:
    return lane.pending[-1][0].ready_at if lane.pending else -math.inf

# (outputs, dataset indices) -> (data, byte offsets, byte sizes): see postprocess/__init__.py
Postprocess = Callable[[list, object], tuple]


@dataclass
class DeviceStats:
    name: str
    cpus: tuple[int, ...]
    batches: int = 0
    samples: int = 0
    busy_s: float = 0.0  # time inside device.run
    host_s: float = 0.0  # time gathering inputs
    post_s: float = 0.0  # time post-processing and completing (on post threads when pipelined)


@dataclass
class _Lane:
    """One asynchronous device as its driver thread sees it."""

    device: object
    inbuf: np.ndarray  # the host staging buffer: free again as soon as submit returns
    stats: DeviceStats
    replica: int
    pending: deque = field(default_factory=deque)  # (ticket, ids, idx), oldest first


@dataclass
class _Slot:
    device: object
    inbuf: np.ndarray
    stats: DeviceStats
    replica: int = 0  # the sample buffer replica this device reads
    thread: threading.Thread | None = field(default=None, repr=False)


def pin_current_thread(cpus) -> None:
    if cpus:
        try:
            os.sched_setaffinity(0, set(cpus))  # pid 0 = the calling thread on Linux
        except (AttributeError, OSError):
            pass


class SystemUnderTest:
    def __init__(self, devices: list, store: SampleStore, postprocess: Postprocess,
                 batch_timeout_s: float = 0.0, complete: Callable | None = None,
                 post_threads: int = 0, drivers: bool = True):
        import mlperf_loadgen as lg

        self._lg = lg
        self.devices = devices
        self.store = store
        self.postprocess = postprocess
        self.batch_timeout_s = batch_timeout_s
        self.prebatched = False  # True when every query arrives as whole batches (Offline, MultiStream)
        # Offline: nobody waits on a single response, so drivers may complete batches in bursts.
        self.throughput_only = False
        self.batch_size = max(d.batch_size for d in devices)
        self.complete = complete or lg.QuerySamplesComplete
        self.stats = [DeviceStats(d.name, tuple(getattr(d, "thread_cpus", d.cpus))) for d in devices]
        self.error: BaseException | None = None
        self._q: queue.SimpleQueue = queue.SimpleQueue()
        self._collect_lock = threading.Lock()
        self._slots: list[_Slot] = []
        self._drivers: list[tuple[tuple[int, ...], list[_Lane]]] = []
        self._threads: list[threading.Thread] = []
        # Pipelining: with post threads, a device hands its outputs over and runs its next
        # batch while they are post-processed (NMS), as the paper does for the SSD models.
        self.post_threads = post_threads
        self._post_q: queue.SimpleQueue | None = queue.SimpleQueue() if post_threads else None
        self._post: list[threading.Thread] = []
        self.post_stats = [DeviceStats(f"post{i}", self.stats[i % len(self.stats)].cpus)
                           for i in range(post_threads)]
        by_cpus: dict[tuple[int, ...], list[_Lane]] = {}
        for k, (d, st) in enumerate(zip(devices, self.stats)):
            replica = store.replica_of_device[k] if k < len(store.replica_of_device) else 0
            if drivers and hasattr(d, "submit"):  # drivers=False: slot threads (a baseline)
                buf = np.empty((d.batch_size, *d.input_shape), d.input_dtype)
                by_cpus.setdefault(st.cpus, []).append(_Lane(d, buf, st, replica))
                continue
            for _ in range(d.max_in_flight):
                buf = np.empty((d.batch_size, *d.input_shape), d.input_dtype)
                self._slots.append(_Slot(d, buf, st, replica))
        sizes = {ln.device.batch_size for lanes in by_cpus.values() for ln in lanes}
        if sizes - {self.batch_size}:
            # Whole batches are cut at self.batch_size, and a lane's buffer holds its own size.
            raise ValueError(f"asynchronous devices must share one batch size, got {sorted(sizes)}")
        for cpus, lanes in by_cpus.items():
            # As many drivers as the partition has CPUs (unpinned devices: one each), devices
            # dealt round-robin.
            n = len(lanes) if not cpus else min(len(cpus), len(lanes))
            for i in range(n):
                self._drivers.append((cpus, lanes[i::n]))

    @property
    def capacity(self) -> int:
        """Batches all devices can hold at once."""
        return len(self._slots) + sum(ln.device.max_in_flight for _, lanes in self._drivers for ln in lanes)

    # -- LoadGen's side -------------------------------------------------------------------
    def issue(self, ids: list[int], indices: list[int]) -> None:
        """FastSUT issue callback: never blocks, never does per-sample work for big queries."""
        if len(ids) == 1:
            self._q.put((ids[0], indices[0], time.perf_counter()))
            return
        self._put_batches(np.array(ids, dtype=np.uint64), np.array(indices, dtype=np.intp))

    def _put_batches(self, ids: np.ndarray, idx: np.ndarray) -> int:
        """Queue whole batches cut from a many-sample query; returns how many."""
        b = self.batch_size
        for s in range(0, len(ids), b):
            self._q.put((ids[s : s + b], idx[s : s + b], None))
        return -(-len(ids) // b)

    def flush(self) -> None:
        pass

    # -- threads ---------------------------------------------------------------------------
    def start(self) -> None:
        for st in self.post_stats:
            t = threading.Thread(target=self._post_loop, args=(st,), name=st.name, daemon=True)
            t.start()
            self._post.append(t)
        for i, slot in enumerate(self._slots):
            slot.thread = threading.Thread(target=self._slot_loop, args=(slot,),
                                           name=f"slot-{slot.device.name}-{i}", daemon=True)
            slot.thread.start()
        for cpus, lanes in self._drivers:
            t = threading.Thread(target=self._drive, args=(cpus, lanes), daemon=True,
                                 name="driver-" + "+".join(ln.device.name for ln in lanes))
            t.start()
            self._threads.append(t)

    def stop(self) -> None:
        self._q.put(None)
        for slot in self._slots:
            if slot.thread is not None:
                slot.thread.join()
                slot.thread = None
        for t in self._threads:
            t.join()
        self._threads = []
        for _ in self._post:
            self._post_q.put(None)
        for t in self._post:
            t.join()
        self._post = []
        for d in self.devices:
            d.close()

    def _collect(self, limit: int):
        """The next batch: (ids, dataset indices), or None when stopping."""
        q = self._q
        if self.prebatched:
            # Offline/MultiStream: issue() already cut whole batches, so a free slot just takes
            # one; no lock to hand between many slot threads (futex churn on a small host).
            item = q.get()
            if item is None:
                q.put(None)
                return None
            return item[0], item[1]
        with self._collect_lock:
            item = q.get()
            if item is None:
                q.put(None)  # wake the next slot so every one stops
                return None
            if item[2] is None:  # a batch cut by issue() (Offline, MultiStream)
                return item[0], item[1]
            ids, idx = [item[0]], [item[1]]
            deadline = item[2] + self.batch_timeout_s
            while len(ids) < limit:
                try:
                    item = q.get_nowait()
                except queue.Empty:
                    remaining = deadline - time.perf_counter()
                    if remaining <= 0:
                        break
                    try:
                        item = q.get(timeout=remaining)
                    except queue.Empty:
                        break
                if item is None:
                    q.put(None)
                    break
                ids.append(item[0])
                idx.append(item[1])
            return ids, idx

    def _slot_loop(self, slot: _Slot) -> None:
        dev, st = slot.device, slot.stats
        pin_current_thread(st.cpus)
        limit = dev.batch_size
        store, replica = self.store, slot.replica

        def gather(idx, out):
            if dev.reads_input:
                store.gather(idx, out, replica)
        clock = time.perf_counter
        while True:
            work = self._collect(limit)
            if work is None:
                return
            ids, idx = work
            n = len(ids)
            t0 = clock()
            try:
                gather(idx, slot.inbuf)
                x = slot.inbuf if dev.fixed_batch else slot.inbuf[:n]
                t1 = clock()
                outputs = dev.run(x)
                t2 = clock()
            except BaseException as e:  # never leave LoadGen waiting on a sample
                self._fail(e, ids)
                continue
            st.busy_s += t2 - t1
            st.host_s += t1 - t0
            self._deliver(ids, idx, outputs, st)

    def _drive(self, cpus: tuple[int, ...], lanes: list[_Lane]) -> None:
        """One driver thread for asynchronous devices (see the module's docstring).

        Each step takes the devices most urgent first (idle, then the one whose newest batch ends
        soonest), completes the batches it has finished and feeds it; with nothing to do, the
        thread sleeps until the next batch is due, new work arrives, or the batch being formed
        times out. Never holds more than `max_in_flight` per device.
        """
        pin_current_thread(cpus)
        q, clock = self._q, time.perf_counter
        held = _NOTHING  # a queue item taken while waiting (None: stop), not yet placed in a batch
        ids: list = []  # the batch being formed from one-sample queries (Server)
        idx: list = []
        deadline = 0.0
        stopping = False

        def take(limit: int):
            """The next batch to submit, or None if there is none yet. Never blocks."""
            nonlocal held, ids, idx, deadline, stopping
            now_ready = stopping
            while len(ids) < limit:
                if held is not _NOTHING:
                    item, held = held, _NOTHING
                else:
                    try:
                        item = q.get_nowait()
                    except queue.Empty:
                        break
                if item is None:
                    q.put(None)  # so every other thread sees it too
                    stopping = now_ready = True
                    break
                if item[2] is None:  # a whole batch cut by issue() (Offline, MultiStream)
                    if not ids:
                        return item[0], item[1]
                    held, now_ready = item, True  # send the one being formed first
                    break
                if not ids:
                    deadline = item[2] + self.batch_timeout_s
                ids.append(item[0])
                idx.append(item[1])
            if ids and (now_ready or len(ids) >= limit or clock() >= deadline):
                work, ids, idx = (ids, idx), [], []
                return work
            return None

        def serve() -> bool:
            """Steps until done (True); False after an error, once its samples are failed."""
            nonlocal held, ids, idx
            try:
                while not step():
                    pass
                return True
            except BaseException as e:  # never leave LoadGen waiting on a sample
                if self.error is None:
                    self.error = e
                for ln in lanes:
                    while ln.pending:
                        self._fail(e, ln.pending.popleft()[1])
                if ids:
                    self._fail(e, ids)
                    ids, idx = [], []
                if held is not _NOTHING and held is not None:
                    self._fail(e, [held[0]] if held[2] is not None else held[0])
                    held = _NOTHING
                return False

        def step() -> bool:
            """One turn; True when the driver is done (stopped, nothing left in flight)."""
            nonlocal held
            now = clock()
            wake = math.inf
            lazy = self.throughput_only
            room = False
            # Most urgent first: idle devices, then those whose newest batch ends soonest.
            for ln in sorted(lanes, key=_urgency) if len(lanes) > 1 else lanes:
                p = ln.pending
                while p and p[0][0].ready_at <= now:
                    self._complete(ln)
                cap = ln.device.max_in_flight
                while len(p) < cap:  # feed this device before moving on to the next
                    work = take(ln.device.batch_size)
                    if work is None:
                        break
                    self._submit(ln, *work)
                    return False  # a turn may take long enough for a batch to be done
                room = room or len(p) < cap
                if not p:
                    continue
                due = p[0][0].ready_at
                if lazy:
                    # A device is fed in time as long as its next batch is submitted before its
                    # newest one ends: wake with half of that one's run time to spare. Lanes
                    # then share wake-ups, completing several batches each time.
                    last = p[-1][0]
                    due = max(due, last.ready_at - 0.5 * (last.ready_at - last.start))
                wake = min(wake, due)
            if stopping and held is _NOTHING and not ids:
                if wake == math.inf:
                    return True
                time.sleep(max(0.0, wake - clock()))
                return False
            if ids:
                wake = min(wake, deadline)
            wait = wake - clock()
            if room and not stopping:
                try:
                    held = q.get(timeout=max(0.0, wait)) if wait != math.inf else q.get()
                except queue.Empty:
                    pass
            elif wait > 0:
                time.sleep(wait)
            return False

        while not serve():
            pass

    def _submit(self, ln: _Lane, ids, idx) -> None:
        dev, st = ln.device, ln.stats
        t0 = time.perf_counter()
        try:
            if dev.reads_input:
                self.store.gather(idx, ln.inbuf, ln.replica)
            t1 = time.perf_counter()
            ticket = dev.submit(ln.inbuf if dev.fixed_batch else ln.inbuf[: len(ids)])
        except BaseException as e:  # never leave LoadGen waiting on a sample
            self._fail(e, ids)
            return
        st.host_s += t1 - t0
        ln.pending.append((ticket, ids, idx))

    def _complete(self, ln: _Lane) -> None:
        ticket, ids, idx = ln.pending.popleft()
        st = ln.stats
        try:
            outputs = ln.device.collect(ticket)
        except BaseException as e:
            self._fail(e, ids)
            return
        st.busy_s += ticket.ready_at - ticket.start  # the device's own time on this batch
        self._deliver(ids, idx, outputs, st)

    def _deliver(self, ids, idx, outputs, st: DeviceStats) -> None:
        """A device's outputs for one batch: count them, then post-process and complete them
        here, or hand them to the post-processing threads so the device moves on at once."""
        st.batches += 1
        st.samples += len(ids)
        if self._post_q is not None:
            self._post_q.put((ids, idx, outputs))
        else:
            self._finish(ids, idx, outputs, st)

    def _finish(self, ids, idx, outputs, st) -> None:
        """Post-process one batch and complete it: one QuerySamplesComplete per batch."""
        t = time.perf_counter()
        try:
            data, offsets, sizes = self.postprocess(outputs, idx)
            QSR = self._lg.QuerySampleResponse
            base = data.ctypes.data
            responses = [QSR(i, base + o, z) for i, o, z in
                         zip(ids.tolist() if isinstance(ids, np.ndarray) else ids, offsets.tolist(), sizes.tolist())]
        except BaseException as e:
            self._fail(e, ids)
            return
        self.complete(responses)
        st.post_s += time.perf_counter() - t  # DATA is referenced until here: the call returned

    def _post_loop(self, st: DeviceStats) -> None:
        pin_current_thread(st.cpus)
        q = self._post_q
        while True:
            item = q.get()
            if item is None:
                return
            self._finish(*item, st)

    def _fail(self, e: BaseException, ids) -> None:
        if self.error is None:
            self.error = e
        QSR = self._lg.QuerySampleResponse
        self.complete([QSR(int(i), 0, 0) for i in ids])

    def reset_stats(self) -> None:
        for st in self.stats + self.post_stats:
            st.batches = st.samples = 0
            st.busy_s = st.host_s = st.post_s = 0.0

    # -- warm-up ---------------------------------------------------------------------------
    def measure_rate(self, seconds: float = 2.0) -> float:
        """Samples/s of all devices together, on the loaded samples, outside LoadGen.

        Used to set Offline's expected QPS when the user gives none; also warms every device
        (first runs are slow). The queue is kept fed so no device idles, and only completions
        after the first 30% of the window count. Requires start() and a loaded store.
        """
        done = threading.Semaphore(0)
        real = self.complete
        self.complete = lambda responses: done.release()
        b = self.batch_size
        loaded = max(1, self.store.loaded)
        ids = np.arange(b, dtype=np.uint64)
        k = 0

        def put() -> None:
            nonlocal k
            self._q.put((ids, self.store.indices[(np.arange(b) + k * b) % loaded], None))
            k += 1

        try:
            outstanding = 2 * self.capacity
            for _ in range(outstanding):
                put()
            t0 = time.perf_counter()
            t_count, t_end = t0 + 0.3 * seconds, t0 + seconds
            first = last = None
            counted = 0
            while True:
                done.acquire()
                now = time.perf_counter()
                if now >= t_count:
                    if first is None:
                        first = now
                    else:
                        counted += b
                        last = now
                # A burst (all outstanding batches finishing together after a stall) is not a
                # rate: the counted window must be long and hold several batches per slot.
                if now >= t_end and counted >= 2 * b * self.capacity and last - first >= 0.35 * seconds:
                    break
                put()
            for _ in range(outstanding - 1):
                done.acquire()
            return counted / (last - first)
        finally:
            self.complete = real

    def measure_latency(self, samples_per_query: int, seconds: float = 0.5) -> float:
        """Seconds per query, one query in flight at a time (SingleStream, MultiStream)."""
        done = threading.Semaphore(0)
        real = self.complete
        self.complete = lambda responses: done.release()
        try:
            idx = self.store.indices[np.arange(samples_per_query) % max(1, self.store.loaded)]
            ids = np.arange(samples_per_query, dtype=np.uint64)
            times = []
            t_end = time.perf_counter() + seconds
            while time.perf_counter() < t_end or len(times) < 3:
                t = time.perf_counter()
                for _ in range(self._put_batches(ids, idx)):
                    done.acquire()
                times.append(time.perf_counter() - t)
            return float(np.median(times[1:]))  # the first query pays for warm-up
        finally:
            self.complete = real
