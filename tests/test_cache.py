import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from visionperf.preprocess import ensure_cache
from visionperf.datasets import open_dataset, preprocess_one
from visionperf.errors import UserError
from visionperf.workloads import RESNET50


def test_cache_is_built_once_and_holds_the_preprocessed_rows(imagenet_dir, tmp_path):
    ds = open_dataset(RESNET50, imagenet_dir, count=20)
    logs = []
    c = ensure_cache(RESNET50, ds, tmp_path, log=logs.append)
    assert c.data.shape == (20, 3, 224, 224) and c.data.dtype == np.float32
    for i in (0, 7, 19):
        np.testing.assert_array_equal(c.data[i], preprocess_one(RESNET50, ds.path(i), "NCHW"))
    m = json.loads((c.path / "manifest.json").read_text())
    assert m["workload"] == "resnet50" and m["layout"] == "NCHW" and m["synthetic_dataset"]
    assert not list(c.path.glob("*.partial")) and not list(c.path.glob("*.tmp"))
    again = ensure_cache(RESNET50, ds, tmp_path, log=logs.append)
    assert again.path == c.path and logs[-1].startswith("cache: using")
    # The cache directory itself can be given: it is checked, not rebuilt.
    assert ensure_cache(RESNET50, ds, c.path).path == c.path


def test_a_changed_dataset_gets_its_own_cache_and_a_named_one_is_refused(imagenet_dir, tmp_path):
    d = tmp_path / "ds"
    shutil.copytree(imagenet_dir, d)
    ds = open_dataset(RESNET50, d, count=6)
    c = ensure_cache(RESNET50, ds, tmp_path / "c")
    lines = (d / "val_map.txt").read_text().splitlines()
    name, label = lines[0].split()
    lines[0] = f"{name} {(int(label) + 1) % 1000}"
    (d / "val_map.txt").write_text("\n".join(lines) + "\n")
    changed = open_dataset(RESNET50, d, count=6)
    other = ensure_cache(RESNET50, changed, tmp_path / "c")
    assert other.path != c.path
    with pytest.raises(UserError, match="does not match this run.*source images differ"):
        ensure_cache(RESNET50, changed, c.path)
    from visionperf.cache import Quantization
    with pytest.raises(UserError, match="dtype: cache has 'float32', run needs 'int8'"):
        ensure_cache(RESNET50, ds, c.path, dtype="int8", quantization=Quantization(1.0, 0, "int8"))
    with pytest.raises(UserError, match="needs the model's input scale"):
        ensure_cache(RESNET50, ds, c.path, dtype="int8")


def test_a_directory_without_manifest_is_never_taken_as_complete(imagenet_dir, tmp_path):
    ds = open_dataset(RESNET50, imagenet_dir, count=4)
    c = ensure_cache(RESNET50, ds, tmp_path)
    (c.path / "manifest.json").unlink()  # as if the build died before publishing
    (c.path / "data.npy").write_bytes(b"half")
    rebuilt = ensure_cache(RESNET50, ds, tmp_path)
    np.testing.assert_array_equal(rebuilt.data[3], preprocess_one(RESNET50, ds.path(3), "NCHW"))


def test_preprocess_into_someone_elses_directory_is_refused_but_an_unfinished_publish_resumes(imagenet_dir, tmp_path,
                                                                                           monkeypatch):
    """`preprocess --out DIR`: a directory holding files a build never makes (a data.npy of
    someone else's too) is refused, judged under the build lock; a build killed while publishing
    (its array renamed into place, the manifest not yet written) finishes on the rerun."""
    from visionperf import preprocess as cache_mod
    from visionperf.preprocess import preprocess_to

    ds = open_dataset(RESNET50, imagenet_dir, 8)
    for name in ("thesis.tex", "data.npy"):
        mine = tmp_path / f"mine-{name}"
        mine.mkdir()
        (mine / name).write_text("precious\n")
        with pytest.raises(UserError, match=f"is not a visionperf cache .*{name}"):
            preprocess_to(mine, RESNET50, ds, "float32", "NCHW", None, log=lambda m: None)
        assert (mine / name).read_text() == "precious\n" and sorted(p.name for p in mine.iterdir()) == [name]

    half = tmp_path / "half"
    real_write = cache_mod.write_text

    def killed_at_the_manifest(path, text):
        if Path(path).name == "manifest.json":
            raise KeyboardInterrupt
        real_write(path, text)

    monkeypatch.setattr(cache_mod, "write_text", killed_at_the_manifest)
    with pytest.raises(KeyboardInterrupt):
        preprocess_to(half, RESNET50, ds, "float32", "NCHW", None, log=lambda m: None)
    assert (half / "data.npy").exists() and not (half / "manifest.json").exists()
    monkeypatch.setattr(cache_mod, "write_text", real_write)
    cache = preprocess_to(half, RESNET50, ds, "float32", "NCHW", None, log=lambda m: None)
    clean = preprocess_to(tmp_path / "clean", RESNET50, ds, "float32", "NCHW", None, log=lambda m: None)
    assert np.array_equal(np.asarray(cache.data), np.asarray(clean.data)) and not (half / "build").exists()
