"""Offline preprocessing at scale: resumable, exact, refuses mismatches, handles odd files."""

import json
import shutil
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from conftest import visionperf
from test_imagenet import reference_pre_process_vgg
from visionperf.cache import Quantization, open_cache
from visionperf.preprocess import ensure_cache
from visionperf.datasets import open_dataset, preprocess_one
from visionperf.errors import UserError
from visionperf.workloads import RESNET50


def test_killed_build_resumes_to_a_byte_identical_cache(imagenet_dir, tmp_path):
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "visionperf", "preprocess", "resnet50", "--dataset", str(imagenet_dir),
           "--out", str(out), "--chunk-size", "4", "--workers", "1"]
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 60
    while time.time() < deadline and len(list((out / "build/done").glob("chunk-*.json"))) < 3:
        time.sleep(0.02)
    import os
    os.killpg(p.pid, signal.SIGKILL)
    p.wait()
    done_before = len(list((out / "build/done").glob("chunk-*.json")))
    assert 3 <= done_before < 12, "kill the build part way through"
    assert not (out / "manifest.json").exists() and not (out / "data.npy").exists()
    # An unfinished build is never taken for a cache.
    with pytest.raises(UserError, match="unreadable"):
        open_cache(out)
    rerun = visionperf(*cmd[3:])
    assert f"resuming: {done_before} of 12 chunks already done" in rerun.stdout
    clean = tmp_path / "clean"
    visionperf("preprocess", "resnet50", "--dataset", imagenet_dir, "--out", clean, "--workers", "2")
    assert (out / "data.npy").read_bytes() == (clean / "data.npy").read_bytes()
    assert not (out / "build").exists()
    m = json.loads((out / "manifest.json").read_text())
    assert m["shape"] == [48, 3, 224, 224] and m["dtype"] == "float32" and m["skipped"] == []


def test_preprocess_reports_size_and_refuses_a_mismatched_cache(imagenet_dir, tmp_path):
    out = tmp_path / "c"
    p = visionperf("preprocess", "resnet50", "--dataset", imagenet_dir, "--out", out, "--count", "8",
                   "--dtype", "uint8", "--scale", "1.08", "--zero-point", "114")
    assert "0.25x the float32 size" in p.stdout
    again = visionperf("preprocess", "resnet50", "--dataset", imagenet_dir, "--out", out, "--count", "8",
                       "--dtype", "uint8", "--scale", "1.08", "--zero-point", "114")
    assert "already complete" in again.stdout
    for args, why in [(["--dtype", "float32"], "dtype: cache has 'uint8', run needs 'float32'"),
                      (["--dtype", "uint8", "--scale", "1.0", "--zero-point", "114"], "quantization"),
                      (["--dtype", "uint8", "--scale", "1.08", "--zero-point", "114", "--layout", "NHWC"], "layout")]:
        bad = visionperf("preprocess", "resnet50", "--dataset", imagenet_dir, "--out", out, "--count", "8",
                         *args, check=False)
        assert bad.returncode == 2 and "does not match this run" in bad.stderr and why in bad.stderr
    other = visionperf("preprocess", "resnet50", "--dataset", imagenet_dir, "--out", out, "--count", "9",
                       "--dtype", "uint8", "--scale", "1.08", "--zero-point", "114", check=False)
    assert other.returncode == 2 and "count" in other.stderr
    need = visionperf("preprocess", "resnet50", "--dataset", imagenet_dir, "--out", tmp_path / "q",
                      "--dtype", "int8", check=False)
    assert need.returncode == 2 and "--scale and --zero-point" in need.stderr


def quantize_linear(x: np.ndarray, scale: float, zp: int, dtype) -> np.ndarray:
    """ONNX Runtime's own QuantizeLinear on X."""
    t = TensorProto.UINT8 if dtype == np.uint8 else TensorProto.INT8
    g = helper.make_graph(
        [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["y"])], "q",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x.shape))],
        [helper.make_tensor_value_info("y", t, list(x.shape))],
        [numpy_helper.from_array(np.array(scale, np.float32), "s"), numpy_helper.from_array(np.array(zp, dtype), "z")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    return ort.InferenceSession(m.SerializeToString()).run(None, {"x": x})[0]


@pytest.mark.parametrize("dtype, zp", [(np.uint8, 114), (np.int8, -14)])
def test_offline_quantisation_equals_the_models_quantizelinear(imagenet_dir, dtype, zp):
    ds = open_dataset(RESNET50, imagenet_dir, count=6)
    x = np.stack([preprocess_one(RESNET50, ds.path(i), "NCHW") for i in range(6)])
    scale = 1.0789
    ties = (np.arange(-300, 300, dtype=np.float32) + 0.5) * np.float32(0.5)  # exact halves at scale 0.5
    q = Quantization(scale, zp, np.dtype(dtype).name)
    np.testing.assert_array_equal(q.apply(x), quantize_linear(x, scale, zp, dtype))
    half = Quantization(0.5, zp, np.dtype(dtype).name)
    np.testing.assert_array_equal(half.apply(ties), quantize_linear(ties, 0.5, zp, dtype))


def _cmyk_jpeg(path):
    from PIL import Image
    rng = np.random.default_rng(3)
    Image.fromarray(rng.integers(0, 256, (180, 260, 4), dtype=np.uint8), "CMYK").save(path, "JPEG")


def test_odd_files_are_preprocessed_like_the_reference(tmp_path):
    pytest.importorskip("PIL", reason="Pillow writes the CMYK JPEG")
    d = tmp_path / "odd"
    d.mkdir()
    _cmyk_jpeg(d / "cmyk.JPEG")
    cv2.imwrite(str(d / "png.png"), np.random.default_rng(1).integers(0, 256, (150, 200, 3), np.uint8))
    (d / "png.png").rename(d / "png_inside.JPEG")  # ImageNet has a PNG behind a .JPEG name
    cv2.imwrite(str(d / "small.JPEG"), np.random.default_rng(2).integers(0, 256, (40, 90, 3), np.uint8))
    cv2.imwrite(str(d / "gray.JPEG"), np.random.default_rng(4).integers(0, 256, (300, 200), np.uint8))
    (d / "val_map.txt").write_text("cmyk.JPEG 1\npng_inside.JPEG 2\nsmall.JPEG 3\ngray.JPEG 4\n")
    ds = open_dataset(RESNET50, d)
    for i in range(4):
        np.testing.assert_array_equal(preprocess_one(RESNET50, ds.path(i), "NCHW"),
                                      reference_pre_process_vgg(ds.path(i)))


def test_bad_images_stop_the_build_or_are_skipped_and_listed(imagenet_dir, tmp_path):
    d = tmp_path / "ds"
    shutil.copytree(imagenet_dir, d)
    bad = d / "ILSVRC2012_val_00000006.JPEG"
    bad.write_bytes(bad.read_bytes()[:500])
    stop = visionperf("preprocess", "resnet50", "--dataset", d, "--out", tmp_path / "a", "--count", "12",
                      check=False)
    assert stop.returncode == 2 and "ILSVRC2012_val_00000006.JPEG is a truncated JPEG" in stop.stderr
    assert not (tmp_path / "a/manifest.json").exists()
    ok = visionperf("preprocess", "resnet50", "--dataset", d, "--out", tmp_path / "b", "--count", "12",
                    "--skip-bad")
    assert "skipped 1 bad image(s)" in ok.stdout
    assert "ILSVRC2012_val_00000006.JPEG" in (tmp_path / "b/skipped.txt").read_text()
    ds = open_dataset(RESNET50, d, count=12)
    c = ensure_cache(RESNET50, ds, tmp_path / "b")
    assert c.data.shape[0] == 11 and c.dataset_index.tolist() == [0, 1, 2, 3, 4, 6, 7, 8, 9, 10, 11]
    np.testing.assert_array_equal(c.data[5], preprocess_one(RESNET50, ds.path(6), "NCHW"))
    assert not (c.data.reshape(11, -1) == 0).all(axis=1).any(), "no zero rows stand in for bad images"
