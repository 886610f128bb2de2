"""Issue 23, item 5 (JSON): every JSON file visionperf reads goes through one loader, so a file
nested 100,000 levels deep, a number too large for a double, or text that is not JSON is one line
naming the file; COCO image sizes of 0, inf or nan are refused naming the image."""

import json
import shutil

import pytest

from conftest import visionperf
from hostile import refused
from visionperf.datasets.synthetic import make_coco

pytestmark = pytest.mark.fault  # `make faults` runs every test so marked

DEEP = "[" * 100_000 + "]" * 100_000
BAD = {"deep": DEEP, "overflow": '{"a": 1e400}', "garbage": "{not json"}


@pytest.fixture(scope="module")
def coco_dir(tmp_path_factory):
    return make_coco(tmp_path_factory.mktemp("coco") / "coco", count=4, seed=3)


@pytest.fixture(scope="module")
def cache_dir(imagenet_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("cache") / "c"
    visionperf("preprocess", "resnet50", "--dataset", imagenet_dir, "--out", out, "--workers", "1")
    return out


def _copy(src, tmp_path):
    dst = tmp_path / src.name
    shutil.copytree(src, dst)
    return dst


@pytest.mark.parametrize("kind", BAD)
def test_coco_annotations(kind, coco_dir, tmp_path):
    d = _copy(coco_dir, tmp_path)
    ann = d / "annotations/instances_val2017.json"
    ann.write_text(BAD[kind])
    line = refused("preprocess", "ssd-mobilenet", "--dataset", d, "--out", tmp_path / "o", "--dtype", "float32")
    assert str(ann) in line and "not valid JSON" in line


@pytest.mark.parametrize("value", [0, "1e400", "NaN", "Infinity", -3, 2.5])
@pytest.mark.parametrize("field", ["height", "width"])
def test_coco_image_sizes(field, value, coco_dir, tmp_path):
    d = _copy(coco_dir, tmp_path)
    ann = d / "annotations/instances_val2017.json"
    doc = json.loads(ann.read_text())
    doc["images"][1][field] = "@@"
    ann.write_text(json.dumps(doc).replace('"@@"', str(value)))
    line = refused("preprocess", "ssd-mobilenet", "--dataset", d, "--out", tmp_path / "o", "--dtype", "float32")
    assert str(ann) in line
    if value != "1e400":  # that one is refused by the loader, as a number no double holds
        assert doc["images"][1]["file_name"] in line and field in line


@pytest.mark.parametrize("kind", BAD)
def test_cache_manifest(kind, imagenet_dir, slim_model, cache_dir, tmp_path):
    c = _copy(cache_dir, tmp_path)
    (c / "manifest.json").write_text(BAD[kind])
    line = refused("run", "resnet50", "--scenario", "Offline", "--backend", "null", "--dataset", imagenet_dir,
                   "--model", slim_model, "--cache", c, "--out", tmp_path / "runs", "--duration", "0.1")
    assert str(c / "manifest.json") in line and "not valid JSON" in line
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").rglob("run.json"))


@pytest.mark.parametrize("kind", BAD)
def test_accuracy_log(kind, imagenet_dir, tmp_path):
    log = tmp_path / "mlperf_log_accuracy.json"
    log.write_text(BAD[kind])
    line = refused("accuracy", "resnet50", "--log", log, "--dataset", imagenet_dir)
    assert str(log) in line and "not valid JSON" in line
    assert not (tmp_path / "accuracy.txt").exists()


@pytest.mark.parametrize("kind", BAD)
def test_system_json(kind, tmp_path):
    from visionperf.errors import UserError
    from visionperf.systems import load_user_json

    f = tmp_path / "system.json"
    f.write_text(BAD[kind])
    with pytest.raises(UserError, match="not valid JSON") as e:
        load_user_json(str(f))
    assert str(f) in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("kind", BAD)
def test_loader_names_the_file_in_one_line(kind, tmp_path):
    from visionperf import jsonfile
    from visionperf.errors import UserError

    f = tmp_path / "x.json"
    f.write_text(BAD[kind])
    with pytest.raises(UserError) as e:
        jsonfile.load(f, "fix it")
    msg = str(e.value)
    assert msg.startswith(f"{f} is not valid JSON (") and msg.endswith(": fix it") and "\n" not in msg
