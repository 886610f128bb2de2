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

pytestmark = pytest.mark.fault  # `make faults` runs every test so marked

LIMIT = 6 * 2**30


def _limited():
    resource.setrlimit(resource.RLIMIT_AS, (LIMIT, LIMIT))


def _run(imagenet_dir, slim_model, tmp_path, *args) -> str:
    line = refused("run", "resnet50", "--scenario", "Offline", "--model", slim_model, "--dataset", imagenet_dir,
                   "--cache", tmp_path / "cache", "--out", tmp_path / "runs", *args, within_s=60,
                   preexec_fn=_limited)
    assert "GiB available" in line, line
    assert not half_written(tmp_path)
    return line


def test_a_thousand_cards_each_with_a_replica(imagenet_dir, slim_model, tmp_path):
    err = _run(imagenet_dir, slim_model, tmp_path, "--backend", "simulated", "--devices", "1000")
    assert "the run needs about 40.4 GiB of memory" in err and "1,000 replica(s) x 48 samples" in err, err
    assert "lower --devices or pass --replicas one" in err, err
    assert not (tmp_path / "cache").exists()  # refused before the cache is built


def test_a_huge_batch(imagenet_dir, slim_model, tmp_path):
    err = _run(imagenet_dir, slim_model, tmp_path, "--backend", "simulated", "--batch-size", "65536")
    assert "batches of 65,536" in err and "lower --batch-size" in err, err
    assert not (tmp_path / "cache").exists()


def test_loadgen_records_of_a_huge_target(imagenet_dir, slim_model, tmp_path):
    err = _run(imagenet_dir, slim_model, tmp_path, "--backend", "null", "--target-qps", "1e7")
    assert "LoadGen's records: 6,600,000,000 samples issued" in err and "lower --target-qps or --duration" in err, err


def test_loadgen_records_of_a_target_set_from_the_cards(imagenet_dir, slim_model, tmp_path):
    # 100 cards' peak rate sets Offline's target after the warm-up: LoadGen's own reading is checked
    err = _run(imagenet_dir, slim_model, tmp_path, "--backend", "simulated", "--devices", "100")
    assert "LoadGen's records" in err and "samples issued" in err, err
    assert not list((tmp_path / "runs").rglob("mlperf_log_*"))


def test_run_json_holds_the_estimate(imagenet_dir, slim_model, tmp_path):
    out = tmp_path / "runs"
    visionperf("run", "resnet50", "--scenario", "Offline", "--backend", "simulated", "--devices", "2",
               "--card-rate", "2000", "--duration", "0.5", "--model", str(slim_model), "--dataset", str(imagenet_dir),
               "--cache", str(tmp_path / "cache"), "--out", str(out), "--quiet")
    record = json.loads((out / "resnet50" / "Offline" / "performance" / "run_1" / "run.json").read_text())
    # 2 replicas of 48 samples, staging, the cards' copies and outputs, LoadGen's records
    assert 2 * 48 * 3 * 224 * 224 * 4 < record["memory_estimate_bytes"] < 200 * 2**20
