"""Issue 24: `visionperf run yolo` end to end through the real LoadGen. Every response equals the
reference's detections (the NumPy port of Ultralytics' post-processing, itself checked against
Ultralytics in test_yolo_oracle) of the model's own head on the cached row, in the rect mode
(dynamic-shape model, batch 1) and the square mode (fixed 640 x 640, batches); an Ultralytics-
style float32 export runs through its uint8 copy with the same detections; the simulated card
runs YOLO; the shape-mode rules are refused in one line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from conftest import visionperf
from visionperf.cache import open_cache
from visionperf.models.yolo11 import build_yolo11
from visionperf.postprocess.yolo import reference_detections

COUNT = 6


def _responses(run_dir: Path) -> dict[int, np.ndarray]:
    log = json.loads((run_dir / "mlperf_log_accuracy.json").read_text())
    return {r["qsl_idx"]: np.frombuffer(bytes.fromhex(r["data"]), np.float32).reshape(-1, 7) for r in log}


def _expected(model: Path, cache_dir: Path, qsl_idx: int) -> np.ndarray:
    """The reference's detections of the model's head on cache row QSL_IDX (at its own shape)."""
    cache = open_cache(cache_dir)
    h0, w0, h, w = cache.geometry[qsl_idx].tolist()
    x = np.ascontiguousarray(cache.data[qsl_idx].reshape(-1)[: 3 * h * w].reshape(1, 3, h, w))
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    inp = session.get_inputs()[0]
    if inp.shape[0] not in (1, None) and isinstance(inp.shape[0], int):  # a fixed batch: fill it
        x = np.repeat(x, inp.shape[0], axis=0)
    head = session.run(None, {inp.name: x})[0][0]
    return reference_detections(head, cache.geometry[qsl_idx], qsl_idx=qsl_idx)


def _run(*args, out: Path, **kw):
    return visionperf("run", "yolo", "--backend", "onnxruntime", "--count", str(COUNT), "--out", out, *args, **kw)


def _cache_of(run_dir: Path) -> Path:
    return Path(json.loads((run_dir / "run.json").read_text())["cache"]["path"])


def test_rect_accuracy_run_equals_the_reference_detection_for_detection(yolo_assets, tmp_path):
    model, coco = yolo_assets
    _run("--scenario", "Offline", "--mode", "accuracy", "--model", model, "--dataset", coco,
         "--cache", tmp_path / "cache", out=tmp_path / "r")
    run_dir = tmp_path / "r/yolo/Offline/accuracy"
    record = json.loads((run_dir / "run.json").read_text())
    assert record["cache"]["shape_mode"] == "rect"  # a dynamic-shape model at batch 1: the reference's rect
    cache_dir = _cache_of(run_dir)
    assert len({tuple(g) for g in open_cache(cache_dir).geometry[:, 2:].tolist()}) > 1  # shapes differ per image
    got = _responses(run_dir)
    assert sorted(got) == list(range(COUNT))
    for i, rows in got.items():
        np.testing.assert_array_equal(rows, _expected(model, cache_dir, i))
    assert sum(len(r) for r in got.values()) > 0
    # `visionperf accuracy` reads the same log to the same figure as the run wrote
    mAP = (run_dir / "accuracy.txt").read_text().splitlines()[0]
    assert mAP.startswith("mAP=") and mAP.endswith("%")
    again = visionperf("accuracy", "yolo", "--log", run_dir / "mlperf_log_accuracy.json", "--dataset", coco,
                       "--out", tmp_path / "acc.txt")
    assert (tmp_path / "acc.txt").read_text().splitlines()[0] == mAP, again.stdout


def test_square_mode_batches_a_fixed_model_in_every_scenario(tmp_path, yolo_assets):
    _, coco = yolo_assets
    model = build_yolo11(tmp_path / "yolo11n-640-b2.onnx", "n", input_size=640, batch=2)
    common = ["--model", model, "--dataset", coco, "--cache", tmp_path / "cache"]
    _run("--scenario", "Offline", "--mode", "accuracy", *common, out=tmp_path / "r")
    run_dir = tmp_path / "r/yolo/Offline/accuracy"
    record = json.loads((run_dir / "run.json").read_text())
    assert record["cache"]["shape_mode"] == "square" and record["batch_size"] == 2
    cache_dir = _cache_of(run_dir)
    assert (open_cache(cache_dir).geometry[:, 2:] == 640).all()
    for i, rows in _responses(run_dir).items():
        np.testing.assert_array_equal(rows, _expected(model, cache_dir, i))
    # mlperf.conf's 1,024 SingleStream and 662 MultiStream queries take minutes at yolo11n's CPU pace
    conf = tmp_path / "user.conf"
    conf.write_text("yolo.SingleStream.min_query_count = 16\nyolo.MultiStream.min_query_count = 4\n")
    for scenario in ("SingleStream", "MultiStream"):
        _run("--scenario", scenario, "--duration", "0.5", "--user-conf", conf, *common, out=tmp_path / "r")
        summary = (tmp_path / f"r/yolo/{scenario}/performance/run_1/mlperf_log_summary.txt").read_text()
        assert f"Scenario : {scenario}" in summary


def _float_export(src: Path, dst: Path) -> Path:
    """SRC as an Ultralytics export takes its input: float32 pixels / 255 (our Cast and Div dropped)."""
    m = onnx.load(str(src))
    nodes = list(m.graph.node)
    cast, div = nodes[0], nodes[1]
    assert cast.op_type == "Cast" and div.op_type == "Div" and div.input[0] == cast.output[0]
    for node in nodes[2:]:
        node.input[:] = ["images" if n == div.output[0] else n for n in node.input]
    del m.graph.node[:]
    m.graph.node.extend(nodes[2:])
    m.graph.input[0].type.tensor_type.elem_type = onnx.TensorProto.FLOAT
    onnx.save(m, str(dst))
    return dst


def test_a_float32_export_runs_through_its_uint8_copy_with_the_same_detections(tmp_path, yolo_assets):
    model, coco = yolo_assets
    export = _float_export(model, tmp_path / "export.onnx")
    common = ["--scenario", "Offline", "--mode", "accuracy", "--dataset", coco, "--cache", tmp_path / "cache"]
    p = _run(*common, "--model", export, out=tmp_path / "f")
    assert "takes float32 pixels / 255" in p.stdout + p.stderr
    copies = list((tmp_path / "cache/models").glob("export-uint8-*.onnx"))
    assert len(copies) == 1
    _run(*common, "--model", model, out=tmp_path / "u")
    f = _responses(tmp_path / "f/yolo/Offline/accuracy")
    u = _responses(tmp_path / "u/yolo/Offline/accuracy")
    assert f.keys() == u.keys() and all(np.array_equal(f[i], u[i]) for i in f)
    _run(*common, "--model", export, out=tmp_path / "f2")  # the copy is made once
    assert list((tmp_path / "cache/models").glob("*.onnx")) == copies


def test_simulated_cards_run_yolo_with_fp16_heads_and_host_nms(tmp_path, yolo_assets):
    model, coco = yolo_assets
    visionperf("run", "yolo", "--scenario", "Offline", "--backend", "simulated", "--devices", "2",
               "--card-rate", "400", "--duration", "1", "--model", model, "--dataset", coco,
               "--count", str(COUNT), "--cache", tmp_path / "cache", "--out", tmp_path / "r")
    record = json.loads((tmp_path / "r/yolo/Offline/performance/run_1/run.json").read_text())
    assert record["cache"]["shape_mode"] == "square"  # a card runs one shape
    assert sum(d["samples"] for d in record["device_stats"]) > 0


@pytest.mark.parametrize("args, said", [
    (("--shape-mode", "rect", "--batch-size", "2"), "a batch holds one image: drop --batch-size 2"),
    (("--shape-mode", "rect", "--backend", "simulated"), "--backend simulated runs one input shape"),
])
def test_rect_rules_are_refused_in_one_line(args, said, tmp_path, yolo_assets):
    model, coco = yolo_assets
    p = visionperf("run", "yolo", "--scenario", "Offline", "--model", model, "--dataset", coco,
                   "--out", tmp_path / "r", *args, check=False)
    assert p.returncode != 0 and said in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr


def test_rect_needs_a_dynamic_shape_model(tmp_path, yolo_assets):
    _, coco = yolo_assets
    model = build_yolo11(tmp_path / "fixed.onnx", "n", input_size=640, batch=1)
    p = visionperf("run", "yolo", "--scenario", "Offline", "--model", model, "--dataset", coco,
                   "--out", tmp_path / "r", "--shape-mode", "rect", check=False)
    assert p.returncode != 0 and "takes 640x640 only: pass --shape-mode square" in p.stderr, p.stderr
