"""Compliance tests (TEST01, TEST04) and the report, from real runs (the submission tree: test_round.py)."""

import re

import pytest

from conftest import visionperf


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


def test_report_shows_every_run_and_draws_plots(runs, tmp_path):
    p = visionperf("report", runs[0], "--plots", tmp_path)
    out = p.stdout
    assert "Offline" in out and "Server" in out and "TEST01" in out and "VALID" in out
    pngs = sorted(x.name for x in tmp_path.glob("*.png"))
    assert "throughput.png" in pngs and any(n.startswith("latency_resnet50_Server") for n in pngs)
    for n in pngs:
        assert (tmp_path / n).read_bytes()[:4] == b"\x89PNG"


def test_report_beside_a_submission_tree_shows_each_run_once(runs, tmp_path):
    """A campaign's out folder holds its runs and the tree assembled from them (copies without
    run.json): the report lists the runs once, and a tree alone still shows its runs."""
    import shutil

    from visionperf import report

    run = runs[0] / "resnet50/Server/performance/run_1"
    shutil.copytree(run, tmp_path / "runs/resnet50/Server/performance/run_1")
    copy = tmp_path / "tree/closed/Demo/results/demo_null/resnet50/Server/performance/run_1"
    shutil.copytree(run, copy)
    (copy / "run.json").unlink()
    both = report.find(tmp_path)
    assert [(r.scenario, r.backend, r.devices) for r in both] == [("Server", "null", 2)]
    alone = report.find(tmp_path / "tree")
    assert [(r.scenario, r.backend, r.in_tree) for r in alone] == [("Server", "?", True)]
    (tmp_path / "plots").mkdir()
    made = [p.name for p in report.plots(alone, tmp_path / "plots")]
    assert "latency_resnet50_Server_unknown.png" in made
