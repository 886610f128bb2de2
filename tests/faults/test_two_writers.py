"""Issue 12 items 4-5: one writer per results directory and per cache; user names stay inside --out."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from conftest import visionperf
from visionperf.cache import _settings_key, expected_manifest
from visionperf.preprocess import ensure_cache
from visionperf.datasets import open_dataset
from visionperf.locks import LOCK_NAME, Busy, DirLock
from visionperf.report import find
from visionperf.workloads import get_workload

pytestmark = pytest.mark.fault  # `make faults` runs every test so marked

RESNET50 = get_workload("resnet50")


def one_error_line(p: subprocess.CompletedProcess) -> str:
    assert "Traceback" not in p.stderr, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, p.stderr
    return lines[0]


def hold(directory: Path) -> subprocess.Popen:
    """Another process holding DIRECTORY's lock until it is killed."""
    code = textwrap.dedent(f"""
        import sys, time
        from visionperf.locks import DirLock
        DirLock({str(directory)!r}).acquire()
        print("locked", flush=True)
        time.sleep(600)
    """)
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "locked"
    return p


def kill(p: subprocess.Popen) -> None:
    if p.poll() is None:
        p.kill()
    p.wait()


def test_the_lock_refuses_a_second_holder_names_it_and_frees_when_it_dies(tmp_path):
    d = tmp_path / "a" / "b"
    p = hold(d)
    try:
        with pytest.raises(Busy) as e:
            DirLock(d).acquire()
        assert e.value.pid == p.pid and f"pid {p.pid}" in str(e.value) and str(d) in str(e.value)
        t = time.monotonic()
        with pytest.raises(Busy):
            DirLock(d).acquire(wait=0.3)  # waits, then refuses
        assert time.monotonic() - t >= 0.3
    finally:
        os.kill(p.pid, signal.SIGKILL)  # no chance to release: the kernel drops its flock
        p.wait()
    assert (d / LOCK_NAME).exists()  # a stale file, but no stale lock
    with DirLock(d) as lock:
        assert lock.held
        assert (d / LOCK_NAME).read_text().split("\n")[0] == str(os.getpid())
    assert not (d / LOCK_NAME).exists()  # released: the file goes with it


def test_a_refused_lock_leaves_no_directories_it_made(tmp_path):
    with DirLock(tmp_path / "x") as lock:
        with pytest.raises(Busy):
            DirLock(tmp_path / "x").acquire()
    assert not lock.held and not (tmp_path / "x").exists()  # made by the lock, empty, removed


def test_a_cache_being_built_is_refused_to_a_second_builder_and_a_reader(imagenet_dir, tmp_path):
    ds = open_dataset(RESNET50, imagenet_dir)
    wanted = expected_manifest(RESNET50, ds, "float32", "NCHW", None)
    building = tmp_path / "cache" / f"resnet50-float32-nchw-{_settings_key(wanted)}"
    p = hold(building)
    try:
        with pytest.raises(Busy, match=f"being built by another visionperf \\(pid {p.pid}"):
            ensure_cache(RESNET50, ds, tmp_path / "cache")  # a run finding it mid-build
        q = visionperf("preprocess", "resnet50", "--dataset", imagenet_dir, "--out", building, check=False)
        assert q.returncode == 2, (q.stdout, q.stderr)
        line = one_error_line(q)
        assert f"cache {building} is being built by another visionperf (pid {p.pid}" in line, line
    finally:
        kill(p)
    assert not (building / "build").exists()  # the refused builder touched nothing


def test_two_runs_into_one_out_the_second_is_refused_the_first_keeps_going(imagenet_dir, slim_model, tmp_path):
    out = tmp_path / "out"
    args = ["run", "resnet50", "--scenario", "Server", "--backend", "null", "--target-qps", "100",
            "--model", slim_model, "--dataset", imagenet_dir, "--cache", tmp_path / "cache", "--out", out]
    first = subprocess.Popen([sys.executable, "-m", "visionperf", *map(str, args), "--duration", "600"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    scenario_dir = out / "resnet50" / "Server"
    partial = scenario_dir / f"performance/run_1.partial-{first.pid}"
    try:
        deadline = time.monotonic() + 90
        while not (partial / "mlperf_log_detail.txt").exists():
            assert first.poll() is None and time.monotonic() < deadline, first.communicate()
            time.sleep(0.05)
        assert (scenario_dir / LOCK_NAME).exists()
        second = visionperf(*args, "--duration", "1", check=False)
        assert second.returncode == 2, (second.stdout, second.stderr)
        line = one_error_line(second)
        assert f"{scenario_dir} is in use by another visionperf run (pid {first.pid}" in line, line
        assert partial.is_dir() and first.poll() is None  # nothing of the first was touched
        t = time.monotonic()
        first.send_signal(signal.SIGINT)
        stdout, stderr = first.communicate(timeout=30)
        took = time.monotonic() - t
    finally:
        kill(first)
    assert first.returncode == 130, (first.returncode, stderr)
    assert took < 2.0, took
    assert not partial.exists() and not (scenario_dir / "performance/run_1").exists()


def test_report_lists_no_partial_directories(tmp_path):
    for d in ("resnet50/Offline/performance/run_1.partial-123", ".closed-x.partial-9/resnet50/Offline/performance/run_1"):
        (tmp_path / d).mkdir(parents=True)
        (tmp_path / d / "mlperf_log_detail.txt").write_text("")
    (tmp_path / "resnet50/Offline" / LOCK_NAME).write_text("1\nvisionperf run\n")
    assert find(tmp_path) == []


@pytest.mark.parametrize("option,value", [("--submitter", "../../evil"), ("--system", "a/../../b"),
                                          ("--submitter", ".."), ("--system", "-rf"), ("--submitter", "")])
def test_submission_refuses_names_that_are_not_one_path_component(tmp_path, option, value):
    runs = tmp_path / "runs" / "resnet50" / "Offline" / "performance" / "run_1"
    runs.mkdir(parents=True)
    (runs / "mlperf_log_detail.txt").write_text("")
    names = {"--submitter": "Acme", "--system": "box", option: value}
    out = tmp_path / "sub" / "out"
    before = set(tmp_path.rglob("*"))
    p = visionperf("submission", f"--submitter={names['--submitter']}", f"--system={names['--system']}",
                   "--runs", tmp_path / "runs", "--out", out, "--allow-short", check=False)
    assert p.returncode == 2, (p.stdout, p.stderr)
    line = one_error_line(p)
    assert option in line and "not a usable name" in line, line
    assert set(tmp_path.rglob("*")) == before  # nothing written, inside --out or out of it
