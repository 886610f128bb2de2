"""Bad input files give one line naming the file, the field and the fix (issue 12, item 3)."""

import json
import shutil
import struct

import cv2
import numpy as np
import pytest

from conftest import visionperf
from visionperf.cli import main
from visionperf.datasets.synthetic import make_coco

pytestmark = pytest.mark.fault  # `make faults` runs every test so marked


def run_cli(capsys, *args) -> str:
    """The CLI in this process: exit 2 and one `visionperf: error:` line, no traceback."""
    rc = main([str(a) for a in args])
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert err.startswith("visionperf: error: ") and "\n" not in err and "Traceback" not in err, err
    return err


@pytest.fixture(scope="module")
def coco_dir(tmp_path_factory):
    return make_coco(tmp_path_factory.mktemp("coco") / "coco", count=6, seed=3)


def f32hex(*values) -> str:
    return np.asarray(values, np.float32).tobytes().hex()


# -- accuracy logs -----------------------------------------------------------------------------

CLASSIFICATION_LOGS = {
    "odd-length hex": ([{"seq_id": 0, "qsl_idx": 0, "data": "abc"}], "not an even-length hex"),
    "non-hex": ([{"seq_id": 0, "qsl_idx": 0, "data": "zz00zz00"}], "not an even-length hex"),
    "data not a string": ([{"seq_id": 0, "qsl_idx": 0, "data": 5}], "not an even-length hex"),
    "qsl_idx a string": ([{"seq_id": 0, "qsl_idx": "x", "data": ""}], "qsl_idx 'x', not a whole number"),
    "qsl_idx a fraction": ([{"seq_id": 0, "qsl_idx": 1.5, "data": ""}], "qsl_idx 1.5, not a whole number"),
    "qsl_idx null": ([{"seq_id": 0, "qsl_idx": None, "data": ""}], "not a whole number"),
    "qsl_idx out of range": ([{"seq_id": 0, "qsl_idx": 10**6, "data": ""}], "outside the dataset"),
    "qsl_idx negative": ([{"seq_id": 0, "qsl_idx": -1, "data": ""}], "outside the dataset"),
    "not a list": ({"qsl_idx": 0, "data": ""}, "not an MLPerf accuracy log"),
    "list of numbers": ([1, 2], "not an MLPerf accuracy log"),
    "NaN label": ([{"seq_id": 0, "qsl_idx": 0, "data": f32hex(np.nan)}], "decodes to nan, not a label"),
    "infinite label": ([{"seq_id": 0, "qsl_idx": 0, "data": f32hex(np.inf)}], "decodes to inf, not a label"),
}


@pytest.mark.parametrize("case", CLASSIFICATION_LOGS)
def test_bad_classification_log(case, imagenet_dir, tmp_path, capsys):
    records, says = CLASSIFICATION_LOGS[case]
    log = tmp_path / "mlperf_log_accuracy.json"
    log.write_text(json.dumps(records))
    err = run_cli(capsys, "accuracy", "resnet50", "--log", log, "--dataset", imagenet_dir)
    assert str(log) in err and says in err


DETECTION_LOGS = {
    "NaN box": (f32hex(0, np.nan, 0.1, 0.5, 0.5, 0.9, 1), "NaN or infinite"),
    "class id past the label map": (f32hex(0, 0.1, 0.1, 0.5, 0.5, 0.9, 81), "class id 81"),
    "negative class id": (f32hex(0, 0.1, 0.1, 0.5, 0.5, 0.9, -1), "class id -1"),
    "fractional class id": (f32hex(0, 0.1, 0.1, 0.5, 0.5, 0.9, 1.5), "class id 1.5"),
    "NaN class id": (f32hex(0, 0.1, 0.1, 0.5, 0.5, 0.9, np.nan), "NaN or infinite"),
}


@pytest.mark.parametrize("case", DETECTION_LOGS)
def test_bad_detection_log(case, coco_dir, tmp_path, capsys):
    data, says = DETECTION_LOGS[case]
    log = tmp_path / "mlperf_log_accuracy.json"
    log.write_text(json.dumps([{"seq_id": 0, "qsl_idx": 0, "data": data}]))
    err = run_cli(capsys, "accuracy", "ssd-resnet34", "--log", log, "--dataset", coco_dir)
    assert str(log) in err and says in err


# -- COCO annotations ---------------------------------------------------------------------------

def _drop(doc, k):
    del doc["annotations"][0][k]


def _set(k, v):
    def edit(doc):
        doc["annotations"][0][k] = v
    return edit


COCO_EDITS = {
    "no area": (lambda d: _drop(d, "area"), "has no 'area'"),
    "no iscrowd": (lambda d: _drop(d, "iscrowd"), "has no 'iscrowd'"),
    "bbox null": (_set("bbox", None), "has bbox None"),
    "bbox of 3": (_set("bbox", [1, 2, 3]), "has bbox [1, 2, 3]"),
    "annotation for an absent image": (_set("image_id", 987654321), "image_id 987654321"),
    "unknown category": (_set("category_id", 1000), "category_id 1000"),
    "no categories": (lambda d: d.update(categories=[]), "lists no categories"),
    "duplicate image id": (lambda d: d["images"][1].update(id=d["images"][0]["id"]), "appears twice"),
}


@pytest.mark.parametrize("case", COCO_EDITS)
def test_bad_coco_annotations(case, coco_dir, tmp_path, capsys):
    edit, says = COCO_EDITS[case]
    d = tmp_path / "coco"
    shutil.copytree(coco_dir, d)
    ann = d / "annotations/instances_val2017.json"
    doc = json.loads(ann.read_text())
    edit(doc)
    ann.write_text(json.dumps(doc))
    log = tmp_path / "mlperf_log_accuracy.json"
    log.write_text(json.dumps([{"seq_id": 0, "qsl_idx": 0, "data": ""}]))
    err = run_cli(capsys, "accuracy", "ssd-resnet34", "--log", log, "--dataset", d)
    assert str(ann) in err and says in err


# -- user.conf, cache manifest, run.json --------------------------------------------------------

def test_user_conf_not_utf8(tmp_path):
    from visionperf.errors import UserError
    from visionperf.userconf import read_user_conf

    conf = tmp_path / "user.conf"
    conf.write_bytes(b"resnet50.Offline.target_qps = 10\n# caf\xe9\n")
    with pytest.raises(UserError, match=r"user.conf is not UTF-8 text \(byte 38\)"):
        read_user_conf(conf)


def test_cache_manifest_that_is_a_list(imagenet_dir, tmp_path):
    from visionperf.cache import open_cache
    from visionperf.errors import UserError

    (tmp_path / "c").mkdir()
    (tmp_path / "c/manifest.json").write_text("[1, 2]")
    with pytest.raises(UserError, match="manifest.json is not a JSON object"):
        open_cache(tmp_path / "c")


def test_run_json_that_is_a_list(tmp_path):
    from visionperf import report
    from visionperf.errors import UserError
    from visionperf.submission import _run_json

    (tmp_path / "run.json").write_text("[]")
    with pytest.raises(UserError, match="run.json is not a JSON object"):
        _run_json(tmp_path)
    d = tmp_path / "runs/resnet50/Offline/accuracy"
    d.mkdir(parents=True)
    (d / "mlperf_log_detail.txt").write_text("")
    (d / "run.json").write_text("[]")
    (d / "accuracy.txt").write_text("accuracy=76.000%, good=1, total=1\n")
    [row] = report.find(tmp_path / "runs")  # the row, without the run.json columns
    assert row.accuracy == 76.0 and row.backend == "?"


# -- huge images ---------------------------------------------------------------------------------

def huge_jpeg(side: int) -> bytes:
    """A small valid JPEG whose frame header claims SIDE x SIDE pixels."""
    ok, buf = cv2.imencode(".jpg", np.zeros((16, 16, 3), np.uint8))
    data = bytearray(buf.tobytes())
    i = data.index(b"\xff\xc0")
    data[i + 5:i + 9] = struct.pack(">HH", side, side)
    return bytes(data)


@pytest.mark.parametrize("side", [30000, 65000])
def test_huge_jpeg_is_refused_from_its_header(side, tmp_path):
    from visionperf.datasets.imagenet import decode_bgr
    from visionperf.errors import UserError

    p = tmp_path / "huge.JPEG"
    p.write_bytes(huge_jpeg(side))
    with pytest.raises(UserError, match=rf"huge.JPEG is {side}x{side} pixels .* over the limit of 100 megapixels"):
        decode_bgr(p)


def test_huge_jpeg_stops_preprocess_or_is_skipped(imagenet_dir, tmp_path):
    d = tmp_path / "ds"
    shutil.copytree(imagenet_dir, d)
    (d / "ILSVRC2012_val_00000003.JPEG").write_bytes(huge_jpeg(65000))
    stop = visionperf("preprocess", "resnet50", "--dataset", d, "--out", tmp_path / "a", "--count", "6",
                      check=False)
    assert stop.returncode == 2 and "Traceback" not in stop.stderr
    assert "ILSVRC2012_val_00000003.JPEG is 65000x65000 pixels" in stop.stderr
    ok = visionperf("preprocess", "resnet50", "--dataset", d, "--out", tmp_path / "b", "--count", "6",
                    "--skip-bad")
    assert "skipped 1 bad image(s)" in ok.stdout
