"""Issue 23: the README's own forms work as shown. `visionperf preprocess WORKLOAD --dataset DIR
--out CACHE` for SSD-MobileNet (whose model takes raw uint8 pixels, nothing quantised) builds
the cache `run` would build, and `run` then uses it as it is."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from conftest import visionperf

pytestmark = pytest.mark.fault  # `make faults` runs every test so marked

README = Path(__file__).parents[2] / "README.md"


def test_the_readme_shows_the_preprocess_form_this_test_runs():
    assert re.search(r"visionperf preprocess WORKLOAD --dataset DIR --out CACHE \[--dtype", README.read_text())


def test_preprocess_ssd_mobilenet_as_the_readme_shows_then_run_uses_that_cache(tmp_path):
    visionperf("sample-data", "coco", "--count", "8", "--out", tmp_path / "coco")
    p = visionperf("preprocess", "ssd-mobilenet", "--dataset", tmp_path / "coco", "--out", tmp_path / "C")
    assert "cache ready" in p.stdout + p.stderr and "uint8 NHWC, 8 rows" in p.stdout + p.stderr
    visionperf("build-model", "ssd-mobilenet", "--width", "0.125", "--out", tmp_path / "ssd.onnx")
    r = visionperf("run", "ssd-mobilenet", "--scenario", "Offline", "--backend", "null", "--model", tmp_path / "ssd.onnx",
                   "--dataset", tmp_path / "coco", "--cache", tmp_path / "C", "--duration", "0.1", "--quiet",
                   "--out", tmp_path / "runs")
    assert f"cache: using {tmp_path / 'C'} (uint8 NHWC, 8 rows)" in r.stdout + r.stderr, r.stdout + r.stderr
    assert sorted(x.name for x in (tmp_path / "C").iterdir()) == ["data.npy", "manifest.json"]  # nothing rebuilt


def test_a_quantised_input_still_needs_its_scale(tmp_path):
    visionperf("sample-data", "imagenet", "--count", "4", "--out", tmp_path / "inet")
    p = visionperf("preprocess", "resnet50", "--dataset", tmp_path / "inet", "--dtype", "uint8", "--out",
                   tmp_path / "C", check=False)
    assert p.returncode == 2 and "--dtype uint8 needs the model's input quantisation" in p.stderr, p.stderr
    assert not (tmp_path / "C").exists()
