"""Issue 12, item 3: every numeric option is checked where it is parsed (finite, in range) or,
for what depends on the machine (cores, memory), where the run is planned: one line naming the
option, the value and the fix, exit status 2, no traceback and nothing written."""

import subprocess
import sys

import pytest

HUGE_QPS = "1e15"  # finite, but LoadGen's query for it could never fit in memory

RUN = [  # (extra arguments to `run resnet50 --scenario Offline ...`, the option the error names)
    (["--devices", "1000"], "--devices"),  # onnxruntime on this machine's cores
    (["--devices", "0"], "--devices"),
    (["--devices", "2000", "--backend", "null"], "--devices"),
    (["--devices", "-1", "--backend", "simulated"], "--devices"),
    (["--target-qps", "inf"], "--target-qps"),
    (["--target-qps", "nan"], "--target-qps"),
    (["--target-qps", "0"], "--target-qps"),
    (["--target-qps", "-3"], "--target-qps"),
    (["--target-qps", HUGE_QPS, "--duration", "1", "--backend", "null"], "--target-qps"),
    (["--duration", "nan"], "--duration"),
    (["--duration", "inf"], "--duration"),
    (["--duration", "0"], "--duration"),
    (["--duration", "-1"], "--duration"),
    (["--batch-size", "0"], "--batch-size"),
    (["--batch-size", "-2"], "--batch-size"),
    (["--batch-size", "2.5"], "--batch-size"),
    (["--card-rate", "0", "--backend", "simulated"], "--card-rate"),
    (["--card-rate", "-100", "--backend", "simulated"], "--card-rate"),
    (["--card-rate", "nan", "--backend", "simulated"], "--card-rate"),
    (["--batch-timeout-ms", "-5"], "--batch-timeout-ms"),
    (["--batch-timeout-ms", "nan"], "--batch-timeout-ms"),
    (["--in-flight", "0", "--backend", "simulated"], "--in-flight"),
    (["--in-flight", "100000", "--backend", "simulated"], "--in-flight"),
    (["--post-threads", "-1"], "--post-threads"),
    (["--post-threads", "100000"], "--post-threads"),
    (["--count", "0"], "--count"),
    (["--count", "-5"], "--count"),
]


def _refused(tmp_path, args, option):
    out = tmp_path / "out"
    p = subprocess.run([sys.executable, "-m", "visionperf", *map(str, args), "--out", str(out)],
                       capture_output=True, text=True, timeout=120)
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert p.returncode == 2, (p.returncode, p.stdout, p.stderr)
    assert "Traceback" not in p.stderr
    assert len(lines) == 1 and "error:" in lines[0], p.stderr
    assert option in lines[0], p.stderr
    assert not out.exists(), f"{out} was written: {sorted(out.rglob('*'))}"
    return lines[0]


@pytest.mark.parametrize("extra,option", RUN, ids=[" ".join(a) for a, _ in RUN])
def test_run_refuses_bad_numbers(tmp_path, slim_model, imagenet_dir, extra, option):
    _refused(tmp_path, ["run", "resnet50", "--scenario", "Offline", "--model", slim_model,
                        "--dataset", imagenet_dir, "--cache", tmp_path / "cache", *extra], option)
    assert not (tmp_path / "cache").exists()


OTHERS = [  # (a command line without --out, the option the error names)
    (["preprocess", "resnet50", "--dataset", "{data}", "--chunk-size", "-4"], "--chunk-size"),
    (["preprocess", "resnet50", "--dataset", "{data}", "--chunk-size", "0"], "--chunk-size"),
    (["preprocess", "resnet50", "--dataset", "{data}", "--count", "0"], "--count"),
    (["preprocess", "resnet50", "--dataset", "{data}", "--count", "-3"], "--count"),
    (["preprocess", "resnet50", "--dataset", "{data}", "--workers", "0"], "--workers"),
    (["preprocess", "resnet50", "--dataset", "{data}", "--dtype", "int8", "--scale", "nan",
      "--zero-point", "0"], "--scale"),
    (["preprocess", "resnet50", "--dataset", "{data}", "--dtype", "uint8", "--scale", "0.02",
      "--zero-point", "300"], "--zero-point"),
    (["sample-data", "imagenet", "--count", "0"], "--count"),
    (["sample-data", "imagenet", "--count", "-1"], "--count"),
    (["build-model", "resnet50", "--width", "nan"], "--width"),
    (["quantize", "resnet50", "--model", "{model}", "--dataset", "{data}", "--calibration-count", "0"],
     "--calibration-count"),
    (["scale", "resnet50", "--model", "{model}", "--dataset", "{data}", "--devices", "1,0"], "--devices"),
    (["scale", "resnet50", "--model", "{model}", "--dataset", "{data}", "--devices", "1,x"], "--devices"),
    (["scale", "resnet50", "--model", "{model}", "--dataset", "{data}", "--devices", "1,5000"], "--devices"),
    (["scale", "resnet50", "--model", "{model}", "--dataset", "{data}", "--backend", "onnxruntime",
      "--devices", "1,1000"], "--devices"),
    (["scale", "resnet50", "--model", "{model}", "--dataset", "{data}", "--duration", "nan"], "--duration"),
    (["scale", "resnet50", "--model", "{model}", "--dataset", "{data}", "--card-rate", "-1"], "--card-rate"),
    (["scale", "resnet50", "--model", "{model}", "--dataset", "{data}", "--steps", "0"], "--steps"),
]
PLAN = [
    (["plan", "--devices", "0"], "--devices"),
    (["plan", "--devices", "100000"], "--devices"),
    (["plan", "--devices", "2", "--workload", "resnet50", "--card-rate", "-5"], "--card-rate"),
    (["plan", "--devices", "2", "--workload", "resnet50", "--host-us-per-sample", "nan"], "--host-us-per-sample"),
    (["plan", "--devices", "2", "--workload", "resnet50", "--host-us-per-sample", "0"], "--host-us-per-sample"),
    (["plan", "--devices", "2", "--node-bandwidth-gbs", "inf"], "--node-bandwidth-gbs"),
]


@pytest.mark.parametrize("args,option", OTHERS, ids=[" ".join(a[:1] + a[-2:]) for a, _ in OTHERS])
def test_other_commands_refuse_bad_numbers(tmp_path, slim_model, imagenet_dir, args, option):
    args = [str(a).format(data=imagenet_dir, model=slim_model) for a in args]
    _refused(tmp_path, args, option)


@pytest.mark.parametrize("args,option", PLAN, ids=[" ".join(a[1:]) for a, _ in PLAN])
def test_plan_refuses_bad_numbers(args, option):
    p = subprocess.run([sys.executable, "-m", "visionperf", *args], capture_output=True, text=True, timeout=120)
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr
    assert len(lines) == 1 and "error:" in lines[0] and option in lines[0], p.stderr


def test_fixed_batch_model_refuses_another_batch_size(tmp_path, slim_model, imagenet_dir):
    """ONNX Runtime runs a fixed-batch model at its batch: another --batch-size is refused."""
    import onnx

    m = onnx.load(str(slim_model))
    m.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 1
    fixed = tmp_path / "fixed_batch1.onnx"
    onnx.save(m, str(fixed))
    line = _refused(tmp_path, ["run", "resnet50", "--scenario", "Offline", "--model", fixed,
                               "--dataset", imagenet_dir, "--cache", tmp_path / "cache", "--batch-size", "8"],
                    "--batch-size")
    assert "--batch-size 1" in line
    assert not (tmp_path / "cache").exists()
