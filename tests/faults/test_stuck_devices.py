"""The engine's watchdog (engine/src/engine.h): a device that stops completing batches ends the
run with one clear error instead of leaving LoadGen waiting for ever, and every sample it held,
or that was routed to it, is answered exactly once."""

import os
import re
import subprocess
import sys
import threading
import time

import pytest

from test_plugin import cache, no_results, one_error_line, run_args  # noqa: F401 (fixtures)
from test_sut import N, EchoDevice, labels, make_sut, plugin_device

pytestmark = pytest.mark.fault  # `make faults` runs every test so marked

STUCK = re.compile(r"^(\S+): no batch completed for [0-9.]+ s \(expected about [0-9.]+ ms per batch\): "
                   r"the device is stuck$")


@pytest.fixture
def watchdog(monkeypatch):
    """A 0.5 s watchdog floor (read by SystemUnderTest.start)."""
    monkeypatch.setenv("VISIONPERF_WATCHDOG_S", "0.5")


def answered_once(sut, n):
    """Every id 0..N-1 answered exactly once (the wait past N catches a second answer)."""
    got = sut.wait_responses(n, 10)
    assert len(got) >= n, f"only {len(got)} of {n} samples answered"
    got = sut.wait_responses(n + 1, 0.3)
    ids = sorted(i for i, _ in got)
    assert ids == list(range(n)), "a sample answered twice or never"
    return labels(got)


@pytest.mark.parametrize("announce", [1, 0])
def test_a_stuck_plugin_fails_what_it_holds_and_every_sample_is_answered_once(echo_plugin, watchdog, announce):
    sut = make_sut([plugin_device(echo_plugin, "card3", delay_us=200, hang_on=3, announce=announce)])
    t0 = time.monotonic()
    sut.issue(list(range(N)), list(range(N)))
    got = answered_once(sut, N)
    took = time.monotonic() - t0
    sut.stop()
    assert took < 5, f"the watchdog took {took:.1f} s"
    assert [got[i] for i in range(8)] == [float(10 * i) for i in range(8)]  # batches 1 and 2
    assert all(got[i] is None for i in range(8, N))  # stuck, then nobody left to take them
    m = STUCK.match(sut.error())
    assert m and m.group(1) == "card3", sut.error()


def test_the_other_device_takes_the_work_of_a_stuck_one(echo_plugin, watchdog):
    devs = [plugin_device(echo_plugin, "ok", delay_us=200, in_flight=1),
            plugin_device(echo_plugin, "stuck", delay_us=200, in_flight=1, hang_on=2)]
    sut = make_sut(devs)
    for i in range(N // 2):  # one-sample queries, as Server issues them: routed per driver
        sut.issue([i], [i])
        time.sleep(0.01)
    deadline = time.monotonic() + 5
    while not sut.error() and time.monotonic() < deadline:
        time.sleep(0.05)
    for i in range(N // 2, N):  # after the watchdog fired: all to the live device
        sut.issue([i], [i])
    got = answered_once(sut, N)
    sut.stop()
    failed = [i for i in range(N) if got[i] is None]
    assert failed and max(failed) < N // 2, failed  # the stuck batch, and what was queued to its driver
    assert all(got[i] == float(10 * i) for i in range(N) if i not in failed)
    assert sut.error().startswith("stuck: no batch completed"), sut.error()


class HangingDevice(EchoDevice):
    """A Python device whose second batch blocks until RELEASE is set."""

    def __init__(self, name, release):
        super().__init__(name)
        self.release = release

    def run(self, batch):
        if len(self.batches) == 1:
            self.release.wait()
        return super().run(batch)


def test_a_blocking_device_stuck_in_run_is_failed_by_the_watchdog_thread(watchdog):
    release = threading.Event()
    sut = make_sut([HangingDevice("py0", release)])
    try:
        sut.issue(list(range(N)), list(range(N)))
        got = answered_once(sut, N)
        assert [got[i] for i in range(4)] == [0.0, 10.0, 20.0, 30.0]
        assert all(got[i] is None for i in range(4, N))
        m = STUCK.match(sut.error())
        assert m and m.group(1) == "py0", sut.error()
    finally:
        release.set()  # the stuck run returns: its samples must not be answered again
    time.sleep(0.3)
    assert len(sut.wait_responses(N + 1, 0.2)) == N
    sut.stop()  # does not join the stuck thread


@pytest.mark.slow
@pytest.mark.parametrize("scenario, hang_on", [("Offline", 2), ("Offline", 100), ("Server", 100)])
def test_a_stuck_device_ends_the_run_in_bounded_time_with_one_line(echo_plugin, run_args, tmp_path, scenario,  # noqa: F811
                                                                  hang_on):
    """hang_on=2: stuck in the warm-up; 100 batches of 20 ms: past the warm-up's ~30, in LoadGen's test."""
    cmd = [sys.executable, "-m", "visionperf", "run", "resnet50", "--scenario", scenario, "--target-qps", "300",
           "--duration", "2", *map(str, run_args), "--out", str(tmp_path / "out"),
           "--backend", f"plugin:{echo_plugin}", "--backend-option", f"delay_us=20000;hang_on={hang_on}"]
    t0 = time.monotonic()
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=60,
                       env={**os.environ, "VISIONPERF_WATCHDOG_S": "1"})
    assert p.returncode == 2, (p.stdout, p.stderr)
    line = one_error_line(p)
    assert line.startswith("visionperf: error: the run failed: card0: no batch completed for "), line
    assert ": the device is stuck" in line, line
    assert no_results(tmp_path / "out", scenario)
    assert time.monotonic() - t0 < 60
