"""The engine's dispatch and batching, driven directly: queries issued without LoadGen and every
response recorded (id, bytes). Each behaviour runs on every kind of device the engine drives:
a Python device (blocking `run`, through the bridge in python_device.h), an asynchronous Python
device (submit/collect, like a GPU's streams) and an asynchronous plug-in
(tests/plugins/echo_device.c, submit/collect through the C ABI)."""

import os
import re
import threading
import time
from collections import deque

import numpy as np
import pytest

from visionperf import _engine
from visionperf.run.warmup import completion_rate as _rate
from visionperf.sut import EngineError, NativeDevice, SystemUnderTest, tensor

N = 40
ROW = (3, 2, 2)


def make_data(n=N):
    """int32 rows whose first element is 10 x the row's index: the first four bytes of sample i
    say 10*i, which is what both echo devices answer as its label."""
    data = np.zeros((n, *ROW), np.int32)
    data[:, 0, 0, 0] = np.arange(n) * 10
    return data


class LabelPost:
    """Classification through the engine: an int64 label per row, minus OFFSET."""

    def __init__(self, offset=0):
        self.offset = offset

    def engine_spec(self):
        return ("classify", tensor(np.int64, ()), self.offset)

    def output_shapes(self, batch, workload):
        return [((batch,), np.int64)]


class EchoDevice:
    """A Python device: per row, the value of its first element (+ OFFSET); records its batches."""

    fixed_batch = False
    reads_input = True
    numa_node = None

    def __init__(self, name, batch_size=4, delay=0.0, fail_on=None, stall=0.0, offset=0, cpus=()):
        self.name, self.batch_size = name, batch_size
        self.cpus = self.thread_cpus = tuple(cpus)
        self.input_shape, self.input_dtype = ROW, np.dtype(np.int32)
        self.delay, self.fail_on, self.stall, self.offset = delay, fail_on, stall, offset
        self.batches = []

    def run(self, batch):
        self.batches.append(len(batch))
        if self.stall and len(self.batches) == 1:
            time.sleep(self.stall)
        if self.delay:
            time.sleep(self.delay)
        if self.fail_on is not None and len(self.batches) == self.fail_on:
            raise RuntimeError("device fell over")
        return [batch[:, 0, 0, 0].astype(np.int64) + self.offset]

    def close(self):
        pass


class AsyncEchoDevice(EchoDevice):
    """EchoDevice driven like a GPU: submit copies the batch and returns at once, a worker
    thread computes batches in order, collect waits (up to its timeout) for the oldest."""

    class Ticket:
        def __init__(self, ready_ns):
            self.ready_ns = ready_ns
            self.done = threading.Event()
            self.outputs = self.error = None

    def __init__(self, *args, in_flight=2, **kw):
        super().__init__(*args, **kw)
        self.max_in_flight = in_flight
        self.indices = []
        self._queue = deque()
        self._cv = threading.Condition()
        self._closed = False
        self._worker = threading.Thread(target=self._work, daemon=True)
        self._worker.start()

    def submit(self, batch, indices):
        self.indices.append(list(indices))
        t = self.Ticket(time.monotonic_ns() + int(self.delay * 1e9))
        with self._cv:
            assert len(self._queue) < self.max_in_flight, "more batches in flight than max_in_flight"
            self._queue.append((t, None if batch is None else batch.copy()))
            self._cv.notify()
        return t

    def _work(self):
        while True:
            with self._cv:
                self._cv.wait_for(lambda: self._queue or self._closed)
                if self._closed:
                    return
                t, batch = self._queue[0]
            try:
                t.outputs = self.run(batch)
            except Exception as e:
                t.error = e
            with self._cv:
                self._queue.popleft()
            t.done.set()

    def collect(self, ticket, timeout_s):
        if not ticket.done.wait(timeout_s):
            return None
        if ticket.error:
            raise ticket.error
        return ticket.outputs

    def close(self):
        with self._cv:
            self._closed = True
            self._cv.notify()


def plugin_device(lib, name, batch_size=4, in_flight=2, cpus=(), **options):
    opts = ";".join(f"{k}={v}" for k, v in options.items())
    return NativeDevice(f"plugin:{lib}", name, tuple(cpus), 0, batch_size, in_flight, ROW, np.dtype(np.int32), opts)


@pytest.fixture(params=["python", "python-async", "plugin"])
def device(request):
    """device(name, delay=seconds, fail_on=N, stall=seconds, batch_size=B, in_flight=K)."""
    if request.param == "python":
        def make(name, delay=0.0, fail_on=None, stall=0.0, batch_size=4, in_flight=1, cpus=()):
            return EchoDevice(name, batch_size, delay, fail_on, stall, cpus=cpus)
    elif request.param == "python-async":
        def make(name, delay=0.0, fail_on=None, stall=0.0, batch_size=4, in_flight=2, cpus=()):
            return AsyncEchoDevice(name, batch_size, delay, fail_on, stall, cpus=cpus, in_flight=in_flight)
    else:
        lib = request.getfixturevalue("echo_plugin")

        def make(name, delay=0.0, fail_on=None, stall=0.0, batch_size=4, in_flight=2, cpus=()):
            opts = {"delay_us": int(delay * 1e6)}
            if fail_on:
                opts["fail_on"] = fail_on
            if stall:
                opts["stall_us"] = int(stall * 1e6)
            return plugin_device(lib, name, batch_size, in_flight, cpus, **opts)
    make.kind = request.param
    return make


def make_sut(devices, data=None, timeout=0.0, post_threads=0, throughput_only=False, post=None,
             replicas=None, load=range(N)):
    data = make_data() if data is None else data
    fill = [()] * (max(replicas) + 1) if replicas else [()]
    sut = SystemUnderTest(devices, data, fill, replicas or [0] * len(devices), post or LabelPost(),
                          None, max(d.batch_size for d in devices), post_threads=post_threads)
    sut.start(timeout, throughput_only=throughput_only)
    sut.load(list(load))
    sut.record_responses()
    return sut


def labels(responses):
    """{id: label} from recorded responses (None for an empty, failed response)."""
    out = {}
    for i, b in responses:
        assert i not in out, f"sample {i} was answered twice"
        out[i] = float(np.frombuffer(b, np.float32)[0]) if b else None
    return out


def batches(sut):
    return [s["batches"] for s in sut.stats()]


@pytest.mark.parametrize("post_threads, throughput_only", [(0, False), (2, False), (0, True), (2, True)])
def test_offline_query_is_cut_into_batches_and_every_sample_answered_once(device, post_threads, throughput_only):
    devs = [device("a"), device("b")]
    sut = make_sut(devs, post_threads=post_threads, throughput_only=throughput_only, load=range(5, 35))
    sut.issue([1000 + i for i in range(30)], list(range(5, 35)))  # one many-sample query
    got = sut.wait_responses(30, 10)
    assert len(sut.wait_responses(31, 0.2)) == 30  # and nothing more comes
    stats = sut.stats()
    sut.stop()
    assert labels(got) == {1000 + k: float(10 * (5 + k)) for k in range(30)}
    assert sum(s["samples"] for s in stats) == 30 and sum(s["batches"] for s in stats) == 8  # 7 x 4 + 2
    if device.kind.startswith("python"):
        assert sorted(devs[0].batches + devs[1].batches) == [2] + [4] * 7
    assert sut.error() == ""


def test_label_offset_and_many_queries_in_a_row(device):
    """Several Offline queries queued at once are all served, each sample with its own row."""
    devs = [device("a")]
    if device.kind.startswith("python"):
        devs[0].offset = 1
    sut = make_sut(devs, post=LabelPost(offset=1 if device.kind.startswith("python") else 0))
    for q in range(5):
        sut.issue(range(100 * q, 100 * q + 13), [(7 * q + k) % N for k in range(13)])
    got = labels(sut.wait_responses(65, 10))
    sut.stop()
    assert got == {100 * q + k: float(10 * ((7 * q + k) % N)) for q in range(5) for k in range(13)}


def test_server_samples_are_batched_within_the_timeout(device):
    dev = device("a", batch_size=8)
    sut = make_sut([dev], timeout=0.3)
    for k in range(5):  # five one-sample queries arriving together: one batch, not five
        sut.issue([k], [k])
    got = labels(sut.wait_responses(5, 5))
    assert batches(sut) == [1]
    sut.stop()
    assert got == {k: float(10 * k) for k in range(5)}
    if device.kind.startswith("python"):
        assert dev.batches == [5]


def test_a_full_batch_goes_at_once_without_waiting_for_the_timeout(device):
    dev = device("a", batch_size=4)
    sut = make_sut([dev], timeout=5.0)
    t = time.monotonic()
    for k in range(8):
        sut.issue([k], [k])
    got = labels(sut.wait_responses(8, 4))
    waited = time.monotonic() - t
    sut.stop()
    assert got == {k: float(10 * k) for k in range(8)} and waited < 2.5  # not the 5 s timeout
    assert batches(sut) == [2]


def test_timeout_bounds_the_wait_for_a_full_batch(device):
    dev = device("a", batch_size=8)
    sut = make_sut([dev], timeout=0.02)
    t = time.monotonic()
    sut.issue([7], [3])
    got = labels(sut.wait_responses(1, 5))
    waited = time.monotonic() - t
    sut.stop()
    assert got == {7: 30.0}
    assert 0.015 < waited < 1.0 and batches(sut) == [1]


def test_free_devices_take_the_work(device):
    devs = [device("a", delay=0.02, in_flight=1), device("b", delay=0.02, in_flight=1)]
    sut = make_sut(devs)
    sut.issue(list(range(40)), list(range(40)))
    got = labels(sut.wait_responses(40, 10))
    sut.stop()
    assert got == {k: float(10 * k) for k in range(40)}
    a, b = batches(sut)
    assert a + b == 10 and a >= 3 and b >= 3


@pytest.mark.fault
def test_a_failing_device_still_answers_every_sample_and_reports(device):
    dev = device("a", fail_on=2)  # the second batch: samples 4..7
    sut = make_sut([dev])
    sut.issue(list(range(12)), list(range(12)))
    got = labels(sut.wait_responses(12, 10))
    sut.stop()
    assert [got[i] for i in range(4, 8)] == [None] * 4  # empty responses, never garbage
    assert {i: got[i] for i in [*range(4), *range(8, 12)]} == {i: float(10 * i) for i in [*range(4), *range(8, 12)]}
    assert sut.error() == ("a: RuntimeError: device fell over" if device.kind.startswith("python")
                           else "a: echo device: submit 2 failed on purpose")


@pytest.mark.fault
def test_a_plugin_failing_in_collect_still_answers_every_sample(echo_plugin):
    sut = make_sut([plugin_device(echo_plugin, "card7", fail_collect_on=2, delay_us=100)])
    sut.issue(list(range(12)), list(range(12)))
    got = labels(sut.wait_responses(12, 10))
    sut.stop()
    assert [got[i] for i in range(4, 8)] == [None] * 4
    assert [got[i] for i in range(4)] == [0.0, 10.0, 20.0, 30.0]
    assert sut.error() == "card7: echo device: collect 2 failed on purpose"


def test_the_engine_polls_a_device_that_cannot_say_when_a_batch_is_ready(echo_plugin):
    sut = make_sut([plugin_device(echo_plugin, "a", delay_us=300, announce=0)])
    sut.issue(list(range(N)), list(range(N)))
    got = labels(sut.wait_responses(N, 10))
    sut.stop()
    assert got == {k: float(10 * k) for k in range(N)}


def test_measure_rate_uses_all_devices_outside_loadgen(device):
    devs = [device("a", delay=0.01, in_flight=1), device("b", delay=0.01, in_flight=1)]
    sut = make_sut(devs, load=range(16))
    rate = _rate(sut.measure_rate(0.4))
    a, b = batches(sut)
    sut.stop()
    assert a > 5 and b > 5
    assert 300 < rate < 900  # 2 devices x 4 samples / 10 ms = 800/s minus overheads; one alone: 400


def test_measure_rate_is_not_fooled_by_a_stall_then_a_burst(device):
    """Outputs held back (say, a kernel compiling) then released together are not a rate."""
    devs = [device(n, delay=0.01, stall=0.6, in_flight=1) for n in "ab"]
    sut = make_sut(devs, load=range(16))
    events = sut.measure_rate(0.4)
    sut.stop()
    assert events[-1][0] > 0.6  # it went on measuring past the stall
    assert 300 < _rate(events) < 900  # the steady 2 x 4 samples / 10 ms, not thousands


def _threads():
    return set(os.listdir("/proc/self/task"))


@pytest.mark.skipif(not {0, 1} <= os.sched_getaffinity(0), reason="needs CPUs 0 and 1")
def test_one_driver_thread_keeps_several_cards_on_one_core_fed(echo_plugin):
    """More cards than cores (the paper's 8 cards on few cores): one pinned driver per core."""
    cards = [plugin_device(echo_plugin, f"c{i}", cpus=(0,), delay_us=10000) for i in range(4)]
    before = _threads()
    sut = make_sut(cards, throughput_only=True)
    new = _threads() - before
    assert len(new) == 1  # one driver for the four cards: threads never outnumber cores
    [tid] = new
    for _ in range(100):  # the driver pins itself as it starts
        status = open(f"/proc/self/task/{tid}/status").read()
        if re.search(r"Cpus_allowed_list:\s*0\n", status):
            break
        time.sleep(0.01)
    assert re.search(r"Cpus_allowed_list:\s*0\n", status), status  # pinned to its core
    t = time.perf_counter()
    for r in range(4):
        sut.issue(list(range(40 * r, 40 * r + 40)), list(range(40)))
    got = labels(sut.wait_responses(160, 10))
    took = time.perf_counter() - t
    stats = sut.stats()
    sut.stop()
    assert got == {40 * r + k: float(10 * k) for r in range(4) for k in range(40)}
    # 40 batches of 4 rows over 4 cards at 10 ms a batch: 100 ms when all four stay busy, 400 ms
    # if one card worked at a time (the plug-in refuses more than its 2 batches in flight, so an
    # over-fed card would have failed samples)
    assert took < 0.3, took
    assert all(s["batches"] >= 7 for s in stats) and sut.error() == ""
    # two groups of cores: one driver each
    before = _threads()
    sut = make_sut([plugin_device(echo_plugin, f"c{i}", cpus=(i % 2,)) for i in range(4)])
    assert len(_threads() - before) == 2
    sut.stop()


@pytest.mark.fault
def test_a_broken_postprocess_still_answers_every_sample():
    """An error between the device and LoadGen fails those samples (responses of size 0), never
    hangs: here prepacked responses (Python post-processing beside a Python device) that claim
    more bytes than a response may have."""

    class Liar:
        def run(self, view, rows, qsl_idx):
            out = np.zeros((rows, 8 + 4), np.uint8)
            out[:, :8] = np.frombuffer(np.uint64(1000).tobytes(), np.uint8)
            return [out]

    for post_threads in (0, 2):
        data = make_data().reshape(N, -1).view(np.uint8)
        e = _engine.Engine(data, data.shape[1], [[]], 4, ("prepacked", 4))
        for name in "ab":
            e.add_python_device(Liar(), name, [], -1, 0, 4, False, tensor(np.int32, ROW), [tensor(np.uint8, (12,))])
        e.configure(0.0, False, post_threads)
        e.start()
        e.load(np.arange(N, dtype=np.int64))
        e.record_responses()
        e.issue(list(range(12)), list(range(12)))
        got = e.wait_responses(12, 10)
        e.stop()
        assert sorted(i for i, _ in got) == list(range(12)) and {b for _, b in got} == {b""}
        assert re.match(r"post-processing on [ab]: a prepacked response of 1000 bytes exceeds 4$", e.error())


# ---- the Python bridge ------------------------------------------------------------------------

class Shaped(EchoDevice):
    def __init__(self, name, outputs):
        super().__init__(name)
        self.outputs = outputs

    def run(self, batch):
        super().run(batch)
        return self.outputs(batch)


@pytest.mark.fault
@pytest.mark.parametrize("outputs, message", [
    (lambda x: [x[:, 0, 0, 0].astype(np.int32)], "output 0 has elements of type 'i', expected int64"),
    (lambda x: [x[:, 0, 0, 0].astype(np.float64)], "output 0 has elements of type 'd', expected int64"),
    (lambda x: [x[:2, 0, 0, 0].astype(np.int64)], "output 0 has 16 bytes for 4 rows, expected 32: wrong shape or type"),
    (lambda x: [x[:, 0, 0, 0].astype(np.int64)] * 2, "returned more outputs than the 1 expected"),
    (lambda x: [], "returned 0 outputs, expected 1"),
])
def test_a_python_device_returning_the_wrong_outputs_fails_the_batch_clearly(outputs, message):
    sut = make_sut([Shaped("cpu3", outputs)])
    sut.issue(list(range(8)), list(range(8)))
    got = sut.wait_responses(8, 10)
    sut.stop()
    assert sorted(i for i, _ in got) == list(range(8)) and {b for _, b in got} == {b""}
    assert sut.error().startswith("cpu3: ") and message in sut.error(), sut.error()


def test_a_python_device_gets_the_rows_it_is_given_and_fixed_batches_are_padded():
    dev = EchoDevice("a", batch_size=4)
    dev.fixed_batch = True
    seen = []
    dev.run = lambda x, run=dev.run: (seen.append(x.copy()), run(x))[1]
    sut = make_sut([dev])
    sut.issue([1, 2, 3, 4, 5, 6], [9, 3, 27, 1, 30, 2])
    got = labels(sut.wait_responses(6, 10))
    sut.stop()
    assert got == {1: 90.0, 2: 30.0, 3: 270.0, 4: 10.0, 5: 300.0, 6: 20.0}
    assert [len(x) for x in seen] == [4, 4]  # the partial batch of 2 went as 4 rows
    np.testing.assert_array_equal(seen[0], make_data()[[9, 3, 27, 1]])  # the real rows, all of them
    np.testing.assert_array_equal(seen[1][:2], make_data()[[30, 2]])


def test_engine_refuses_devices_that_do_not_fit(echo_plugin):
    data = make_data()
    with pytest.raises(EngineError, match="no sample buffer replica 1"):
        SystemUnderTest([EchoDevice("a")], data, [()], [1], LabelPost(), None, 4)
    wrong = EchoDevice("a")
    wrong.input_shape = (3, 2, 3)
    with pytest.raises(EngineError, match="a: its input row is 72 bytes, the cache's 48"):
        SystemUnderTest([wrong], data, [()], [0], LabelPost(), None, 4)
    with pytest.raises(EngineError, match=r"echo device 0 refuses to open \(fail_open=1\)"):
        SystemUnderTest([plugin_device(echo_plugin, "a", fail_open=1)], data, [()], [0], LabelPost(), None, 4)


def test_devices_of_one_driver_with_different_batch_sizes_take_at_most_their_own(echo_plugin):
    # One core group, one driver, batches of 8 and of 3: a Server batch formed while waiting
    # for the bigger device goes to the smaller one 3 at a time, never more than it holds.
    big = plugin_device(echo_plugin, "big", batch_size=8, in_flight=1, cpus=(0,))
    small = plugin_device(echo_plugin, "small", batch_size=3, in_flight=1, cpus=(0,))
    sut = make_sut([big, small], timeout=0.3)
    for k in range(6):
        sut.issue([k], [k])
    got = labels(sut.wait_responses(6, 5))
    stats = {s["name"]: s for s in sut.stats()}
    sut.stop()
    assert got == {k: float(10 * k) for k in range(6)}
    s = stats["small"]
    assert s["batches"] == 0 or s["samples"] <= 3 * s["batches"]


def test_an_async_python_device_gets_the_indices_and_may_skip_the_input():
    """A device that loads samples itself (a remote node) is given each batch's cache indices
    and no gathered rows."""
    dev = AsyncEchoDevice("a", 4, in_flight=3)
    dev.reads_input = False
    got_rows = []
    dev.run = lambda batch: (got_rows.append(batch), [np.full(4, 7, np.int64)])[1]
    sut = make_sut([dev])
    sut.issue(list(range(6)), [3, 1, 4, 1, 5, 9])
    got = labels(sut.wait_responses(6, 10))
    sut.stop()
    dev.close()
    assert got == {k: 7.0 for k in range(6)}
    assert sorted(i for b in dev.indices for i in b) == sorted([3, 1, 4, 1, 5, 9])
    assert all(r is None for r in got_rows)


def test_an_async_python_device_with_a_late_estimate_is_collected_when_done():
    """ready_ns is only a hint: a batch that ends after it is polled for, and one that says
    nothing (0) is polled too."""
    dev = AsyncEchoDevice("a", 4, delay=0.05)
    submit = dev.submit

    def early(batch, indices):  # claims to be ready at once, takes 50 ms
        t = submit(batch, indices)
        t.ready_ns = 0 if len(dev.indices) % 2 else time.monotonic_ns()
        return t

    dev.submit = early
    sut = make_sut([dev])
    sut.issue(list(range(16)), list(range(16)))
    got = labels(sut.wait_responses(16, 10))
    busy = sut.stats()[0]["busy_s"]
    sut.stop()
    dev.close()
    assert got == {k: float(10 * k) for k in range(16)}
    assert busy >= 4 * 0.05 * 0.9  # the time it really took, not the estimate
