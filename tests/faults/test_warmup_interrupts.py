"""Issue 23, class 3: the warm-up can be interrupted. A signal while the engine measures the
devices' rate (before LoadGen's test) ends `run` as it does mid-test: within 2 s, exit
130/143/129, one line, nothing kept, no process left, even while a device holds a batch for
far longer (a slow card, a large batch on a blocking device): the engine waits on its devices
in slices and runs the signal handlers between them (engine/src/warmup.h)."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from visionperf.models import build_resnet50

from injection import EXIT, FIRST_WORD, finish, half_written, no_survivors, one_line, start, stop
from test_plugin import cache  # noqa: F401 (fixture)
from test_sut import EchoDevice, make_sut

pytestmark = pytest.mark.fault  # `make faults` runs every test so marked

SETTLE_S = 1.0  # from `plan:` to the warm-up: the engine starts and loads a few samples


@pytest.fixture(scope="module")
def full_width_model(tmp_path_factory) -> Path:
    """ResNet50 at full width (synthetic weights): a batch of 64 takes seconds on this machine."""
    return build_resnet50(tmp_path_factory.mktemp("models") / "resnet50.onnx")


def signal_the_warm_up(args: list, out: Path, sig) -> None:
    """`visionperf run ARGS --out OUT`, SIG once it is warming up; then what a signal mid-test
    must leave."""
    p, token = start(["run", "resnet50", "--scenario", "Offline", "--duration", "1", *args, "--out", out])
    try:
        deadline = time.monotonic() + 120
        for line in p.stdout:  # printed once the devices are made, just before the engine starts
            if line.startswith("plan:") or time.monotonic() > deadline:
                break
        time.sleep(SETTLE_S)
        stderr, took = stop(p, sig)
    finally:
        finish(p, 0)
    assert p.returncode == EXIT[sig], (p.returncode, stderr)
    assert took < 2.0, took
    line = one_line(stderr)
    assert line.startswith(FIRST_WORD[sig]) and "nothing of this run was kept" in line, line
    assert not no_survivors(token), "a process outlived the run"
    assert not half_written(out), half_written(out)
    assert not (out / "resnet50/Offline/performance/run_1").exists()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=lambda s: s.name)
def test_a_signal_while_a_slow_card_warms_up(imagenet_dir, slim_model, cache, tmp_path, sig):  # noqa: F811
    """--card-rate 0.5: a batch of 8 takes 16 s, and the warm-up waits on it."""
    args = ["--backend", "simulated", "--card-rate", "0.5", "--model", slim_model, "--dataset", imagenet_dir,
            "--cache", cache[0]]
    signal_the_warm_up(args, tmp_path / "out", sig)


@pytest.mark.slow
def test_a_signal_while_a_blocking_device_runs_a_large_batch(imagenet_dir, full_width_model, cache, tmp_path):  # noqa: F811
    """Full-width ResNet50 on ONNX Runtime at --batch-size 64: the device's thread is in a run
    of seconds that cannot be interrupted; it is left to it and the process ends."""
    args = ["--backend", "onnxruntime", "--devices", "1", "--batch-size", "64", "--model", full_width_model,
            "--dataset", imagenet_dir, "--cache", cache[0]]
    signal_the_warm_up(args, tmp_path / "out", signal.SIGINT)


class Stopped(Exception):
    pass


@pytest.mark.parametrize("measure", ["rate", "latency"])
def test_an_interrupted_warm_up_on_a_healthy_device_stops_the_engine_as_usual(measure):
    """In process: a handler's exception is raised from the measurement within a poll and the
    grace, the batches in flight complete, and nothing is left running."""
    from visionperf import _engine

    def raise_stopped(signum, frame):
        raise Stopped

    before = signal.signal(signal.SIGUSR1, raise_stopped)
    sut = make_sut([EchoDevice("a", delay=0.05)], load=range(16))
    timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGUSR1))
    try:
        t = time.monotonic()
        timer.start()
        with pytest.raises(Stopped):
            sut.measure_rate(30.0) if measure == "rate" else sut.measure_latency(4, 30.0)
        took = time.monotonic() - t - 0.3
    finally:
        timer.cancel()
        signal.signal(signal.SIGUSR1, before)
    sut.stop()
    assert took < 0.5, took
    assert not _engine.loadgen_abandoned()
