"""int8 end to end: a statically quantised model fed uint8 rows straight from the cache."""

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from conftest import visionperf
from visionperf.datasets import open_dataset, preprocess_one
from visionperf.errors import UserError
from visionperf.models import check_model
from visionperf.models.quantize import read_calibration_list
from visionperf.workloads import RESNET50


@pytest.fixture(scope="module")
def int8_model(slim_model, imagenet_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("int8") / "resnet50_int8.onnx"
    p = visionperf("quantize", "resnet50", "--model", slim_model, "--dataset", imagenet_dir,
                   "--calibration-list", imagenet_dir / "cal_image_list.txt", "--out", out)
    assert "input uint8" in p.stdout
    return out


def test_quantised_model_takes_uint8_with_its_scale(int8_model):
    info = check_model(int8_model, RESNET50)
    assert info.input_dtype == "uint8" and info.input_name == "input_tensor:0"
    q = info.quantization
    assert q.dtype == "uint8" and 0 < q.scale < 5 and 0 <= q.zero_point <= 255
    m = onnx.load(str(int8_model))
    ops = [n.op_type for n in m.graph.node]
    assert ops.count("QuantizeLinear") >= 50 and ops[0] != "QuantizeLinear"
    assert not any(n.op_type == "QuantizeLinear" and n.input[0] == "input_tensor:0" for n in m.graph.node)
    props = {p.key: p.value for p in m.metadata_props}
    assert props["visionperf.synthetic_weights"] == "true" and props["visionperf.calibration_images"] == "12"


def test_int8_run_uses_the_uint8_cache_and_answers_with_the_models_predictions(
        int8_model, imagenet_dir, tmp_path):
    p = visionperf("run", "resnet50", "--scenario", "Offline", "--mode", "accuracy", "--devices", "2",
                   "--model", int8_model, "--dataset", imagenet_dir, "--cache", tmp_path / "cache",
                   "--out", tmp_path / "out")
    q = check_model(int8_model, RESNET50).quantization
    assert "uint8 NCHW, scale" in p.stdout
    rec = json.loads((tmp_path / "out/resnet50/Offline/accuracy/run.json").read_text())
    assert rec["cache"]["dtype"] == "uint8" and rec["cache"]["quantization"]["scale"] == q.scale
    ds = open_dataset(RESNET50, imagenet_dir)
    x = q.apply(np.stack([preprocess_one(RESNET50, ds.path(i), "NCHW") for i in range(len(ds))]))
    expect = ort.InferenceSession(str(int8_model)).run(["ArgMax:0"], {"input_tensor:0": x})[0] - 1
    log = json.loads((tmp_path / "out/resnet50/Offline/accuracy/mlperf_log_accuracy.json").read_text())
    got = {r["qsl_idx"]: int(np.frombuffer(bytes.fromhex(r["data"]), np.float32)[0]) for r in log}
    assert got == {i: int(expect[i]) for i in range(len(ds))}


def test_calibration_list_names_must_be_in_the_dataset(imagenet_dir, tmp_path):
    ds = open_dataset(RESNET50, imagenet_dir)
    assert len(read_calibration_list(imagenet_dir / "cal_image_list.txt", ds)) == 12
    bad = tmp_path / "cal.txt"
    bad.write_text("ILSVRC2012_val_00009999.JPEG\n")
    with pytest.raises(UserError, match="does not list"):
        read_calibration_list(bad, ds)
