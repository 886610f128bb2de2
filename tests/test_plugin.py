"""A device plug-in built by the test suite (tests/plugins/echo_device.c, against
visionperf/device.h alone) through the real command and LoadGen; the loader's errors; a device
failing mid-run; Ctrl-C."""

import glob
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from conftest import visionperf
from visionperf.preprocess import ensure_cache
from visionperf.datasets import open_dataset
from visionperf.models.check import check_model
from visionperf.results import read_result
from visionperf.workloads import RESNET50


@pytest.fixture(scope="module")
def cache(imagenet_dir, slim_model, tmp_path_factory):
    """(cache directory, its rows): the rows every run below reads."""
    d = tmp_path_factory.mktemp("cache")
    model = check_model(slim_model, RESNET50)
    c = ensure_cache(RESNET50, open_dataset(RESNET50, imagenet_dir), d, dtype=model.input_dtype,
                     layout=RESNET50.layout, quantization=model.quantization, log=lambda m: None)
    return d, np.array(c.data)


@pytest.fixture(scope="module")
def run_args(imagenet_dir, slim_model, cache):
    return ["--model", slim_model, "--dataset", imagenet_dir, "--cache", cache[0]]


def echo_labels(rows: np.ndarray) -> np.ndarray:
    """What echo_device.c answers per row: its first four bytes, little-endian, mod 1000."""
    return np.ascontiguousarray(rows).reshape(len(rows), -1).view(np.uint8)[:, :4].copy().view("<u4")[:, 0] % 1000


def only_in_the_test(rows: np.ndarray) -> int:
    """A label only rows the timed test reads have: the warm-up of one device loads the first
    32 rows (4 batches of 8), LoadGen's performance set is all 48."""
    labels = echo_labels(rows)
    late = [int(v) for v in labels[32:] if v not in set(labels[:32].tolist()) and (labels == v).sum() == 1]
    assert late, "no row label unique to the timed test"
    return late[0]


def no_results(out: Path, scenario="Offline") -> bool:
    """Neither a result nor a partial directory under OUT."""
    base = out / "resnet50" / scenario
    return not (base / "performance/run_1").exists() and not (base / "accuracy").exists() \
        and not glob.glob(str(base / "*" / "*.partial-*")) and not glob.glob(str(base / "*.partial-*"))


def one_error_line(p: subprocess.CompletedProcess) -> str:
    assert "Traceback" not in p.stderr, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, p.stderr
    return lines[0]


# ---- runs through LoadGen ---------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("scenario, qps", [("Offline", 1500), ("Server", 300)])
def test_a_plugin_runs_through_loadgen(echo_plugin, run_args, scenario, qps, tmp_path):
    p = visionperf("run", "resnet50", "--scenario", scenario, "--backend", f"plugin:{echo_plugin}",
                   "--backend-option", "delay_us=200", "--devices", "2", "--target-qps", qps, "--duration", "1",
                   *run_args, "--out", tmp_path)
    d = tmp_path / f"resnet50/{scenario}/performance/run_1"
    res = read_result(d, scenario)
    rec = json.loads((d / "run.json").read_text())
    done = sum(s["samples"] for s in rec["device_stats"])
    assert [s["name"] for s in rec["device_stats"]] == ["card0", "card1"] and all(
        s["samples"] > 0 for s in rec["device_stats"])
    if scenario == "Offline":
        assert done == res.detail["generated_samples_per_query"]  # every sample LoadGen issued, once
    else:  # one sample a query; VALID is left to test_end_to_end (this machine is shared)
        assert done == res.detail["result_query_count"] and res.latency_ns["50.00"] < 50e6
    assert rec["config"]["backend"] == f"plugin:{echo_plugin}" and rec["config"]["backend_options"] == "delay_us=200"
    assert "card0" in p.stdout and "card1" in p.stdout  # the report's per-device lines
    assert not list((tmp_path / f"resnet50/{scenario}/performance").glob("*.partial-*"))


@pytest.mark.fault
@pytest.mark.slow
@pytest.mark.parametrize("scenario, options", [
    ("Offline", "delay_us=100;announce=0"), ("Server", "delay_us=100;announce=0"),
    # batches that finish out of submission order, with ready times announced out of order
    ("Offline", "jitter_us=3000"), ("Server", "jitter_us=3000"), ("MultiStream", "jitter_us=3000")])
def test_a_plugin_answers_every_sample_in_accuracy_mode(echo_plugin, run_args, cache, scenario, options, tmp_path):
    extra = ["--target-qps", "500"] if scenario == "Server" else []
    visionperf("run", "resnet50", "--scenario", scenario, "--mode", "accuracy", "--backend",
               f"plugin:{echo_plugin}", "--devices", "2", "--backend-option", options, *extra, *run_args,
               "--out", tmp_path)
    d = tmp_path / f"resnet50/{scenario}/accuracy"
    log = json.loads((d / "mlperf_log_accuracy.json").read_text())
    got = {}
    for r in log:
        assert r["qsl_idx"] not in got, "a sample was answered twice"
        got[r["qsl_idx"]] = float(np.frombuffer(bytes.fromhex(r["data"]), np.float32)[0])
    expect = echo_labels(cache[1]) - RESNET50.label_offset  # each response came from its own row
    assert got == {i: float(expect[i]) for i in range(48)}
    assert (d / "accuracy.txt").read_text().startswith("accuracy=")


# ---- the loader's errors: one line, exit 2 ---------------------------------------------------

@pytest.mark.parametrize("variant, message", [
    ("missing", "plug-in {path} not found"),
    ("text", "plug-in {path} is not a shared library"),
    ("no-entry", "plug-in {path} exports no vp_device_plugin()"),
    ("abi-3", "plug-in {path} was built against another device ABI version (3, visionperf speaks 1 and 2)"),
    ("abi-none", "plug-in {path} was built against another device ABI version (none offered, visionperf speaks 1 and 2)"),
    ("refuses", "echo card0: echo device 0 refuses to open (fail_open=1)"),
])
def test_plugin_errors_are_one_line_and_exit_2(request, run_args, tmp_path, variant, message):
    build = lambda *flags: request.getfixturevalue("build_plugin")("echo_device.c", *flags)  # noqa: E731
    path = {
        "missing": lambda: tmp_path / "libnothere.so",
        "text": lambda: (tmp_path / "libtext.so").write_text("not a library\n") and tmp_path / "libtext.so",
        "no-entry": lambda: build("-DVP_TEST_NO_ENTRY"),
        "abi-3": lambda: build("-DVP_TEST_ABI=3"),
        "abi-none": lambda: build("-DVP_TEST_ABI=0"),
        "refuses": lambda: build(),
    }[variant]()
    p = visionperf("run", "resnet50", "--scenario", "Offline", "--backend", f"plugin:{path}", "--backend-option",
                   "fail_open=1" if variant == "refuses" else "", "--duration", "1", *run_args,
                   "--out", tmp_path / "out", check=False)
    assert p.returncode == 2, (p.stdout, p.stderr)
    assert one_error_line(p).startswith(f"visionperf: error: {message.format(path=path)}"), p.stderr
    assert no_results(tmp_path / "out")


# ---- faults mid-run: the run ends, names the device, keeps nothing ---------------------------

PY_DEVICE = textwrap.dedent('''
    """A Python device that raises on any batch holding one row (the label echo_device.c
    would give it), in place of ONNX Runtime's, then the real command."""
    import sys

    import numpy as np

    from visionperf.backends.base import Backend

    TARGET = int(sys.argv[1])


    class Exploding:
        fixed_batch = False
        reads_input = True

        def __init__(self, name, shape, dtype, batch_size, cpus):
            self.name, self.input_shape, self.input_dtype, self.batch_size = name, shape, dtype, batch_size
            self.cpus = self.thread_cpus = tuple(cpus)

        def run(self, x):
            labels = np.ascontiguousarray(x).reshape(len(x), -1).view(np.uint8)[:, :4].copy().view("<u4")[:, 0] % 1000
            if TARGET in labels:
                raise RuntimeError("device exploded")
            return [np.zeros(len(x), np.int64)]

        def close(self):
            pass


    def make_devices(backend, model, w, plan, batch_size, *args, **kw):
        return [Exploding(f"py{i}", w.row_shape(w.layout), np.dtype(model.input_dtype), batch_size, part.cpus)
                for i, part in enumerate(plan)]


    Backend.make_devices = lambda self, *args, **kw: make_devices(self.name, *args, **kw)
    from visionperf.cli import main

    sys.exit(main(sys.argv[2:]))
''')


@pytest.mark.fault
@pytest.mark.slow
@pytest.mark.parametrize("fault", ["plugin-submit", "plugin-collect", "python-raises"])
def test_a_device_failing_mid_run_ends_the_run_with_one_line(echo_plugin, run_args, cache, tmp_path, fault):
    target = only_in_the_test(cache[1])
    args = ["run", "resnet50", "--scenario", "Offline", "--target-qps", "500", "--duration", "1", *run_args,
            "--out", tmp_path / "out"]
    if fault == "python-raises":
        script = tmp_path / "py_device.py"
        script.write_text(PY_DEVICE)
        cmd = [sys.executable, script, str(target), *args, "--backend", "onnxruntime", "--devices", "1"]
        expect = "visionperf: error: the run failed: py0: RuntimeError: device exploded"
    else:
        # submit: on a row only LoadGen's timed test reads; collect: the third batch (warm-up)
        opt = f"fail_label={target}" if fault == "plugin-submit" else "fail_collect_on=3"
        cmd = [sys.executable, "-m", "visionperf", *args, "--backend", f"plugin:{echo_plugin}",
               "--backend-option", f"delay_us=100;{opt}"]
        expect = ("visionperf: error: the run failed: card0: echo device: "
                  + (f"submit of a row labelled {target} failed on purpose" if fault == "plugin-submit"
                     else "collect 3 failed on purpose"))
    p = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=120)
    assert p.returncode == 2, (p.stdout, p.stderr)
    assert one_error_line(p).startswith(expect), p.stderr
    assert no_results(tmp_path / "out")
