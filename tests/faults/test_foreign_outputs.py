"""Issue 23, items 1 and 5 (--seed): a command writes only into a missing or empty --out, or one it
wrote itself; anything else is refused in one line naming what is there, and nothing is written."""

from pathlib import Path

import pytest

from hostile import refused
from injection import half_written

pytestmark = pytest.mark.fault  # `make faults` runs every test so marked

# What a real dataset of each kind holds: sample-data would overwrite these by name.
REAL = {
    "imagenet": {"ILSVRC2012_val_00000001.JPEG": b"the user's photo", "val_map.txt": b"ILSVRC2012_val_00000001.JPEG 65\n"},
    "coco": {"annotations/instances_val2017.json": b'{"images": []}', "val2017/000000000100.jpg": b"a photo"},
    "openimages": {"annotations/openimages-mlperf.json": b"{}", "validation/data/0001.jpg": b"a photo"},
}


def _tree(root: Path) -> dict:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("kind", REAL)
def test_sample_data_refuses_a_real_dataset(kind, tmp_path):
    real = tmp_path / "real"
    for name, data in REAL[kind].items():
        (real / name).parent.mkdir(parents=True, exist_ok=True)
        (real / name).write_bytes(data)
    before = _tree(real)
    line = refused("sample-data", kind, "--out", real, "--count", "2")
    assert str(real) in line and "SYNTHETIC" in line and "--out" in line
    assert sorted(REAL[kind])[0].split("/")[0] in line  # names what is there
    assert _tree(real) == before and not half_written(tmp_path)


@pytest.mark.parametrize("kind", REAL)
def test_sample_data_rewrites_its_own_dataset_and_fills_an_empty_directory(kind, tmp_path):
    from conftest import visionperf

    out = tmp_path / "empty"
    out.mkdir()
    visionperf("sample-data", kind, "--out", out, "--count", "2")
    visionperf("sample-data", kind, "--out", out, "--count", "2", "--seed", "1")  # its own marker
    assert (out / "SYNTHETIC").is_file()


@pytest.mark.parametrize("kind", REAL)
def test_sample_data_refuses_a_negative_seed_before_making_anything(kind, tmp_path):
    out = tmp_path / "new"
    line = refused("sample-data", kind, "--out", out, "--count", "2", "--seed", "-1")
    assert "--seed" in line
    assert not out.exists()


def test_build_model_refuses_a_negative_seed_before_making_anything(tmp_path):
    out = tmp_path / "new" / "m.onnx"
    assert "--seed" in refused("build-model", "resnet50", "--width", "0.125", "--out", out, "--seed", "-1")
    assert not out.parent.exists()


def test_build_model_refuses_a_file_it_did_not_write(tmp_path):
    mine = tmp_path / "resnet50_v1.onnx"
    mine.write_bytes(b"the user's real model")
    line = refused("build-model", "resnet50", "--width", "0.125", "--out", mine)
    assert str(mine) in line and "--out" in line
    assert mine.read_bytes() == b"the user's real model" and not half_written(tmp_path)


def test_build_model_refuses_a_directory(tmp_path):
    assert "is a directory" in refused("build-model", "resnet50", "--width", "0.125", "--out", tmp_path)


def test_build_model_replaces_its_own_model(tmp_path):
    from conftest import visionperf

    out = tmp_path / "m.onnx"
    visionperf("build-model", "resnet50", "--width", "0.125", "--out", out)
    visionperf("build-model", "resnet50", "--width", "0.125", "--out", out, "--seed", "2")


def test_quantize_refuses_a_file_it_did_not_write(imagenet_dir, slim_model, tmp_path):
    mine = tmp_path / "int8.onnx"
    mine.write_bytes(b"the user's own int8 model")
    line = refused("quantize", "resnet50", "--model", slim_model, "--dataset", imagenet_dir,
                   "--calibration-count", "4", "--out", mine)
    assert str(mine) in line
    assert mine.read_bytes() == b"the user's own int8 model" and not half_written(tmp_path)


def test_preprocess_refuses_a_directory_it_did_not_write(imagenet_dir, tmp_path):
    out = tmp_path / "photos"
    out.mkdir()
    (out / "holiday.jpg").write_bytes(b"a photo")
    line = refused("preprocess", "resnet50", "--dataset", imagenet_dir, "--workers", "1", "--out", out)
    assert str(out) in line and "holiday.jpg" in line
    assert _tree(out) == {"holiday.jpg": b"a photo"} and not half_written(tmp_path)
