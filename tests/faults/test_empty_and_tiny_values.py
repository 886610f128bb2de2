"""Issue 23, values accepted that should not be: an empty --out, --cache or --plots (an unset shell
variable) is refused rather than taken for the current directory, and a --duration LoadGen would
read as 0 ms is refused as 0 is, naming the smallest value it takes."""

from __future__ import annotations

import time

import pytest

from conftest import visionperf
from injection import finish, no_survivors, one_line, start
from test_plugin import cache, run_args  # noqa: F401 (fixtures)

pytestmark = pytest.mark.fault  # `make faults` runs every test so marked

M = ["--model", "m.onnx", "--dataset", "data"]
EMPTY_PATHS = {
    "sample-data": (["sample-data", "imagenet", "--out", ""], "--out"),
    "build-model": (["build-model", "resnet50", "--out", ""], "--out"),
    "preprocess": (["preprocess", "resnet50", "--dataset", "data", "--out", ""], "--out"),
    "quantize": (["quantize", "resnet50", *M, "--out", ""], "--out"),
    "run": (["run", "resnet50", "--scenario", "Offline", *M, "--out", ""], "--out"),
    "run-cache": (["run", "resnet50", "--scenario", "Offline", *M, "--cache", "", "--out", "o"], "--cache"),
    "scale": (["scale", "resnet50", *M, "--devices", "1", "--out", ""], "--out"),
    "scale-cache": (["scale", "resnet50", *M, "--devices", "1", "--cache", "", "--out", "o"], "--cache"),
    "submission": (["submission", "--submitter", "a", "--system", "b", "--runs", "r", "--out", ""], "--out"),
    "accuracy": (["accuracy", "resnet50", "--log", "l.json", "--dataset", "data", "--out", ""], "--out"),
    "report": (["report", "r", "--plots", ""], "--plots"),
}


def usage_error(args: list, cwd) -> str:
    """`visionperf ARGS` in CWD: refused by the parser in one line, exit 2, in bounded time."""
    t = time.monotonic()
    p, token = start(args, cwd=cwd)
    _, stderr = finish(p, 60)
    assert time.monotonic() - t < 60
    assert p.returncode == 2, (p.returncode, stderr)
    line = one_line(stderr)
    assert line.startswith(f"visionperf {args[0]}: error: argument "), line
    assert not no_survivors(token)
    return line


@pytest.mark.parametrize("name", list(EMPTY_PATHS))
def test_an_empty_output_path_is_refused_not_taken_for_the_current_directory(name, tmp_path):
    args, option = EMPTY_PATHS[name]
    line = usage_error(args, tmp_path)
    assert f"argument {option}: got an empty path" in line and "or . for the current directory" in line, line
    assert not list(tmp_path.iterdir())  # nothing written where it ran


@pytest.mark.parametrize("command", ["run", "scale"])
@pytest.mark.parametrize("value", ["0", "0.0001", "0.000999", "1e-300", "-0.0"])
def test_a_duration_loadgen_would_read_as_0_ms_is_refused_as_0_is(command, value, tmp_path):
    args = {"run": ["run", "resnet50", "--scenario", "Offline"], "scale": ["scale", "resnet50", "--devices", "1"]}
    line = usage_error([*args[command], *M, "--duration", value, "--out", "o"], tmp_path)
    assert "argument --duration" in line and "at least 0.001" in line, line
    assert not list(tmp_path.iterdir())


def test_the_smallest_duration_is_one_millisecond_in_the_user_conf(run_args, tmp_path):  # noqa: F811
    visionperf("run", "resnet50", "--scenario", "Offline", "--backend", "null", "--duration", "0.001", *run_args,
               "--out", tmp_path)
    conf = (tmp_path / "resnet50/Offline/performance/run_1/user.conf").read_text()
    assert "resnet50.Offline.min_duration = 1\n" in conf, conf
