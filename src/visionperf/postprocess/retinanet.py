"""RetinaNet (MLPerf's ResNeXt50-32x4d FPN, 800x800) anchors, box decoding and the NumPy
reference of its post-processing, exactly as torchvision's (and MLCommons training's) code.

Anchors: torchvision's AnchorGenerator for levels P3..P7 (grids 100/50/25/13/7 at 800x800):
stride = 800 // grid (8, 16, 32, 61, 114: not 64 and 128), sizes (s, int(s 2^(1/3)),
int(s 2^(2/3))) for s = 32..512, aspect ratios h/w (0.5, 1, 2); base anchors
round([-w, -h, w, h] / 2) in float32 with round-half-to-even (torch.round), ratio-major then
size; centres arange(grid) * stride with no half-stride offset; order (y, x, anchor) per level,
levels concatenated. Heads emit their [N, H*W*9, K] rows in the same order.

Post-processing (RetinaNet.postprocess_detections): per level, sigmoid scores > 0.05, the top
1000 by score, decoded against their anchors (BoxCoder weights (1, 1, 1, 1), dw and dh clamped
at log(1000/16)) and clipped to [0, 800]; then over all levels, per-class greedy NMS suppressing
at IoU > 0.5, sorted by score, the first 300.

Where torchvision leaves the order of equal scores to its sort, this code and the engine's kernel
(engine/src/nms.cc, retinanet_image) fix it: candidates are ordered by logit (descending), then
by flat index anchor * K + class (ascending), which is also the order of the scores wherever they
differ. The threshold is applied to the logit, `logit > logit_threshold(0.05)`: the largest
float32 whose sigmoid (in float64) is not above 0.05, so it is the same test as
`sigmoid(logit) > 0.05` for every float32 logit, and only survivors are turned into scores.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from ..workloads import DETECTION, Detection

GRIDS = (100, 50, 25, 13, 7)  # P3..P7 at 800x800: ceil(800 / 2^l)
BASE_SIZES = (32, 64, 128, 256, 512)
RATIOS = (0.5, 1.0, 2.0)  # h / w
IMAGE = 800


def level_sizes(base: int) -> tuple[int, int, int]:
    """(s, int(s 2^(1/3)), int(s 2^(2/3))): truncated, as the reference's int() does."""
    return (base, int(base * 2 ** (1 / 3)), int(base * 2 ** (2 / 3)))


def base_anchors(base: int) -> np.ndarray:
    """[9, 4] float32 (x1, y1, x2, y2) around (0, 0): ratio-major, size-minor, rounded half to even."""
    scales = np.asarray(level_sizes(base), np.float32)
    ratios = np.asarray(RATIOS, np.float32)
    h_ratios = np.sqrt(ratios)
    w_ratios = np.float32(1) / h_ratios
    ws = (w_ratios[:, None] * scales[None, :]).reshape(-1)
    hs = (h_ratios[:, None] * scales[None, :]).reshape(-1)
    return np.round(np.stack([-ws, -hs, ws, hs], axis=1) / np.float32(2)).astype(np.float32)  # half to even


@lru_cache(maxsize=None)
def retinanet_anchors_xyxy() -> np.ndarray:
    """[120087, 4] float32 (x1, y1, x2, y2) in pixels of the 800x800 input, in head order."""
    out = []
    for grid, base in zip(GRIDS, BASE_SIZES):
        stride = IMAGE // grid
        shifts = np.arange(grid, dtype=np.int64) * stride
        sy, sx = np.meshgrid(shifts, shifts, indexing="ij")
        sx, sy = sx.reshape(-1), sy.reshape(-1)
        shift = np.stack([sx, sy, sx, sy], axis=1).astype(np.float32)
        out.append((shift[:, None, :] + base_anchors(base)[None, :, :]).reshape(-1, 4))
    return np.concatenate(out).astype(np.float32)


@lru_cache(maxsize=None)
def retinanet_anchors() -> np.ndarray:
    """The same anchors as (cy, cx, h, w) pixels, float32, the layout the engine's kernels take.
    Exact: widths and heights are integers and centres x1 + 0.5 w halves, as torchvision makes them."""
    a = retinanet_anchors_xyxy()
    w, h = a[:, 2] - a[:, 0], a[:, 3] - a[:, 1]
    return np.stack([a[:, 1] + np.float32(0.5) * h, a[:, 0] + np.float32(0.5) * w, h, w], axis=1).astype(np.float32)


def level_ranges(spec: Detection) -> list[tuple[int, int]]:
    """[(first anchor, end anchor)] of each level."""
    ends = np.cumsum(spec.level_anchors)
    return [(int(e - n), int(e)) for n, e in zip(spec.level_anchors, ends)]


def logit_threshold(score_threshold: float) -> np.float32:
    """The largest float32 x with sigmoid(x) <= SCORE_THRESHOLD (sigmoid in float64), so that
    `logit > it` is `sigmoid(logit) > SCORE_THRESHOLD` for every float32 logit."""
    def sig(x):
        return 1.0 / (1.0 + math.exp(-float(x)))

    t = np.float32(math.log(score_threshold / (1.0 - score_threshold)))
    while sig(t) > score_threshold:
        t = np.nextafter(t, np.float32(-np.inf))
    while sig(np.nextafter(t, np.float32(np.inf))) <= score_threshold:
        t = np.nextafter(t, np.float32(np.inf))
    return np.float32(t)


def sigmoid(x: np.ndarray) -> np.ndarray:
    """float32 scores from logits, computed in float64 (as the engine does) and rounded once."""
    return (1.0 / (1.0 + np.exp(-np.asarray(x, np.float64)))).astype(np.float32)


def decode(rel: np.ndarray, anchors_yxhw: np.ndarray, exp_clip: float, size: float) -> np.ndarray:
    """torchvision BoxCoder.decode_single, weights (1, 1, 1, 1), then clip_boxes_to_image.

    REL [n, 4] (dx, dy, dw, dh), anchors [n, 4] (cy, cx, h, w) -> [n, 4] (ymin, xmin, ymax, xmax)
    pixels, float32: cx' = dx w + cx, w' = exp(min(dw, clip)) w, corners cx' -+ 0.5 w', clipped to
    [0, SIZE]."""
    r = rel.astype(np.float32)
    a = anchors_yxhw.astype(np.float32)
    clip = np.float32(exp_clip)
    cx = r[:, 0] * a[:, 3] + a[:, 1]
    cy = r[:, 1] * a[:, 2] + a[:, 0]
    w = np.exp(np.minimum(r[:, 2], clip)) * a[:, 3]
    h = np.exp(np.minimum(r[:, 3], clip)) * a[:, 2]
    half = np.float32(0.5)
    out = np.stack([cy - half * h, cx - half * w, cy + half * h, cx + half * w], axis=1)
    return np.clip(out, np.float32(0), np.float32(size)).astype(np.float32)


def candidates(logits: np.ndarray, spec: Detection, thr: np.float32) -> tuple[np.ndarray, np.ndarray]:
    """Per level, the flat indices (anchor * K + class) of the logits above THR, the best
    max_candidates_per_class of each level by (logit descending, index ascending); all levels
    concatenated in level order. Returns (flat indices int64, their float32 logits)."""
    K = logits.shape[1]
    idx_all, val_all = [], []
    for a0, a1 in level_ranges(spec):
        flat = logits[a0:a1].reshape(-1)
        cand = np.flatnonzero(flat > thr)  # ascending index
        vals = flat[cand].astype(np.float32)
        order = np.argsort(-vals, kind="stable")[: spec.max_candidates_per_class]
        idx_all.append(cand[order] + a0 * K)
        val_all.append(vals[order])
    return np.concatenate(idx_all), np.concatenate(val_all)


def _ious(b: np.ndarray, others: np.ndarray) -> np.ndarray:
    """IoU of box B with each of OTHERS, float32, 0 for boxes that do not overlap (the kernel's ops)."""
    ih = np.minimum(b[2], others[:, 2]) - np.maximum(b[0], others[:, 0])
    iw = np.minimum(b[3], others[:, 3]) - np.maximum(b[1], others[:, 1])
    inter = ih * iw
    union = (b[2] - b[0]) * (b[3] - b[1]) + (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1]) - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where((ih > 0) & (iw > 0) & (union > 0), inter / union, np.float32(0))


def reference_detections(bbox_regression: np.ndarray, cls_logits: np.ndarray, qsl_idx: float,
                         spec: Detection | None = None, anchors: np.ndarray | None = None) -> np.ndarray:
    """The whole post-processing of one image in vectorised NumPy: raw heads (regression [A, 4],
    logits [A, K], float32 or fp16) -> rows [qsl_idx, ymin, xmin, ymax, xmax, score, label], boxes
    normalised by the input size, at most max_per_image of them, best first."""
    spec = spec or DETECTION["retinanet"]
    anchors = retinanet_anchors() if anchors is None else anchors
    K = cls_logits.shape[1]
    logits = cls_logits if cls_logits.dtype == np.float32 else cls_logits.astype(np.float32)
    idx, vals = candidates(logits, spec, logit_threshold(spec.score_threshold))
    order = np.argsort(-vals, kind="stable")  # (logit desc, level, index): (logit desc, index)
    idx, vals = idx[order], vals[order]
    anchor, label = idx // K, idx % K
    boxes = decode(bbox_regression[anchor], anchors[anchor], spec.box_exp_clip, spec.image_size)
    keep = np.zeros(len(idx), bool)
    for c in np.unique(label):  # greedy NMS per class, in the global order
        members = np.flatnonzero(label == c)
        b = boxes[members]
        alive = np.ones(len(members), bool)
        kept = 0
        for t in range(len(members)):
            if not alive[t]:
                continue
            keep[members[t]] = True
            kept += 1
            if kept == spec.max_per_image:  # no class can give more than the image keeps
                break
            iou = _ious(b[t], b[t + 1:])
            alive[t + 1:] &= ~(iou > spec.iou_threshold if spec.iou_strict else iou >= spec.iou_threshold)
    top = np.flatnonzero(keep)[: spec.max_per_image]
    s = np.float32(spec.image_size)
    return np.column_stack([np.full(len(top), qsl_idx, np.float32), boxes[top] / s, sigmoid(vals[top]),
                            label[top].astype(np.float32)]).astype(np.float32).reshape(-1, 7)
