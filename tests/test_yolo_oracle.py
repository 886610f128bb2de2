"""YOLO against Ultralytics itself, on the fixtures `make oracle` wrote (tests/fixtures/yolo_oracle,
its README says how): visionperf's letterbox gives Ultralytics' predict tensor byte for byte, and
the NumPy reference and the engine's C++ kernel, on Ultralytics' own heads, give the records the
MLCommons reference sends, bit for bit and in its order. No PyTorch or Ultralytics here."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from visionperf.datasets.imagenet import decode_bgr
from visionperf.datasets.letterbox import letterbox_sample
from visionperf.workloads import YOLO, YOLO_DETECTION

FIXTURES = Path(__file__).parent / "fixtures" / "yolo_oracle"
FIELDS = ("qsl_idx", "y1/h0", "x1/w0", "y2/h0", "x2/w0", "score", "coco_id")
# Heads where candidates of equal score come out in another order than Ultralytics': its
# predict runs TorchNMS.nms (the reference's process never imports torchvision), which orders by
# torch's argsort(descending=True), not stable (the order of equal scores depends on the sort
# torch picks for the CPU); visionperf orders them by anchor, as torchvision's NMS does. The
# records must still be the same ones, with the same scores in the same places.
TIE_ORDER = {"rect/03_odd_501x333", "rect/09_half_even_512x426"}


def _load(name: str):
    path = FIXTURES / name
    if not path.exists():
        return None
    return json.loads(path.read_text()) if path.suffix == ".json" else np.load(path)


TENSORS = _load("tensors.json") or {}
RECORDS = _load("records.npz")
HEADS = _load("heads.npz")
HEAD_KEYS = sorted({k.rsplit("__", 1)[0].replace("__", "/") for k in HEADS.files}) if HEADS is not None else []


def _absent(what: str):
    return pytest.param(None, marks=pytest.mark.skip(reason=f"{FIXTURES / what} is absent: run `make oracle`, "
                                                            "then oracle/compare.py RUN --write-fixtures"))


def _sample(key: str):
    """visionperf's uint8 NCHW row and geometry for fixture KEY ("mode/stem")."""
    mode = key.split("/")[0]
    workload = replace(YOLO, preprocessing=replace(YOLO.preprocessing, shape_mode=mode))
    return letterbox_sample(decode_bgr(FIXTURES / "images" / TENSORS[key]["image"]), workload, "NCHW")


def _nms_cases():
    if not HEAD_KEYS:
        return [_absent("heads.npz")]
    return HEAD_KEYS


def _head(key: str) -> np.ndarray:
    """The oracle's [84, A] head, rebuilt from its sparse form (zeros below the threshold)."""
    k = key.replace("/", "__")
    idx, cols = HEADS[f"{k}__index"], HEADS[f"{k}__columns"]
    head = np.zeros((cols.shape[0], int(HEADS[f"{k}__anchors"])), np.float32)
    head[:, idx] = cols
    return head


def _geometry(key: str) -> tuple[int, int, int, int]:
    t = TENSORS[key]
    return (*t["orig_hw"], *t["shape"][1:])


def assert_records_equal(got: np.ndarray, want: np.ndarray, ties: bool = False) -> None:
    """Equal bit for bit, row for row; else the first difference. TIES: the order of records with
    equal scores may differ (the same records, the same score in every place)."""
    got = np.asarray(got, np.float32).reshape(-1, 7)
    assert len(got) == len(want), f"{len(got)} detections, Ultralytics has {len(want)}"
    if ties:
        assert got[:, 5].tobytes() == want[:, 5].tobytes(), "scores in another order than Ultralytics'"
        got, want = (r[np.lexsort(r.view(np.uint32).T[::-1])] for r in (got, want))
    bad = np.argwhere(got.view(np.uint32) != want.view(np.uint32))
    if len(bad):
        i, j = bad[0]
        pytest.fail(f"row {i} of {len(want)}, {FIELDS[j]}: {got[i, j]!r} != Ultralytics' {want[i, j]!r} "
                    f"(row {got[i].tolist()} vs {want[i].tolist()})")


@pytest.mark.parametrize("key", sorted(TENSORS) or [_absent("tensors.json")])
def test_letterbox_equals_ultralytics_tensor(key):
    row, geometry = _sample(key)
    want = TENSORS[key]
    assert list(row.shape) == want["shape"]
    assert hashlib.sha256(row.tobytes()).hexdigest() == want["sha256"], "pixels differ from Ultralytics' tensor"
    assert list(geometry) == [*want["orig_hw"], *want["shape"][1:]]


def test_fixtures_cover_the_cases():
    """The stored heads include a square 640x640 one, rect ones, an image without detections and
    one at the 300-detection cap: what the NMS comparisons are meant to exercise."""
    if HEADS is None or RECORDS is None:
        pytest.skip(f"{FIXTURES} has no heads or records: run `make oracle`, then oracle/compare.py RUN --write-fixtures")
    shapes = {k: TENSORS[k]["shape"][1:] for k in HEAD_KEYS}
    counts = {k: len(RECORDS[k.replace("/", "__")]) for k in HEAD_KEYS}
    assert any(s == [640, 640] for s in shapes.values())
    assert sum(k.startswith("rect/") and s != [640, 640] for k, s in shapes.items()) >= 3
    assert 0 in counts.values() and YOLO_DETECTION.max_per_image in counts.values()


@pytest.mark.parametrize("key", _nms_cases())
def test_numpy_reference_equals_ultralytics(key):
    from visionperf.postprocess.yolo import reference_detections

    qsl_idx = TENSORS[key]["qsl_idx"]
    got = reference_detections(_head(key), _geometry(key), YOLO_DETECTION, qsl_idx=qsl_idx)
    assert_records_equal(got, RECORDS[key.replace("/", "__")], ties=key in TIE_ORDER)


@pytest.mark.parametrize("key", _nms_cases())
def test_cpp_kernel_equals_ultralytics(key):
    from visionperf import _engine
    from visionperf.postprocess.yolo import yolo_params

    qsl_idx = TENSORS[key]["qsl_idx"]
    geometry = np.tile(np.asarray(_geometry(key), np.int32), (qsl_idx + 1, 1))
    kernel = _engine.YoloNms(yolo_params(geometry, YOLO.input_size))
    out = np.empty((YOLO_DETECTION.max_per_image, 7), np.float32)
    n = kernel(_head(key), qsl_idx, out)
    assert_records_equal(out[:n], RECORDS[key.replace("/", "__")], ties=key in TIE_ORDER)
