"""The engine's C++ NMS (engine/src/nms.cc) against the plain NumPy reference of test_nms.py.

Both workloads, every score format (float32, fp16 bits, uint8 quantised), realistic heads over a
spread of seeds and noise (up to many detections per image), and the edge cases: every anchor
passing in a class, boxes equal to the anchors, boxes the clip leaves without area, ties, fp16
scores at the threshold and fp16 patterns that are not non-negative numbers. Same rows, same
order: index, score and class exactly, boxes to float32 rounding (as test_nms.py compares).
"""

import numpy as np
import pytest

from visionperf import _engine
from visionperf.postprocess.heads import raw_heads
from visionperf.postprocess.nms import NMS, ScoreFormat
from visionperf.postprocess.ssd import anchors_for, decode
from visionperf.workloads import DETECTION, get_workload

DTYPE_CODES = {"uint8": 1, "float16": 3, "float32": 4}  # vp_dtype, as _engine.DTYPES
WORKLOADS = ["ssd-mobilenet", "ssd-resnet34"]
FORMATS = {  # (dtype, scale, zero_point)
    "float32": ("float32", 1.0, 0),
    "float16": ("float16", 1.0, 0),
    "uint8": ("uint8", 1 / 255, 0),
    "uint8-zp": ("uint8", 1 / 240, 12),
}


def suppressed(b, kept, iou_threshold):
    """test_nms.py's `any(iou(b, k) >= thr for k in kept)`, the same float32 operations done
    elementwise over the kept boxes at once (so the many-detection cases stay fast)."""
    ih = np.minimum(b[2], kept[:, 2]) - np.maximum(b[0], kept[:, 0])
    iw = np.minimum(b[3], kept[:, 3]) - np.maximum(b[1], kept[:, 1])
    inter = ih * iw
    union = (b[2] - b[0]) * (b[3] - b[1]) + (kept[:, 2] - kept[:, 0]) * (kept[:, 3] - kept[:, 1]) - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where((ih > 0) & (iw > 0), inter / union, np.float32(0))
    return bool(np.any(iou >= iou_threshold))


def reference_nms(name, boxes, scores_f, qsl_idx):
    """test_nms.py's reference (IoU test vectorised, see suppressed). SCORES_F: float scores in the workload's layout; [K, 7] rows."""
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
            if not suppressed(decoded[t], decoded[kept], spec.iou_threshold):
                kept.append(t)
            if len(kept) == spec.max_per_class:
                break
        dets += [(-s[order[t]], c, rank, decoded[t]) for rank, t in enumerate(kept)]
    dets.sort(key=lambda d: (d[0], d[1], d[2]))
    return np.array([[qsl_idx, *d[3], -d[0], d[1]] for d in dets[: spec.max_per_image]],
                    np.float32).reshape(-1, 7)


def engine_spec(name, fmt: ScoreFormat):
    """("nms", {...}) as postprocess.DetectRaw.engine_spec builds it."""
    s = DETECTION[name]
    n = NMS(s, anchors_for(name), fmt)
    return ("nms", {
        "class_major": int(s.layout == "class-major"), "num_anchors": s.num_anchors,
        "num_classes": get_workload(name).num_classes, "score_dtype": DTYPE_CODES[fmt.dtype],
        "box_dtype": DTYPE_CODES["float32"], "score_threshold": s.score_threshold,
        "iou_threshold": s.iou_threshold, "max_candidates": s.max_candidates_per_class,
        "max_per_class": s.max_per_class, "max_per_image": s.max_per_image,
        "perm": [int(v) for v in n.perm], "inv_scales": [float(v) for v in n.inv_scales],
        "clip": int(s.clip_boxes), "uint8_scale": float(fmt.scale),
        "uint8_zero_point": float(fmt.zero_point), "anchors": n.anchors})


def in_format(scores, fmt_key):
    """(format, raw scores as the card emits them, their float32 values)."""
    dtype, scale, zp = FORMATS[fmt_key]
    fmt = ScoreFormat(dtype, scale, zp)
    if dtype == "float16":
        raw = scores.astype(np.float16)
        return fmt, raw, raw.astype(np.float32)
    if dtype == "uint8":
        raw = np.clip(np.rint(scores / scale) + zp, 0, 255).astype(np.uint8)
        return fmt, raw, ((raw.astype(np.int64) - zp) * scale).astype(np.float32)
    return fmt, scores, scores


def check(name, fmt, raw, float_scores, boxes, qsl=7):
    got = np.asarray(_engine.nms_image(engine_spec(name, fmt), boxes, raw, qsl), np.float32).reshape(-1, 7)
    ref = reference_nms(name, boxes, float_scores, qsl)
    assert len(got) == len(ref)
    np.testing.assert_array_equal(got[:, [0, 5, 6]], ref[:, [0, 5, 6]])  # idx, score, class exact
    np.testing.assert_allclose(got[:, 1:5], ref[:, 1:5], rtol=2e-5, atol=2e-6)
    return len(got)


REALISTIC = [(1, 0, 0.5), (2, 3, 1.0), (3, 12, 1.5), (4, 40, 2.5), (5, 60, 3.0), (6, 2, 0.7)]


@pytest.mark.parametrize("fmt_key, seed, objects, noise",
                         [(f, *r) for f in ("float32", "float16", "uint8") for r in REALISTIC]
                         + [("uint8-zp", *r) for r in REALISTIC[1:4]])
@pytest.mark.parametrize("name", WORKLOADS)
def test_realistic_heads_equal_the_reference(name, fmt_key, seed, objects, noise):
    rng = np.random.default_rng(seed * 100 + objects)
    boxes, scores = raw_heads(name, rng, objects, noise)
    fmt, raw, f = in_format(scores, fmt_key)
    n = check(name, fmt, raw, f, boxes, qsl=seed)
    if objects >= 12:
        assert n > 0
    if objects >= 40:  # many detections: the per-image cap is reached
        assert n == DETECTION[name].max_per_image


@pytest.mark.parametrize("fmt_key", list(FORMATS))
@pytest.mark.parametrize("name", WORKLOADS)
def test_every_anchor_passing_boxes_equal_anchors(name, fmt_key):
    """A class where every anchor passes (distinct scores), one where every anchor ties, zero
    encodings (boxes = anchors: many do not overlap), and both caps reached."""
    spec = DETECTION[name]
    A, C = spec.num_anchors, get_workload(name).num_classes
    f = np.zeros((A, C), np.float32)
    f[:, 0] = 0.9
    f[:, 5] = np.linspace(0.31, 0.99, A)
    f[:, 9] = 0.5
    f[::7, 11] = 0.75
    boxes = np.zeros((A, 4), np.float32)
    if spec.layout == "class-major":
        f, boxes = np.ascontiguousarray(f.T), np.ascontiguousarray(boxes.T)
    fmt, raw, fs = in_format(f, fmt_key)
    assert check(name, fmt, raw, fs, boxes) == spec.max_per_image


def test_boxes_clipped_to_nothing_are_dropped_before_nms():
    """SSD-MobileNet clips like TF's clip_to_window: a box wholly outside [0, 1] is no candidate
    (it neither appears nor suppresses); one partly inside is clipped and kept."""
    name = "ssd-mobilenet"
    anchors = anchors_for(name)
    a = int(np.argmin(np.abs(anchors[:, 0] - 0.5) + np.abs(anchors[:, 1] - 0.5) + np.abs(anchors[:, 2] - 0.1)))
    b = a + 1
    boxes = np.zeros((1917, 4), np.float32)
    boxes[a, 1] = (1.0 + anchors[a, 3]) / anchors[a, 3] * 10.0  # wholly right of the image
    scores = np.zeros((1917, 91), np.float32)
    scores[a, 7], scores[b, 7] = 0.9, 0.8
    scores[b, 3] = 0.5
    fmt = ScoreFormat()
    assert check(name, fmt, scores, scores, boxes) == 2
    out = np.asarray(_engine.nms_image(engine_spec(name, fmt), boxes, scores, 0), np.float32).reshape(-1, 7)
    assert sorted(out[:, 6].tolist()) == [3, 7] and out[0, 5] == np.float32(0.8)


@pytest.mark.parametrize("fmt_key", ["float32", "float16", "uint8"])
def test_many_boxes_clipped_away(fmt_key):
    """Half the anchors pushed off the image in every direction, many classes passing."""
    name = "ssd-mobilenet"
    rng = np.random.default_rng(11)
    boxes, scores = raw_heads(name, rng, 30, 2.0)
    boxes[::2, :2] += rng.choice([-40.0, 40.0], (len(boxes[::2]), 2)).astype(np.float32)
    boxes[1::3, 2:] += 4.0  # huge boxes: clipped to the whole image
    fmt, raw, f = in_format(scores, fmt_key)
    assert check(name, fmt, raw, f, boxes) > 0


@pytest.mark.parametrize("name", WORKLOADS)
def test_fp16_at_the_threshold_and_not_numbers(name):
    """fp16 scores at the threshold's fp16 neighbours pass exactly as their float32 values do;
    -0.0, negative values and NaN patterns never pass (as in the reference)."""
    spec = DETECTION[name]
    rng = np.random.default_rng(5)
    boxes, scores = raw_heads(name, rng, 10, 1.5)
    h = scores.astype(np.float16)
    bits = h.reshape(-1).view(np.uint16)
    t = np.float16(spec.score_threshold).view(np.uint16)
    near = np.array([t - 1, t, t + 1], np.uint16)
    bits[:60] = np.tile(near, 20)
    bits[60:80] = 0x8000  # -0.0
    bits[80:100] = np.float16(-0.7).view(np.uint16)
    bits[100:120] = 0x7E00  # NaN
    bits[120:125] = 0x7C00  # +inf passes, as in the reference
    h = bits.view(np.float16).reshape(h.shape)
    fmt = ScoreFormat("float16")
    assert check(name, fmt, h, h.astype(np.float32), boxes) > 0


def test_repeats_give_the_same_rows():
    name = "ssd-resnet34"
    boxes, scores = raw_heads(name, np.random.default_rng(9), 20, 1.5)
    spec = engine_spec(name, ScoreFormat("float16"))
    h = scores.astype(np.float16)
    assert _engine.nms_image(spec, boxes, h, 3, repeats=5) == _engine.nms_image(spec, boxes, h, 3)


def test_bad_parameters_are_refused():
    name = "ssd-mobilenet"
    kind, d = engine_spec(name, ScoreFormat("float16"))
    boxes, scores = raw_heads(name, np.random.default_rng(0), 1, 1.0)
    with pytest.raises(RuntimeError):
        _engine.nms_image((kind, {**d, "score_threshold": -0.1}), boxes, scores.astype(np.float16), 0)
    with pytest.raises(RuntimeError):
        _engine.nms_image((kind, {**d, "num_classes": 90}), boxes, scores.astype(np.float16), 0)
