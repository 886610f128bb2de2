"""Issue 12: no preprocessing process outlives `visionperf preprocess`, however it dies; a
build stopped by a fixed bad image restarts or resumes; a second builder can --wait."""

import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import visionperf
from hostile import held_preprocess, open_gate
from visionperf.datasets.synthetic import make_imagenet

pytestmark = pytest.mark.fault  # `make faults` runs every test so marked


@pytest.fixture(scope="module")
def slow_dataset(tmp_path_factory) -> Path:
    """Big enough that a 2-worker build takes several seconds."""
    return make_imagenet(tmp_path_factory.mktemp("slow") / "imagenet", count=160, seed=3)


def _children(pid: int) -> set[int]:
    """Every live descendant of PID, from /proc (parent links)."""
    parents = {}
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                parents[int(p.name)] = int((p / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                pass
    out, todo = set(), [pid]
    while todo:
        cur = todo.pop()
        for child, parent in parents.items():
            if parent == cur and child not in out:
                out.add(child)
                todo.append(child)
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.parametrize("sig, seed", [(signal.SIGKILL, 1), (signal.SIGINT, 2), (signal.SIGTERM, 3), (signal.SIGKILL, 4)],
                         ids=["KILL-1", "INT-2", "TERM-3", "KILL-4"])
def test_a_stopped_preprocess_leaves_no_process_behind_and_resumes_exactly(slow_dataset, tmp_path, sig, seed):
    """Stopped after a random number of chunks (seeded: the id names the seed). SIGINT and
    SIGTERM: one line, 130 or 143 within 2 s. Any signal: no worker survives, and a rerun
    resumes to a cache byte-identical to a clean build."""
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "visionperf", "preprocess", "resnet50", "--dataset", str(slow_dataset),
           "--out", str(out), "--chunk-size", "4", "--workers", "2"]
    after = random.Random(seed).randint(1, 12)  # chunks done when the signal comes
    # Its own session, so that nothing but the process tree could keep it alive, but signal the
    # main process alone (not the group): that is what an OOM killer or `kill -9 PID` does.
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.time() + 30
        while time.time() < deadline and len(list((out / "build/done").glob("chunk-*.json"))) < after:
            time.sleep(0.02)
        kids = _children(p.pid)
        assert len(kids) >= 2, "the pool's workers should be running"
        t = time.monotonic()
        os.kill(p.pid, sig)
        _, stderr = p.communicate(timeout=30)
        took = time.monotonic() - t
        deadline = time.time() + 5
        while time.time() < deadline and any(_alive(k) for k in kids):
            time.sleep(0.05)
        left = [k for k in kids if _alive(k)]
        assert not left, f"processes outlived the stopped preprocess: {left}"
    finally:
        try:
            os.killpg(p.pid, signal.SIGKILL)  # whatever survived (on failure)
        except ProcessLookupError:
            pass
    if sig != signal.SIGKILL:
        assert p.returncode == 128 + sig, (p.returncode, stderr)
        assert took < 2.0, took
        lines = stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in stderr, stderr
        assert lines[0].startswith("visionperf: interrupted" if sig == signal.SIGINT else "visionperf: terminated")
        assert "finished chunks of the cache are kept" in lines[0]
    assert not (out / "manifest.json").exists() and not (out / "data.npy").exists()
    done_before = len(list((out / "build/done").glob("chunk-*.json")))
    assert after <= done_before < 40, "stopped part way through"
    rerun = visionperf(*cmd[3:])
    assert f"resuming: {done_before} of 40 chunks already done" in rerun.stdout
    clean = tmp_path / "clean"
    visionperf("preprocess", "resnet50", "--dataset", slow_dataset, "--out", clean, "--workers", "2")
    assert (out / "data.npy").read_bytes() == (clean / "data.npy").read_bytes()
    assert not (out / "build").exists()


def test_a_build_stopped_by_a_bad_image_reruns_after_the_fix(imagenet_dir, tmp_path):
    data = tmp_path / "imagenet"
    shutil.copytree(imagenet_dir, data)
    victim = data / "ILSVRC2012_val_00000030.JPEG"
    good = victim.read_bytes()
    victim.write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    out = tmp_path / "cache"
    args = ("preprocess", "resnet50", "--dataset", data, "--out", out, "--chunk-size", "4", "--workers", "2")
    p = visionperf(*args, check=False)
    assert p.returncode != 0 and victim.name in p.stderr + p.stdout
    assert (out / "build").exists() and not (out / "manifest.json").exists()
    # Fixed as the error says: a good JPEG in its place (another size: the inputs changed).
    ok, buf = cv2.imencode(".jpg", cv2.imdecode(np.frombuffer(good, np.uint8), cv2.IMREAD_COLOR),
                           [cv2.IMWRITE_JPEG_QUALITY, 70])
    victim.write_bytes(buf.tobytes())
    rerun = visionperf(*args)
    assert "restart" in rerun.stdout, rerun.stdout
    clean = tmp_path / "clean"
    visionperf("preprocess", "resnet50", "--dataset", data, "--out", clean, "--workers", "2")
    assert (out / "data.npy").read_bytes() == (clean / "data.npy").read_bytes()
    assert not (out / "build").exists()


def test_a_same_size_fix_resumes_and_rereads_the_fixed_image(imagenet_dir, tmp_path):
    data = tmp_path / "imagenet"
    shutil.copytree(imagenet_dir, data)
    victim = data / "ILSVRC2012_val_00000030.JPEG"
    good = victim.read_bytes()
    victim.write_bytes(b"\x00" * len(good))  # same size: the source hash cannot tell
    out = tmp_path / "cache"
    args = ("preprocess", "resnet50", "--dataset", data, "--out", out, "--chunk-size", "4", "--workers", "2")
    assert visionperf(*args, check=False).returncode != 0
    victim.write_bytes(good)
    visionperf(*args)
    clean = tmp_path / "clean"
    visionperf("preprocess", "resnet50", "--dataset", imagenet_dir, "--out", clean, "--workers", "2")
    assert (out / "data.npy").read_bytes() == (clean / "data.npy").read_bytes()


def test_a_second_preprocess_with_wait_waits_for_the_first(slow_dataset, tmp_path):
    out = tmp_path / "cache"
    args = ["preprocess", "resnet50", "--dataset", str(slow_dataset), "--out", str(out), "--workers", "1",
            "--count", "64"]
    first, fifo = held_preprocess(args, tmp_path)
    gate = None
    try:
        gate = open_gate(fifo, first)
        assert not (out / "manifest.json").exists(), "the first build should still be running"
        refused = visionperf(*args, check=False)
        assert refused.returncode != 0 and "being built" in refused.stderr
        second = subprocess.Popen([sys.executable, "-m", "visionperf", *args, "--wait", "30"],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(1)
        assert second.poll() is None, second.communicate()  # the lock is held: it can only wait
        os.close(gate)  # the first publishes now
        gate = None
        stdout, stderr = second.communicate(timeout=60)
        assert second.returncode == 0, stderr
        assert "already complete" in stdout or "using" in stdout, stdout
    finally:
        if gate is not None:
            os.close(gate)
        first.wait(timeout=60)
    assert first.returncode == 0
    assert (out / "manifest.json").exists() and not (out / "build").exists()


def test_wait_is_an_option_of_run_and_preprocess_and_reaches_the_run_config():
    from visionperf.cli import build_parser
    from visionperf.run import RunConfig

    p = build_parser()
    a = p.parse_args(["run", "resnet50", "--scenario", "Offline", "--model", "m.onnx", "--dataset", "d",
                      "--out", "o", "--wait", "12.5"])
    assert a.wait == 12.5 and RunConfig(workload="resnet50", scenario="Offline", wait=a.wait).wait == 12.5
    assert p.parse_args(["preprocess", "resnet50", "--dataset", "d", "--out", "o"]).wait is None
    with pytest.raises(SystemExit):
        p.parse_args(["preprocess", "resnet50", "--dataset", "d", "--out", "o", "--wait", "-1"])
