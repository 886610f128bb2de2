"""NMS on the host, one kernel per output layout (the paper's section II-F), in numba.

Hand-written because this is the part that must never limit a card: the paper's budgets are
51.6 us per image for SSD-MobileNet and 2.3 ms for SSD-ResNet34. The tricks, all from there:

* threshold on the raw score first (float32, uint8 quantised, or fp16 bit patterns, which are
  monotone for non-negative values), in a fixed-length loop that vectorises, and decode only the
  boxes that survive;
* class-major scores [C, A] (SSD-ResNet34) are walked class by class, box-major scores [A, C]
  (SSD-MobileNet) anchor by anchor after a vectorised per-anchor max, so neither is transposed;
* kernels are `nogil`, so post-processing threads run beside the device threads.

The algorithm, identical for both layouts and equal detection for detection to the NumPy
reference in the tests: per class 1..C-1, candidates are the boxes whose score > threshold,
ordered by score (descending; ties by anchor index), decoded (and, where the workload clips,
clipped to [0, 1] with the boxes left without area dropped), the first `max_candidates` of them;
greedy: walk them in order, keep a box unless a kept box of that class has IoU >= the IoU
threshold with it, stop at `max_per_class`; then over all classes the `max_per_image` best by
score (ties by class, then rank). Output rows: [qsl_idx, ymin, xmin, ymax, xmax, score, class].
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
from numba import njit

from ..workloads import Detection


@njit(inline="always")
def _load_direct(row, lut, i):
    return np.float32(row[i])


@njit(inline="always")
def _load_lut(row, lut, i):
    return lut[row[i]]


# Clipping (Detection.clip_boxes), decided from the graph each official model was exported from:
#
# * SSD-MobileNet-v1 (ssd_mobilenet_v1_coco_2018_01_28, TF Object Detection API of early 2018)
#   clips, before NMS, and drops what the clip leaves without area:
#   - meta_architectures/ssd_meta_arch.py, SSDMetaArch.postprocess: the decoded boxes go to
#     self._non_max_suppression_fn(..., clip_window=self._compute_clip_window(preprocessed_images,
#     true_image_shapes)); _compute_clip_window is [0, 0, 1, 1] here (fixed_shape_resizer 300x300:
#     the true image fills the input).
#   - core/post_processing.py, multiclass_non_max_suppression, per class:
#     box_list_ops.filter_greater_than(boxlist, score_thresh), then
#     box_list_ops.clip_to_window(boxlist, clip_window), then tf.image.non_max_suppression on the
#     clipped boxes (so IoU is computed on clipped boxes too).
#   - core/box_list_ops.py, clip_to_window(boxlist, window, filter_nonoverlapping=True): clamps
#     each coordinate into the window, then keeps only boxes with area(clipped) > 0.
#   The kernels do the same: clip on decode, skip a zero-area box before it becomes a candidate.
#   TF's NMS op (core/kernels/non_max_suppression_op.cc, IOUGreaterThanThreshold) suppresses at
#   IoU > threshold where these kernels (and the PyTorch reference) suppress at IoU >= threshold;
#   the two differ only when a float32 IoU equals 0.6 exactly, as does its unstable std::sort on
#   tied scores (ties here: by anchor index). Neither is changed.
# * SSD-ResNet34 (the MLPerf PyTorch reference, Encoder.decode_batch / scale_back_batch) never
#   clips, and neither do these kernels for it. (The MLPerf repository's PyTorch port of
#   SSD-MobileNet, python/models/utils.py decode_boxes, does not clip either: it is a port, and
#   the official model is the TF graph, whose post-processing does.)


@njit(nogil=True, fastmath=True, inline="always")
def _has_area(b):
    """TF clip_to_window's filter: area(clipped box) > 0."""
    return (b[2] - b[0]) * (b[3] - b[1]) > np.float32(0.0)


@njit(nogil=True, fastmath=True, inline="always")
def _decode_one(enc, a, perm, inv_scales, clip, out):
    """Encoded box -> (ymin, xmin, ymax, xmax); ENC indexable by perm[0..3] = (ty, tx, th, tw)."""
    cy = enc[perm[0]] * inv_scales[0] * a[2] + a[0]
    cx = enc[perm[1]] * inv_scales[1] * a[3] + a[1]
    h = np.exp(enc[perm[2]] * inv_scales[2]) * a[2]
    w = np.exp(enc[perm[3]] * inv_scales[3]) * a[3]
    out[0] = cy - np.float32(0.5) * h
    out[1] = cx - np.float32(0.5) * w
    out[2] = cy + np.float32(0.5) * h
    out[3] = cx + np.float32(0.5) * w
    if clip:
        for k in range(4):
            out[k] = min(max(out[k], np.float32(0.0)), np.float32(1.0))


@njit(nogil=True, fastmath=True, inline="always")
def _iou(b, c):
    ih = min(b[2], c[2]) - max(b[0], c[0])
    iw = min(b[3], c[3]) - max(b[1], c[1])
    if ih <= 0 or iw <= 0:  # clamped: disjoint boxes never overlap (the reference's trap)
        return np.float32(0.0)
    inter = ih * iw
    union = (b[2] - b[0]) * (b[3] - b[1]) + (c[2] - c[0]) * (c[3] - c[1]) - inter
    return inter / union if union > 0 else np.float32(0.0)


@njit(nogil=True, fastmath=True)
def _greedy(order, boxes, iou_thr, max_keep, keep):
    """Walk candidates in ORDER; returns how many it kept (their positions in KEEP)."""
    n = 0
    for r in range(order.shape[0]):
        j = order[r]
        ok = True
        for t in range(n):
            if _iou(boxes[keep[t]], boxes[j]) >= iou_thr:
                ok = False
                break
        if ok:
            keep[n] = j
            n += 1
            if n == max_keep:
                break
    return n


@njit(nogil=True, inline="always")
def _append(kept, scores, boxes, c, all_scores, all_boxes, all_cls, count, ranked=False):
    """Add one class's kept boxes to the image's list. SCORES is indexed by the kept entries,
    or by rank when RANKED."""
    for t in range(kept.shape[0]):
        all_scores[count] = scores[t] if ranked else scores[kept[t]]
        all_boxes[count] = boxes[kept[t]]
        all_cls[count] = c
        count += 1
    return count


@njit(nogil=True)
def _finish(all_scores, all_boxes, all_cls, count, qsl_idx, max_out, out):
    order = np.argsort(-all_scores[:count], kind="mergesort")
    m = min(count, max_out)
    for r in range(m):
        k = order[r]
        out[r, 0] = qsl_idx
        out[r, 1] = all_boxes[k, 0]
        out[r, 2] = all_boxes[k, 1]
        out[r, 3] = all_boxes[k, 2]
        out[r, 4] = all_boxes[k, 3]
        out[r, 5] = all_scores[k]
        out[r, 6] = all_cls[k]
    return m


BLOCK = 16  # scores tested per vectorised block before a branchy scan of the block


@njit(nogil=True, fastmath=True, inline="always")
def _collect(row, raw_thr, idx):
    """Indices of ROW above RAW_THR into IDX, in order; returns how many.

    Hits are sparse, so each block of 16 is first counted branch-free (this vectorises) and
    only a block with a hit is scanned element by element.
    """
    A = row.shape[0]
    k = 0
    full = A - A % BLOCK
    for b0 in range(0, full, BLOCK):
        cnt = 0
        for i in range(b0, b0 + BLOCK):
            cnt += row[i] > raw_thr
        if cnt:
            for i in range(b0, b0 + BLOCK):
                if row[i] > raw_thr:
                    idx[k] = i
                    k += 1
    for i in range(full, A):
        if row[i] > raw_thr:
            idx[k] = i
            k += 1
    return k


def _make_class_major(load):
    @njit(nogil=True, fastmath=True)
    def kernel(scores, lut, raw_thr, locs, anchors, perm, inv_scales, clip, iou_thr,
               max_cand, max_per_class, max_out, qsl_idx, out, scratch):
        idx, vals, boxes, cand_scores, keep, all_scores, all_boxes, all_cls, enc = scratch
        C, A = scores.shape
        count = 0
        for c in range(1, C):
            row = scores[c]
            hits = _collect(row, raw_thr, idx)
            if hits == 0:
                continue
            for t in range(hits):
                vals[t] = load(row, lut, idx[t])
            order = np.argsort(-vals[:hits], kind="mergesort")
            n = 0
            for t in range(hits):
                i = idx[order[t]]
                for q in range(4):
                    enc[q] = locs[q, i]
                _decode_one(enc, anchors[i], perm, inv_scales, clip, boxes[n])
                if clip and not _has_area(boxes[n]):
                    continue  # clipped away: never a candidate (TF clip_to_window)
                cand_scores[n] = vals[order[t]]
                keep[n] = n
                n += 1
                if n == max_cand:
                    break
            kept = _greedy(keep[:n].copy(), boxes, iou_thr, max_per_class, keep)
            count = _append(keep[:kept], cand_scores, boxes, c, all_scores, all_boxes, all_cls, count)
        return _finish(all_scores, all_boxes, all_cls, count, qsl_idx, max_out, out)

    return kernel


def _make_box_major(load):
    @njit(nogil=True, fastmath=True)
    def kernel(scores, lut, raw_thr, enc, anchors, perm, inv_scales, clip, iou_thr,
               max_cand, max_per_class, max_out, qsl_idx, out, scratch):
        lists, counts, decoded, boxes, vals, keep, all_scores, all_boxes, all_cls = scratch
        A, C = scores.shape
        counts[:] = 0
        # One pass: count each anchor's passing classes branch-free (vectorises); only the
        # few live anchors are walked class by class, filling one list per class.
        for a in range(A):
            row = scores[a]
            hit = False
            for c in range(1, C):
                hit |= row[c] > raw_thr  # an OR-reduction stays in the scores' lane width
            if hit:
                decoded[a] = False
                for c in range(1, C):
                    if row[c] > raw_thr:
                        lists[c, counts[c]] = a
                        counts[c] += 1
        count = 0
        for c in range(1, C):
            n = counts[c]
            if n == 0:
                continue
            for t in range(n):
                vals[t] = load(scores[lists[c, t]], lut, c)
            order = np.argsort(-vals[:n], kind="mergesort")
            cand = np.empty(min(n, max_cand), np.int64)
            m = 0
            for t in range(n):
                a = lists[c, order[t]]
                if not decoded[a]:  # an anchor is decoded once, whatever classes it passes in
                    _decode_one(enc[a], anchors[a], perm, inv_scales, clip, boxes[a])
                    decoded[a] = True
                if clip and not _has_area(boxes[a]):
                    continue  # clipped away: never a candidate (TF clip_to_window)
                cand[m] = a
                m += 1
                if m == max_cand:
                    break
            kept = _greedy(cand[:m], boxes, iou_thr, max_per_class, keep)
            for t in range(kept):  # the kept anchors' scores in this class, in rank order
                vals[t] = load(scores[keep[t]], lut, c)
            count = _append(keep[:kept], vals, boxes, c, all_scores, all_boxes, all_cls, count, True)
        return _finish(all_scores, all_boxes, all_cls, count, qsl_idx, max_out, out)

    return kernel


_KERNELS: dict = {}


def _kernel(layout: str, lut: bool):
    key = (layout, lut)
    if key not in _KERNELS:
        load = _load_lut if lut else _load_direct
        _KERNELS[key] = (_make_class_major if layout == "class-major" else _make_box_major)(load)
    return _KERNELS[key]


_FP16_LUT: np.ndarray | None = None


def fp16_lut() -> np.ndarray:
    global _FP16_LUT
    if _FP16_LUT is None:
        _FP16_LUT = np.arange(65536, dtype=np.uint32).astype(np.uint16).view(np.float16).astype(np.float32)
    return _FP16_LUT


@dataclass
class ScoreFormat:
    """How raw scores are stored: float32, fp16, or affine-quantised uint8."""

    dtype: str = "float32"  # "float32" | "float16" | "uint8"
    scale: float = 1.0  # uint8 only: value = (q - zero_point) * scale
    zero_point: int = 0


class NMS:
    """Decode + NMS for one workload and one score format; call per image."""

    def __init__(self, spec: Detection, anchors: np.ndarray, fmt: ScoreFormat = ScoreFormat()):
        self.spec = spec
        self.anchors = np.ascontiguousarray(anchors, np.float32)
        self.fmt = fmt
        self.perm = np.array((0, 1, 2, 3) if spec.encoding == "yxhw" else (1, 0, 3, 2), np.int64)
        self.inv_scales = (1.0 / np.asarray(spec.box_coder_scales, np.float64)).astype(np.float32)
        self.iou_thr = np.float32(spec.iou_threshold)
        thr = spec.score_threshold
        if fmt.dtype == "float32":
            self.lut, self.raw_thr = np.zeros(1, np.float32), np.float32(thr)
        elif fmt.dtype == "float16":
            # fp16 bit patterns of non-negative numbers order like their values, so "score >
            # thr" is "bits > bits of the largest fp16 not above thr" (0x2A66 for 0.05).
            self.lut = fp16_lut()
            bits = int(np.float16(thr).view(np.uint16))
            if float(np.float16(thr)) > thr:
                bits -= 1
            self.raw_thr = np.uint16(bits)
        elif fmt.dtype == "uint8":
            self.lut = ((np.arange(256) - fmt.zero_point) * fmt.scale).astype(np.float32)
            passing = np.nonzero(self.lut > thr)[0]
            self.raw_thr = np.uint8(passing[0] - 1 if len(passing) else 255)
        else:
            raise ValueError(f"unsupported score dtype {fmt.dtype}")
        self.kernel = _kernel(spec.layout, fmt.dtype != "float32")
        self._local = threading.local()  # scratch buffers: one set per post-processing thread

    def _scratch(self, A: int, C: int):
        """Preallocated per thread: fresh large buffers per image would page-fault every call."""
        sc = getattr(self._local, "scratch", None)
        if sc is None:
            s = self.spec
            cap = (C - 1) * s.max_per_class
            tail = (np.empty(cap, np.float32), np.empty((cap, 4), np.float32), np.empty(cap, np.float32))
            if s.layout == "class-major":
                m = s.max_candidates_per_class
                sc = (np.empty(A, np.int64), np.empty(A, np.float32), np.empty((m, 4), np.float32),
                      np.empty(m, np.float32), np.empty(m, np.int64), *tail, np.empty(4, np.float32))
            else:
                sc = (np.empty((C, A), np.int32), np.zeros(C, np.int64), np.zeros(A, np.bool_),
                      np.empty((A, 4), np.float32), np.empty(A, np.float32), np.empty(A, np.int64), *tail)
            self._local.scratch = sc
        return sc

    def compile(self, num_classes: int) -> None:
        """JIT-compile the kernel for this score format (seconds) on an all-zero image."""
        s = self.spec
        A = s.num_anchors
        dtype = {"float32": np.float32, "float16": np.float16, "uint8": np.uint8}[self.fmt.dtype]
        shape = (num_classes, A) if s.layout == "class-major" else (A, num_classes)
        boxes = np.zeros((4, A) if s.layout == "class-major" else (A, 4), np.float32)
        self(boxes, np.zeros(shape, dtype), 0, np.zeros((s.max_per_image, 7), np.float32))

    def raw_view(self, scores: np.ndarray) -> np.ndarray:
        return scores.view(np.uint16) if self.fmt.dtype == "float16" else scores

    def __call__(self, boxes: np.ndarray, scores: np.ndarray, qsl_idx: int, out: np.ndarray) -> int:
        """BOXES: encodings ([4, A] class-major or [A, 4] box-major); SCORES: raw, this
        workload's layout. Writes detections into OUT [max_per_image, 7]; returns how many."""
        s = self.spec
        raw = self.raw_view(scores)
        C, A = raw.shape if s.layout == "class-major" else raw.shape[::-1]
        return self.kernel(raw, self.lut, self.raw_thr, boxes, self.anchors, self.perm,
                           self.inv_scales, s.clip_boxes, self.iou_thr, s.max_candidates_per_class,
                           s.max_per_class, s.max_per_image, np.float32(qsl_idx), out, self._scratch(A, C))
