"""Issue 12: every command that writes, given an output it cannot write: a file in the way, a
directory it may not write, or a file size limit hit mid-write (as a full disk would). Each
ends with one line naming where and the fix, exit 2, and publishes nothing half-written."""

from __future__ import annotations

import os
import resource
import stat

import pytest

from conftest import visionperf
from injection import half_written, one_line
from test_plugin import cache, run_args  # noqa: F401 (fixtures)

pytestmark = pytest.mark.fault  # `make faults` runs every test so marked


@pytest.fixture(scope="module")
def results(run_args, tmp_path_factory):  # noqa: F811
    """A finished performance and accuracy run (what report, submission and accuracy read)."""
    out = tmp_path_factory.mktemp("results")
    for mode in ("performance", "accuracy"):
        visionperf("run", "resnet50", "--scenario", "Offline", "--backend", "null", "--mode", mode,
                   "--duration", "0.2", *run_args, "--out", out)
    return out


def commands(run_args, results, imagenet_dir, slim_model):  # noqa: F811
    """name -> argv with {OUT} where the output goes."""
    acc_log = results / "resnet50/Offline/accuracy/mlperf_log_accuracy.json"
    return {
        "sample-data": ["sample-data", "imagenet", "--count", "4", "--out", "{OUT}"],
        "build-model": ["build-model", "resnet50", "--width", "0.125", "--out", "{OUT}/m.onnx"],
        "preprocess": ["preprocess", "resnet50", "--dataset", imagenet_dir, "--workers", "1", "--out", "{OUT}"],
        "quantize": ["quantize", "resnet50", "--model", slim_model, "--dataset", imagenet_dir,
                     "--calibration-count", "4", "--out", "{OUT}/q.onnx"],
        "run": ["run", "resnet50", "--scenario", "Offline", "--backend", "null", "--duration", "0.2",
                *run_args, "--out", "{OUT}"],
        "run-accuracy": ["run", "resnet50", "--scenario", "Offline", "--backend", "null", "--mode", "accuracy",
                         *run_args, "--out", "{OUT}"],
        "report": ["report", results, "--plots", "{OUT}"],
        "submission": ["submission", "--submitter", "Acme", "--system", "box", "--runs", "{PRACTICE}/runs",
                       "--system-json", "{PRACTICE}/system.json", "--allow-short", "--out", "{OUT}"],
        "accuracy": ["accuracy", "resnet50", "--log", acc_log, "--dataset", imagenet_dir, "--out", "{OUT}/a.txt"],
    }


NAMES = ["sample-data", "build-model", "preprocess", "quantize", "run", "run-accuracy", "report", "submission",
         "accuracy"]


def argv(cmd: list, out) -> list[str]:
    return [str(a).replace("{OUT}", str(out)).replace("{PRACTICE}", str(PRACTICE)) for a in cmd]


PRACTICE = None  # conftest.practice_runs, for the submission case (set by the fixture below)


@pytest.fixture(autouse=True)
def _practice(request):
    global PRACTICE
    if "submission" in request.node.name:
        PRACTICE = request.getfixturevalue("practice_runs")


def refused(p, *needles: str) -> str:
    assert p.returncode == 2, (p.returncode, p.stdout, p.stderr)
    line = one_line(p.stderr)
    assert line.startswith("visionperf: error:"), line
    for n in needles:
        assert n in line, line
    return line


@pytest.mark.parametrize("name", NAMES)
def test_a_file_in_the_way_of_the_output(name, run_args, results, imagenet_dir, slim_model, tmp_path):  # noqa: F811
    blocker = tmp_path / "blocker"
    blocker.write_text("not a directory\n")
    p = visionperf(*argv(commands(run_args, results, imagenet_dir, slim_model)[name], blocker / "out"), check=False)
    refused(p, str(blocker))
    assert blocker.read_text() == "not a directory\n"
    assert not half_written(tmp_path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through directory permissions: the file-in-the-way "
                    "and file-size cases cover the same error path")
@pytest.mark.parametrize("name", NAMES)
def test_a_directory_that_may_not_be_written(name, run_args, results, imagenet_dir, slim_model, tmp_path):  # noqa: F811
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        p = visionperf(*argv(commands(run_args, results, imagenet_dir, slim_model)[name], locked / "out"),
                       check=False)
        refused(p, str(locked))
        assert not any(locked.iterdir())
    finally:
        locked.chmod(stat.S_IRWXU)


# A limit each command's largest file passes (so the write fails part way, like a full disk).
LIMITS = {"sample-data": 2048, "build-model": 65536, "preprocess": 65536, "quantize": 65536, "run": 8192,
          "run-accuracy": 8192, "report": 4096, "submission": 1024}


@pytest.mark.parametrize("name", list(LIMITS))
def test_the_disk_filling_up_mid_write(name, run_args, results, imagenet_dir, slim_model, tmp_path):  # noqa: F811
    out = tmp_path / "out"
    limit = LIMITS[name]

    def small_disk():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    import subprocess
    import sys

    p = subprocess.run([sys.executable, "-m", "visionperf", *argv(commands(run_args, results, imagenet_dir,
                                                                            slim_model)[name], out)],
                       capture_output=True, text=True, timeout=300, preexec_fn=small_disk)
    refused(p)
    assert not half_written(tmp_path), half_written(tmp_path)
    # nothing published looks complete
    assert not list(out.rglob("run_1")) and not list(out.rglob("accuracy.txt")) and not list(out.rglob("*.onnx"))
    assert not list(out.rglob("manifest.json")) and not list(out.rglob("*.png")) and not list(out.rglob("closed"))
    if name == "sample-data":  # the list file is what makes the folder a dataset: never written half
        assert not (out / "val_map.txt").exists()
