"""The SUT's dispatch and batching, driven directly (LoadGen's completion replaced by a recorder)."""

import threading
import time

import numpy as np
import pytest

from visionperf.postprocess.classify import labels_from_output
from visionperf.samples import SampleStore
from visionperf.sut import SystemUnderTest


class EchoDevice:
    """Returns, per row, the value of its first element: shows which sample each row came from."""

    reads_input = True
    fixed_batch = False

    def __init__(self, name, batch_size=4, in_flight=1, delay=0.0, fail_on=None):
        self.name, self.batch_size, self.max_in_flight = name, batch_size, in_flight
        self.cpus = ()
        self.input_shape, self.input_dtype = (3, 2, 2), np.dtype(np.float32)
        self.delay, self.fail_on, self.batches = delay, fail_on, []

    def run(self, batch):
        self.batches.append(len(batch))
        if self.delay:
            time.sleep(self.delay)
        if self.fail_on is not None and len(self.batches) == self.fail_on:
            raise RuntimeError("device fell over")
        return [batch[:, 0, 0, 0].astype(np.int64) + 1]  # an ArgMax-like output, label + 1

    def close(self):
        pass


class _Ticket:
    def __init__(self, out, start, ready_at, fail):
        self.out, self.start, self.ready_at, self.fail = out, start, ready_at, fail


class AsyncEchoDevice(EchoDevice):
    """The same device behind a card-like driver: submit returns at once, collect waits."""

    def __init__(self, *a, in_flight=2, **k):
        super().__init__(*a, in_flight=in_flight, **k)
        self.free_at, self.held, self.most_held, self.lock = 0.0, 0, 0, threading.Lock()
        self.stall = 0.0  # extra time for the first batch only

    def submit(self, batch):
        self.batches.append(len(batch))
        with self.lock:
            self.held += 1
            self.most_held = max(self.most_held, self.held)
            assert self.held <= self.max_in_flight, "more batches submitted than the device holds"
        start = max(time.perf_counter(), self.free_at)
        self.free_at = start + self.delay + (self.stall if len(self.batches) == 1 else 0.0)
        fail = self.fail_on is not None and len(self.batches) == self.fail_on
        return _Ticket([batch[:, 0, 0, 0].astype(np.int64) + 1], start, self.free_at, fail)

    def collect(self, ticket):
        wait = ticket.ready_at - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
        with self.lock:
            self.held -= 1
        if ticket.fail:
            raise RuntimeError("device fell over")
        return ticket.out


def device(kind, name, **k):
    return (AsyncEchoDevice if kind == "async" else EchoDevice)(name, **k)


KINDS = ["blocking", "async"]


class Recorder:
    def __init__(self):
        self.lock = threading.Lock()
        self.got: dict[int, float] = {}
        self.calls = 0
        self.done = threading.Event()
        self.expect = 0

    def __call__(self, responses):
        import ctypes
        with self.lock:
            self.calls += 1
            for r in responses:
                val = ctypes.c_float.from_address(r.data).value if r.size else None
                assert r.id not in self.got, "a sample completed twice"
                self.got[r.id] = val
            if len(self.got) >= self.expect:
                self.done.set()


def make_store(n=40):
    data = np.zeros((n, 3, 2, 2), np.float32)
    data[:, 0, 0, 0] = np.arange(n) * 10  # sample i "is" label 10*i
    store = SampleStore(data)
    return store


def classify(outputs, idx):
    n = len(idx)
    return labels_from_output(outputs[0], n, 1), np.arange(n) * 4, np.full(n, 4)


def make_sut(devices, store, timeout=0.0, post_threads=0):
    rec = Recorder()
    sut = SystemUnderTest(devices, store, classify, timeout, complete=rec, post_threads=post_threads)
    sut.start()
    return sut, rec


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("post_threads, prebatched", [(0, False), (2, False), (0, True)])
def test_offline_query_is_cut_into_batches_and_every_sample_answered_once(post_threads, prebatched, kind):
    store = make_store()
    store.load(list(range(5, 35)))
    devs = [device(kind, "a"), device(kind, "b")]
    sut, rec = make_sut(devs, store, post_threads=post_threads)
    sut.prebatched = prebatched  # Offline: slots take whole batches without the collect lock
    sut.throughput_only = prebatched  # drivers may complete in bursts
    rec.expect = 30
    ids = [1000 + i for i in range(30)]
    idx = list(range(5, 35))
    sut.issue(ids, idx)
    assert rec.done.wait(10)
    sut.stop()
    assert rec.got == {1000 + k: float(10 * (5 + k)) for k in range(30)}
    assert sorted(devs[0].batches + devs[1].batches) == [2] + [4] * 7
    assert rec.calls == 8  # one QuerySamplesComplete per batch


@pytest.mark.parametrize("kind", KINDS)
def test_server_samples_are_batched_within_the_timeout(kind):
    store = make_store()
    store.load(list(range(40)))
    dev = device(kind, "a", batch_size=8)
    sut, rec = make_sut([dev], store, timeout=0.05)
    rec.expect = 5
    for k in range(5):  # five queries arriving together: one batch, not five
        sut.issue([k], [k])
    assert rec.done.wait(5)
    sut.stop()
    assert dev.batches == [5]
    assert rec.got == {k: float(10 * k) for k in range(5)}


@pytest.mark.parametrize("kind", KINDS)
def test_timeout_bounds_the_wait_for_a_full_batch(kind):
    store = make_store()
    store.load(list(range(40)))
    dev = device(kind, "a", batch_size=8)
    sut, rec = make_sut([dev], store, timeout=0.02)
    rec.expect = 1
    t = time.monotonic()
    sut.issue([7], [3])
    assert rec.done.wait(5)
    waited = time.monotonic() - t
    sut.stop()
    assert 0.015 < waited < 0.5 and dev.batches == [1]


@pytest.mark.parametrize("kind", KINDS)
def test_free_devices_take_the_work(kind):
    store = make_store()
    store.load(list(range(40)))
    devs = [device(kind, "a", delay=0.02), device(kind, "b", delay=0.02)]
    sut, rec = make_sut(devs, store)
    rec.expect = 40
    sut.issue(list(range(40)), list(range(40)))
    assert rec.done.wait(10)
    sut.stop()
    assert len(devs[0].batches) >= 3 and len(devs[1].batches) >= 3


@pytest.mark.parametrize("kind", KINDS)
def test_a_failing_device_still_answers_loadgen_and_reports(kind):
    store = make_store()
    store.load(list(range(40)))
    dev = device(kind, "a", fail_on=2)
    sut, rec = make_sut([dev], store)
    rec.expect = 12
    sut.issue(list(range(12)), list(range(12)))
    assert rec.done.wait(10)
    sut.stop()
    assert isinstance(sut.error, RuntimeError)
    assert [rec.got[i] for i in range(4, 8)] == [None] * 4  # empty responses, never garbage


@pytest.mark.parametrize("kind", KINDS)
def test_measure_rate_uses_all_devices_outside_loadgen(kind):
    store = make_store()
    store.load(list(range(16)))
    devs = [device(kind, "a", delay=0.01, in_flight=1), device(kind, "b", delay=0.01, in_flight=1)]
    sut, rec = make_sut(devs, store)
    rate = sut.measure_rate(0.4)
    sut.stop()
    assert rec.calls == 0  # nothing reached LoadGen's completion
    assert 300 < rate < 900  # 2 devices x 4 samples / 10 ms = 800/s minus overheads


def test_gather_reads_the_loaded_rows_by_dataset_index():
    store = make_store()
    store.load([9, 2, 30])
    out = np.empty((4, 3, 2, 2), np.float32)
    store.gather(np.array([30, 9]), out)
    assert out[0, 0, 0, 0] == 300 and out[1, 0, 0, 0] == 90
    assert store.buffer.flags.c_contiguous and store.loaded == 3
    store.unload([9, 2, 30])
    assert store.loaded == 0


@pytest.mark.parametrize("kind", KINDS)
def test_measure_rate_is_not_fooled_by_a_stall_then_a_burst(kind):
    """Outputs held back (say, a kernel compiling) then released together are not a rate."""
    store = make_store()
    store.load(list(range(16)))

    class Stalling(EchoDevice):
        def run(self, batch):
            if not self.batches:
                time.sleep(0.6)  # longer than the whole measuring window
            return super().run(batch)

    devs = [Stalling("a", delay=0.01), Stalling("b", delay=0.01)]
    if kind == "async":
        devs = [AsyncEchoDevice(n, delay=0.01, in_flight=1) for n in "ab"]
        for d in devs:
            d.stall = 0.6
    sut, rec = make_sut(devs, store)
    rate = sut.measure_rate(0.4)
    sut.stop()
    assert 300 < rate < 900  # the steady 2 x 4 samples / 10 ms, not thousands


def test_one_driver_thread_keeps_several_cards_on_one_core_fed():
    """More cards than cores (this host: 8 simulated cards, 2 cores): one driver per core."""
    store = make_store()
    store.load(list(range(40)))
    devs = [AsyncEchoDevice(f"c{i}", delay=0.01) for i in range(4)]
    for d in devs:
        d.cpus = (0,)
    sut, rec = make_sut(devs, store)
    sut.prebatched = sut.throughput_only = True
    assert [len(lanes) for _, lanes in sut._drivers] == [4] and not sut._slots
    rec.expect = 40 * 4
    t = time.perf_counter()
    for r in range(4):
        sut.issue(list(range(40 * r, 40 * r + 40)), list(range(40)))
    assert rec.done.wait(10)
    took = time.perf_counter() - t
    sut.stop()
    # 40 batches of 4 rows over 4 cards at 10 ms a batch: 100 ms when all four stay busy
    assert took < 0.2
    assert all(len(d.batches) >= 7 for d in devs)
    assert all(d.most_held == 2 for d in devs)  # each kept both of its slots busy, never more


def test_drivers_can_be_replaced_by_slot_threads_for_comparison():
    store = make_store()
    store.load(list(range(40)))
    devs = [AsyncEchoDevice("a"), AsyncEchoDevice("b")]
    rec = Recorder()
    sut = SystemUnderTest(devs, store, classify, complete=rec, drivers=False)
    assert not sut._drivers and len(sut._slots) == 4
    sut.start()
    rec.expect = 12
    sut.issue(list(range(12)), list(range(12)))
    assert rec.done.wait(10)
    sut.stop()
    assert rec.got == {k: float(10 * k) for k in range(12)}


@pytest.mark.parametrize("kind", KINDS)
def test_a_broken_postprocess_still_answers_every_sample(kind):
    """An error anywhere between the device and LoadGen fails those samples, never hangs."""
    store = make_store()
    store.load(list(range(40)))

    def broken(outputs, idx):
        return list(outputs[0]), [0] * len(idx), [4] * len(idx)  # lists: no .ctypes

    rec = Recorder()
    sut = SystemUnderTest([device(kind, "a"), device(kind, "b")], store, broken, complete=rec)
    sut.start()
    rec.expect = 12
    sut.issue(list(range(12)), list(range(12)))
    assert rec.done.wait(10)
    sut.stop()
    assert isinstance(sut.error, AttributeError) and set(rec.got.values()) == {None}


def test_asynchronous_devices_must_share_one_batch_size():
    with pytest.raises(ValueError, match="one batch size"):
        SystemUnderTest([AsyncEchoDevice("a", batch_size=4), AsyncEchoDevice("b", batch_size=8)],
                        make_store(), classify, complete=Recorder())
