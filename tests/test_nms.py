"""The product's NMS (postprocess/nms.py's NMS, running the engine's C++ kernels of
engine/src/nms.cc) against a plain, obviously correct NumPy implementation.

Both workloads, every score format (float32, fp16 bits, uint8 quantised), realistic heads over a
spread of seeds and noise (up to many detections per image), and the edge cases: every anchor
passing in a class, boxes equal to the anchors, boxes the clip leaves without area, ties, fp16
scores at the threshold and fp16 patterns that are not non-negative numbers. Same rows, same
order: index, score and class exactly, boxes to float32 rounding.
"""

from types import SimpleNamespace

import numpy as np
import pytest

from visionperf import _engine
from visionperf.postprocess import make_postprocess
from visionperf.postprocess.heads import raw_heads
from visionperf.postprocess.nms import NMS, ScoreFormat
from visionperf.postprocess.ssd import anchors_for, decode
from visionperf.workloads import DETECTION, get_workload

WORKLOADS = ["ssd-mobilenet", "ssd-resnet34"]
FORMATS = {  # (dtype, scale, zero_point)
    "float32": ("float32", 1.0, 0),
    "float16": ("float16", 1.0, 0),
    "uint8": ("uint8", 1 / 255, 0),
    "uint8-zp": ("uint8", 1 / 240, 12),
}


def suppressed(b, kept, iou_threshold):
    """`any(iou(b, k) >= thr for k in kept)` with the plain IoU (intersection over union, 0 for
    boxes that do not overlap), the same float32 operations done elementwise over the kept boxes
    at once (so the many-detection cases stay fast)."""
    ih = np.minimum(b[2], kept[:, 2]) - np.maximum(b[0], kept[:, 0])
    iw = np.minimum(b[3], kept[:, 3]) - np.maximum(b[1], kept[:, 1])
    inter = ih * iw
    union = (b[2] - b[0]) * (b[3] - b[1]) + (kept[:, 2] - kept[:, 0]) * (kept[:, 3] - kept[:, 1]) - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where((ih > 0) & (iw > 0), inter / union, np.float32(0))
    return bool(np.any(iou >= iou_threshold))


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
            if not suppressed(decoded[t], decoded[kept], spec.iou_threshold):
                kept.append(t)
            if len(kept) == spec.max_per_class:
                break
        dets += [(-s[order[t]], c, rank, decoded[t]) for rank, t in enumerate(kept)]
    dets.sort(key=lambda d: (d[0], d[1], d[2]))
    return np.array([[qsl_idx, *d[3], -d[0], d[1]] for d in dets[: spec.max_per_image]],
                    np.float32).reshape(-1, 7)


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


def run_nms(name, fmt, raw, boxes, qsl=7):
    """NMS.__call__ as DetectRaw calls it, into an OUT of NaNs: its rows [n, 7]."""
    spec = DETECTION[name]
    out = np.full((spec.max_per_image, 7), np.nan, np.float32)
    n = NMS(spec, anchors_for(name), fmt)(boxes, raw, qsl, out)
    assert 0 <= n <= spec.max_per_image and not np.isnan(out[:n]).any()
    return out[:n]


def check(name, fmt, raw, float_scores, boxes, qsl=7):
    got = run_nms(name, fmt, raw, boxes, qsl)
    ref = reference_nms(name, boxes, float_scores, qsl)
    assert len(got) == len(ref)
    np.testing.assert_array_equal(got[:, [0, 5, 6]], ref[:, [0, 5, 6]])  # idx, score, class exact
    np.testing.assert_allclose(got[:, 1:5], ref[:, 1:5], rtol=2e-5, atol=2e-6)
    return len(got)


# (rng seed, objects, noise): realistic heads, from none to many detections per image
REALISTIC = [(100, 0, 0.5), (203, 3, 1.0), (312, 12, 1.5), (440, 40, 2.5), (560, 60, 3.0), (602, 2, 0.7)]
FLOAT32_ONLY = [(5, 0, 0.5), (40, 3, 1.0), (135, 12, 1.5), (425, 40, 2.5)]


@pytest.mark.parametrize("fmt_key, seed, objects, noise",
                         [(f, *r) for f in ("float32", "float16", "uint8") for r in REALISTIC]
                         + [("uint8-zp", *r) for r in REALISTIC[1:4]]
                         + [("float32", *r) for r in FLOAT32_ONLY])
@pytest.mark.parametrize("name", WORKLOADS)
def test_realistic_heads_equal_the_reference(name, fmt_key, seed, objects, noise):
    rng = np.random.default_rng(seed)
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
    assert len(anchors_for(name)) == A
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
    b = a + 1  # a neighbour, same cell
    boxes = np.zeros((1917, 4), np.float32)
    # Move box A right by 1 + its width from x = 0.5: wholly outside (area 0 once clipped).
    boxes[a, 1] = (1.0 + anchors[a, 3]) / anchors[a, 3] * 10.0
    scores = np.zeros((1917, 91), np.float32)
    scores[a, 7], scores[b, 7] = 0.9, 0.8  # A would outrank B, and it overlaps nothing
    scores[b, 3] = 0.5
    fmt = ScoreFormat()
    assert check(name, fmt, scores, scores, boxes) == 2
    out = run_nms(name, fmt, scores, boxes, 0)
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
    """fp16 scores at the threshold's fp16 neighbours (the threshold's own bits included) pass
    exactly as their float32 values do; -0.0, negative values and NaN patterns never pass (as in
    the reference)."""
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


@pytest.mark.parametrize("name", WORKLOADS)
def test_detect_raw_runs_the_same_nms_per_image_and_in_the_engine(name):
    """DetectRaw's engine spec is its NMS's (built once), and its Python per-batch path gives
    each image NMS.__call__'s rows, at its own row offset."""
    w = get_workload(name)
    post = make_postprocess(w, SimpleNamespace(kind="raw"), score_format=ScoreFormat("float16"))
    assert post.engine_spec() is post.nms.engine_spec(w.num_classes) is post.engine_spec()
    heads = [raw_heads(name, np.random.default_rng(k), 12, 1.5) for k in range(3)]
    boxes = np.stack([b for b, _ in heads])
    scores = np.stack([s for _, s in heads]).astype(np.float16)
    data, offsets, sizes = post([boxes, scores], [4, 9, 2])
    flat = data.view(np.uint8).reshape(-1)
    for k, q in enumerate([4, 9, 2]):
        rows = flat[offsets[k]: offsets[k] + sizes[k]].view(np.float32).reshape(-1, 7)
        ref = run_nms(name, ScoreFormat("float16"), scores[k], boxes[k], q)
        assert len(rows) > 0 and np.array_equal(rows, ref)


def test_new_anchors_rebuild_the_engine_spec():
    name = "ssd-resnet34"
    nms = NMS(DETECTION[name], anchors_for(name))
    before = nms.engine_spec(81)
    assert nms.engine_spec(81) is before  # cached
    nms.anchors = anchors_for(name)[::-1]
    after = nms.engine_spec(81)
    assert after is not before and np.array_equal(after[1]["anchors"], anchors_for(name)[::-1])
    assert after[1]["anchors"].flags.c_contiguous and after[1]["anchors"].dtype == np.float32


def test_repeats_give_the_same_rows():
    """The benchmark's `repeats` (the kernel run R times on one scratch) changes nothing."""
    name = "ssd-resnet34"
    boxes, scores = raw_heads(name, np.random.default_rng(9), 20, 1.5)
    spec = NMS(DETECTION[name], anchors_for(name), ScoreFormat("float16")).engine_spec(81)
    h = scores.astype(np.float16)
    assert _engine.nms_image(spec, boxes, h, 3, repeats=5) == _engine.nms_image(spec, boxes, h, 3)


def test_bad_parameters_and_inputs_are_refused():
    name = "ssd-mobilenet"
    with pytest.raises(ValueError):
        NMS(DETECTION[name], anchors_for(name), ScoreFormat("int8"))
    nms = NMS(DETECTION[name], anchors_for(name), ScoreFormat("float16"))
    kind, d = nms.engine_spec(91)
    boxes, scores = raw_heads(name, np.random.default_rng(0), 1, 1.0)
    out = np.zeros((100, 7), np.float32)
    with pytest.raises(RuntimeError):
        _engine.nms_image((kind, {**d, "score_threshold": -0.1}), boxes, scores.astype(np.float16), 0)
    with pytest.raises(RuntimeError):
        _engine.nms_image((kind, {**d, "num_classes": 90}), boxes, scores.astype(np.float16), 0)
    with pytest.raises(RuntimeError):  # float32 scores where the card emits fp16
        nms(boxes, scores, 0, out)
