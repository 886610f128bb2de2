"""--backend tensorrt on a machine without a GPU: the graphs TensorRT builds from (run on ONNX
Runtime against the models they come from), the engine cache, and the GPU device's
asynchronous pipeline driven through the real LoadGen on a fake GPU (tests/fake_gpu.py) that
runs those graphs. What needs a real GPU is in test_tensorrt_gpu (skipped here, with why)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from conftest import visionperf
from fake_gpu import FakeTensorRT

from visionperf.backends.tensorrt import (
    TrtPlanCache,
    TrtOptions,
    trt_plan_key,
    sweep_batch,
)
from visionperf.datasets import open_dataset, preprocess_one
from visionperf.errors import UserError
from visionperf.models import check_model
from visionperf.models.tensorrt_graph import tensorrt_graph
from visionperf.placement import card_plan
from visionperf.topology import read_topology
from visionperf.workloads import RESNET50

pytest.importorskip("onnxconverter_common", reason="fp16 graphs need onnxconverter-common (the test extra has it)")


@pytest.fixture(scope="module")
def int8_sym(slim_model, imagenet_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("trt") / "resnet50_int8_sym.onnx"
    p = visionperf("quantize", "resnet50", "--model", slim_model, "--dataset", imagenet_dir, "--symmetric",
                   "--calibration-list", imagenet_dir / "cal_image_list.txt", "--out", out)
    assert "symmetric int8 activations" in p.stdout and "input int8" in p.stdout
    return out


def session(model):
    model = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(model, providers=["CPUExecutionProvider"])


def images(imagenet_dir, n=12):
    ds = open_dataset(RESNET50, imagenet_dir)
    return np.stack([preprocess_one(RESNET50, ds.path(i), "NCHW") for i in range(min(n, len(ds)))])


# -- the graphs -----------------------------------------------------------------------------
def test_the_int8_graph_reads_the_cache_bytes_as_they_are_and_answers_bit_for_bit(int8_sym, imagenet_dir):
    info = check_model(int8_sym, RESNET50)
    assert info.quantization.dtype == "int8" and info.quantization.zero_point == 0
    g = tensorrt_graph(info, "int8")
    assert g.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT8
    rows = info.quantization.apply(images(imagenet_dir))  # what the int8 cache holds
    rows[0, 0, 0, :4] = [-128, -1, 0, 127]  # the edges of the reinterpretation
    want = session(int8_sym).run(None, {info.input_name: rows})
    got = session(g.SerializeToString()).run(None, {info.input_name: rows.view(np.uint8)})
    assert all(np.array_equal(a, b) for a, b in zip(want, got))
    # every Q/DQ TensorRT sees is symmetric int8: biases stayed float
    zps = [i for i in g.graph.initializer if "zero_point" in i.name]
    assert zps and all(onnx.numpy_helper.to_array(z).dtype == np.int8 for z in zps)


def test_the_fp16_graph_agrees_with_the_float32_model(slim_model, imagenet_dir):
    info = check_model(slim_model, RESNET50)
    g = tensorrt_graph(info, "fp16")
    assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in g.graph.initializer)
    assert g.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT  # the cache rows as they are
    x = images(imagenet_dir)
    want = session(slim_model).run(None, {info.input_name: x})
    got = session(g.SerializeToString()).run(None, {info.input_name: x})
    probs = next(k for k, o in enumerate(want) if o.ndim == 2)
    np.testing.assert_allclose(got[probs], want[probs], atol=2e-3)


@pytest.mark.parametrize("which, precision, says", [
    ("asymmetric", "int8", "quantize --symmetric"),
    ("float", "int8", "quantize --symmetric"),
    ("symmetric", "fp16", "built from the float32 model"),
])
def test_graphs_tensorrt_cannot_take_are_refused_with_the_fix(which, precision, says, slim_model, int8_sym,
                                                            imagenet_dir, tmp_path):
    if which == "asymmetric":
        path = tmp_path / "asym.onnx"
        visionperf("quantize", "resnet50", "--model", slim_model, "--dataset", imagenet_dir,
                   "--calibration-count", "4", "--out", path)
    else:
        path = slim_model if which == "float" else int8_sym
    with pytest.raises(UserError, match=says):
        tensorrt_graph(check_model(path, RESNET50), precision)


# -- options and the engine cache -----------------------------------------------------------
def test_backend_options_are_checked():
    assert TrtOptions.parse("precision=fp16;sweep=1", "int8") == TrtOptions("fp16", True, 0)
    assert TrtOptions.parse("sweep=1;sizes=64,16,64", "int8").sizes == (16, 64)
    assert TrtOptions.parse("", "int8", default_sweep=True).sweep  # Offline without --batch-size
    assert not TrtOptions.parse("sweep=0", "int8", default_sweep=True).sweep
    assert TrtOptions.parse("", "int8").precision == "int8"
    assert TrtOptions.parse("fetch=1", "int8").fetch and not TrtOptions.parse("", "int8").fetch  # gather by default
    for bad in ("precision=int4", "batch=3", "workspace_mb=lots", "sizes=0,8", "sizes="):
        with pytest.raises(UserError, match="--backend-option"):
            TrtOptions.parse(bad, "int8")


def test_an_engine_is_keyed_by_everything_that_makes_it_differ():
    base = {"model_digest": "m", "precision": "int8", "batch": (1, 256, 256), "gpu": "H200 (sm_90)",
            "trt_version": "11.4"}
    keys = {trt_plan_key(**base)}
    for field, other in [("model_digest", "m2"), ("precision", "fp16"), ("batch", (1, 128, 128)),
                         ("gpu", "H100 (sm_90)"), ("trt_version", "10.13")]:
        keys.add(trt_plan_key(**{**base, field: other}))
    assert len(keys) == 6 and trt_plan_key(**base) == trt_plan_key(**base)


def test_engines_are_built_once_and_then_read_from_the_cache(int8_sym, tmp_path):
    info = check_model(int8_sym, RESNET50)
    cache = TrtPlanCache(tmp_path / "engines")
    FakeTensorRT.builds.clear()
    for _ in range(2):
        rt = FakeTensorRT(info, RESNET50, TrtOptions("int8"), trt_plan_cache=cache, log=lambda *_: None)
        rt.load_trt_plan(0, 8)
    rt.load_trt_plan(0, 16)
    assert FakeTensorRT.builds == [8, 16]
    plans = sorted(p.name for p in (tmp_path / "engines").iterdir())
    assert len([p for p in plans if p.endswith(".plan")]) == 2 and not [p for p in plans if "tmp" in p]
    meta = json.loads(next((tmp_path / "engines").glob("*.json")).read_text())
    assert meta["precision"] == "int8" and meta["gpu"] == "Fake H200 (sm_90)" and meta["tensorrt"] == "fake-11.4"


def test_the_batch_sweep_finds_the_best_size_and_remembers_it(int8_sym, tmp_path):
    """A GPU whose batches cost 1 ms + 10 us per sample, and twice that per sample past 256
    (a cache spill): 256 is the best size."""
    info = check_model(int8_sym, RESNET50)
    cache = TrtPlanCache(tmp_path / "engines")

    def cost(rows):
        return 1e-3 + 1e-5 * rows + (2e-5 * rows if rows > 256 else 0.0)

    rt = FakeTensorRT(info, RESNET50, TrtOptions("int8", sweep=True), trt_plan_cache=cache, log=lambda *_: None,
                      cost=cost, compute=False)
    part = card_plan(read_topology(), 1)[0]
    best = rt.best_batch(part, 0, 2, sizes=(64, 128, 256, 512), seconds=0.3)
    assert best == 256
    assert cache.remembered_batch(rt.family("Fake H200 (sm_90)") + "-64,128,256,512") == 256
    FakeTensorRT.builds.clear()
    assert rt.best_batch(part, 0, 2, sizes=(64, 128, 256, 512)) == 256 and FakeTensorRT.builds == []


def test_sweep_prefers_the_smaller_batch_when_the_rates_are_within_two_percent():
    opened = []

    class Dev:
        def __init__(self, b):
            opened.append(b)

        def raw_rate(self, b, seconds):
            return {64: 1000.0, 128: 1990.0, 256: 2000.0}[b]

        def close(self):
            pass

    best, rates = sweep_batch(Dev, (64, 128, 256), log=lambda *_: None)
    assert best == 128 and rates[256] == 2000.0
    assert opened == [256]  # one engine, built for the largest size, measures them all


# -- the device through the real LoadGen, on the fake GPU -------------------------------------
FAKE = Path(__file__).parent / "fake_gpu.py"


def on_fake_gpus(tmp_path, *args, gpus=1, register=True):
    """`visionperf ARGS` with --backend tensorrt on fake GPUs, in a process of its own;
    returns (the process, the fake's counters)."""
    stats = tmp_path / "fake_gpu.json"
    flags = ["--gpus", str(gpus), "--stats", str(stats)] + ([] if register else ["--no-register"])
    env = {**os.environ, "VISIONPERF_TENSORRT_CACHE": str(tmp_path / "engines")}
    p = subprocess.run([sys.executable, str(FAKE), *flags, *map(str, args), "--backend", "tensorrt"],
                       capture_output=True, text=True, timeout=600, env=env, check=False)
    assert p.returncode == 0, p.stdout + p.stderr
    return p, json.loads(stats.read_text())


@pytest.mark.parametrize("register, fetch", [(True, False), (False, False), (True, True)],
                         ids=["staging-locked", "own-pinned", "device-fetch"])
def test_an_accuracy_run_on_gpus_answers_each_sample_with_the_models_prediction(
        register, fetch, int8_sym, imagenet_dir, tmp_path):
    p, fake = on_fake_gpus(tmp_path, "run", "resnet50", "--scenario", "Offline", "--mode", "accuracy",
                           "--devices", "2", "--batch-size", "4", "--in-flight", "3", "--model", int8_sym,
                           "--dataset", imagenet_dir, "--cache", tmp_path / "cache", "--out", tmp_path / "out",
                           *(["--backend-option", "fetch=1"] if fetch else []), gpus=2, register=register)
    info = check_model(int8_sym, RESNET50)
    x = info.quantization.apply(images(imagenet_dir, 10**6))
    expect = session(int8_sym).run(["ArgMax:0"], {info.input_name: x})[0] - 1
    run = tmp_path / "out/resnet50/Offline/accuracy"
    log = json.loads((run / "mlperf_log_accuracy.json").read_text())
    got = {e["qsl_idx"]: int(np.frombuffer(bytes.fromhex(e["data"]), np.float32)[0]) for e in log}
    assert got == {i: int(expect[i]) for i in range(len(x))}
    rec = json.loads((run / "run.json").read_text())
    assert [d["name"] for d in rec["device_stats"]] == ["gpu0", "gpu1"] and rec["cache"]["dtype"] == "int8"
    assert all(d["max_in_flight"] == 3 for d in rec["device_stats"])
    assert fake["h2d_bytes"] >= x.nbytes
    if fetch:  # no staging: each GPU locks the sample buffer per load, unlocks it before it is freed
        assert rec["input_path"] == "device fetch"
        assert fake["register_calls"] >= 2 and fake["unregistered"] == fake["register_calls"]
        assert fake["registered"] == 0
        return
    assert rec["input_path"] == "host gather"
    assert (fake["registered"] == 2) == register  # each GPU locks its driver's staging buffer once
    # one optimisation profile per batch in flight: TensorRT runs contexts at once only so
    assert "building a TensorRT engine (int8, batch [1, 4, 4], 3 profile(s))" in p.stdout


def test_a_server_run_on_a_gpu_answers_at_the_rate_asked_and_engines_come_from_the_cache(
        int8_sym, imagenet_dir, tmp_path):
    """As test_end_to_end's Server runs: what is deterministic on a shared 2-core machine is
    that every query is answered at about the rate asked (VALID-ness is the benchmarks')."""
    from visionperf.results import read_result

    args = ["run", "resnet50", "--scenario", "Server", "--batch-size", "4", "--target-qps", "80",
            "--duration", "4", "--model", int8_sym, "--dataset", imagenet_dir, "--cache", tmp_path / "cache"]
    p, _ = on_fake_gpus(tmp_path, *args, "--out", tmp_path / "out")
    d = tmp_path / "out/resnet50/Server/performance/run_1"
    res = read_result(d, "Server")
    assert res.metric > 0.8 * 80 and res.latency_ns["99.00"] > 0
    rec = json.loads((d / "run.json").read_text())
    assert sum(s["samples"] for s in rec["device_stats"]) >= res.detail["result_query_count"]
    assert "building a TensorRT engine" in p.stdout
    power = rec["power"]  # the fake boards draw 300 W (NVML's reading, sampled during the test)
    assert power["watts_avg"] == 300.0 and power["devices"] == ["0000:17:00.0"] and power["readings"] >= 10
    assert power["samples_per_s_per_watt"] == pytest.approx(
        sum(s["samples"] for s in rec["device_stats"]) / rec["test_s"] / 300, rel=0.05)
    assert "board power" in p.stdout and "samples/s per watt" in p.stdout
    assert "samples/s/W" in visionperf("report", tmp_path / "out").stdout
    p, _ = on_fake_gpus(tmp_path, *args, "--out", tmp_path / "out2")
    assert "building a TensorRT engine" not in p.stdout


def test_without_tensorrt_the_backend_says_how_to_get_it(int8_sym, imagenet_dir, tmp_path):
    try:
        import tensorrt  # noqa: F401
        pytest.skip("tensorrt is installed here")
    except ImportError:
        pass
    p = visionperf("run", "resnet50", "--scenario", "Offline", "--backend", "tensorrt", "--model", int8_sym, "--dataset", imagenet_dir,
                   "--cache", tmp_path / "cache", "--out", tmp_path / "out", check=False)
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "pip install 'visionperf[tensorrt]'" in lines[0] and "EXTRAS=tensorrt" in lines[0]
    assert not (tmp_path / "out").exists() and not (tmp_path / "cache").exists()  # refused before any work


def test_gpus_are_planned_in_pci_order_on_their_own_sockets_cores(tmp_path):
    """A recorded 2-socket server with the paper's cards and two NVIDIA GPUs besides (an H200 on
    socket 1 first in PCI order, then one on socket 0): a tensorrt plan is made of the GPUs
    alone, each fed by cores of its own socket, its buffer replica on its own node."""
    from sysfs_fixtures import materialise

    from visionperf.backends import get_backend
    from visionperf.placement import replica_plan

    root = materialise("r282-z93-8", tmp_path / "sys")
    for addr, node in (("0000:c1:00.0", 1), ("0000:c2:00.0", 0)):  # class 0x0302: 3D controller
        d = root / "sys/bus/pci/devices" / addr
        d.mkdir(parents=True)
        for name, value in (("vendor", "0x10de"), ("device", "0x2335"), ("class", "0x030200"), ("numa_node", node)):
            (d / name).write_text(f"{value}\n")
    t = read_topology(root)
    gpus = get_backend("tensorrt").accelerators(t)
    assert [(g.pci, g.numa_node) for g in gpus] == [("0000:c1:00.0", 1), ("0000:c2:00.0", 0)]
    plan = card_plan(t, 2, gpus)
    assert [p.pci for p in plan] == ["0000:c1:00.0", "0000:c2:00.0"]
    assert [p.socket for p in plan] == [1, 0] and [p.numa_node for p in plan] == [1, 0]
    assert all(t.core(c).socket == p.socket for p in plan for c in p.cores)
    assert replica_plan(t, plan, "device").nodes == [1, 0]
    assert get_backend("simulated").accelerators(t) is None  # other card backends keep every accelerator


def test_a_detection_engine_hands_the_host_nms_fp16_scores(tmp_path):
    """SSD-ResNet34 cut before NMS: the scores output becomes float16 (half the bytes to the
    host), the boxes stay float32, and the values are the fp32 model's to fp16 precision."""
    from visionperf.backends.tensorrt import fp16_outputs, score_format
    from visionperf.models import build_ssd_resnet34
    from visionperf.workloads import SSD_RESNET34

    path = build_ssd_resnet34(tmp_path / "ssd.onnx", width=0.125)
    info = check_model(path, SSD_RESNET34)
    assert fp16_outputs(SSD_RESNET34, info) == ("confs",) and score_format(SSD_RESNET34, info).dtype == "float16"
    g = tensorrt_graph(info, "fp16", fp16_outputs(SSD_RESNET34, info))
    x = np.random.default_rng(0).standard_normal((1, 3, 1200, 1200)).astype(np.float32)
    want = dict(zip(["locs", "confs"], session(path).run(["locs", "confs"], {info.input_name: x})))
    got = dict(zip(["locs", "confs"], session(g.SerializeToString()).run(["locs", "confs"], {info.input_name: x})))
    assert got["confs"].dtype == np.float16 and got["locs"].dtype == np.float32
    np.testing.assert_allclose(got["confs"].astype(np.float32), want["confs"], atol=0.05, rtol=0.02)
