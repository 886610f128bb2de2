"""Issue 26: `--backend openvino` through the real LoadGen. Every scenario runs; accuracy runs
answer what ONNX Runtime answers on the same cache rows (float32: the same top-1 on every
sample; int8: a top-1 ONNX Runtime's own quantised scores rank first too, ties included);
detection heads come back close enough that the host NMS keeps the same boxes; run.json says
OpenVINO's settings; without OpenVINO, and on Ctrl-C, one line and nothing kept."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from conftest import visionperf
from visionperf.cache import open_cache
from visionperf.errors import UserError

pytest.importorskip("openvino", reason="--backend openvino needs the openvino extra (make test installs it)")

from visionperf.backends.openvino import OvOptions  # noqa: E402


@pytest.fixture(scope="module")
def run_args(imagenet_dir, slim_model, tmp_path_factory):
    return ["--model", slim_model, "--dataset", imagenet_dir, "--cache", tmp_path_factory.mktemp("cache")]


@pytest.fixture(scope="module")
def int8_model(slim_model, imagenet_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("int8") / "resnet50_int8.onnx"
    visionperf("quantize", "resnet50", "--model", slim_model, "--dataset", imagenet_dir,
               "--calibration-list", imagenet_dir / "cal_image_list.txt", "--out", out)
    return out


def _record(run_dir: Path) -> dict:
    return json.loads((run_dir / "run.json").read_text())


def _answers(run_dir: Path, dtype=np.float32, width: int = 1) -> dict[int, np.ndarray]:
    log = json.loads((run_dir / "mlperf_log_accuracy.json").read_text())
    return {r["qsl_idx"]: np.frombuffer(bytes.fromhex(r["data"]), dtype).reshape(-1, width) for r in log}


def test_every_scenario_runs_through_loadgen_with_openvinos_settings_in_run_json(run_args, tmp_path):
    conf = tmp_path / "user.conf"  # mlperf.conf's 1,024 and 662 queries: seconds each even on a slim model
    conf.write_text("resnet50.SingleStream.min_query_count = 64\nresnet50.MultiStream.min_query_count = 16\n")
    for scenario, extra in (("Offline", ["--devices", "2", "--duration", "1"]),
                            ("Server", ["--target-qps", "100", "--duration", "2"]),
                            ("SingleStream", ["--duration", "0.3", "--user-conf", conf]),
                            ("MultiStream", ["--duration", "0.3", "--user-conf", conf])):
        visionperf("run", "resnet50", "--scenario", scenario, "--backend", "openvino", *extra, *run_args,
                   "--out", tmp_path)
        d = tmp_path / f"resnet50/{scenario}/performance/run_1"
        assert f"Scenario : {scenario}" in (d / "mlperf_log_summary.txt").read_text()
        rec = _record(d)
        runtime = rec["runtime"]
        assert runtime["software"].startswith("OpenVINO 20")
        assert len(runtime["devices"]) == len(rec["plan"]) == len(rec["device_stats"])
        for dev, stats in zip(runtime["devices"], rec["device_stats"]):
            assert dev["hint"] == ("THROUGHPUT" if scenario == "Offline" else "LATENCY")
            assert dev["optimal_infer_requests"] >= 1 and stats["max_in_flight"] == dev["infer_requests"]
            assert dev["precision"] == "f32" and dev["threads"] == len(stats["cpus"])
            # OpenVINO pins a model alone in the process only (beside others it pins them all to the same cores)
            assert dev["pinning"] == ("openvino" if len(rec["plan"]) == 1 else "none")
            assert stats["samples"] > 0


def test_float32_accuracy_run_has_onnxruntimes_top1_on_every_sample(run_args, tmp_path):
    for backend in ("onnxruntime", "openvino"):
        visionperf("run", "resnet50", "--scenario", "Offline", "--mode", "accuracy", "--devices", "2",
                   "--backend", backend, *run_args, "--out", tmp_path / backend)
    ours, theirs = (_answers(tmp_path / b / "resnet50/Offline/accuracy") for b in ("openvino", "onnxruntime"))
    assert len(ours) == 48 and ours.keys() == theirs.keys()
    assert all(ours[i][0, 0] == theirs[i][0, 0] for i in theirs)


def test_int8_runs_the_uint8_rows_as_they_are_with_onnxruntimes_top1(int8_model, imagenet_dir, tmp_path):
    common = ["--model", int8_model, "--dataset", imagenet_dir, "--cache", tmp_path / "cache"]
    for backend in ("onnxruntime", "openvino"):
        visionperf("run", "resnet50", "--scenario", "Offline", "--mode", "accuracy", "--devices", "2",
                   "--backend", backend, *common, "--out", tmp_path / backend)
    run_dir = tmp_path / "openvino/resnet50/Offline/accuracy"
    rec = _record(run_dir)
    assert rec["cache"]["dtype"] == "uint8"
    ours, theirs = (_answers(tmp_path / b / "resnet50/Offline/accuracy") for b in ("openvino", "onnxruntime"))
    # ArgMax reads the softmax through a Q/DQ pair (steps of 1/255) and synthetic weights give it
    # near ties: ONNX Runtime picks the first of the quantised ties, OpenVINO may run the softmax
    # unquantised. Every answer must score within one step of ONNX Runtime's best by its own scores.
    import onnx
    from onnx import numpy_helper

    step = next(float(numpy_helper.to_array(t)) for t in onnx.load(str(int8_model)).graph.initializer
                if t.name == "softmax_tensor:0_scale")
    rows = np.asarray(open_cache(Path(rec["cache"]["path"])).data[: len(theirs)])
    probs = ort.InferenceSession(str(int8_model)).run(["softmax_tensor:0"], {"input_tensor:0": rows})[0]
    for i, label in ours.items():
        best = probs[i].max()
        assert probs[i][int(label[0, 0]) + 1] >= best - step * 1.001, (i, label)  # labels are classes - 1
    same = sum(ours[i][0, 0] == theirs[i][0, 0] for i in theirs) / len(theirs)
    assert same >= 0.9, same


def _close_detections(ours: dict, theirs: dict) -> int:
    """Per sample, the same boxes in the same order (image id, class), coordinates and scores
    within float32 round-off of two runtimes; returns how many there were."""
    assert ours.keys() == theirs.keys()
    total = 0
    for i in theirs:
        assert ours[i].shape == theirs[i].shape, i
        np.testing.assert_array_equal(ours[i][:, [0, 6]], theirs[i][:, [0, 6]])
        np.testing.assert_allclose(ours[i][:, 1:6], theirs[i][:, 1:6], rtol=1e-3, atol=1e-4)
        total += len(ours[i])
    return total


def test_ssd_mobilenet_raw_heads_give_onnxruntimes_detections(tmp_path):
    from visionperf.datasets.synthetic import make_coco
    from visionperf.models import build_ssd_mobilenet

    coco = make_coco(tmp_path / "coco", count=8, seed=2)
    model = build_ssd_mobilenet(tmp_path / "ssd_mobilenet.onnx")
    common = ["--model", model, "--dataset", coco, "--cache", tmp_path / "cache"]
    for backend in ("onnxruntime", "openvino"):
        visionperf("run", "ssd-mobilenet", "--scenario", "Offline", "--mode", "accuracy", "--devices", "2",
                   "--backend", backend, *common, "--out", tmp_path / backend)
    ours, theirs = (_answers(tmp_path / b / "ssd-mobilenet/Offline/accuracy", width=7)
                    for b in ("openvino", "onnxruntime"))
    assert _close_detections(ours, theirs) > 0, "the test needs some detections to compare"


def _matched(ours: np.ndarray, theirs: np.ndarray, tol: float = 1e-3) -> float:
    """The share of OURS's detections found in THEIRS: same class, coordinates and score within TOL."""
    hits = sum(bool(((theirs[:, 6] == r[6]) & (np.abs(theirs[:, 1:6] - r[1:6]).max(1) < tol)).any()) for r in ours)
    return hits / max(1, len(ours))


@pytest.mark.parametrize("mode", ["square", "rect"])
def test_yolo_gives_onnxruntimes_detections(yolo_assets, tmp_path, mode):
    from visionperf.models.yolo11 import build_yolo11

    model, coco = yolo_assets  # dynamic shapes at batch 1: each image at its own shape (rect)
    if mode == "square":
        model = build_yolo11(tmp_path / "yolo11n-640-b2.onnx", "n", input_size=640, batch=2)
    common = ["--model", model, "--dataset", coco, "--count", "4", "--cache", tmp_path / "cache"]
    for backend in ("onnxruntime", "openvino"):
        visionperf("run", "yolo", "--scenario", "Offline", "--mode", "accuracy", "--backend", backend, *common,
                   "--out", tmp_path / backend)
    run_dir = tmp_path / "openvino/yolo/Offline/accuracy"
    assert _record(run_dir)["cache"]["shape_mode"] == mode
    ours, theirs = (_answers(tmp_path / b / "yolo/Offline/accuracy", width=7) for b in ("openvino", "onnxruntime"))
    assert ours.keys() == theirs.keys() and sum(len(v) for v in ours.values()) > 0
    # The same boxes, as sets: synthetic weights give hundreds of near-equal scores, whose order
    # (and, where scores saturate at 1.0, which of them NMS keeps) round-off may change.
    for i in theirs:
        assert len(ours[i]) == len(theirs[i]) and _matched(ours[i], theirs[i]) >= 0.95, i


def test_without_openvino_one_line_says_how_to_install(run_args, tmp_path):
    shadow = tmp_path / "shadow/openvino"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('No module named openvino')\n")
    p = subprocess.run([sys.executable, "-m", "visionperf", "run", "resnet50", "--scenario", "Offline",
                        "--backend", "openvino", *map(str, run_args), "--out", str(tmp_path / "out")],
                       capture_output=True, text=True, timeout=120,
                       env={**os.environ, "PYTHONPATH": str(tmp_path / "shadow")})
    assert p.returncode != 0
    lines = p.stderr.strip().splitlines()
    assert lines == ["visionperf: error: --backend openvino needs OpenVINO: pip install 'visionperf[openvino]' "
                     "(or make install EXTRAS=openvino)"], p.stderr
    assert not (tmp_path / "out/resnet50").exists()


def test_ctrl_c_mid_run_exits_130_and_keeps_nothing(run_args, tmp_path):
    out = tmp_path / "out"
    p = subprocess.Popen([sys.executable, "-m", "visionperf", "run", "resnet50", "--scenario", "Offline",
                          "--backend", "openvino", "--devices", "2", "--duration", "600", *map(str, run_args),
                          "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while not list(out.glob("resnet50/Offline/performance/run_1.partial-*/mlperf_log_detail.txt")):
            assert p.poll() is None and time.monotonic() < deadline, p.communicate()
            time.sleep(0.02)
        time.sleep(0.5)
        t = time.monotonic()
        p.send_signal(signal.SIGINT)
        _, stderr = p.communicate(timeout=30)
        took = time.monotonic() - t
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 130, stderr
    assert took < 2.0, took
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("visionperf: interrupted") and "nothing of this run was kept" \
        in lines[0], stderr
    assert not list(out.rglob("*.partial-*")) and not (out / "resnet50/Offline/performance/run_1").exists()


def test_backend_options_are_checked_in_one_line():
    assert OvOptions.parse("") == OvOptions("f32", 0, 0)
    assert OvOptions.parse("precision=BF16; streams=2;requests=3") == OvOptions("bf16", 2, 3)
    for bad, said in (("precision=int4", "choose f32, bf16 or f16"), ("streams=two", "whole number"),
                      ("threads=4", "openvino takes precision")):
        with pytest.raises(UserError, match=said):
            OvOptions.parse(bad)


def test_bf16_is_asked_for_by_option_only(run_args, tmp_path):
    import openvino as ov

    if "BF16" not in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        pytest.skip("this CPU has no bf16: OpenVINO runs float32 whatever the hint")
    visionperf("run", "resnet50", "--scenario", "Offline", "--mode", "accuracy", "--backend", "openvino",
               "--backend-option", "precision=bf16", *run_args, "--out", tmp_path)
    rec = _record(tmp_path / "resnet50/Offline/accuracy")
    assert {d["precision"] for d in rec["runtime"]["devices"]} == {"bf16"}
    assert rec["config"]["backend_options"] == "precision=bf16"
