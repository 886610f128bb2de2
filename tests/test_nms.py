"""The numba NMS kernels against a plain, obviously correct NumPy implementation."""

import numpy as np
import pytest

from visionperf.postprocess.heads import raw_heads
from visionperf.postprocess.nms import NMS, ScoreFormat
from visionperf.postprocess.ssd import anchors_for, decode
from visionperf.workloads import DETECTION


def iou(b, c):
    ih = min(b[2], c[2]) - max(b[0], c[0])
    iw = min(b[3], c[3]) - max(b[1], c[1])
    if ih <= 0 or iw <= 0:
        return 0.0
    inter = ih * iw
    return inter / ((b[2] - b[0]) * (b[3] - b[1]) + (c[2] - c[0]) * (c[3] - c[1]) - inter)


def reference_nms(name, boxes, scores_f, qsl_idx):
    """SCORES_F: float scores in the workload's layout. Returns [K, 7] rows."""
    spec = DETECTION[name]
    anchors = anchors_for(name)
    S = scores_f if spec.layout == "class-major" else scores_f.T  # -> [C, A]
    E = boxes.T if spec.layout == "class-major" else boxes  # -> [A, 4]
    dets = []
    for c in range(1, S.shape[0]):
        s = S[c]
        cand = np.nonzero(s > spec.score_threshold)[0]
        order = cand[np.argsort(-s[cand], kind="stable")]
        decoded = decode(E[order], anchors[order], spec.box_coder_scales, spec.clip_boxes, spec.encoding)
        if spec.clip_boxes:  # TF clip_to_window: a box the clip leaves without area is dropped
            live = (decoded[:, 2] - decoded[:, 0]) * (decoded[:, 3] - decoded[:, 1]) > 0
            order, decoded = order[live], decoded[live]
        order, decoded = order[: spec.max_candidates_per_class], decoded[: spec.max_candidates_per_class]
        kept = []
        for t in range(len(order)):
            if all(iou(decoded[t], decoded[k]) < spec.iou_threshold for k in kept):
                kept.append(t)
            if len(kept) == spec.max_per_class:
                break
        dets += [(-s[order[t]], c, rank, decoded[t]) for rank, t in enumerate(kept)]
    dets.sort(key=lambda d: (d[0], d[1], d[2]))
    return np.array([[qsl_idx, *d[3], -d[0], d[1]] for d in dets[: spec.max_per_image]],
                    np.float32).reshape(-1, 7)


def check(name, fmt, raw_scores, float_scores, boxes, qsl=7):
    spec = DETECTION[name]
    nms = NMS(spec, anchors_for(name), fmt)
    out = np.zeros((spec.max_per_image, 7), np.float32)
    n = nms(boxes, raw_scores, qsl, out)
    ref = reference_nms(name, boxes, float_scores, qsl)
    assert n == len(ref)
    np.testing.assert_array_equal(out[:n, [0, 5, 6]], ref[:, [0, 5, 6]])  # idx, score, class exact
    np.testing.assert_allclose(out[:n, 1:5], ref[:, 1:5], rtol=2e-5, atol=2e-6)
    return n


@pytest.mark.parametrize("name", ["ssd-mobilenet", "ssd-resnet34"])
@pytest.mark.parametrize("objects, noise", [(0, 0.5), (3, 1.0), (12, 1.5), (40, 2.5)])
def test_float32_kernels_equal_the_reference(name, objects, noise):
    rng = np.random.default_rng(objects * 10 + int(noise * 10))
    boxes, scores = raw_heads(name, rng, objects, noise)
    n = check(name, ScoreFormat("float32"), scores, scores, boxes)
    if objects >= 12:
        assert n > 0


def test_fp16_class_major_thresholds_on_bits():
    rng = np.random.default_rng(5)
    boxes, scores = raw_heads("ssd-resnet34", rng, 10, 1.5)
    h = scores.astype(np.float16)
    h.reshape(-1)[:50] = np.float16(0.05)  # exactly the threshold's fp16 neighbourhood
    assert check("ssd-resnet34", ScoreFormat("float16"), h, h.astype(np.float32), boxes) > 0


def test_uint8_box_major_thresholds_on_the_raw_byte():
    rng = np.random.default_rng(6)
    boxes, scores = raw_heads("ssd-mobilenet", rng, 10, 1.5)
    scale, zp = 1 / 255, 0
    q = np.clip(np.rint(scores / scale) + zp, 0, 255).astype(np.uint8)
    deq = ((q.astype(np.int64) - zp) * scale).astype(np.float32)
    assert check("ssd-mobilenet", ScoreFormat("uint8", scale, zp), q, deq, boxes) > 0


def test_caps_per_class_and_per_image():
    name = "ssd-mobilenet"
    spec = DETECTION[name]
    anchors = anchors_for(name)
    scores = np.zeros((1917, 91), np.float32)
    scores[:, 5] = np.linspace(0.31, 0.99, 1917)  # every anchor passes in class 5
    scores[:, 9] = 0.5
    boxes = np.zeros((1917, 4), np.float32)  # boxes = anchors: many do not overlap
    n = check(name, ScoreFormat(), scores, scores, boxes)
    assert n == spec.max_per_image
    assert len(anchors) == 1917


def test_boxes_clipped_to_nothing_are_dropped_before_nms():
    """SSD-MobileNet clips like TF's clip_to_window: a box wholly outside [0, 1] is no candidate
    (it neither appears nor suppresses); one partly inside is clipped and kept."""
    name = "ssd-mobilenet"
    anchors = anchors_for(name)
    a = int(np.argmin(np.abs(anchors[:, 0] - 0.5) + np.abs(anchors[:, 1] - 0.5) + np.abs(anchors[:, 2] - 0.1)))
    b = a + 1  # a neighbour, same cell
    boxes = np.zeros((1917, 4), np.float32)
    # Move box A right by 1 + its width from x = 0.5: wholly outside (area 0 once clipped).
    boxes[a, 1] = (1.0 + anchors[a, 3]) / anchors[a, 3] * 10.0
    scores = np.zeros((1917, 91), np.float32)
    scores[a, 7], scores[b, 7] = 0.9, 0.8  # A would outrank B, and it overlaps nothing
    scores[b, 3] = 0.5
    n = check(name, ScoreFormat(), scores, scores, boxes)
    out = np.zeros((100, 7), np.float32)
    NMS(DETECTION[name], anchors, ScoreFormat())(boxes, scores, 0, out)
    assert n == 2 and sorted(out[:n, 6].tolist()) == [3, 7] and out[0, 5] == np.float32(0.8)
