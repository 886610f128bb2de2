"""--backend tensorrt on a real NVIDIA GPU (marked `gpu`; skipped, with the reason, elsewhere).
The whole check with the figures is benchmarks/gpu_check.sh; these are its quick assertions."""

import json

import numpy as np
import onnxruntime as ort
import pytest
from conftest import visionperf

from visionperf.datasets import open_dataset, preprocess_one
from visionperf.models import check_model
from visionperf.workloads import RESNET50


def _gpu_reason() -> str | None:
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return "needs TensorRT and an NVIDIA GPU: pip install 'visionperf[tensorrt]' on a GPU machine"
    try:
        from visionperf.backends.cuda import Cuda

        Cuda()
    except Exception as e:  # UserError with CUDA's reason
        return f"needs an NVIDIA GPU: {e}"
    return None


REASON = _gpu_reason()
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(REASON is not None, reason=REASON or "")]


@pytest.fixture(scope="module")
def int8_sym(slim_model, imagenet_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("trt") / "resnet50_int8_sym.onnx"
    visionperf("quantize", "resnet50", "--model", slim_model, "--dataset", imagenet_dir, "--symmetric",
               "--calibration-list", imagenet_dir / "cal_image_list.txt", "--out", out)
    return out


def predictions(run_dir):
    log = json.loads((run_dir / "mlperf_log_accuracy.json").read_text())
    return {e["qsl_idx"]: int(np.frombuffer(bytes.fromhex(e["data"]), np.float32)[0]) for e in log}


@pytest.mark.parametrize("precision", ["int8", "fp16"])
def test_a_gpu_answers_like_onnxruntime(precision, int8_sym, slim_model, imagenet_dir, tmp_path):
    model = int8_sym if precision == "int8" else slim_model
    visionperf("run", "resnet50", "--scenario", "Offline", "--mode", "accuracy", "--backend", "tensorrt",
               "--backend-option", f"precision={precision}", "--model", model, "--dataset", imagenet_dir,
               "--cache", tmp_path / "cache", "--out", tmp_path / "out")
    info = check_model(model, RESNET50)
    ds = open_dataset(RESNET50, imagenet_dir)
    x = np.stack([preprocess_one(RESNET50, ds.path(i), "NCHW") for i in range(len(ds))])
    if info.quantization is not None:
        x = info.quantization.apply(x)
    cpu = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"]).run(["ArgMax:0"], {info.input_name: x})[0] - 1
    got = predictions(tmp_path / "out/resnet50/Offline/accuracy")
    agree = np.mean([got[i] == int(cpu[i]) for i in range(len(ds))])
    assert agree >= (0.99 if precision == "fp16" else 0.9), agree


def test_an_offline_run_on_the_gpu_is_valid(int8_sym, imagenet_dir, tmp_path):
    visionperf("run", "resnet50", "--scenario", "Offline", "--backend", "tensorrt", "--duration", "3",
               "--model", int8_sym, "--dataset", imagenet_dir, "--cache", tmp_path / "cache", "--out", tmp_path / "out")
    rec = json.loads((tmp_path / "out/resnet50/Offline/performance/run_1/run.json").read_text())
    assert rec["device_stats"][0]["samples"] > 0
