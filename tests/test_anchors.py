"""Default boxes against the references' formulas, and the decode path against their box coders.

The anchor values below are worked out by hand from the references, not read off the code:

SSD-ResNet34 (MLPerf `dboxes_R34_coco` + `DefaultBoxes`, fig 1200, feature maps 50/25/13/7/3/3):
  steps  = int(1200 / f)          = 24, 48, 92, 171, 400, 400
  fk     = 1200 // step           = 50, 25, 13, 7, 3, 3     (1200/92 = 13.04, 1200/171 = 7.02)
  sizes  = int(s * 1200 / 300)    = 84, 180, 396, 612, 828, 1044, 1260  (s = 21, 45, ... 315)
  s_k    = size_k / 1200          = 0.07, 0.15, 0.33, 0.51, 0.69, 0.87, 1.05
  per cell: (s_k, s_k), (sqrt(s_k s_k+1),)*2, then per ratio a: (w, h) = (s_k sqrt(a), s_k / sqrt(a))
  and (h, w); boxes per layer: size-major, then cells i (row), j (column); centre
  (cx, cy) = ((j + .5) / fk, (i + .5) / fk); (cx, cy, w, h) clamped to [0, 1].
  Layer starts: 0; 4*2500 = 10000; +6*625 = 13750; +6*169 = 14764; +6*49 = 15058; +4*9 = 15094.
  [0]     layer 0, size (0.07, 0.07), cell (0, 0): centre 0.5/50 = 0.01
  [2500]  layer 0, size sqrt(0.07*0.15) = sqrt(0.0105) = 0.10246951, cell (0, 0)
  [5000]  layer 0, ratio 2: w = 0.07*1.41421356 = 0.09899495, h = 0.07/1.41421356 = 0.04949747
  [9999]  layer 0, ratio 2 transposed, cell (49, 49): centre 49.5/50 = 0.99, w 0.04949747, h 0.09899495
  [13762] layer 2, size 0.33, cell (0, 12): cx = 12.5/13 = 0.96153846, cy = 0.5/13 = 0.03846154
  [15008] layer 3, ratio 3 (w, h) = (0.51*1.7320508, 0.51/1.7320508) = (0.88334591, 0.29444864),
          index 14764 + 4*49 + 6*7 + 6, cell (6, 6): centre 6.5/7 = 0.92857143
  [15103] layer 5, size sqrt(0.87*1.05) = sqrt(0.9135) = 0.95577194, cell (0, 0): centre 0.5/3
  [15116] layer 5, ratio 2: w = 0.87*1.41421356 = 1.23036580 -> clamped to 1, h = 0.61518290,
          index 15094 + 2*9 + 4, cell (1, 1): centre 0.5

SSD-MobileNet-v1 (TF `create_ssd_anchors`, pipeline.config min 0.2, max 0.95, ratios 1, 2, 0.5,
3, 0.3333, lowest layer (0.1, 1), (0.2, 2), (0.2, 0.5); grids 19/10/5/3/2/1):
  scales = 0.2 + 0.75 i / 5 = 0.2, 0.35, 0.5, 0.65, 0.8, 0.95, then 1.0 (for interpolation)
  (h, w) = (s / sqrt(a), s sqrt(a)); stride 1/g, offset stride/2: centre (y + .5)/g
  Layer starts: 0; 19*19*3 = 1083; +10*10*6 = 1683; +150 = 1833; +54 = 1887; +24 = 1911.
  [0]     (0.1, 1) at (0, 0) of 19x19: centre 0.5/19 = 0.02631579, h = w = 0.1
  [1]     (0.2, 2): h = 0.2/1.41421356 = 0.14142136, w = 0.28284271
  [1088]  layer 1, interpolated sqrt(0.35*0.5) = sqrt(0.175) = 0.41833001 at cell (0, 0):
          centre 0.5/10 = 0.05
  [1914]  layer 5 (1x1), ratio 3: h = 0.95/1.7320508 = 0.54848276, w = 1.64544827; centre 0.5
  [1915]  ratio 0.3333: sqrt(0.3333) = 0.57732140, h = 0.95/0.5773214 = 1.64553055,
          w = 0.95*0.5773214 = 0.54845533
  [1916]  interpolated sqrt(0.95*1.0) = 0.97467943
"""

import json
from types import SimpleNamespace

import numpy as np
import pytest

from visionperf.accuracy import coco_map
from visionperf.datasets import open_dataset
from visionperf.datasets.synthetic import make_coco
from visionperf.postprocess import make_postprocess
from visionperf.postprocess.ssd import anchors_for, mobilenet_anchors, resnet34_anchors
from visionperf.workloads import DETECTION, SSD_MOBILENET, SSD_RESNET34

R34_HAND = {  # index: (cy, cx, h, w)
    0: (0.01, 0.01, 0.07, 0.07),
    2500: (0.01, 0.01, 0.10246951, 0.10246951),
    5000: (0.01, 0.01, 0.04949747, 0.09899495),
    9999: (0.99, 0.99, 0.09899495, 0.04949747),
    13762: (0.03846154, 0.96153846, 0.33, 0.33),
    15008: (0.92857143, 0.92857143, 0.29444864, 0.88334591),
    15103: (1 / 6, 1 / 6, 0.95577194, 0.95577194),
    15116: (0.5, 0.5, 0.61518290, 1.0),
}
MB_HAND = {
    0: (0.02631579, 0.02631579, 0.1, 0.1),
    1: (0.02631579, 0.02631579, 0.14142136, 0.28284271),
    1088: (0.05, 0.05, 0.41833001, 0.41833001),
    1914: (0.5, 0.5, 0.54848276, 1.64544827),
    1915: (0.5, 0.5, 1.64553055, 0.54845533),
    1916: (0.5, 0.5, 0.97467943, 0.97467943),
}


def test_anchors_hold_the_hand_worked_reference_values():
    r34, mb = resnet34_anchors(), mobilenet_anchors()
    assert r34.shape == (15130, 4) and mb.shape == (1917, 4)
    assert r34.min() >= 0 and r34.max() <= 1
    for i, want in R34_HAND.items():
        np.testing.assert_allclose(r34[i], want, rtol=2e-7, atol=1e-8, err_msg=f"ssd-resnet34 anchor {i}")
    for i, want in MB_HAND.items():
        np.testing.assert_allclose(mb[i], want, rtol=2e-7, atol=1e-8, err_msg=f"ssd-mobilenet anchor {i}")
    # The integer grid divisor: layer 2's last column sits at 12.5/13, not 12.5/13.04 (0.9583).
    assert abs(r34[13762, 1] - 0.9583) > 3e-3


# ---- independent re-statements of the references, for the encoded-ground-truth check ----

def reference_r34_priors():
    """MLPerf DefaultBoxes for dboxes_R34_coco, line by line: float32 (cx, cy, w, h), clamped."""
    fig, feat = 1200, [50, 25, 13, 7, 3, 3]
    steps = [int(fig / f) for f in feat]
    scales = [int(s * fig / 300) for s in [21, 45, 99, 153, 207, 261, 315]]
    ratios = [[2], [2, 3], [2, 3], [2, 3], [2], [2]]
    out = []
    for idx, f in enumerate(feat):
        fk = fig // steps[idx]
        sk1, sk2 = scales[idx] / fig, scales[idx + 1] / fig
        sizes = [(sk1, sk1), (np.sqrt(sk1 * sk2),) * 2]
        for a in ratios[idx]:
            sizes += [(sk1 * np.sqrt(a), sk1 / np.sqrt(a)), (sk1 / np.sqrt(a), sk1 * np.sqrt(a))]
        for w, h in sizes:
            for i in range(f):
                for j in range(f):
                    out.append(((j + 0.5) / fk, (i + 0.5) / fk, w, h))
    return np.clip(np.asarray(out, np.float32), 0, 1)


def reference_tf_priors():
    """TF tile_anchors in float32 (corners), read back as the box coder does: (yc, xc, h, w)."""
    f32 = np.float32
    scales = [0.2 + (0.95 - 0.2) * i / 5 for i in range(6)] + [1.0]
    out = []
    for layer, g in enumerate([19, 10, 5, 3, 2, 1]):
        if layer == 0:
            specs = [(0.1, 1.0), (scales[0], 2.0), (scales[0], 0.5)]
        else:
            specs = [(scales[layer], a) for a in (1.0, 2.0, 0.5, 3.0, 0.3333)]
            specs.append((np.sqrt(scales[layer] * scales[layer + 1]), 1.0))
        s = np.array([x for x, _ in specs], f32)
        r = np.sqrt(np.array([a for _, a in specs], f32))
        heights, widths = s / r, s * r
        stride = f32(1.0) / f32(g)
        centres = np.arange(g, dtype=f32) * stride + f32(0.5) * stride
        for y in centres:
            for x in centres:
                for h, w in zip(heights, widths):
                    out.append((y - f32(0.5) * h, x - f32(0.5) * w, y + f32(0.5) * h, x + f32(0.5) * w))
    c = np.asarray(out, f32)
    h, w = c[:, 2] - c[:, 0], c[:, 3] - c[:, 1]
    return np.stack([c[:, 0] + h / 2, c[:, 1] + w / 2, h, w], 1)


def encode_r34(gt_xywh, prior_xywh):
    """Inverse of the reference's scale_back_batch (scale_xy 0.1, scale_wh 0.2): [4] (x, y, w, h)."""
    t = np.empty(4, np.float64)
    t[:2] = (gt_xywh[:2] - prior_xywh[:2]) / prior_xywh[2:] / 0.1
    t[2:] = np.log(gt_xywh[2:] / prior_xywh[2:]) / 0.2
    return t


def encode_tf(gt_yxhw, anchor_yxhw):
    """TF FasterRcnnBoxCoder._encode, scales (10, 10, 5, 5), EPSILON 1e-8: [4] (ty, tx, th, tw)."""
    eps = 1e-8
    ya, xa, ha, wa = anchor_yxhw.astype(np.float64)
    y, x, h, w = gt_yxhw.astype(np.float64)
    ha, wa, h, w = ha + eps, wa + eps, h + eps, w + eps
    return np.array([(y - ya) / ha * 10, (x - xa) / wa * 10, np.log(h / ha) * 5, np.log(w / wa) * 5])


def iou_many(box, boxes):
    """(ymin, xmin, ymax, xmax) IoU of one box with many."""
    ih = np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0, None)
    iw = np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0, None)
    inter = ih * iw
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / ((box[2] - box[0]) * (box[3] - box[1]) + area - inter)


@pytest.fixture(scope="module")
def coco_dir(tmp_path_factory):
    return make_coco(tmp_path_factory.mktemp("coco") / "coco", count=24, seed=5)


def encoded_ground_truth_heads(name, coco_dir):
    """Per image, the raw heads a perfect model would emit: for each (non-crowd) object, its 3
    best-overlapping reference priors carry the object's box encoded against them and a high
    score in its class; every other prior is background. Returns [(qsl_idx, boxes, scores)]."""
    doc = json.loads((coco_dir / "annotations/instances_val2017.json").read_text())
    cats = sorted(c["id"] for c in doc["categories"])
    r34 = name == "ssd-resnet34"
    if r34:
        p = reference_r34_priors()  # (cx, cy, w, h)
        prior_yxhw = p[:, [1, 0, 3, 2]]
    else:
        prior_yxhw = reference_tf_priors()
    corners = np.concatenate([prior_yxhw[:, :2] - prior_yxhw[:, 2:] / 2, prior_yxhw[:, :2] + prior_yxhw[:, 2:] / 2], 1)
    A = len(prior_yxhw)
    C = 81 if r34 else 91
    heads = []
    for q, im in enumerate(doc["images"]):
        H, W = im["height"], im["width"]
        enc = np.zeros((A, 4), np.float32)
        scores = np.zeros((A, C), np.float32)
        if r34:
            scores[:, 0] = 1.0  # softmax: all background
        used: set[int] = set()
        for k, a in enumerate(x for x in doc["annotations"] if x["image_id"] == im["id"] and not x["iscrowd"]):
            x, y, bw, bh = a["bbox"]
            gt = np.array([y / H, x / W, (y + bh) / H, (x + bw) / W])
            cls = cats.index(a["category_id"]) + 1 if r34 else a["category_id"]
            ranked = [int(i) for i in np.argsort(-iou_many(gt, corners), kind="stable") if int(i) not in used][:3]
            for rank, i in enumerate(ranked):
                used.add(i)
                score = 0.95 - 0.01 * k - 0.2 * rank  # the best prior scores highest
                if r34:
                    g = np.array([(gt[1] + gt[3]) / 2, (gt[0] + gt[2]) / 2, gt[3] - gt[1], gt[2] - gt[0]])
                    enc[i] = encode_r34(g, p[i])
                    scores[i, 0], scores[i, cls] = 1 - score, score
                else:
                    g = np.array([(gt[0] + gt[2]) / 2, (gt[1] + gt[3]) / 2, gt[2] - gt[0], gt[3] - gt[1]])
                    enc[i] = encode_tf(g, prior_yxhw[i])
                    scores[i, cls] = score
        if r34:  # the ONNX heads' layout: locs [4, A] (x, y, w, h), confs [81, A]
            heads.append((q, np.ascontiguousarray(enc.T), np.ascontiguousarray(scores.T)))
        else:  # boxes [A, 4] (ty, tx, th, tw), scores [A, 91]
            heads.append((q, enc, scores))
    return heads


def map_of_heads(name, coco_dir, tmp_path, anchors=None):
    """Through the product path: host decode + NMS -> response bytes -> accuracy log -> mAP."""
    w = SSD_RESNET34 if name == "ssd-resnet34" else SSD_MOBILENET
    post = make_postprocess(w, SimpleNamespace(kind="raw"))
    if anchors is not None:
        post.nms.anchors = np.ascontiguousarray(anchors, np.float32)
    recs = []
    for q, boxes, scores in encoded_ground_truth_heads(name, coco_dir):
        data, offsets, sizes = post([boxes[None], scores[None]], [q])
        raw = data.view(np.uint8).reshape(-1)[offsets[0]: offsets[0] + sizes[0]].tobytes()
        recs.append({"seq_id": q, "qsl_idx": q, "data": raw.hex().upper()})
    log = tmp_path / f"{name}.json"
    log.write_text(json.dumps(recs))
    return coco_map(log, open_dataset(w, coco_dir), DETECTION[name].coco_label_map)


@pytest.mark.parametrize("name", ["ssd-mobilenet", "ssd-resnet34"])
def test_ground_truth_encoded_against_the_reference_priors_decodes_to_map_100(name, coco_dir, tmp_path):
    """What an official model cut before NMS emits, it emits against the reference's priors: a
    perfect one (the ground truth, encoded with the reference box coder) must score mAP 100."""
    res = map_of_heads(name, coco_dir, tmp_path)
    assert res.detections > 20
    assert res.map == pytest.approx(100.0, abs=1e-6)


def test_the_old_resnet34_priors_would_have_failed_that_check(coco_dir, tmp_path):
    """Sizes divided by 1200 without the x4, grid divisor 1200/step as a float (issue 10)."""
    old = []
    for k, f in enumerate([50, 25, 13, 7, 3, 3]):
        fk = 1200 / int(1200 / f)
        s = [21, 45, 99, 153, 207, 261, 315]
        s1, s2 = s[k] / 1200, s[k + 1] / 1200
        sizes = [(s1, s1), (np.sqrt(s1 * s2),) * 2]
        for a in [[2], [2, 3], [2, 3], [2, 3], [2], [2]][k]:
            sizes += [(s1 * np.sqrt(a), s1 / np.sqrt(a)), (s1 / np.sqrt(a), s1 * np.sqrt(a))]
        old += [((i + .5) / fk, (j + .5) / fk, h, w) for w, h in sizes for i in range(f) for j in range(f)]
    res = map_of_heads("ssd-resnet34", coco_dir, tmp_path, np.clip(old, 0, 1))
    assert res.map < 10
    assert len(anchors_for("ssd-resnet34")) == len(old)
