"""Host post-processing: model outputs of one batch -> MLPerf response bytes per sample.

A post-processor returns (data, offsets, sizes): sample k's response is the SIZES[k] bytes at
byte OFFSETS[k] of the contiguous array DATA, which must stay alive until LoadGen's
QuerySamplesComplete returns (the SUT keeps it referenced until then).
"""

from __future__ import annotations

import numpy as np

from ..workloads import DETECTION, Workload
from .classify import labels_from_output


class Classify:
    def __init__(self, workload: Workload, model):
        self.outputs = (model.output_name,)
        self.offset = workload.label_offset
        self.workload = workload
        self._layout: dict[int, tuple] = {}  # batch rows -> (offsets, sizes), made once

    def __call__(self, outputs, qsl_idx):
        n = len(qsl_idx)
        labels = labels_from_output(outputs[0], n, self.offset)
        layout = self._layout.get(n)
        if layout is None:
            layout = self._layout[n] = (np.arange(n, dtype=np.int64) * 4, np.full(n, 4, np.int64))
        return labels, *layout

    def engine_spec(self):
        shape, dtype = self.output_shapes(1, self.workload)[0]
        from ..sut import tensor
        return ("classify", tensor(dtype, shape[1:]), self.offset)

    def output_shapes(self, batch: int, workload: Workload):
        if self.outputs[0].lower().startswith("argmax"):
            return [((batch,), np.int64)]
        return [((batch, workload.num_classes), np.float32)]


class DetectRaw:
    """Decode + NMS on the host (the engine's C++ kernels, engine/src/nms.cc), for graphs cut
    before NMS. The engine runs them on its post-processing threads (engine_spec); __call__
    runs the same kernels per image from Python."""

    def __init__(self, workload: Workload, model, score_format=None):
        from .nms import NMS, ScoreFormat
        from .ssd import anchors_for

        self.spec = DETECTION[workload.name]
        self.outputs = self.spec.raw_outputs
        self.nms = NMS(self.spec, anchors_for(workload.name), score_format or ScoreFormat())
        self.row_bytes = self.spec.max_per_image * 7 * 4
        self.max_response_bytes = self.row_bytes
        self.num_classes = workload.num_classes
        self.score_dtype = self.nms.fmt.dtype

    def __call__(self, outputs, qsl_idx):
        boxes, scores = outputs
        n = len(qsl_idx)
        data = np.empty((n, self.spec.max_per_image, 7), np.float32)
        sizes = np.empty(n, np.int64)
        for k in range(n):
            sizes[k] = self.nms(boxes[k], scores[k], int(qsl_idx[k]), data[k]) * 28
        return data, np.arange(n, dtype=np.int64) * self.row_bytes, sizes

    def engine_spec(self):
        """The engine's NMS (engine/src/nms.cc) with this workload's parameters."""
        return self.nms.engine_spec(self.num_classes)

    def output_shapes(self, batch: int, workload: Workload):
        A, C = self.spec.num_anchors, workload.num_classes
        if self.score_dtype != "float32":  # the card's own score format (simulated cards)
            dt = np.float16 if self.score_dtype == "float16" else np.uint8
            if self.spec.layout == "class-major":
                return [((batch, 4, A), np.float32), ((batch, C, A), dt)]
            return [((batch, A, 4), np.float32), ((batch, A, C), dt)]
        if self.spec.layout == "class-major":
            return [((batch, 4, A), np.float32), ((batch, C, A), np.float32)]
        return [((batch, A, 4), np.float32), ((batch, A, C), np.float32)]


class DetectOfficial:
    """The official graphs with NMS inside: their detections, reformatted, as they are."""

    def __init__(self, workload: Workload, model):
        self.spec = DETECTION[workload.name]
        self.outputs = self.spec.nms_outputs
        self.tf = workload.name == "ssd-mobilenet"
        self.retinanet = self.spec.layout == "retinanet"
        self.max_response_bytes = self.spec.max_per_image * 28

    def engine_spec(self):
        return None  # reformatted in Python, beside the ONNX Runtime device (once per batch)

    def __call__(self, outputs, qsl_idx):
        n = len(qsl_idx)
        rows = []
        if self.retinanet:
            rows = self._retinanet_rows(outputs, qsl_idx)
        elif self.tf:  # num, boxes (ymin, xmin, ymax, xmax), scores, classes (COCO ids)
            num, boxes, scores, classes = outputs
            for k in range(n):
                m = int(num[k])
                rows.append(np.column_stack([np.full(m, qsl_idx[k]), boxes[k, :m], scores[k, :m], classes[k, :m]]))
        else:  # bboxes (xmin, ymin, xmax, ymax), labels (1..80), scores
            bboxes, labels, scores = outputs
            for k in range(n):
                b = bboxes[k]
                rows.append(np.column_stack([np.full(len(b), qsl_idx[k]), b[:, 1], b[:, 0], b[:, 3], b[:, 2],
                                             scores[k], labels[k]]))
        sizes = np.array([r.shape[0] * 28 for r in rows], np.int64)
        offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        data = np.concatenate([r.astype(np.float32).reshape(-1) for r in rows]) if rows else np.zeros(0, np.float32)
        return np.ascontiguousarray(data), offsets, sizes

    def _retinanet_rows(self, outputs, qsl_idx) -> list[np.ndarray]:
        """boxes [n, 4] (x1, y1, x2, y2 pixels of the input), scores [n], labels [n] (0..263),
        best first, per image (the official graph has batch 1 and no batch axis): as the reference's
        PostProcessOpenImagesRetinanet, rows up to the first score below the threshold, boxes
        normalised by the input size, y before x, labels as they are."""
        boxes, scores, labels = outputs
        if boxes.ndim == 2:  # the official export: one image, no batch axis
            if len(qsl_idx) != 1:
                raise ValueError(f"the official RetinaNet graph answers one image per run, got a batch of "
                                 f"{len(qsl_idx)}: run it with --batch-size 1")
            boxes, scores, labels = boxes[None], scores[None], labels[None]
        size = np.float32(self.spec.image_size)
        rows = []
        for k in range(len(qsl_idx)):
            s = scores[k].astype(np.float32)
            low = np.flatnonzero(s < self.spec.score_threshold)
            m = min(int(low[0]) if len(low) else len(s), self.spec.max_per_image)
            b = boxes[k, :m].astype(np.float32) / size
            rows.append(np.column_stack([np.full(m, qsl_idx[k], np.float32), b[:, 1], b[:, 0], b[:, 3], b[:, 2],
                                         s[:m], labels[k, :m].astype(np.float32)]))
        return rows

    def output_shapes(self, batch: int, workload: Workload):
        if self.retinanet:
            return [((0, 4), np.float32), ((0,), np.float32), ((0,), np.int64)]
        if self.tf:
            return [((batch,), np.float32), ((batch, 100, 4), np.float32), ((batch, 100), np.float32),
                    ((batch, 100), np.float32)]
        return [((batch, 0, 4), np.float32), ((batch, 0), np.int64), ((batch, 0), np.float32)]


class Skip:
    """No post-processing at all (empty responses): only to measure what NMS costs."""

    def __init__(self, inner):
        self.outputs = inner.outputs
        self.output_shapes = inner.output_shapes

    def engine_spec(self):
        return ("skip",)

    def __call__(self, outputs, qsl_idx):
        n = len(qsl_idx)
        return np.zeros(1, np.float32), np.zeros(n, np.int64), np.zeros(n, np.int64)


def make_postprocess(workload: Workload, model, skip: bool = False, score_format=None, geometry=None):
    """The post-processing of WORKLOAD's MODEL. GEOMETRY: letterboxed caches' (h0, w0, input h,
    input w) per cache row, which YOLO's needs to map boxes back (None: only its output shapes
    are asked for)."""
    if workload.task == "classification":
        post = Classify(workload, model)
    elif workload.preprocessing.method == "letterbox":
        from .yolo import DetectYolo

        post = DetectYolo(workload, model, geometry if geometry is not None else np.zeros((0, 4), np.int32),
                          layout="channels-last" if model.head_layout == "NAC" else "channels-first",
                          dtype=getattr(score_format, "dtype", None) or "float32")
    elif model.kind == "nms":
        post = DetectOfficial(workload, model)
    else:
        post = DetectRaw(workload, model, score_format)
    return Skip(post) if skip else post
