"""Targets a run sets itself: Offline expected QPS from a warm-up, Server batch timeout from the
latency bound in force; the arithmetic alone, then through LoadGen."""

import json
import subprocess
import sys
import textwrap

import pytest

from visionperf.results import read_result
from visionperf.targets import (LOADGEN_OFFLINE_SLACK, latency_target_qps, offline_expected_qps, offline_run_seconds,
                                server_batch_timeout_s)


def test_offline_target_covers_a_rate_that_rises_after_the_warm_up():
    # Issue 10: warm-up windows around 154/s, run at 219/s, 5 s minimum.
    windows = [121.0, 150.0, 158.0, 154.0]
    target = offline_expected_qps(windows)
    assert offline_run_seconds(target, 5.0, 219.0) >= 5.0
    assert offline_run_seconds(154 * 1.25, 5.0, 219.0) < 5.0  # the old rule: average x 1.25
    # It follows the fastest window, not the mean: a rise inside the warm-up continues.
    assert target == pytest.approx(158.0 * 1.5)
    # With a hard ceiling (simulated cards) no rate can end the run early, and no more samples
    # are asked for than the ceiling needs.
    t = offline_expected_qps(windows, ceiling=8000.0)
    for actual in (100.0, 7999.0, 8000.0):
        assert offline_run_seconds(t, 600.0, actual) >= 600.0
    assert t * LOADGEN_OFFLINE_SLACK < 8000.0 * 1.002
    with pytest.raises(ValueError):
        offline_expected_qps([])


def test_server_timeout_follows_the_bound_and_is_never_zero_while_a_batch_can_wait():
    ms = 1e-3
    assert server_batch_timeout_s(15 * ms, 0.1 * ms) == pytest.approx(3 * ms)  # a fifth of 15 ms
    assert server_batch_timeout_s(100 * ms, 4 * ms) == pytest.approx(20 * ms)  # user.conf's 100 ms
    # 4 simulated cards at 2,000/s, batch 8: 4 ms a batch. The old rule (half the bound minus two
    # batches) gave 0 and batches of about 5; 12 - 8 ms leaves room to wait.
    assert server_batch_timeout_s(15 * ms, 4 * ms) == pytest.approx(3 * ms)
    assert server_batch_timeout_s(15 * ms, 5.5 * ms) == pytest.approx(1 * ms)
    # Only when two batch times fill 80% of the bound is there nothing to wait for.
    assert server_batch_timeout_s(15 * ms, 6 * ms) == 0.0
    assert server_batch_timeout_s(15 * ms, 5.99 * ms) > 0
    assert server_batch_timeout_s(0.0, 1 * ms) == 0.0


RISING = """
import sys
import time

import numpy as np

from visionperf.backends.base import Backend
from visionperf.cli import main


class Rising:
    '''A device that gets faster once the warm-up is over (a clock that ramps up, a cache that
    warms): 8 rows in 8.4 ms until the harness resets its counters after the warm-up, then in
    8.4 / 1.55 ms. Nothing in it tells the harness how fast it can go.'''

    reads_input, fixed_batch, max_in_flight, cpus = True, False, 1, ()

    def __init__(self, shape, dtype):
        self.name, self.batch_size, self.input_shape, self.input_dtype = "rising", 8, shape, np.dtype(dtype)
        self.delay = 0.0084

    def reset_stats(self):  # the harness calls this between the warm-up and the run
        self.delay = 0.0084 / 1.55

    def run(self, batch):
        time.sleep(self.delay)
        return [np.ones(len(batch), np.int64)]

    def close(self):
        pass


def make(backend, model, w, plan, batch_size, shapes=None, **kw):
    return [Rising(w.row_shape(w.layout), model.input_dtype)]


Backend.make_devices = lambda self, *args, **kw: make(self.name, *args, **kw)
sys.exit(main(sys.argv[1:]))
"""


def test_automatic_offline_target_keeps_a_rising_run_valid(imagenet_dir, slim_model, tmp_path):
    out = tmp_path / "out"
    p = subprocess.run([sys.executable, "-c", textwrap.dedent(RISING), "run", "resnet50", "--scenario", "Offline",
                        "--backend", "null", "--duration", "2", "--model", str(slim_model),
                        "--dataset", str(imagenet_dir), "--cache", str(tmp_path / "cache"), "--out", str(out)],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    d = out / "resnet50/Offline/performance/run_1"
    res = read_result(d, "Offline")
    rec = json.loads((d / "run.json").read_text())
    note = next(n for n in rec["notes"] if n.startswith("target_qps"))
    assert "fastest of 4 warm-up windows" in note
    warm = float(note.split("windows ")[1].split("/s")[0].replace(",", ""))
    assert res.metric > 1.3 * warm, (res.metric, warm)  # the device did speed up after the warm-up
    assert res.valid, res.reasons


def test_server_timeout_follows_a_user_conf_latency_bound(imagenet_dir, slim_model, tmp_path):
    conf = tmp_path / "user.conf"
    conf.write_text("# a looser bound than mlperf.conf's 15 ms for resnet50\n*.Server.target_latency = 100\n")
    p = subprocess.run([sys.executable, "-m", "visionperf", "run", "resnet50", "--scenario", "Server",
                        "--backend", "simulated", "--card-rate", "2000", "--target-qps", "1000",
                        "--duration", "2", "--user-conf", str(conf), "--model", str(slim_model),
                        "--dataset", str(imagenet_dir), "--cache", str(tmp_path / "cache"),
                        "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    # 1 card at 2,000/s, batch 8: 4 ms a batch; min(0.2 x 100, 0.8 x 100 - 2 x 4) = 20 ms
    assert "batch timeout 20.000 ms (p99 bound 100 ms from user.conf *.Server.target_latency" in p.stdout
    d = tmp_path / "out/resnet50/Server/performance/run_1"
    rec = json.loads((d / "run.json").read_text())
    assert rec["batch_timeout_ms"] == pytest.approx(20.0)
    assert any("LoadGen judges the p99 against 100 ms" in n for n in rec["notes"])
    res = read_result(d, "Server")
    assert res.valid, res.reasons
    assert "target_latency (ns): 100000000" in (d / "mlperf_log_summary.txt").read_text()


def test_a_latency_target_leaves_spare_queries_more_for_short_runs():
    """A warm-up slower than the test must not make a short run run out of queries (it is then
    INVALID); a long one's spare stays near a million queries, which LoadGen holds in memory."""
    qps, spare = latency_target_qps(0.0002, 0.3)  # a busy machine's warm-up, a 0.3 s practice run
    assert spare == 8.0 and qps == pytest.approx(40_000)
    qps, spare = latency_target_qps(0.0005, None)  # an official 600 s run at 0.5 ms a query
    assert spare == 2.0 and qps * 600 <= 2.5e6
    _, spare = latency_target_qps(0.002, 600)  # 2 ms a query: 300k queries at 1x, room for 3.3x
    assert spare == pytest.approx(1e6 * 0.002 / 600)
