"""Issue 12: SIGINT, SIGTERM and SIGKILL at random points of `visionperf run`, in every
scenario and with every backend.

SIGINT/SIGTERM: the run ends within 2 s with exit 130/143 and one line, keeps no results, and
leaves no process, partial directory, temporary file or lock behind. SIGKILL cannot be
handled: the test then checks that no process survives, that `report` lists nothing, and that
the next run into the same --out cleans what the killed one left and succeeds.

A point is either early (a random time after the start: loading the model, planning, the
warm-up) or in the test (a random time after LoadGen opened its logs). Random times are
seeded, and the seed is in the test's id."""

from __future__ import annotations

import importlib.util
import random
import signal
import sys
import time
from pathlib import Path

import pytest

from conftest import visionperf
from injection import EXIT, FIRST_WORD, finish, half_written, no_survivors, one_line, start, stop, wait_for_file
from test_plugin import cache, run_args  # noqa: F401 (fixtures)

FAKE_GPU = Path(__file__).parents[1] / "fake_gpu.py"

pytestmark = pytest.mark.fault  # `make faults` runs every test so marked

SCENARIOS = ["Offline", "Server", "SingleStream", "MultiStream"]
BACKENDS = ["null", "simulated", "onnxruntime", "plugin", "openvino"]
SIGNALS = [signal.SIGINT, signal.SIGTERM, signal.SIGKILL]


def _cases():
    cases = []
    for i, (backend, scenario) in enumerate((b, s) for b in BACKENDS for s in SCENARIOS):
        # the null device finishes an Offline test in milliseconds: only its start can be hit
        point = "early" if i % 2 or (backend, scenario) == ("null", "Offline") else "test"
        cases.append((backend, scenario, SIGNALS[i % 3], point, 100 + i))
    for j, sig in enumerate(SIGNALS):  # the two scenarios LoadGen ends differently, every signal
        for k, scenario in enumerate(["Offline", "Server"]):
            cases.append(("plugin", scenario, sig, "test", 200 + 2 * j + k))
    no_openvino = pytest.mark.skipif(importlib.util.find_spec("openvino") is None,
                                     reason="needs OpenVINO: pip install 'visionperf[openvino]' (make test installs it)")
    return [pytest.param(*c, id=f"{c[0]}-{c[1]}-{c[2].name}-{c[3]}-{c[4]}",
                         marks=[no_openvino] if c[0] == "openvino" else []) for c in cases]


def backend_args(backend: str, echo_plugin) -> list[str]:
    return {"null": ["--backend", "null"],
            "simulated": ["--backend", "simulated", "--card-rate", "2000"],
            "onnxruntime": ["--backend", "onnxruntime", "--devices", "1"],
            "openvino": ["--backend", "openvino", "--devices", "1"],
            "plugin": ["--backend", f"plugin:{echo_plugin}", "--backend-option", "delay_us=200"]}[backend]


def signal_a_run(p, token: str, out: Path, scenario: str, sig, point: str, early_s: float, in_test_s: float,
                 log_wait_s: float = 60) -> bool:
    """SIG to the `visionperf run` P (writing into OUT) EARLY_S after its start, or IN_TEST_S after
    LoadGen opened its logs; then what every signal must leave: the exit status, no process
    behind, and for INT/TERM an end within 2 s, one line, nothing kept or half-written. Returns
    whether the signal was SIGKILL (what it left is the caller's to check)."""
    try:
        if point == "early":
            time.sleep(early_s)
        else:
            wait_for_file(p, out, f"resnet50/{scenario}/performance/run_1.partial-*/mlperf_log_detail.txt",
                          log_wait_s)
            time.sleep(in_test_s)
        stderr, took = stop(p, sig)
    finally:
        finish(p, 0)
    assert p.returncode == EXIT[sig], (p.returncode, stderr)
    assert not no_survivors(token), "a process outlived the run"
    if sig == signal.SIGKILL:
        return True
    assert took < 2.0, took
    line = one_line(stderr)
    assert line.startswith(FIRST_WORD[sig]) and "nothing of this run was kept" in line, line
    assert not half_written(out), half_written(out)
    assert not (out / f"resnet50/{scenario}/performance/run_1").exists()
    return False


@pytest.mark.slow
@pytest.mark.parametrize("backend, scenario, sig, point, seed", _cases())
def test_a_signal_at_a_random_point_of_a_run(echo_plugin, run_args, tmp_path, backend, scenario, sig, point, seed):  # noqa: F811
    rng = random.Random(seed)
    out = tmp_path / "out"
    qps = {"Offline": ["--target-qps", "2000"], "Server": ["--target-qps", "200"]}.get(scenario, [])
    p, token = start(["run", "resnet50", "--scenario", scenario, *backend_args(backend, echo_plugin), *qps,
                      "--duration", "600", *run_args, "--out", out])
    if not signal_a_run(p, token, out, scenario, sig, point, rng.uniform(0.5, 2.0), rng.uniform(0.0, 0.6)):
        return
    # SIGKILL: what it left is recognised and cleaned, never taken for a result
    rep = visionperf("report", out, check=False)
    if rep.returncode == 0:
        assert ".partial-" not in rep.stdout
    else:
        assert one_line(rep.stderr).startswith("visionperf: error:")
    visionperf("run", "resnet50", "--scenario", scenario, "--backend", "null", *qps, "--duration", "0.2",
               *run_args, "--out", out)
    assert (out / f"resnet50/{scenario}/performance/run_1/mlperf_log_summary.txt").exists()
    assert not half_written(tmp_path), half_written(tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("scenario, sig", [("Offline", signal.SIGINT), ("Server", signal.SIGTERM)])
def test_a_signal_in_the_test_of_a_device_that_fetches_its_own_rows(fetch_plugin, run_args, tmp_path, scenario,
                                                                    sig):  # noqa: F811
    """Device fetch (issue 27) ends as the gather does: the exit, one line, nothing kept; and the
    device never read a row after it was told to let the region go."""
    out, log = tmp_path / "out", tmp_path / "fetch.log"
    qps = ["--target-qps", "2000" if scenario == "Offline" else "200"]
    p, token = start(["run", "resnet50", "--scenario", scenario, "--backend", f"plugin:{fetch_plugin}",
                      "--backend-option", f"delay_us=200;log={log}", *qps, "--duration", "600", *run_args,
                      "--out", out])
    signal_a_run(p, token, out, scenario, sig, "test", 0, 0.3)
    lines = log.read_text().splitlines()
    assert not [x for x in lines if " breach " in x], lines
    registered: dict = {}
    for x in lines:  # per device: a batch only while its region is registered
        dev, what = x.split()[:2]
        if what in ("register", "unregister"):
            registered[dev] = what == "register"
        elif what == "submit":
            assert registered.get(dev), x


# ---- the other long commands -------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_a_stopped_scale_study_takes_its_runs_with_it(run_args, tmp_path, sig):  # noqa: F811
    """`scale` runs each point as a child `visionperf run`: stopped, or killed outright, the
    child ends too (SIGTERM from the kernel when its parent dies), and cleans up after itself."""
    out = tmp_path / "scale"
    p, token = start(["scale", "resnet50", "--backend", "simulated", "--card-rate", "500", "--devices", "1,2",
                      "--duration", "600", *run_args, "--out", out])
    try:
        wait_for_file(p, out, "d1/offline/resnet50/Offline/performance/run_1.partial-*/mlperf_log_detail.txt")
        stderr, took = stop(p, sig)
    finally:
        finish(p, 0)
    assert p.returncode == EXIT[sig], (p.returncode, stderr)
    assert not no_survivors(token), "a run outlived the scale study"
    if sig != signal.SIGKILL:
        assert took < 2.0, took
        assert one_line(stderr).startswith("visionperf: terminated: runs that finished are kept")
    assert not half_written(tmp_path), half_written(tmp_path)
    assert not (out / "scaling.json").exists()


@pytest.mark.parametrize("cmd", [["sample-data", "imagenet", "--count", "400"],
                                 ["build-model", "resnet50"]], ids=["sample-data", "build-model"])
@pytest.mark.parametrize("seed", [7, 8])
def test_a_signal_while_writing_data_or_a_model(tmp_path, cmd, seed):
    """Stopped at a random time: exit 130/143 with one line, and no half-written file under a
    final name (a temporary one is removed; the dataset's list file, written last, is absent)."""
    rng = random.Random(seed)
    sig = [signal.SIGINT, signal.SIGTERM][seed % 2]
    out = tmp_path / "out"
    target = out / "resnet50.onnx" if cmd[0] == "build-model" else out
    p, token = start([*cmd, "--out", target])
    try:
        time.sleep(rng.uniform(0.8, 2.5))
        if p.poll() is not None:
            pytest.skip(f"finished in under the random delay on this machine: {p.communicate()}")
        stderr, took = stop(p, sig)
    finally:
        finish(p, 0)
    assert p.returncode == EXIT[sig], (p.returncode, stderr)
    assert took < 2.0, took
    assert one_line(stderr).startswith(FIRST_WORD[sig])
    assert not half_written(tmp_path), half_written(tmp_path)
    assert not (out / "val_map.txt").exists() and not (out / "resnet50.onnx").exists()
    assert not no_survivors(token)


@pytest.mark.slow
@pytest.mark.parametrize("scenario, sig, point, seed", [
    ("Offline", signal.SIGINT, "test", 300), ("Server", signal.SIGTERM, "test", 301),
    ("Server", signal.SIGINT, "early", 302), ("Offline", signal.SIGKILL, "test", 303)],
    ids=lambda v: getattr(v, "name", str(v)))
def test_a_signal_during_a_run_on_gpus(run_args, tmp_path, scenario, sig, point, seed):  # noqa: F811
    """--backend tensorrt on fake GPUs (tests/fake_gpu.py: streams are threads, engines run on
    ONNX Runtime): a signal while batches are in flight on the GPUs' streams, or while the
    engine is being built, ends the run as on any other device, in under 2 s and keeping
    nothing; after SIGKILL the next run into the same --out cleans up and succeeds."""
    rng = random.Random(seed)
    out = tmp_path / "out"
    fake = [sys.executable, FAKE_GPU, "--gpus", "2", "--stats", tmp_path / "fake.json"]
    qps = {"Offline": ["--target-qps", "400"], "Server": ["--target-qps", "40"]}[scenario]
    args = ["run", "resnet50", "--scenario", scenario, "--backend", "tensorrt", "--backend-option", "precision=fp16",
            "--devices", "2", "--batch-size", "4", *qps, "--duration", "600", *run_args, "--out", out]
    env = {"VISIONPERF_TENSORRT_CACHE": str(tmp_path / "engines")}
    p, token = start(args, env=env, prog=fake)
    if not signal_a_run(p, token, out, scenario, sig, point, rng.uniform(0.5, 2.0), rng.uniform(0.2, 0.6), 180):
        return
    again = [a if a != "600" else "1" for a in args]
    p, _ = start(again, env=env, prog=fake)
    _, stderr = finish(p, 300)
    assert p.returncode == 0, stderr
    assert (out / f"resnet50/{scenario}/performance/run_1/run.json").exists()
    assert not half_written(out), half_written(out)
