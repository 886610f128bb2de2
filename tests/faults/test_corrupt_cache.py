"""Issue 12: a preprocessed cache damaged after it was built is refused by `run` with one line
naming it and the fix, never used; following the fix (delete, rerun) rebuilds it."""

from __future__ import annotations

import json
import shutil

import pytest

from conftest import visionperf
from injection import one_line
from test_plugin import cache, run_args  # noqa: F401 (fixtures)

pytestmark = pytest.mark.fault  # `make faults` runs every test so marked


def _manifest(d, **change):
    m = json.loads((d / "manifest.json").read_text())
    m.update(change)
    (d / "manifest.json").write_text(json.dumps(m))


def _overwrite(path, offset, data):
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)


DAMAGE = {
    "data-cut-short": lambda d: open(d / "data.npy", "r+b").truncate(100_000),
    "data-one-byte-short": lambda d: open(d / "data.npy", "r+b").truncate((d / "data.npy").stat().st_size - 1),
    "data-missing": lambda d: (d / "data.npy").unlink(),
    "data-header-garbage": lambda d: _overwrite(d / "data.npy", 0, b"XXXXXXXX"),
    # as large as the fingerprint's block spacing (cache.data_fingerprint), anywhere
    "data-region-overwritten": lambda d: _overwrite(d / "data.npy", (d / "data.npy").stat().st_size // 3,
                                                    b"\x5a" * ((d / "data.npy").stat().st_size // 63 + 4096)),
    "manifest-garbage": lambda d: (d / "manifest.json").write_text("{not json"),
    "manifest-count": lambda d: _manifest(d, count=47),
    "manifest-dtype": lambda d: _manifest(d, dtype="uint8"),
    "manifest-fingerprint": lambda d: _manifest(d, data_fingerprint="0" * 32),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_cache_is_refused_with_one_line_and_the_fix_works(damage, cache, imagenet_dir, slim_model,  # noqa: F811
                                                                     tmp_path):
    copy = tmp_path / "cache"
    shutil.copytree(cache[0], copy)
    (entry,) = [d for d in copy.iterdir() if d.is_dir()]
    DAMAGE[damage](entry)
    args = ["run", "resnet50", "--scenario", "Offline", "--backend", "null", "--duration", "0.2", "--model",
            slim_model, "--dataset", imagenet_dir, "--cache", copy, "--out", tmp_path / "out"]
    p = visionperf(*args, check=False)
    assert p.returncode == 2, (p.stdout, p.stderr)
    line = one_line(p.stderr)
    assert str(entry) in line and "delete" in line, line
    assert not (tmp_path / "out/resnet50/Offline/performance/run_1").exists()
    if damage in ("data-region-overwritten", "manifest-count"):
        shutil.rmtree(entry)  # as the line says
        visionperf(*args)
        assert (tmp_path / "out/resnet50/Offline/performance/run_1").is_dir()
