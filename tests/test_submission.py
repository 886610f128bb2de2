"""Compliance tests, the submission tree, and the report, from real runs."""

import hashlib
import json
import re

import pytest

from conftest import visionperf
from visionperf.submission import REQUIRED, SYSTEM_FIELDS, truncate_accuracy_log


@pytest.fixture(scope="module")
def runs(imagenet_dir, slim_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    common = ["--model", slim_model, "--dataset", imagenet_dir, "--cache", out / "cache", "--out", out / "results"]
    visionperf("run", "resnet50", "--scenario", "Offline", "--devices", "2", "--duration", "1.5", *common)
    visionperf("run", "resnet50", "--scenario", "Offline", "--mode", "accuracy", "--devices", "2", *common)
    t01 = visionperf("run", "resnet50", "--scenario", "Offline", "--devices", "2", "--duration", "1.5",
                     "--compliance", "TEST01", *common)
    t04 = visionperf("run", "resnet50", "--scenario", "Offline", "--devices", "2", "--duration", "1.5",
                     "--compliance", "TEST04", *common)
    visionperf("run", "resnet50", "--scenario", "Server", "--backend", "null", "--devices", "2",
               "--target-qps", "5000", "--duration", "1", *common)
    return out / "results", t01.stdout, t04.stdout


def test_test01_logs_responses_in_performance_mode_that_match_accuracy_mode(runs):
    results, stdout, _ = runs
    d = results / "resnet50/Offline/TEST01"
    assert "audit.config" in (d / "performance/run_1/mlperf_log_detail.txt").read_text()
    acc = (d / "verify_accuracy.txt").read_text()
    assert acc.rstrip().endswith("TEST PASS"), acc
    n = int(re.match(r"(\d+) responses sampled", acc).group(1))
    assert n > 0
    perf = (d / "verify_performance.txt").read_text()
    assert re.search(r"TEST (PASS|FAIL)\n$", perf) and "reference result_samples_per_second" in perf
    assert "TEST01 accuracy" in stdout


def test_test04_issues_one_sample_repeatedly_and_compares(runs):
    results, _, stdout = runs
    d = results / "resnet50/Offline/TEST04"
    detail = (d / "performance/run_1/mlperf_log_detail.txt").read_text()
    assert '"effective_performance_issue_same": true' in detail.replace("True", "true") or \
        '"key": "effective_performance_issue_same", "value": true' in detail
    perf = (d / "verify_performance.txt").read_text()
    assert "at most 10% faster" in perf or "more than 10% faster" in perf
    assert "TEST04 performance" in stdout


def test_submission_refuses_short_runs_and_names_why(runs, tmp_path):
    results = runs[0]
    p = visionperf("submission", "--submitter", "Acme", "--system", "box", "--runs", results,
                   "--out", tmp_path, check=False)
    assert p.returncode == 2 and "cannot be submitted" in p.stderr and "600 s" in p.stderr
    assert "synthetic weights" in p.stderr and not (tmp_path / "closed").exists()


def test_practice_submission_tree_round_trip(runs, tmp_path):
    results = runs[0]
    sysjson = tmp_path / "sys.json"
    sysjson.write_text(json.dumps({"host_storage_type": "NVMe SSD", "host_storage_capacity": "1 TB",
                                   "cooling": "air"}))
    p = visionperf("submission", "--submitter", "Acme", "--system", "box", "--runs", results, "--out", tmp_path,
                   "--system-json", sysjson, "--allow-short")
    assert "waived (--allow-short)" in p.stdout and "NOT a valid submission" in p.stdout
    root = tmp_path / "closed/Acme"
    desc = json.loads((root / "systems/box.json").read_text())
    assert set(SYSTEM_FIELDS) <= set(desc) and all(str(desc[k]).strip() for k in REQUIRED)
    assert desc["host_storage_type"] == "NVMe SSD" and desc["division"] == "closed"
    base = root / "results/box/resnet50/Offline"
    for f in ("performance/run_1/mlperf_log_summary.txt", "performance/run_1/mlperf_log_detail.txt",
              "accuracy/mlperf_log_summary.txt", "accuracy/mlperf_log_detail.txt", "accuracy/accuracy.txt",
              "accuracy/mlperf_log_accuracy.json", "measurements.json", "user.conf", "README.md"):
        assert (base / f).is_file(), f
    full = results / "resnet50/Offline/accuracy/mlperf_log_accuracy.json"
    acc = (base / "accuracy/accuracy.txt").read_text().splitlines()
    assert acc[0].startswith("accuracy=") and acc[1] == f"hash={hashlib.sha256(full.read_bytes()).hexdigest()}"
    trunc = base / "accuracy/mlperf_log_accuracy.json"
    assert trunc.stat().st_size <= 10 * 1024 and isinstance(json.loads(trunc.read_text()), list)
    m = json.loads((base / "measurements.json").read_text())
    assert {"input_data_types", "retraining", "starting_weights_filename", "weight_data_types",
            "weight_transformations"} <= set(m)
    comp = root / "compliance/box/resnet50/Offline"
    assert (comp / "TEST01/verify_accuracy.txt").is_file() and (comp / "TEST04/verify_performance.txt").is_file()
    assert (comp / "TEST01/accuracy/mlperf_log_accuracy.json").stat().st_size <= 10 * 1024
    readme = (root / "README.md").read_text()
    assert "NOT A VALID SUBMISSION" in readme and "600 s" in readme and "synthetic weights" in readme


def test_empty_required_system_field_is_named(runs, tmp_path):
    sysjson = tmp_path / "sys.json"
    sysjson.write_text(json.dumps({"host_storage_capacity": "1 TB"}))
    p = visionperf("submission", "--submitter", "Acme", "--system", "box", "--runs", runs[0],
                   "--out", tmp_path, "--system-json", sysjson, "--allow-short", check=False)
    assert p.returncode == 2 and "'host_storage_type' is empty" in p.stderr


def test_truncated_log_keeps_both_ends_as_valid_json(tmp_path):
    recs = [{"seq_id": i, "qsl_idx": i, "data": "AB" * 20} for i in range(2000)]
    src = tmp_path / "full.json"
    src.write_text(json.dumps(recs))
    dst = tmp_path / "cut.json"
    truncate_accuracy_log(src, dst)
    cut = json.loads(dst.read_text())
    assert dst.stat().st_size <= 10 * 1024 and cut[0]["seq_id"] == 0 and cut[-1]["seq_id"] == 1999
    assert [r["seq_id"] for r in cut] == sorted(r["seq_id"] for r in cut)


def test_report_shows_every_run_and_draws_plots(runs, tmp_path):
    p = visionperf("report", runs[0], "--plots", tmp_path)
    out = p.stdout
    assert "Offline" in out and "Server" in out and "TEST01" in out and "VALID" in out
    pngs = sorted(x.name for x in tmp_path.glob("*.png"))
    assert "throughput.png" in pngs and any(n.startswith("latency_resnet50_Server") for n in pngs)
    for n in pngs:
        assert (tmp_path / n).read_bytes()[:4] == b"\x89PNG"
