"""The real command through the real LoadGen: logs in the submission layout, VALID, accuracy."""

import json
import re

import numpy as np
import onnxruntime as ort
import pytest

from conftest import visionperf
from visionperf.datasets import open_dataset, preprocess_one
from visionperf.results import read_result
from visionperf.workloads import RESNET50


@pytest.fixture(scope="module")
def run_args(imagenet_dir, slim_model, tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    return ["--model", slim_model, "--dataset", imagenet_dir, "--cache", cache]


def test_offline_performance_is_valid(run_args, tmp_path):
    p = visionperf("run", "resnet50", "--scenario", "Offline", "--backend", "onnxruntime",
                   "--devices", "2", "--duration", "3", *run_args, "--out", tmp_path)
    d = tmp_path / "resnet50/Offline/performance/run_1"
    for f in ("mlperf_log_summary.txt", "mlperf_log_detail.txt", "user.conf", "run.json"):
        assert (d / f).is_file(), f
    assert not list(tmp_path.glob("resnet50/Offline/performance/*.partial-*"))
    res = read_result(d, "Offline")
    assert res.valid, res.reasons
    assert "Result is : VALID" in (d / "mlperf_log_summary.txt").read_text()
    assert res.metric > 10
    assert "VALID" in p.stdout and "result_samples_per_second" in p.stdout
    conf = (d / "user.conf").read_text()
    assert "resnet50.Offline.min_duration = 3000" in conf and "target_qps" in conf
    rec = json.loads((d / "run.json").read_text())
    assert len(rec["plan"]) == 2 and rec["model"]["synthetic_weights"]
    assert sum(s["samples"] for s in rec["device_stats"]) == res.detail["result_query_count"] or \
        sum(s["samples"] for s in rec["device_stats"]) >= res.detail["result_query_count"]


def test_server_performance_runs_on_onnxruntime_and_null(run_args, tmp_path):
    # What is deterministic on a shared machine: the run completes, LoadGen's logs parse, every
    # query it issued was answered at about the rate asked. Whether the p99 stays under the
    # bound depends on the machine's other load: VALID-ness is the benchmarks' to judge.
    for backend, devices, qps, seconds in (("onnxruntime", "1", 100, 4), ("null", "2", 20000, 3)):
        visionperf("run", "resnet50", "--scenario", "Server", "--backend", backend, "--devices", devices,
                   "--target-qps", qps, "--duration", seconds, *run_args, "--out", tmp_path / backend)
        d = tmp_path / backend / "resnet50/Server/performance/run_1"
        res = read_result(d, "Server")
        assert res.metric > 0.9 * qps and res.latency_ns["99.00"] > 0
        rec = json.loads((d / "run.json").read_text())
        assert sum(s["samples"] for s in rec["device_stats"]) >= res.detail["result_query_count"]


def test_single_and_multi_stream_run(run_args, tmp_path):
    for scenario in ("SingleStream", "MultiStream"):
        visionperf("run", "resnet50", "--scenario", scenario, "--backend", "null", "--devices", "1",
                   "--duration", "1", *run_args, "--out", tmp_path)
        res = read_result(tmp_path / f"resnet50/{scenario}/performance/run_1", scenario)
        assert res.valid, (scenario, res.reasons)


def test_accuracy_mode_answers_every_sample_with_the_model_prediction(run_args, imagenet_dir, slim_model, tmp_path):
    visionperf("run", "resnet50", "--scenario", "Offline", "--mode", "accuracy", "--devices", "2",
               *run_args, "--out", tmp_path)
    d = tmp_path / "resnet50/Offline/accuracy"
    text = (d / "accuracy.txt").read_text()
    m = re.match(r"accuracy=(\d+\.\d{3})%, good=(\d+), total=(\d+)\nhash=([0-9a-f]{64})\n$", text)
    assert m and int(m.group(3)) == 48
    # Independently: run the model on the preprocessed images and compare per sample.
    ds = open_dataset(RESNET50, imagenet_dir)
    x = np.stack([preprocess_one(RESNET50, ds.path(i), "NCHW") for i in range(len(ds))])
    expect = ort.InferenceSession(str(slim_model)).run(["ArgMax:0"], {"input_tensor:0": x})[0] - 1
    log = json.loads((d / "mlperf_log_accuracy.json").read_text())
    got = {r["qsl_idx"]: int(np.frombuffer(bytes.fromhex(r["data"]), np.float32)[0]) for r in log}
    assert got == {i: int(expect[i]) for i in range(48)}
    good = int((expect == ds.labels).sum())
    assert int(m.group(2)) == good
    # The standalone command gives the same figure from the same log.
    out = visionperf("accuracy", "resnet50", "--log", d / "mlperf_log_accuracy.json",
                     "--dataset", imagenet_dir, "--out", tmp_path / "acc.txt")
    assert (tmp_path / "acc.txt").read_text() == text
    assert "synthetic weights" in out.stdout


@pytest.mark.parametrize("args, message", [
    (["run", "resnet99", "--scenario", "Offline"], "unknown workload 'resnet99'"),
    (["run", "resnet50", "--scenario", "Batch"], "unknown scenario 'Batch'"),
    (["run", "resnet50", "--scenario", "Offline", "--backend", "tpu"], "unknown backend 'tpu'"),
    (["run", "resnet50", "--scenario", "Offline", "--model", "/nonexistent.onnx"], "/nonexistent.onnx does not exist"),
    (["run", "resnet50", "--scenario", "Offline", "--dataset", "/nonexistent"], "/nonexistent does not exist"),
    (["run", "resnet50", "--scenario", "Offline", "--out", "A_FILE"], "is a file: pass a directory"),
])
def test_user_errors_are_one_line_without_traceback(run_args, tmp_path, args, message):
    base = dict(zip(run_args[::2], run_args[1::2]))
    given = dict(zip(args[2::2], args[3::2]))
    if given.get("--out") == "A_FILE":
        given["--out"] = tmp_path / "results.txt"
        given["--out"].write_text("not a directory")
    merged = [*args[:2], *[x for k, v in {**{"--scenario": "Offline"}, **base, **given}.items() for x in (k, v)]]
    p = visionperf(*merged, *([] if "--out" in given else ["--out", tmp_path]), check=False)
    assert p.returncode == 2
    assert "Traceback" not in p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], p.stderr


def test_empty_dataset_directory_is_refused(run_args, tmp_path):
    (tmp_path / "empty").mkdir()
    base = dict(zip(run_args[::2], run_args[1::2]))
    p = visionperf("run", "resnet50", "--scenario", "Offline", "--model", base["--model"],
                   "--dataset", tmp_path / "empty", "--out", tmp_path, check=False)
    assert p.returncode == 2 and "val_map.txt is missing" in p.stderr and "Traceback" not in p.stderr
