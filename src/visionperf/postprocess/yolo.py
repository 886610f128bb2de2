"""YOLO post-processing: Ultralytics' raw head -> the reference's 7-float records, per image.

The algorithm is the MLPerf reference's (`model.predict(conf=0.001)`: Ultralytics'
non_max_suppression, scale_boxes and clip_boxes under PyTorch on the CPU, then
yolo_loadgen.py's records; shared/reference/yolo.md sections 4 and 5), step by step in the
reference's own precision:

1. The head is [4 + C, A] (Ultralytics' export) or its transpose; float16 is converted exactly.
   Rows 0-3 are cx, cy, w, h in letterboxed-input pixels, the rest the C sigmoided class scores.
   A = sum over strides (8, 16, 32) of (in_h / s) * (in_w / s): a rect input has its own A.
2. Per anchor the best class, the first maximum (torch.max); it is a candidate when its score,
   float32, is above float32(score_threshold) (torch compares a float32 tensor with a Python float
   in float32); an anchor with a NaN score never is (the maximum is NaN).
3. Box xyxy in float32: x1 = cx - w / 2, y1 = cy - h / 2, x2 = cx + w / 2, y2 = cy + h / 2.
4. Beyond max_candidates candidates only the best by score are kept (never at 640: A <= 8400).
5. Greedy NMS on the boxes offset by class * class_offset in float32 (the float32 step at class
   79 is 0.0625 px), in descending score order, equal scores by anchor index (as torchvision's
   nms orders them): a candidate is dropped when a kept box has IoU > iou_threshold with it, the
   IoU computed as torchvision's CPU kernel does on the offset boxes (w = max(0, min(x2) -
   max(x1)), inter = w * h, inter / (area_i + area_j - inter), float32, compared in double). The
   first max_per_image kept, in that order. (The reference's predict does not import
   torchvision, so Ultralytics runs its TorchNMS instead: the same detections, except that it
   orders equal scores by torch.argsort, which is unstable and CPU-dependent, and suppresses on a
   NaN IoU, which only zero-area or non-finite boxes give.)
6. scale_boxes: gain = min(in_h / h0, in_w / w0) and pad = round((in - size0 * gain) / 2 - 0.1)
   in Python floats (round half to even); boxes minus float32(pad), divided by float32(gain),
   clamped to [0, w0] and [0, h0].
7. Records [qsl_idx, y1 / h0, x1 / w0, y2 / h0, x2 / w0, score, COCO id] in float32 (the
   divisions float32, as the reference's NumPy float32 / int), in NMS order; none: an empty
   response.

`reference_detections` is these steps in plain NumPy (readable, slow): the tests hold the
engine's C++ kernel (engine/src/yolo_post.cc) to it exactly, and the oracle holds it to
Ultralytics itself. `DetectYolo` is the post-processor the run path uses: the C++ kernel, on the
engine's post-processing threads (engine_spec) or per batch from Python (__call__).
"""

from __future__ import annotations

import numpy as np

from .. import _engine
from ..workloads import YOLO_DETECTION, Workload, YoloDetection

LAYOUTS = ("channels-first", "channels-last")
DTYPES = ("float32", "float16")
_DTYPE_CODES = dict(_engine.DTYPES)


def num_anchors(in_h: int, in_w: int, strides=YOLO_DETECTION.strides) -> int:
    """A of an in_h x in_w input: sum over strides of (in_h / s) * (in_w / s)."""
    for s in strides:
        if in_h % s or in_w % s:
            raise ValueError(f"input {in_h}x{in_w} is not a multiple of stride {s}")
    return sum((in_h // s) * (in_w // s) for s in strides)


def reference_detections(head: np.ndarray, geometry_row, params: YoloDetection = YOLO_DETECTION, *,
                         qsl_idx: int = 0, layout: str | None = None) -> np.ndarray:
    """The reference's detections of one image: float32 [k, 7] rows [qsl_idx, y1/h0, x1/w0,
    y2/h0, x2/w0, score, COCO id], best first (the module docstring's steps).

    head: [4 + C, A] (channels first) or [A, 4 + C], float32 or float16, A of the input size.
    geometry_row: (h0, w0, in_h, in_w): the decoded image's size and the letterboxed input's.
    params: the NMS settings (workloads.YOLO_DETECTION).
    layout: "channels-first" | "channels-last"; None: told by the shape (refused if A = 4 + C).
    """
    h0, w0, in_h, in_w = (int(v) for v in geometry_row)
    A = num_anchors(in_h, in_w, params.strides)
    C = len(params.coco_ids)
    if layout is None:
        if A == 4 + C:
            raise ValueError(f"a {in_h}x{in_w} input has {A} anchors = 4 + C: say the layout")
        layout = "channels-first" if head.shape == (4 + C, A) else "channels-last"
    x = np.asarray(head).astype(np.float32)  # exact from float16
    if layout == "channels-first":
        x = x.T
    if x.shape != (A, 4 + C):
        raise ValueError(f"head of shape {head.shape} is not {layout} for a {in_h}x{in_w} input ({A} anchors)")

    # 2. best class (first maximum; NaN propagates and fails), threshold in float32
    cls_scores = x[:, 4:]
    best = cls_scores.max(axis=1)
    label = cls_scores.argmax(axis=1)
    cand = np.flatnonzero(best > np.float32(params.score_threshold))
    score, label = best[cand], label[cand]

    # 3. xywh -> xyxy (float32)
    xy, half = x[cand, :2], x[cand, 2:4] / np.float32(2)
    boxes = np.concatenate([xy - half, xy + half], axis=1)

    # 4. at most max_candidates, the best (ties by anchor)
    if len(cand) > params.max_candidates:
        top = np.argsort(-score, kind="stable")[:params.max_candidates]
        score, label, boxes = score[top], label[top], boxes[top]

    # 5. greedy NMS on the class-offset boxes, torchvision's arithmetic
    keep = _nms(boxes + (label.astype(np.float32) * np.float32(params.class_offset))[:, None], score,
                params.iou_threshold, params.max_per_image)

    # 6. scale_boxes + clip_boxes
    gain = min(in_h / h0, in_w / w0)
    pad_x = round((in_w - w0 * gain) / 2 - 0.1)
    pad_y = round((in_h - h0 * gain) / 2 - 0.1)
    b = boxes[keep] - np.array([pad_x, pad_y, pad_x, pad_y], np.float32)
    b = b / np.float32(gain)
    for col, hi in ((0, w0), (1, h0), (2, w0), (3, h0)):  # torch's clamp_(0, hi), NaN kept
        v = b[:, col]
        v = np.where(v < 0, np.float32(0), v)
        b[:, col] = np.where(np.float32(hi) < v, np.float32(hi), v)

    # 7. records
    hf, wf = np.float32(h0), np.float32(w0)
    rows = np.empty((len(keep), 7), np.float32)
    rows[:, 0] = np.float32(qsl_idx)
    rows[:, 1], rows[:, 2] = b[:, 1] / hf, b[:, 0] / wf
    rows[:, 3], rows[:, 4] = b[:, 3] / hf, b[:, 2] / wf
    rows[:, 5] = score[keep]
    rows[:, 6] = np.asarray(params.coco_ids, np.float32)[label[keep]]
    return rows


def _nms(boxes: np.ndarray, score: np.ndarray, iou_threshold: float, max_keep: int) -> np.ndarray:
    """torchvision.ops.nms's CPU kernel on float32 BOXES [n, 4] (order: descending score, ties
    by index), stopping at MAX_KEEP kept: the kept indices in order."""
    x1, y1, x2, y2 = (boxes[:, k] for k in range(4))
    area = (x2 - x1) * (y2 - y1)
    order = np.argsort(-score, kind="stable")
    suppressed = np.zeros(len(score), bool)
    keep = []
    zero = np.float32(0)
    with np.errstate(all="ignore"):
        for pos, i in enumerate(order):
            if suppressed[i]:
                continue
            keep.append(i)
            if len(keep) == max_keep:
                break
            rest = order[pos + 1:]
            # std::max(i, j) = i < j ? j : i and std::min(i, j) = j < i ? j : i, as the kernel writes them
            xx1 = np.where(x1[i] < x1[rest], x1[rest], x1[i])
            yy1 = np.where(y1[i] < y1[rest], y1[rest], y1[i])
            xx2 = np.where(x2[rest] < x2[i], x2[rest], x2[i])
            yy2 = np.where(y2[rest] < y2[i], y2[rest], y2[i])
            dw, dh = xx2 - xx1, yy2 - yy1
            w = np.where(zero < dw, dw, zero)
            h = np.where(zero < dh, dh, zero)
            inter = w * h
            ovr = inter / (area[i] + area[rest] - inter)
            suppressed[rest[ovr.astype(np.float64) > iou_threshold]] = True
    return np.asarray(keep, np.int64)


def yolo_params(geometry: np.ndarray, input_size: int, spec: YoloDetection = YOLO_DETECTION,
                layout: str = "channels-first", dtype: str = "float32") -> "_engine.YoloParams":
    """The engine's parameters: SPEC's NMS settings, GEOMETRY int32 [N, 4] (h0, w0, in_h, in_w)
    per QSL index (copied), output rows sized for an input_size x input_size input."""
    if layout not in LAYOUTS:
        raise ValueError(f"YOLO head layout {layout!r}: choose one of {', '.join(LAYOUTS)}")
    if dtype not in DTYPES:
        raise ValueError(f"YOLO head dtype {dtype!r}: choose one of {', '.join(DTYPES)}")
    p = _engine.YoloParams()
    p.num_classes = len(spec.coco_ids)
    p.channels_first = int(layout == "channels-first")
    p.dtype = _DTYPE_CODES[dtype]
    p.max_anchors = num_anchors(input_size, input_size, spec.strides)
    p.score_threshold = spec.score_threshold
    p.iou_threshold = spec.iou_threshold
    p.class_offset = spec.class_offset
    p.max_candidates = spec.max_candidates
    p.max_per_image = spec.max_per_image
    p.strides = list(spec.strides)
    p.class_ids = list(spec.coco_ids)
    p.geometry = np.ascontiguousarray(geometry, dtype=np.int32).reshape(-1, 4)
    return p


class DetectYolo:
    """YOLO post-processing on the host (the engine's C++ kernel, engine/src/yolo_post.cc): on
    the engine's post-processing threads (engine_spec), or per batch from Python (__call__).

    geometry: int32 [N, 4] (h0, w0, in_h, in_w) per QSL index (the cache's geometry.npy).
    layout: the head's, "channels-first" ([84, A], Ultralytics' export) or "channels-last".
    dtype: the head's, "float32" or "float16".
    """

    def __init__(self, workload: Workload, model, geometry: np.ndarray, layout: str = "channels-first",
                 dtype: str = "float32"):
        self.spec = YOLO_DETECTION
        self.workload = workload
        self.outputs = ("output0",)
        self.layout, self.dtype = layout, dtype
        self.params = yolo_params(geometry, workload.input_size, self.spec, layout, dtype)
        self.max_anchors = self.params.max_anchors
        self.max_response_bytes = self.spec.max_per_image * 28
        self._kernel = _engine.YoloNms(self.params)

    def output_shapes(self, batch: int, workload: Workload):
        A, ch = num_anchors(workload.input_size, workload.input_size, self.spec.strides), 4 + len(self.spec.coco_ids)
        shape = (batch, ch, A) if self.layout == "channels-first" else (batch, A, ch)
        return [(shape, np.float32 if self.dtype == "float32" else np.float16)]

    def engine_spec(self):
        """The engine's YOLO kernel with this workload's parameters and geometry."""
        return ("yolo", self.params)

    def __call__(self, outputs, qsl_idx):
        """OUTPUTS[0]: [n, 84, A] or [n, A, 84]: whole output rows (A = max_anchors, each head at
        its row's start), or n heads of one input size. Returns (data, offsets, sizes)."""
        heads = np.ascontiguousarray(outputs[0])
        idx = np.ascontiguousarray(qsl_idx, dtype=np.int64)
        n = len(idx)
        if heads.shape[0] != n:
            raise ValueError(f"YOLO output0 holds {heads.shape[0]} heads for {n} samples")
        if heads[0].size == (4 + len(self.spec.coco_ids)) * self.max_anchors:
            return self._kernel.run_batch(heads.reshape(n, -1), idx)
        data = np.empty((n, self.spec.max_per_image, 7), np.float32)
        sizes = np.empty(n, np.int64)
        for k in range(n):
            sizes[k] = self._kernel(heads[k], int(idx[k]), data[k]) * 28
        return data, np.arange(n, dtype=np.int64) * self.max_response_bytes, sizes
