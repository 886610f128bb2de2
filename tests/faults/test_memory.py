"""Issue 23, item 4: a run that needs more memory than this machine has available is refused in one
line naming the figure and what to lower, before it allocates (exit 2, nothing half-written, no
survivor, bounded time), and run.json says what a run was estimated to need.

The refusals run under an address-space limit (ulimit -v) the estimate honours, so that they do
not depend on the memory of the machine running the tests."""

import json
import resource

import pytest

from conftest import visionperf
from hostile import refused
from injection import half_written

from visionperf.run.memory import loadgen_bytes
from visionperf.targets import latency_target_qps

pytestmark = pytest.mark.fault  # `make faults` runs every test so marked

LIMIT = 6 * 2**30


def _limited():
    resource.setrlimit(resource.RLIMIT_AS, (LIMIT, LIMIT))


def _run(imagenet_dir, slim_model, tmp_path, *args, memory: bool = True) -> str:
    line = refused("run", "resnet50", "--scenario", "Offline", "--model", slim_model, "--dataset", imagenet_dir,
                   "--cache", tmp_path / "cache", "--out", tmp_path / "runs", *args, within_s=60,
                   preexec_fn=_limited)
    assert not memory or "GiB available" in line, line
    assert not half_written(tmp_path)
    return line


def test_a_thousand_cards_each_with_a_replica(imagenet_dir, slim_model, tmp_path):
    # refused for this machine's cores (16 cards a core), or where it has 63 or more, for its memory
    err = _run(imagenet_dir, slim_model, tmp_path, "--backend", "simulated", "--devices", "1000", memory=False)
    assert ("at most 16 simulated cards share one: pass --devices" in err
            or "1,000 replica(s) x 48 samples" in err and "lower --devices or pass --replicas one" in err), err
    assert not (tmp_path / "cache").exists()  # refused before the cache is built


def test_the_estimate_adds_up_its_parts(imagenet_dir, slim_model, tmp_path):
    # 2 replicas of 48 samples, 2 staging batches of 4,096, the cards' 4 batches, 12 output batches, and
    # LoadGen's records of the 27M samples of a 600 s test at the cards' peak rate
    err = _run(imagenet_dir, slim_model, tmp_path, "--backend", "simulated", "--devices", "2", "--batch-size", "4096",
               "--replicas", "device")
    assert "the run needs about 16.3 GiB of memory" in err, err
    assert "the most, 9.2 GiB, is card copies: 2 card(s) x 2 batches of 4,096 x 588.0 KiB" in err, err
    assert not (tmp_path / "cache").exists()


def test_a_huge_batch(imagenet_dir, slim_model, tmp_path):
    err = _run(imagenet_dir, slim_model, tmp_path, "--backend", "simulated", "--batch-size", "65536")
    assert "batches of 65,536" in err and "lower --batch-size" in err, err
    assert not (tmp_path / "cache").exists()


def test_loadgen_records_of_a_huge_target(imagenet_dir, slim_model, tmp_path):
    err = _run(imagenet_dir, slim_model, tmp_path, "--backend", "null", "--target-qps", "1e7")
    assert "LoadGen's records: 1 query of 6,600,000,000 samples in all" in err, err
    assert "lower --target-qps or --duration" in err, err


def test_loadgen_records_of_a_target_set_from_the_cards(imagenet_dir, slim_model, tmp_path):
    # 16 cards' peak rate will set Offline's target: known from the options, refused before any work
    err = _run(imagenet_dir, slim_model, tmp_path, "--backend", "simulated", "--devices", "16")
    assert "LoadGen's records: 1 query of" in err, err
    assert not (tmp_path / "cache").exists()


def test_loadgen_records_of_a_target_set_from_the_warm_up(imagenet_dir, slim_model, tmp_path):
    # no rate before the warm-up: LoadGen's own reading of the settings is checked before its test
    conf = tmp_path / "user.conf"
    conf.write_text("*.Offline.min_query_count = 100000000000\n")
    err = _run(imagenet_dir, slim_model, tmp_path, "--backend", "null", "--user-conf", conf, "--max-hours", "1e9")
    assert "LoadGen's records: 1 query of 100,000,000,000 samples in all" in err, err
    assert not list((tmp_path / "runs").rglob("mlperf_log_*"))


def test_run_json_holds_the_estimate(imagenet_dir, slim_model, tmp_path):
    out = tmp_path / "runs"
    visionperf("run", "resnet50", "--scenario", "Offline", "--backend", "simulated", "--devices", "2",
               "--card-rate", "2000", "--duration", "0.5", "--model", str(slim_model), "--dataset", str(imagenet_dir),
               "--cache", str(tmp_path / "cache"), "--out", str(out), "--quiet")
    record = json.loads((out / "resnet50" / "Offline" / "performance" / "run_1" / "run.json").read_text())
    # 2 replicas of 48 samples, staging, the cards' copies and outputs, LoadGen's records
    assert 2 * 48 * 3 * 224 * 224 * 4 < record["memory_estimate_bytes"] < 200 * 2**20


def test_a_target_the_run_sets_itself_keeps_loadgen_within_memory():
    # 10 us queries over 600 s: 60M queries at 1x, 120M at the usual 2x spare; 1M fit
    qps, spare = latency_target_qps(1e-5, 600, max_queries=1_000_000)
    assert qps * 600 == pytest.approx(1_000_000) and spare < 1
    assert latency_target_qps(0.002, 600, max_queries=10**9) == latency_target_qps(0.002, 600)


def test_loadgen_records_by_scenario():
    assert loadgen_bytes("Offline", 1, 10**6) == 96 * 10**6
    assert loadgen_bytes("SingleStream", 10**6, 10**6) == (896 + 96) * 10**6
