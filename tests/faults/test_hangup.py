"""Issue 23, signals and terminals: closing the terminal (SIGHUP, also an SSH disconnect) stops a
command as SIGTERM does (exit 129, the same one line and cleanup), and Ctrl-C while a run waits
(--wait) for another run's lock ends the waiting run at once and leaves the holder alone."""

from __future__ import annotations

import fcntl
import os
import pty
import signal
import subprocess
import sys
import termios
import time

import pytest

from conftest import visionperf
from injection import EXIT, FIRST_WORD, finish, half_written, no_survivors, one_line, start, stop, wait_for_file
from test_interrupts import signal_a_run
from test_plugin import cache, run_args  # noqa: F401 (fixtures)
from visionperf.results import read_result

pytestmark = pytest.mark.fault  # `make faults` runs every test so marked

SLOW_RUN = ["run", "resnet50", "--scenario", "Offline", "--backend", "simulated", "--card-rate", "2000",
            "--target-qps", "2000", "--duration", "600"]


def test_a_hangup_mid_test_ends_a_run_as_sigterm_does_and_the_rerun_works(run_args, tmp_path):  # noqa: F811
    out = tmp_path / "out"
    p, token = start([*SLOW_RUN, *run_args, "--out", out])
    signal_a_run(p, token, out, "Offline", signal.SIGHUP, "test", 0, 0.3)
    visionperf("run", "resnet50", "--scenario", "Offline", "--backend", "null", "--duration", "0.2",
               *run_args, "--out", out)
    assert (out / "resnet50/Offline/performance/run_1/mlperf_log_summary.txt").exists()
    assert not half_written(tmp_path), half_written(tmp_path)


def _on_a_terminal(args: list) -> tuple[subprocess.Popen, int]:
    """`visionperf ARGS` as the only process of a session whose controlling terminal is a new
    pty (as a login shell's job is): closing the returned master end hangs the terminal up."""
    master, slave = pty.openpty()

    def take_terminal():
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    p = subprocess.Popen([sys.executable, "-m", "visionperf", *map(str, args)], stdin=slave, stdout=slave,
                         stderr=slave, start_new_session=True, preexec_fn=take_terminal)
    os.close(slave)
    return p, master


def _drain(master: int, until: float) -> bytes:
    """What the terminal showed until UNTIL (monotonic): a pty whose reader stops blocks its writer."""
    seen = b""
    os.set_blocking(master, False)
    while time.monotonic() < until:
        try:
            seen += os.read(master, 65536)
        except BlockingIOError:
            time.sleep(0.02)
        except OSError:  # EIO: the other end has closed
            break
    return seen


def test_closing_the_terminal_mid_run_keeps_nothing(run_args, tmp_path):  # noqa: F811
    """The real thing: the kernel's hangup, and every later write to the terminal failing (EIO)."""
    out = tmp_path / "out"
    p, master = _on_a_terminal([*SLOW_RUN, *run_args, "--out", out])
    try:
        deadline = time.monotonic() + 120
        pattern = "resnet50/Offline/performance/run_1.partial-*/mlperf_log_detail.txt"
        while not list(out.glob(pattern)):
            assert p.poll() is None and time.monotonic() < deadline, _drain(master, time.monotonic() + 1)
            _drain(master, time.monotonic() + 0.1)
        _drain(master, time.monotonic() + 0.5)  # the live display is drawing
        t = time.monotonic()
        os.close(master)  # the terminal window closes
        p.wait(timeout=30)
        took = time.monotonic() - t
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 129, p.returncode
    assert took < 2.0, took
    assert not half_written(tmp_path), half_written(tmp_path)
    assert not (out / "resnet50/Offline/performance/run_1").exists()


def test_a_hangup_stops_a_scale_study_and_its_run(run_args, tmp_path):  # noqa: F811
    out = tmp_path / "scale"
    p, token = start(["scale", "resnet50", "--backend", "simulated", "--card-rate", "500", "--devices", "1,2",
                      "--duration", "600", *run_args, "--out", out])
    try:
        wait_for_file(p, out, "d1/offline/resnet50/Offline/performance/run_1.partial-*/mlperf_log_detail.txt")
        stderr, took = stop(p, signal.SIGHUP)
    finally:
        finish(p, 0)
    assert p.returncode == EXIT[signal.SIGHUP], (p.returncode, stderr)
    assert not no_survivors(token), "a run outlived the scale study"
    assert took < 2.0, took
    assert one_line(stderr).startswith(f"{FIRST_WORD[signal.SIGHUP]}: runs that finished are kept")
    assert not half_written(tmp_path), half_written(tmp_path)
    assert not (out / "scaling.json").exists()


def test_ctrl_c_while_waiting_for_another_runs_lock_leaves_the_holder_alone(run_args, tmp_path):  # noqa: F811
    out = tmp_path / "out"
    args = ["run", "resnet50", "--scenario", "Offline", "--backend", "simulated", "--card-rate", "2000",
            "--target-qps", "2000", "--duration", "10", *run_args, "--out", out]
    holder, _ = start(args)
    try:
        wait_for_file(holder, out, "resnet50/Offline/performance/run_1.partial-*/mlperf_log_detail.txt")
        waiter, token = start([*args, "--wait", "600"])
        try:
            time.sleep(3)  # it has started (about 1 s) and found the results locked
            assert holder.poll() is None, "the holder ended before the waiter was stopped: lengthen its run"
            stderr, took = stop(waiter, signal.SIGINT)
        finally:
            finish(waiter, 0)
        assert waiter.returncode == EXIT[signal.SIGINT], (waiter.returncode, stderr)
        assert took < 2.0, took
        assert one_line(stderr).startswith(FIRST_WORD[signal.SIGINT])
        assert not no_survivors(token)
        _, held_err = finish(holder, 120)
    finally:
        finish(holder, 0)
    assert holder.returncode == 0, held_err
    res = read_result(out / "resnet50/Offline/performance/run_1", "Offline")
    assert res.valid, res.reasons
    assert not half_written(tmp_path), half_written(tmp_path)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_nohup_is_respected(tmp_path, sig):
    """A signal ignored when visionperf starts (nohup, a scheduler's choice) stays ignored."""
    code = (f"import signal, sys; signal.signal({int(sig)}, signal.SIG_IGN); "
            "from visionperf.cli import main; sys.exit(main(['sample-data', 'imagenet', '--count', '2000', "
            f"'--out', {str(tmp_path / 'out')!r}]))")
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_file(p, tmp_path, "out/*.JPEG")
        p.send_signal(sig)
        time.sleep(0.5)
        assert p.poll() is None, p.communicate()
    finally:
        p.send_signal(signal.SIGINT)
        finish(p, 30)
    assert p.returncode == 130, p.returncode


def test_a_hangup_while_writing_sample_data(tmp_path):
    """A command with no engine loaded: exit 129, its own line, no list file."""
    p, token = start(["sample-data", "imagenet", "--count", "2000", "--out", tmp_path / "out"])
    try:
        wait_for_file(p, tmp_path, "out/*.JPEG")
        stderr, took = stop(p, signal.SIGHUP)
    finally:
        finish(p, 0)
    assert p.returncode == 129, (p.returncode, stderr)
    assert took < 2.0
    assert one_line(stderr).startswith("visionperf: terminated: images written so far are kept")
    assert not (tmp_path / "out" / "val_map.txt").exists()
    assert not no_survivors(token)
