"""COCO reading, SSD preprocessing, models, mAP, and detection end to end through LoadGen."""

import json
import shutil

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest

from conftest import visionperf
from test_nms import reference_nms
from visionperf.accuracy import coco_map
from visionperf.datasets import open_dataset, preprocess_one
from visionperf.datasets.synthetic import make_coco
from visionperf.errors import UserError
from visionperf.models import build_ssd_mobilenet, build_ssd_resnet34, check_model
from visionperf.workloads import DETECTION, SSD_MOBILENET, SSD_RESNET34


@pytest.fixture(scope="module")
def coco_dir(tmp_path_factory):
    return make_coco(tmp_path_factory.mktemp("coco") / "coco", count=16, seed=2)


@pytest.fixture(scope="module")
def mobilenet(tmp_path_factory):
    return build_ssd_mobilenet(tmp_path_factory.mktemp("m") / "ssd_mobilenet.onnx")


@pytest.fixture(scope="module")
def resnet34_slim(tmp_path_factory):
    return build_ssd_resnet34(tmp_path_factory.mktemp("m") / "ssd_resnet34_w0125.onnx", width=0.125)


def test_synthetic_coco_has_the_real_layout(coco_dir):
    doc = json.loads((coco_dir / "annotations/instances_val2017.json").read_text())
    ds = open_dataset(SSD_MOBILENET, coco_dir)
    assert len(ds) == 16 and ds.synthetic and len(ds.category_ids) == 80
    annotated = {a["image_id"] for a in doc["annotations"]}
    assert len(set(ds.image_ids.tolist()) - annotated) >= 2, "some images have no annotations"
    assert sum(a["iscrowd"] for a in doc["annotations"]) == 1
    for im in doc["images"]:
        assert cv2.imread(str(coco_dir / "val2017" / im["file_name"])).shape[:2] == (im["height"], im["width"])


def reference_coco(path, size, normalise):
    img = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    img = cv2.resize(img, (size, size), interpolation=cv2.INTER_LINEAR)
    if not normalise:
        return np.asarray(img, np.uint8)
    img = img / 255.0 - np.array([0.485, 0.456, 0.406])
    img = img / np.array([0.229, 0.224, 0.225])
    return np.asarray(img, np.float32).transpose(2, 0, 1)


def test_preprocessing_matches_the_reference_recipes(coco_dir):
    ds = open_dataset(SSD_MOBILENET, coco_dir)
    for i in (0, 5):
        np.testing.assert_array_equal(preprocess_one(SSD_MOBILENET, ds.path(i), "NHWC"),
                                      reference_coco(ds.path(i), 300, False))
        np.testing.assert_array_equal(preprocess_one(SSD_RESNET34, ds.path(i), "NCHW"),
                                      reference_coco(ds.path(i), 1200, True))


def gt_log(coco_dir, path, contiguous):
    """An accuracy log whose detections are the ground truth (crowd excluded)."""
    doc = json.loads((coco_dir / "annotations/instances_val2017.json").read_text())
    ids = [im["id"] for im in doc["images"]]
    size = {im["id"]: (im["height"], im["width"]) for im in doc["images"]}
    cats = sorted(c["id"] for c in doc["categories"])
    recs = []
    for q, image_id in enumerate(ids):
        rows = []
        for a in doc["annotations"]:
            if a["image_id"] != image_id or a["iscrowd"]:
                continue
            h, w = size[image_id]
            x, y, bw, bh = a["bbox"]
            cls = cats.index(a["category_id"]) + 1 if contiguous else a["category_id"]
            rows.append([q, y / h, x / w, (y + bh) / h, (x + bw) / w, 0.9, cls])
        data = np.asarray(rows, np.float32).reshape(-1, 7).tobytes().hex().upper()
        recs.append({"seq_id": q, "qsl_idx": q, "data": data})
    path.write_text(json.dumps(recs))
    return path


@pytest.mark.parametrize("name, contiguous", [("ssd-mobilenet", False), ("ssd-resnet34", True)])
def test_a_perfect_detector_scores_map_100(coco_dir, tmp_path, name, contiguous):
    ds = open_dataset(SSD_MOBILENET, coco_dir)
    res = coco_map(gt_log(coco_dir, tmp_path / "log.json", contiguous), ds, DETECTION[name].coco_label_map)
    assert res.map == pytest.approx(100.0, abs=1e-6)
    assert res.text().startswith("mAP=100.000%\nhash=")


def test_coco_errors_name_the_file(coco_dir, tmp_path):
    d = tmp_path / "c"
    shutil.copytree(coco_dir, d)
    first = sorted((d / "val2017").iterdir())[0]
    first.unlink()
    with pytest.raises(UserError, match=f"{first.name} is missing"):
        open_dataset(SSD_MOBILENET, d)
    (d / "annotations/instances_val2017.json").write_text('{"images": []}')
    with pytest.raises(UserError, match="is not a COCO annotation file"):
        open_dataset(SSD_MOBILENET, d)
    (d / "annotations/instances_val2017.json").unlink()
    with pytest.raises(UserError, match="instances_val2017.json is missing"):
        open_dataset(SSD_MOBILENET, d)


def test_built_models_end_at_the_raw_heads(mobilenet, resnet34_slim):
    mb = check_model(mobilenet, SSD_MOBILENET)
    assert mb.kind == "raw" and mb.input_dtype == "uint8" and mb.outputs == ("raw_boxes", "raw_scores")
    r34 = check_model(resnet34_slim, SSD_RESNET34)
    assert r34.kind == "raw" and r34.outputs == ("locs", "confs")
    s = ort.InferenceSession(str(resnet34_slim))
    locs, confs = s.run(None, {"image": np.zeros((1, 3, 1200, 1200), np.float32)})
    assert locs.shape == (1, 4, 15130) and confs.shape == (1, 81, 15130)
    np.testing.assert_allclose(confs.sum(1), 1, rtol=1e-4)


def test_full_size_flops_are_the_published_ones(tmp_path):
    from test_models import conv_macs_and_params
    macs, params = conv_macs_and_params(build_ssd_mobilenet(tmp_path / "mb.onnx"))
    assert 1.1e9 < macs < 1.3e9 and 6.5e6 < params < 7.0e6  # TF ssd_mobilenet_v1_coco: 1.2 GMAC, 6.8 M
    macs, params = conv_macs_and_params(build_ssd_resnet34(tmp_path / "r34.onnx"))
    assert 0.9 < 2 * macs / 433.4e9 < 1.05 and 19e6 < params < 21.5e6  # published: 433 GFLOPs, 20.1 M


def test_a_model_fitting_neither_layout_is_refused(tmp_path):
    from onnx import TensorProto, helper
    node = helper.make_node("Identity", ["image"], ["whatever"])
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 1200, 1200])],
                          [helper.make_tensor_value_info("whatever", TensorProto.FLOAT, None)])
    p = tmp_path / "m.onnx"
    onnx.save(helper.make_model(g), p)
    with pytest.raises(UserError, match="fit neither ssd-resnet34 layout"):
        check_model(p, SSD_RESNET34)


@pytest.mark.parametrize("name", ["ssd-mobilenet", "ssd-resnet34"])
def test_accuracy_run_returns_the_host_nms_of_each_sample(name, coco_dir, mobilenet, resnet34_slim, tmp_path):
    w = SSD_MOBILENET if name == "ssd-mobilenet" else SSD_RESNET34
    model = mobilenet if name == "ssd-mobilenet" else resnet34_slim
    count = 16 if name == "ssd-mobilenet" else 4
    p = visionperf("run", name, "--scenario", "Offline", "--mode", "accuracy", "--devices", "2",
                   "--model", model, "--dataset", coco_dir, "--count", count, "--cache", tmp_path / "cache",
                   "--out", tmp_path / "out")
    assert "post-processing busy" in p.stdout
    d = tmp_path / "out" / name / "Offline/accuracy"
    assert (d / "accuracy.txt").read_text().startswith("mAP=")
    log = {r["qsl_idx"]: np.frombuffer(bytes.fromhex(r["data"]), np.float32).reshape(-1, 7)
           for r in json.loads((d / "mlperf_log_accuracy.json").read_text())}
    assert sorted(log) == list(range(count))
    ds = open_dataset(w, coco_dir, count)
    sess = ort.InferenceSession(str(model))
    total = 0
    for i in range(count):
        x = preprocess_one(w, ds.path(i), w.layout)[None]
        boxes, scores = sess.run(list(DETECTION[name].raw_outputs), {sess.get_inputs()[0].name: x})
        ref = reference_nms(name, boxes[0], scores[0], i)
        got = log[i]
        assert got.shape == ref.shape
        np.testing.assert_array_equal(got[:, [0, 6]], ref[:, [0, 6]])
        np.testing.assert_allclose(got[:, 1:6], ref[:, 1:6], rtol=1e-4, atol=1e-5)
        total += len(got)
    assert total > 0, "the test needs some detections to compare"


def test_official_graphs_detections_are_reformatted_as_they_are():
    """The official files keep NMS inside: their detections become 7-float rows unchanged."""
    from types import SimpleNamespace

    from visionperf.postprocess import make_postprocess

    official = SimpleNamespace(kind="nms", outputs=DETECTION["ssd-mobilenet"].nms_outputs)
    post = make_postprocess(SSD_MOBILENET, official)
    num = np.array([2, 0], np.float32)
    boxes = np.zeros((2, 100, 4), np.float32)
    boxes[0, :2] = [[0.1, 0.2, 0.3, 0.4], [0.5, 0.5, 0.9, 0.8]]
    scores = np.zeros((2, 100), np.float32)
    scores[0, :2] = [0.9, 0.4]
    classes = np.zeros((2, 100), np.float32)
    classes[0, :2] = [18, 3]
    data, offsets, sizes = post([num, boxes, scores, classes], [7, 8])
    assert sizes.tolist() == [56, 0]
    rows = data[: 14].reshape(2, 7)
    np.testing.assert_allclose(rows, [[7, 0.1, 0.2, 0.3, 0.4, 0.9, 18], [7, 0.5, 0.5, 0.9, 0.8, 0.4, 3]])
    r34 = make_postprocess(SSD_RESNET34, SimpleNamespace(kind="nms", outputs=DETECTION["ssd-resnet34"].nms_outputs))
    bb = np.array([[[0.2, 0.1, 0.4, 0.3]]], np.float32)  # xmin, ymin, xmax, ymax
    data, offsets, sizes = r34([bb, np.array([[5]]), np.array([[0.7]], np.float32)], [3])
    np.testing.assert_allclose(data.reshape(-1, 7), [[3, 0.1, 0.2, 0.3, 0.4, 0.7, 5]])
