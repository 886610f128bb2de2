"""RetinaNet: anchors against hand-worked values, the engine's decode + NMS kernel against the
NumPy reference, the OpenImages-MLPerf layout and mAP, the models, and runs end to end.

Anchors worked out by hand from torchvision's AnchorGenerator (800x800, grids 100/50/25/13/7):
  strides = 800 // grid = 8, 16, 32, 61, 114
  sizes   = (s, int(s 2^(1/3)), int(s 2^(2/3))): 32 40 50 | 64 80 101 | 128 161 203 | 256 322 406 | 512 645 812
  base    = round([-w, -h, w, h] / 2), w = s / sqrt(r), h = s sqrt(r), r = h/w in (0.5, 1, 2),
            ratio-major then size, rounded half to even
  index   = level start + (y * grid + x) * 9 + a; level starts 0, 90000, 112500, 118125, 119646
  [0]      P3 (0, 0), r 0.5, s 32: w = 32 * 1.41421 = 45.25 -> 22.63 -> 23; h = 22.63 -> 11.31 -> 11
           -> [-23, -11, 23, 11]
  [4]      P3 (0, 0), r 1, s 40: -> [-20, -20, 20, 20]
  [9]      P3 (y 0, x 1): centre (8, 0), r 0.5, s 32 -> [-15, -11, 31, 11]
  [908]    P3 (y 1, x 0) a 8: centre (0, 8), r 2, s 50: w = 35.36 -> 17.68 -> 18, h = 70.71 -> 35.36
           -> 35 -> [-18, -27, 18, 43]
  [90005]  P4 (0, 0), r 1, s 101: 50.5 rounds half to even -> 50 -> [-50, -50, 50, 50]
  [112504] P5 (0, 0), r 1, s 161: 80.5 -> 80 -> [-80, -80, 80, 80]
  [112505] P5 (0, 0), r 1, s 203: 101.5 -> 102 -> [-102, -102, 102, 102]
  [119641] P6 (y 12, x 12) a 4: 118125 + 168 * 9 + 4; centre 12 * 61 = 732, r 1, s 322: +-161
           -> [571, 571, 893, 893]
  [119887] P7 (y 3, x 5) a 7: 119646 + 26 * 9 + 7; centre (570, 342), r 2, s 645: w = 456.08 -> 228.04
           -> 228, h = 912.17 -> 456.08 -> 456 -> [342, -114, 798, 798]
  [120086] P7 (6, 6) a 8: centre (684, 684), r 2, s 812: w = 574.17 -> 287.09 -> 287, h = 1148.35
           -> 574.17 -> 574 -> [397, 110, 971, 1258]
  [119646 + 4]  P7 (0, 0), r 1, s 645: 322.5 -> 322 -> [-322, -322, 322, 322]
"""

import json
import math
import shutil
from dataclasses import replace
from types import SimpleNamespace

import cv2
import numpy as np
import onnxruntime as ort
import pytest

from conftest import visionperf
from visionperf.accuracy import coco_map
from visionperf.datasets import open_dataset, preprocess_one
from visionperf.datasets.synthetic import make_openimages
from visionperf.errors import UserError
from visionperf.models import check_model
from visionperf.models.retinanet import build_retinanet
from visionperf.postprocess import make_postprocess
from visionperf.postprocess.heads import retinanet_heads
from visionperf.postprocess.nms import NMS, ScoreFormat
from visionperf.postprocess.retinanet import (logit_threshold, reference_detections, retinanet_anchors,
                                              retinanet_anchors_xyxy)
from visionperf.workloads import DETECTION, RETINANET, get_workload

SPEC = DETECTION["retinanet"]

HAND = {
    0: (-23, -11, 23, 11), 4: (-20, -20, 20, 20), 9: (-15, -11, 31, 11), 908: (-18, -27, 18, 43),
    90005: (-50, -50, 50, 50), 112504: (-80, -80, 80, 80), 112505: (-102, -102, 102, 102),
    119641: (571, 571, 893, 893), 119887: (342, -114, 798, 798), 120086: (397, 110, 971, 1258),
    119650: (-322, -322, 322, 322),
}


def test_spec_holds_the_mlperf_facts():
    w = get_workload("retinanet")
    assert w is RETINANET and w.dataset == "openimages" and w.row_shape("NCHW") == (3, 800, 800)
    assert w.performance_sample_count == 64 and w.server_latency_bound_ms == 100.0
    assert w.accuracy_target == pytest.approx(0.99 * 37.55) and w.num_classes == 264
    assert w.input_names == ("images",) and w.input_dtype == "float32" and w.default_batch_size == 1
    assert w.preprocessing.std is None and w.preprocessing.scale == pytest.approx(1 / 255)
    assert w.card_rate == pytest.approx(4189.21 / 16, rel=0.01)
    assert sum(SPEC.level_anchors) == SPEC.num_anchors == 120087
    assert SPEC.box_exp_clip == pytest.approx(math.log(1000 / 16)) and SPEC.iou_strict


def test_anchors_hold_the_hand_worked_values():
    a = retinanet_anchors_xyxy()
    assert a.shape == (120087, 4) and a.dtype == np.float32
    for i, box in HAND.items():
        assert a[i].tolist() == list(box), i
    yxhw = retinanet_anchors()  # the kernels' (cy, cx, h, w): exact
    np.testing.assert_array_equal(yxhw[:, 0] - yxhw[:, 2] / 2, a[:, 1])
    np.testing.assert_array_equal(yxhw[:, 1] + yxhw[:, 3] / 2, a[:, 2])


def test_logit_threshold_is_the_sigmoid_threshold():
    t = logit_threshold(0.05)
    xs = (np.arange(-3000, 3000) + t.view(np.int32)).astype(np.int32).view(np.float32)
    sig = 1 / (1 + np.exp(-xs.astype(np.float64)))
    np.testing.assert_array_equal(xs > t, sig > 0.05)


# ---- the engine's kernel against the NumPy reference ---------------------------------------

def run_kernel(reg, logits, qsl=7, spec=SPEC, anchors=None):
    fmt = ScoreFormat("float16" if logits.dtype == np.float16 else "float32")
    out = np.full((spec.max_per_image, 7), np.nan, np.float32)
    n = NMS(spec, retinanet_anchors() if anchors is None else anchors, fmt)(reg, logits, qsl, out)
    assert 0 <= n <= spec.max_per_image and not np.isnan(out[:n]).any()
    return out[:n]


def check(reg, logits, qsl=7, spec=SPEC, anchors=None):
    got = run_kernel(reg, logits, qsl, spec, anchors)
    ref = reference_detections(reg, logits, qsl, spec, anchors)
    assert got.shape == ref.shape
    np.testing.assert_array_equal(got[:, [0, 5, 6]], ref[:, [0, 5, 6]])  # index, score, label exact
    np.testing.assert_allclose(got[:, 1:5], ref[:, 1:5], rtol=2e-6, atol=2e-7)
    return got


@pytest.fixture(scope="module")
def heads():
    """Realistic heads: (seed, objects, noise) from none to many candidates, float32."""
    out = {}
    for seed, objects, noise in ((1, 0, 0.6), (2, 4, 1.0), (3, 30, 1.3)):
        out[seed] = retinanet_heads(np.random.default_rng(seed), objects, noise)
    return out


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_realistic_heads_equal_the_reference(heads, seed, dtype):
    reg, logits = heads[seed]
    got = check(reg, logits.astype(dtype, copy=False), qsl=seed)
    if seed == 3:
        assert len(got) == SPEC.max_per_image
        assert (got[:, 1:5] >= 0).all() and (got[:, 1:5] <= 1).all()
        assert len(np.unique(got[:, 6])) > 5 and (np.diff(got[:, 5]) <= 0).all()


def small_spec(**kw):
    """The same algorithm on a small head (3 levels, 5 classes) so edge cases stay cheap."""
    return replace(SPEC, num_anchors=60, level_anchors=(36, 18, 6), max_candidates_per_class=7,
                   max_per_image=10, image_size=100, **kw)


def small_anchors(rng):
    cy, cx = rng.uniform(0, 100, (2, 60))
    h, w = rng.choice([10.0, 20.0, 40.0], (2, 60))
    return np.stack([cy, cx, h, w], 1).astype(np.float32)


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_every_logit_passing_ties_and_caps(dtype):
    """Every logit passes (the per-level cap and its rising threshold do all the work), many tie
    exactly (ties by flat index), zero regressions (boxes = anchors, some clipped to the image,
    one with no area left), and the per-image cap reached."""
    rng = np.random.default_rng(4)
    anchors = small_anchors(rng)
    anchors[5] = (-30, 50, 10, 10)  # wholly above the image: clipped to zero height, still a candidate
    spec = small_spec()
    logits = np.full((60, 5), 2.0, np.float32)
    logits[::3, 1] = np.linspace(0, 4, 20)
    logits[5, 2] = 9.0
    reg = np.zeros((60, 4), np.float32)
    got = check(reg, logits.astype(dtype), spec=spec, anchors=anchors)
    assert len(got) == 10 and got[0, 6] == 2 and got[0, 1] == got[0, 3] == 0  # the zero-area box leads


def test_large_offsets_are_clamped_and_iou_at_exactly_half_is_kept():
    """dw/dh beyond log(1000/16) are clamped (then clipped to the image); two boxes with IoU
    exactly 0.5 both stay (torchvision suppresses at IoU > 0.5 only)."""
    spec = small_spec()
    anchors = np.zeros((60, 4), np.float32)
    anchors[:] = (50, 50, 10, 10)
    anchors[1] = (50, 55, 10, 10)  # [45,50..55,60]: IoU with anchor 0's [45,45..55,55] = 50/150
    anchors[2] = (50, 50, 10, 20)  # IoU with anchor 0: 100 / 200 = 0.5 exactly
    logits = np.full((60, 5), -9.0, np.float32)
    logits[0, 3], logits[2, 3], logits[1, 3], logits[3, 4] = 5.0, 4.0, 3.0, 1.0
    reg = np.zeros((60, 4), np.float32)
    reg[3] = (0, 0, 50.0, -50.0)  # w = exp(4.135) * 10 = 625 -> clipped to [0, 100]
    got = check(reg, logits, spec=spec, anchors=anchors)
    assert got[:, 6].tolist() == [3, 3, 3, 4]
    np.testing.assert_allclose(got[3, 1:5], [0.5, 0, 0.5, 1], atol=1e-6)


def test_fp16_logits_at_the_threshold_and_odd_patterns():
    """fp16 logits just below, at and above the threshold, negative zero, infinities and NaNs."""
    spec = small_spec()
    rng = np.random.default_rng(9)
    anchors = small_anchors(rng)
    t = logit_threshold(0.05)
    below = np.float16(t)
    below = below if below <= t else np.nextafter(below, np.float16(-np.inf))
    above = np.nextafter(below, np.float16(np.inf))
    vals = np.array([below, above, -0.0, np.inf, -np.inf, np.nan, -np.nan, 0.0, 30000], np.float16)
    logits = np.full((60, 5), -20, np.float16)
    logits.reshape(-1)[:: 33][: len(vals)] = vals
    reg = rng.normal(0, 0.2, (60, 4)).astype(np.float32)
    got = run_kernel(reg, logits, spec=spec, anchors=anchors)
    assert len(got) == 5  # above, -0, +inf, +0, 30000: NaNs and what is not above never pass
    finite = logits.copy()
    finite[np.isnan(finite)] = -20  # the reference's float32 compare drops NaN the same way
    check(reg, finite, spec=spec, anchors=anchors)


def test_raw_postprocess_layout_and_engine_spec():
    """DetectRaw picks the RetinaNet kernel: heads [N, A, 4] + [N, A, 264], rows of 7 float32."""
    post = make_postprocess(RETINANET, SimpleNamespace(kind="raw"), score_format=ScoreFormat("float16"))
    (rs, rd), (ls, ld) = post.output_shapes(2, RETINANET)
    assert rs == (2, 120087, 4) and ls == (2, 120087, 264) and ld == np.float16 and rd == np.float32
    spec = post.engine_spec()[1]
    assert spec["retinanet"] == 1 and spec["level_anchors"] == list(SPEC.level_anchors)
    assert spec["score_threshold"] == float(logit_threshold(0.05)) and spec["num_classes"] == 264


# ---- OpenImages-MLPerf: layout, preprocessing, mAP ----------------------------------------


ANN = "annotations/openimages-mlperf.json"


@pytest.fixture(scope="module")
def oi_dir(tmp_path_factory):
    return make_openimages(tmp_path_factory.mktemp("oi") / "openimages", count=8, seed=3)


def test_synthetic_openimages_has_the_mlperf_layout(oi_dir):
    doc = json.loads((oi_dir / ANN).read_text())
    ds = open_dataset(RETINANET, oi_dir)
    assert len(ds) == 8 and ds.synthetic and ds.category_ids == tuple(range(264))
    names = [im["file_name"] for im in doc["images"]]
    assert names == sorted(names) and all(len(n) == len("0123456789abcdef.jpg") for n in names)
    assert [im["id"] for im in doc["images"]] == list(range(1, 9)) and ds.image_ids.tolist() == list(range(1, 9))
    assert {a["image_id"] for a in doc["annotations"]} == set(range(1, 9))  # every image has a box
    assert ds.files[0] == f"validation/data/{names[0]}"
    for im in doc["images"][:3]:
        assert cv2.imread(str(oi_dir / "validation/data" / im["file_name"])).shape[:2] == (im["height"], im["width"])


def test_preprocessing_is_the_reference_recipe(oi_dir):
    ds = open_dataset(RETINANET, oi_dir)
    for i in (0, 3):
        img = cv2.imread(str(ds.path(i))).astype(np.float32)  # the reference, step by step
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
        img = cv2.resize(img, (800, 800), interpolation=cv2.INTER_LINEAR)
        img /= 255.0
        np.testing.assert_array_equal(preprocess_one(RETINANET, ds.path(i), "NCHW"), img.transpose(2, 0, 1))


def test_openimages_errors_name_the_file(oi_dir, tmp_path):
    d = tmp_path / "oi"
    shutil.copytree(oi_dir, d)
    first = sorted((d / "validation/data").iterdir())[0]
    first.unlink()
    with pytest.raises(UserError, match=f"{first.name} is missing"):
        open_dataset(RETINANET, d)
    (d / ANN).unlink()
    with pytest.raises(UserError, match="openimages-mlperf.json is missing: a openimages directory"):
        open_dataset(RETINANET, d)


def encode(gt, anchor):
    """torchvision BoxCoder.encode_single, weights (1, 1, 1, 1): boxes (x1, y1, x2, y2) -> (dx, dy, dw, dh)."""
    aw, ah = anchor[2] - anchor[0], anchor[3] - anchor[1]
    gw, gh = gt[2] - gt[0], gt[3] - gt[1]
    return [((gt[0] + gt[2]) / 2 - (anchor[0] + anchor[2]) / 2) / aw,
            ((gt[1] + gt[3]) / 2 - (anchor[1] + anchor[3]) / 2) / ah, math.log(gw / aw), math.log(gh / ah)]


def test_ground_truth_encoded_against_the_anchors_decodes_to_map_100(oi_dir, tmp_path):
    """A perfect model cut before NMS: each (non-group) box, in the 800x800 frame, encoded against
    its 3 best-overlapping anchors with a high logit in its class, every other logit far below.
    Through the product (DetectRaw: the engine's kernel -> response bytes -> log -> coco_map with
    labels as category ids) it must score mAP 100."""
    doc = json.loads((oi_dir / ANN).read_text())
    anchors = retinanet_anchors_xyxy().astype(np.float64)
    area = (anchors[:, 2] - anchors[:, 0]) * (anchors[:, 3] - anchors[:, 1])
    post = make_postprocess(RETINANET, SimpleNamespace(kind="raw"))
    recs, dets = [], 0
    for q, im in enumerate(doc["images"]):
        sx, sy = 800 / im["width"], 800 / im["height"]
        reg = np.zeros((len(anchors), 4), np.float32)
        logits = np.full((len(anchors), 264), -12.0, np.float32)
        used: set[int] = set()
        for k, a in enumerate(x for x in doc["annotations"] if x["image_id"] == im["id"] and not x["iscrowd"]):
            x, y, w, h = a["bbox"]
            gt = np.array([x * sx, y * sy, (x + w) * sx, (y + h) * sy])
            iw = np.clip(np.minimum(gt[2], anchors[:, 2]) - np.maximum(gt[0], anchors[:, 0]), 0, None)
            ih = np.clip(np.minimum(gt[3], anchors[:, 3]) - np.maximum(gt[1], anchors[:, 1]), 0, None)
            iou = iw * ih / ((gt[2] - gt[0]) * (gt[3] - gt[1]) + area - iw * ih)
            ranked = [int(i) for i in np.argsort(-iou, kind="stable") if int(i) not in used][:3]
            for rank, i in enumerate(ranked):
                used.add(i)
                reg[i] = encode(gt, anchors[i])
                logits[i, a["category_id"]] = 4.0 - 0.1 * k - rank
        data, offsets, sizes = post([reg[None], logits[None]], [q])
        dets += int(sizes[0]) // 28
        raw = data.view(np.uint8).reshape(-1)[offsets[0]: offsets[0] + sizes[0]].tobytes()
        recs.append({"seq_id": q, "qsl_idx": q, "data": raw.hex().upper()})
    log = tmp_path / "log.json"
    log.write_text(json.dumps(recs))
    res = coco_map(log, open_dataset(RETINANET, oi_dir), DETECTION["retinanet"].coco_label_map)
    assert dets >= len(doc["images"]) and res.map == pytest.approx(100.0, abs=1e-6)


# ---- models --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def slim(tmp_path_factory):
    return build_retinanet(tmp_path_factory.mktemp("m") / "retinanet_w1_32.onnx", width=1 / 32)


def test_built_model_ends_at_the_heads(slim):
    info = check_model(slim, RETINANET)
    assert info.kind == "raw" and info.outputs == ("bbox_regression", "cls_logits") and info.input_name == "images"
    s = ort.InferenceSession(str(slim))
    cls, reg = s.run(["cls_logits", "bbox_regression"], {"images": np.full((1, 3, 800, 800), 0.5, np.float32)})
    assert cls.shape == (1, 120087, 264) and reg.shape == (1, 120087, 4)
    assert np.median(cls) < float(logit_threshold(0.05))  # the focal-loss prior: most logits below 0.05


def test_head_rows_are_in_anchor_order():
    """(N, 9 K, H, W) -> (N, H W 9, K) as torchvision's view/permute: row (y W + x) 9 + a, column k."""
    from onnx import TensorProto, helper

    from visionperf.models.graph import GraphBuilder
    from visionperf.models.retinanet import head_rows

    g = GraphBuilder(0)
    out = head_rows(g, "x", 3)
    g.nodes.append(helper.make_node("Identity", [out], ["y"]))
    m = g.model([helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 27, 2, 5])],
                [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], {})
    x = np.arange(27 * 10, dtype=np.float32).reshape(1, 27, 2, 5)
    y = ort.InferenceSession(m.SerializeToString()).run(None, {"x": x})[0]
    for yy, xx, a, k in ((0, 0, 0, 0), (1, 3, 7, 2), (0, 4, 8, 1)):
        assert y[0, (yy * 5 + xx) * 9 + a, k] == x[0, a * 3 + k, yy, xx]


def official_like(path, boxes, scores, labels):
    """A graph with the official file's interface: images [1,3,800,800] -> boxes [n,4] (x1, y1,
    x2, y2 pixels), scores [n], labels [n] int64, NMS inside (here: constants)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes = [helper.make_node("Constant", [], [name], value=numpy_helper.from_array(v, name + "_v"))
             for name, v in (("boxes", np.asarray(boxes, np.float32)), ("scores", np.asarray(scores, np.float32)),
                             ("labels", np.asarray(labels, np.int64)))]
    g = helper.make_graph(nodes, "official", [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 800, 800])],
                          [helper.make_tensor_value_info("boxes", TensorProto.FLOAT, ["n", 4]),
                           helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["n"]),
                           helper.make_tensor_value_info("labels", TensorProto.INT64, ["n"])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.save(m, path)
    return path


OFFICIAL = ([[80, 160, 400, 480], [0, 0, 800, 800], [10, 10, 20, 20]], [0.9, 0.05, 0.049], [5, 0, 263])


def test_official_model_is_accepted_and_its_detections_reformatted(tmp_path):
    p = official_like(tmp_path / "resnext50_32x4d_fpn.onnx", *OFFICIAL)
    info = check_model(p, RETINANET)
    assert info.kind == "nms" and info.fixed_batch == 1 and info.outputs == ("boxes", "scores", "labels")
    post = make_postprocess(RETINANET, info)
    outs = ort.InferenceSession(str(p)).run(list(info.outputs), {"images": np.zeros((1, 3, 800, 800), np.float32)})
    data, offsets, sizes = post(outs, [4])
    assert sizes.tolist() == [56]  # scores >= 0.05 kept up to the first below it
    np.testing.assert_allclose(data.reshape(-1, 7), [[4, 0.2, 0.1, 0.6, 0.5, 0.9, 5], [4, 0, 0, 1, 1, 0.05, 0]],
                               rtol=1e-6)


# ---- end to end through LoadGen ------------------------------------------------------------

def test_simulated_cards_run_offline_performance_and_accuracy(oi_dir, slim, tmp_path):
    common = ["--scenario", "Offline", "--backend", "simulated", "--devices", "1", "--card-rate", "20",
              "--model", slim, "--dataset", oi_dir, "--cache", tmp_path / "cache", "--out", tmp_path / "out"]
    p = visionperf("run", "retinanet", *common, "--duration", "1.5")
    assert "VALID" in p.stdout and "post-processing busy" in p.stdout
    visionperf("run", "retinanet", *common, "--mode", "accuracy")
    d = tmp_path / "out/retinanet/Offline"
    assert (d / "performance/run_1/mlperf_log_summary.txt").exists()
    assert (d / "accuracy/accuracy.txt").read_text().startswith("mAP=")
    log = json.loads((d / "accuracy/mlperf_log_accuracy.json").read_text())
    assert sorted(r["qsl_idx"] for r in log) == list(range(8))
    rows = np.frombuffer(bytes.fromhex(log[0]["data"]), np.float32).reshape(-1, 7)
    assert 0 < len(rows) <= 300 and (rows[:, 5] > 0.05).all() and (rows[:, 6] < 264).all()


def test_onnxruntime_accuracy_run_returns_the_host_postprocessing(oi_dir, slim, tmp_path):
    count = 3
    visionperf("run", "retinanet", "--scenario", "Offline", "--mode", "accuracy", "--devices", "1",
               "--model", slim, "--dataset", oi_dir, "--count", count, "--cache", tmp_path / "cache",
               "--out", tmp_path / "out")
    d = tmp_path / "out/retinanet/Offline/accuracy"
    log = {r["qsl_idx"]: np.frombuffer(bytes.fromhex(r["data"]), np.float32).reshape(-1, 7)
           for r in json.loads((d / "mlperf_log_accuracy.json").read_text())}
    assert sorted(log) == list(range(count))
    ds = open_dataset(RETINANET, oi_dir, count)
    sess = ort.InferenceSession(str(slim))
    for i in range(count):
        reg, cls = sess.run(["bbox_regression", "cls_logits"], {"images": preprocess_one(RETINANET, ds.path(i), "NCHW")[None]})
        ref = reference_detections(reg[0], cls[0], i)
        assert log[i].shape == ref.shape and len(ref) > 0
        np.testing.assert_array_equal(log[i][:, [0, 6]], ref[:, [0, 6]])
        np.testing.assert_allclose(log[i][:, 1:6], ref[:, 1:6], rtol=1e-4, atol=1e-5)


def test_official_model_accuracy_run(oi_dir, tmp_path):
    """The official interface end to end: batch 1 on ONNX Runtime, NMS inside, rows as they are."""
    model = official_like(tmp_path / "resnext50_32x4d_fpn.onnx", *OFFICIAL)
    visionperf("run", "retinanet", "--scenario", "Offline", "--mode", "accuracy", "--devices", "1",
               "--model", model, "--dataset", oi_dir, "--count", 2, "--cache", tmp_path / "cache",
               "--out", tmp_path / "out")
    log = json.loads((tmp_path / "out/retinanet/Offline/accuracy/mlperf_log_accuracy.json").read_text())
    for r in log:
        rows = np.frombuffer(bytes.fromhex(r["data"]), np.float32).reshape(-1, 7)
        np.testing.assert_allclose(rows[:, 1:], [[0.2, 0.1, 0.6, 0.5, 0.9, 5], [0, 0, 1, 1, 0.05, 0]], rtol=1e-6)
        assert (rows[:, 0] == r["qsl_idx"]).all()
