"""Live progress (progress/): what the run's display says and when, on rich's own test console
(a fake terminal) and on a plain file; the engine counters it reads; and the real command on a
pseudo-terminal and on a pipe."""

import io
import os
import re
import subprocess
import sys
import time

import numpy as np
import pytest
from rich.console import Console

from visionperf import progress
from visionperf.progress import (
    Activity,
    Reading,
    RunDisplay,
    RunPlan,
    RunWatch,
    StudyProgress,
    Tracker,
    latency_so_far,
    plain_line,
)
from visionperf.sut import NativeDevice, SystemUnderTest, tensor
from visionperf.targets import (
    early_stopping_passes,
    early_stopping_queries,
    server_queries_allowed_over,
)

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")  # anything but \t and \n

SERVER = RunPlan("Server", "performance", 600.0, 10_000, 10_000, 50.0, 0.015, 0.99, ("dev0", "dev1"))


def terminal() -> Console:
    """rich's test console: a terminal that writes into a string."""
    return Console(file=io.StringIO(), force_terminal=True, width=200, color_system="truecolor",
                   legacy_windows=False, _environ={})


def plain_file() -> Console:
    """Output that is not a terminal, as the command's console writes it (soft_wrap: a long line
    stays one line)."""
    return Console(file=io.StringIO(), force_terminal=False, width=120, soft_wrap=True, _environ={})


class FakeSut:
    """Counters as the engine keeps them: RATE samples/s over two devices, each busy half the
    time, and a fixed latency histogram."""

    def __init__(self, bins=(), rate=1000.0):
        self.t0 = time.monotonic()
        self.bins = list(bins)
        self.rate = rate
        self.latency_on = []

    def live(self):
        dt = time.monotonic() - self.t0
        n = int(self.rate * dt)
        return [n // 2, n - n // 2], [n // 8, n // 8], [0.5 * dt, 0.5 * dt], self.bins

    def live_latency(self, on):
        self.latency_on.append(on)


def watch(console, sut, plan, seconds=0.6, **display):
    w = RunWatch(RunDisplay(console, refresh_s=0.05, **display), sut, plan)
    with w:
        time.sleep(seconds)
    return w, console.file.getvalue()


# ---- the arithmetic of validity ------------------------------------------------------------

def test_early_stopping_matches_loadgen():
    # h from LoadGen 6.0.17's own MinPassingQueriesFinder (early_stopping.cc, p 0.99, tolerance
    # 0, confidence 0.99), compiled and run for these t; early_stopping_queries gives h + t
    for t, h in [(0, 459), (1, 661), (2, 836), (5, 1302), (10, 2000), (100, 12471), (1000, 106569)]:
        assert early_stopping_queries(t) == h + t
        assert early_stopping_passes(h + t, t) and not early_stopping_passes(h + t - 1, t)


def test_queries_allowed_over_the_bound_follow_loadgens_percentile_index():
    assert server_queries_allowed_over(100) == 0  # index 99 of 100 is the slowest
    assert server_queries_allowed_over(1000) == 9
    assert server_queries_allowed_over(270_336) == 2703


def test_latency_histogram_percentiles_and_queries_certainly_over():
    bins = [(0.020, 0.021, 5), (0.001, 0.0011, 95)]  # any order
    lat = latency_so_far(bins, 0.99, 0.015)
    assert (lat.count, lat.p50_s, lat.pct_s, lat.over) == (100, 0.001, 0.020, 5)  # lower edges: at most the truth
    assert latency_so_far(bins, 0.99, 0.0205).over == 0  # a bin straddling the bound is not certain
    assert latency_so_far([], 0.99, 0.015) is None


# ---- the tracker: elapsed, rates, verdicts ------------------------------------------------

def reading(t, samples, busy=(0.0,), bins=()):
    return Reading(t, (samples,), tuple(busy), tuple(bins))


def test_elapsed_counts_from_the_first_completed_sample_and_rates_from_the_last_seconds():
    tr = Tracker(SERVER, t0=100.0)
    assert not tr.update(reading(100.5, 0)).started  # LoadGen still loading samples
    s = tr.update(reading(101.0, 50))
    assert s.started and s.elapsed_s == pytest.approx(0.5)  # from the reading before
    samples = 50
    for k in range(1, 11):  # every 0.5 s: 100/s for 3 s, then 300/s for 2 s
        samples += 50 if k <= 6 else 150
        s = tr.update(reading(101.0 + 0.5 * k, samples, busy=(0.4 * 0.5 * k,)))
    assert s.elapsed_s == pytest.approx(5.5) and s.samples == 50 + 6 * 50 + 4 * 150
    assert s.rate_now == pytest.approx(300.0)  # the last 2 s only
    assert s.rate_avg == pytest.approx(s.samples / 5.5)
    assert s.busy == [pytest.approx(0.4)]
    assert s.left_s == pytest.approx(10_000 / 50.0 - 5.5)  # LoadGen's schedule ends at queries / rate


def test_server_p99_over_the_bound_is_a_risk_then_too_many_over_is_lost():
    tr = Tracker(SERVER, t0=0.0)
    ok = tr.update(reading(1.0, 1000, bins=[(0.001, 0.0011, 1000)]))
    assert not ok.risk and not ok.lost
    risky = tr.update(reading(2.0, 1050, bins=[(0.001, 0.0011, 1000), (0.020, 0.021, 50)]))
    assert "p99 so far is at least 20 ms, over the 15 ms bound" in risky.risk and not risky.lost
    # 10,000 queries (and their Poisson spread) allow 103 over the bound: 200 already are
    lost = tr.update(reading(3.0, 1200, bins=[(0.001, 0.0011, 1000), (0.020, 0.021, 200)]))
    assert "cannot be VALID any more: 200 queries already over the 15 ms bound" in lost.lost
    later = tr.update(reading(4.0, 1300, bins=[(0.001, 0.0011, 1000), (0.020, 0.021, 300)]))
    assert "300 queries already over" in later.lost  # once lost, always lost; the count kept current


def test_server_lost_by_early_stopping_before_the_percentile_itself():
    plan = RunPlan("Server", "performance", 600.0, 1000, 1000, 50.0, 0.015, 0.99)
    tr = Tracker(plan, t0=0.0)
    # 3 over: within 1% of ~1,096, but early stopping needs 1,302 + 5 queries for 5 over
    s = tr.update(reading(1.0, 100, bins=[(0.001, 0.0011, 95), (0.020, 0.021, 5)]))
    assert "more than early stopping allows" in s.lost


def test_offline_running_ahead_of_its_target_warns_it_may_end_too_soon():
    plan = RunPlan("Offline", "performance", 60.0, 1, 66_000, 1000.0)
    tr = Tracker(plan, t0=0.0)
    tr.update(reading(0.0, 0))
    tr.update(reading(4.0, 16_000))
    s = tr.update(reading(6.0, 24_000))  # 4,000/s: all 66,000 by about 16.5 s, not 60
    assert "ends after about 16 s, before its minimum duration 1 min" in s.risk and s.left_s == pytest.approx(10.5)


# ---- the display ----------------------------------------------------------------------------

def test_live_display_on_a_terminal_shows_every_field():
    sut = FakeSut(bins=[(0.001, 0.0011, 990), (0.002, 0.0021, 10)], rate=2000.0)
    w, out = watch(terminal(), sut, SERVER)
    text = ANSI.sub("", out)
    assert "\x1b[" in out  # drawn in place
    for field in ("LoadGen Server performance", "of 10 min minimum", "about ", " left", " of about 10,000 samples",
                  "/s now (target 50/s)", "p99 so far at least 2 ms (bound 15 ms)", "busy dev0 50% dev1 50%"):
        assert field in text, (field, text[-800:])
    assert sut.latency_on == [True, False]  # histograms counted only while watched
    assert w.last is not None and w.last.samples > 0 and w.cpu_s > 0


def test_a_run_that_can_no_longer_be_valid_says_so_at_once_and_once():
    sut = FakeSut(bins=[(0.001, 0.0011, 1000), (0.050, 0.053, 500)])
    _, out = watch(terminal(), sut, SERVER, seconds=0.4)
    text = ANSI.sub("", out)
    assert text.count("warning: this test cannot be VALID any more: 500 queries already over") == 1
    assert "INVALID: this test cannot be VALID any more" in text


def test_not_a_terminal_one_plain_line_per_interval_and_no_control_characters():
    sut = FakeSut(bins=[(0.001, 0.0011, 100)])
    _, out = watch(plain_file(), sut, SERVER, seconds=0.75, line_every_s=0.3)
    lines = out.splitlines()
    assert 1 <= len(lines) <= 3 and all(line.startswith("progress: LoadGen Server performance, ") for line in lines)
    assert "p99 so far at least 1 ms (bound 15 ms)" in lines[0] and "busy dev0 50% dev1 50%" in lines[0]
    assert not CONTROL.search(out), repr(out)
    _, quiet_out = watch(plain_file(), FakeSut(), SERVER, seconds=0.3, line_every_s=0.1)
    assert quiet_out.count("progress:") >= 1
    _, nothing = watch(plain_file(), FakeSut(), SERVER, seconds=0.3, line_every_s=60)
    assert nothing == ""  # a short test says nothing


def test_quiet_and_no_display_do_nothing():
    sut = FakeSut()
    for display in (None, RunDisplay(terminal(), quiet=True)):
        with RunWatch(display, sut, SERVER) as w:
            time.sleep(0.1)
        assert w.last is None and w.cpu_s == 0
    assert sut.latency_on == []


def test_plain_line_before_the_first_sample_and_with_many_devices():
    plan = RunPlan("Offline", "performance", 600.0, 1, 1_000_000, 2000.0, devices=tuple(f"c{k}" for k in range(16)))
    tr = Tracker(plan, t0=0.0)
    assert "loading samples" in plain_line(plan, tr.update(Reading(0.5, (0,) * 16, (0.0,) * 16)))
    s = tr.update(Reading(1.5, (10,) * 16, tuple(0.1 * k for k in range(16))))
    assert "16 devices busy 0%/80%/100% (min/median/max)" in plain_line(plan, s)


# ---- the engine's counters ------------------------------------------------------------------

class LabelPost:
    def engine_spec(self):
        return ("classify", tensor(np.int64, ()), 0)

    def output_shapes(self, batch, workload):
        return [((batch,), np.int64)]


def test_engine_live_counters_and_latency_histogram():
    """One-sample queries on a null device, batches of 8, a 50 ms batch timeout: 16 samples go
    at once in two full batches, the last 4 wait for the timeout, so exactly 4 are over 40 ms."""
    dev = NativeDevice("null", "null0", (), 0, 8, 2, (3, 2, 2), np.dtype(np.int32))
    sut = SystemUnderTest([dev], np.zeros((32, 3, 2, 2), np.int32), [()], [0], LabelPost(), None, 8)
    sut.start(0.05)
    try:
        sut.load(range(32))
        sut.record_responses()
        samples, batches, busy, bins = sut.live()
        assert (samples, batches, bins) == ([0], [0], [])
        sut.live_latency(True)
        for k in range(20):
            sut.issue([k], [k])
        assert len(sut.wait_responses(20, 5)) == 20
        samples, batches, busy, bins = sut.live()
        assert samples == [20] and batches == [3] and busy[0] >= 0
        assert samples == [s["samples"] for s in sut.stats()]
        assert all(lo < hi <= lo * 1.07 + 1e-9 for lo, hi, _ in bins)  # 16 bins an octave
        lat = latency_so_far(bins, 0.99, 0.040)
        assert lat.count == 20 and lat.over == 4 and 0.045 <= lat.pct_s < 1.0  # a lower edge, bins 6% wide
        sut.live_latency(False)
        sut.issue([99], [0])
        sut.wait_responses(21, 5)
        assert sum(c for _, _, c in sut.live()[3]) == 0  # off: nothing counted, nothing kept
    finally:
        sut.stop()


# ---- scale, submission, report -------------------------------------------------------------

def test_study_bar_shows_the_run_under_way_and_the_time_left():
    con = terminal()
    with StudyProgress(con, total_runs=4) as p:
        p.run_started("1 device(s): Offline")
        time.sleep(0.2)
        p.run_finished()
        p.run_started("1 device(s): Server at 1,500 QPS")
        left = p.state.left_s(time.monotonic())
        time.sleep(0.4)  # rich redraws the bar 10 times a second
    text = ANSI.sub("", con.file.getvalue())
    assert "1 device(s): Server at 1,500 QPS" in text and "1/4" in text and " left" in text
    assert left == pytest.approx(3 * p.state.durations[0], rel=0.2)


def test_study_progress_off_a_terminal_is_a_line_per_interval():
    con = plain_file()
    with StudyProgress(con, total_runs=2, line_every_s=0.2) as p:
        p.run_started("2 device(s): Offline")
        time.sleep(0.5)
    out = con.file.getvalue()
    assert out.startswith("progress: 0 of 2 runs done, running 2 device(s): Offline, ") and not CONTROL.search(out)


def test_activity_speaks_only_once_a_step_takes_more_than_a_second():
    quick = terminal()
    with Activity(quick, after_s=1.0) as say:
        say("checking runs")
        time.sleep(0.3)
    assert quick.file.getvalue() == ""
    slow = terminal()
    with Activity(slow, after_s=0.2) as say:
        say("writing the tree")
        time.sleep(0.6)
    assert "writing the tree" in ANSI.sub("", slow.file.getvalue())
    piped = plain_file()
    with Activity(piped, after_s=0.0, line_every_s=0.2) as say:
        say("hashing accuracy logs")
        time.sleep(0.5)
    assert piped.file.getvalue().startswith("progress: hashing accuracy logs (") and not CONTROL.search(
        piped.file.getvalue())


# ---- the real command -----------------------------------------------------------------------

def on_pty(cmd: list[str], cols: int = 180) -> tuple[int, str]:
    """Run CMD on a pseudo-terminal (as at a terminal) and return its exit status and output."""
    import fcntl
    import pty
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, cols, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR", "COLUMNS", "TERM")}
    p = subprocess.Popen(cmd, stdin=slave, stdout=slave, stderr=slave, env={**env, "TERM": "xterm-256color"})
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    return p.wait(timeout=120), b"".join(chunks).decode("utf-8", "replace")


@pytest.mark.slow
def test_run_at_a_terminal_shows_live_progress_and_a_pipe_gets_no_control_characters(imagenet_dir, slim_model,
                                                                                     tmp_path):
    common = [sys.executable, "-m", "visionperf", "run", "resnet50", "--scenario", "Server", "--backend", "null",
              "--devices", "2", "--target-qps", "2000", "--duration", "1.5", "--model", str(slim_model),
              "--dataset", str(imagenet_dir), "--cache", str(tmp_path / "cache")]
    rc, out = on_pty([*common, "--out", str(tmp_path / "tty")])
    text = ANSI.sub("", out)
    assert rc == 0, text[-2000:]
    assert "LoadGen Server performance | " in text and "p99 so far" in text and "(target 2,000/s)" in text
    assert "VALID" in text
    rc, quiet = on_pty([*common, "--out", str(tmp_path / "quiet"), "--quiet"])
    assert rc == 0 and "LoadGen Server performance | " not in quiet and "VALID" in quiet
    p = subprocess.run([*common, "--out", str(tmp_path / "pipe")], capture_output=True, text=True, timeout=300,
                       check=False)
    assert p.returncode == 0 and "VALID" in p.stdout, p.stderr
    assert not CONTROL.search(p.stdout) and not CONTROL.search(p.stderr), (p.stdout, p.stderr)
    assert "progress" not in (tmp_path / "pipe/resnet50/Server/performance/run_1/run.json").read_text()


def test_quiet_reaches_the_preprocessing_bar():
    progress.set_quiet(True)
    try:
        from visionperf.preprocess import _progress

        assert _progress().disable
    finally:
        progress.set_quiet(False)
