"""Issue 23: a disk that really fills up (a small tmpfs, mounted in a private mount namespace:
the machine's own disks are never filled). Each command ends with one line naming the file
it could not write and the option that chose where (--out, --cache, --plots), exit 2, never a
worker's death (BrokenProcessPool) or a line that names no file, and publishes nothing."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from conftest import visionperf  # noqa: F401 (the package must import as the tests run it)
from injection import one_line

pytestmark = [pytest.mark.fault,  # `make faults` runs every test so marked
              pytest.mark.skipif(not sys.platform.startswith("linux") or not shutil.which("unshare"),
                                 reason="needs Linux mount namespaces (unshare)")]

# Runs in a private mount namespace: mount a tmpfs of SIZE on MOUNT, run visionperf ARGS, then
# report what it printed and every path left on the small disk.
INSIDE = r"""
import json, os, subprocess, sys
size, mount, *args = sys.argv[1:]
if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", mount]).returncode:
    sys.exit(3)
p = subprocess.run([sys.executable, "-m", "visionperf", *args], capture_output=True, text=True, timeout=300)
left = sorted(os.path.relpath(os.path.join(d, f), mount) for d, ds, fs in os.walk(mount) for f in fs + ds)
print(json.dumps({"rc": p.returncode, "stderr": p.stderr, "left": left}))
"""


def on_a_small_disk(size: str, mount, *args) -> dict:
    """`visionperf ARGS` with a SIZE tmpfs on MOUNT: {rc, stderr, left (paths under MOUNT)}."""
    mount.mkdir(parents=True, exist_ok=True)
    unshare = ["unshare", "-m"] if os.geteuid() == 0 else ["unshare", "-r", "-m"]
    p = subprocess.run([*unshare, sys.executable, "-c", INSIDE, size, str(mount), *map(str, args)],
                       capture_output=True, text=True, timeout=400)
    if p.returncode == 3 or p.stderr.startswith("unshare:"):
        pytest.skip(f"cannot mount a tmpfs here: {p.stderr.strip()[-200:]}")
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def full(result: dict, option: str, mount) -> str:
    assert result["rc"] == 2, result
    line = one_line(result["stderr"])
    assert line.startswith(f"visionperf: error: {mount}/"), line  # names the file
    assert "No space left on device: the disk is full" in line and line.endswith(f"choose another {option}"), line
    assert "BrokenProcessPool" not in line
    assert not [p for p in result["left"] if ".tmp" in p or ".partial-" in p or p.endswith("manifest.json")], result
    return line


# A float32 ResNet50 cache of the 48 test images: 48 x 3 x 224 x 224 x 4 bytes and the header.
ARRAY_KIB = (48 * 3 * 224 * 224 * 4 + 128) // 1024


@pytest.mark.parametrize("size", ["2m", f"{ARRAY_KIB + 4}k", f"{ARRAY_KIB + 12}k"],
                         ids=["no-room-for-the-array", "room-for-the-array-only", "full-mid-build"])
def test_preprocess_out_on_a_full_disk(imagenet_dir, tmp_path, size):
    mount = tmp_path / "small"
    r = on_a_small_disk(size, mount, "preprocess", "resnet50", "--dataset", imagenet_dir, "--workers", "2",
                        "--out", mount / "cache")
    full(r, "--out", mount)


def test_run_cache_on_a_full_disk_names_cache_not_out(imagenet_dir, slim_model, tmp_path):
    mount = tmp_path / "small"
    r = on_a_small_disk("2m", mount, "run", "resnet50", "--scenario", "Offline", "--backend", "null",
                        "--duration", "0.1", "--model", slim_model, "--dataset", imagenet_dir,
                        "--cache", mount / "cache", "--out", tmp_path / "runs", "--quiet")
    line = full(r, "--cache", mount)
    assert "--out" not in line
    assert not (tmp_path / "runs/resnet50/Offline/performance/run_1").exists()


def test_report_plots_on_a_full_disk_names_the_plot(imagenet_dir, slim_model, tmp_path):
    runs = tmp_path / "runs"
    visionperf("run", "resnet50", "--scenario", "Offline", "--backend", "null", "--duration", "0.1", "--model",
               slim_model, "--dataset", imagenet_dir, "--cache", tmp_path / "cache", "--out", runs)
    mount = tmp_path / "small"
    r = on_a_small_disk("16k", mount, "report", runs, "--plots", mount / "plots")
    line = full(r, "--plots", mount)
    assert ".png" in line, line
    assert not [p for p in r["left"] if p.endswith(".png")], r
