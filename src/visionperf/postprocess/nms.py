"""NMS on the host (the paper's section II-F): the parameters of one workload and score format,
and the engine's C++ kernels (engine/src/nms.cc) run on one image. (RetinaNet's kernel, fed
logits and thresholding per level, is described with its NumPy reference in retinanet.py.)

Hand-written because this is the part that must never limit a card: the paper's budgets are
51.6 us per image for SSD-MobileNet and 2.3 ms for SSD-ResNet34. The kernels, one per output
layout, are C++ in the engine, where its post-processing threads run them without the GIL:
2.5-5.4x faster per image on one core than numba kernels were; benchmarks/nms.py measures them
against vectorised NumPy. The tricks:

* threshold on the raw score first (float32 values, fp16 bit patterns, which order like their
  values for non-negative numbers, or uint8 quantised bytes against the last byte whose value
  is not above the threshold), 128 bytes of scores OR-tested at a time in loops the compiler
  vectorises, and only the survivors are converted, sorted and decoded;
* class-major scores [C, A] (SSD-ResNet34) are scanned class row by class row, box-major
  scores [A, C] (SSD-MobileNet) a few anchor rows at a time against a per-class threshold
  pattern whose background column never passes, so neither layout is transposed;
* decoding is lazy: greedy NMS walks candidates in score order and stops at `max_per_class`,
  so candidates it never reaches are never decoded (nor fully sorted);
* the IoU test against the kept boxes runs 16 kept boxes at a time (structure of arrays);
* every buffer is per-thread scratch allocated once: nothing is allocated per image.

The algorithm, identical for both layouts and equal detection for detection to the NumPy
reference in tests/test_nms.py: per class 1..C-1, candidates are the boxes whose score >
threshold, ordered by score (descending; ties by anchor index), decoded (and, where the workload
clips, clipped to [0, 1] with the boxes left without area dropped, as TF's clip_to_window does:
the evidence is in engine/src/nms.cc), the first `max_candidates` of them; greedy: walk them in
order, keep a box unless a kept box of that class has IoU >= the IoU threshold with it, stop at
`max_per_class`; then over all classes the `max_per_image` best by score (ties by class, then
rank). Output rows: [qsl_idx, ymin, xmin, ymax, xmax, score, class].

The engine derives the raw thresholds itself from the float threshold (fp16: the bits of the
largest fp16 not above it; uint8: the last byte whose value float32((q - zero_point) * scale) is
not above it); fp16 negative values and NaNs never pass, as in the reference.
"""

from __future__ import annotations

from dataclasses import dataclass

import threading

import numpy as np

from .. import _engine
from ..workloads import Detection

_DTYPE_CODES = dict(_engine.DTYPES)
SCORE_DTYPES = ("float32", "float16", "uint8")


@dataclass
class ScoreFormat:
    """How raw scores are stored: float32, fp16, or affine-quantised uint8."""

    dtype: str = "float32"  # "float32" | "float16" | "uint8"
    scale: float = 1.0  # uint8 only: value = (q - zero_point) * scale
    zero_point: int = 0


class NMS:
    """Decode + NMS for one workload and one score format; call per image (the engine's kernels)."""

    def __init__(self, spec: Detection, anchors: np.ndarray, fmt: ScoreFormat = ScoreFormat()):
        if fmt.dtype not in SCORE_DTYPES:
            raise ValueError(f"unsupported score dtype {fmt.dtype}")
        self.spec = spec
        self.fmt = fmt
        # where (ty, tx, th, tw) sit among the 4 encoded values, and 1 / the box coder's scales
        self.perm = np.array((0, 1, 2, 3) if spec.encoding == "yxhw" else (1, 0, 3, 2), np.int64)
        self.inv_scales = (1.0 / np.asarray(spec.box_coder_scales, np.float64)).astype(np.float32)
        self.anchors = anchors

    @property
    def anchors(self) -> np.ndarray:
        """[A, 4] (cy, cx, h, w), float32; assigning new anchors rebuilds the engine's spec."""
        return self._anchors

    @anchors.setter
    def anchors(self, anchors: np.ndarray) -> None:
        self._anchors = np.ascontiguousarray(anchors, np.float32)
        self._specs: dict[int, tuple] = {}  # num_classes -> ("nms", NmsParams), built once
        self._local = threading.local()  # per thread: (spec, the engine's kernel and scratch)

    def engine_spec(self, num_classes: int) -> tuple:
        """The engine's ("nms", NmsParams) post-processing for NUM_CLASSES classes (background 0
        included): the parameters of engine/src/nms.h, readable by name as a mapping too
        (params["anchors"]). Built once, then cached."""
        spec = self._specs.get(num_classes)
        if spec is None:
            s, fmt = self.spec, self.fmt
            p = _engine.NmsParams()
            p.class_major, p.num_anchors = int(s.layout == "class-major"), s.num_anchors
            p.num_classes, p.score_dtype = int(num_classes), _DTYPE_CODES[fmt.dtype]
            p.box_dtype, p.score_threshold = _DTYPE_CODES["float32"], s.score_threshold
            p.iou_threshold, p.max_candidates = s.iou_threshold, s.max_candidates_per_class
            p.max_per_class, p.max_per_image = s.max_per_class, s.max_per_image
            p.perm, p.inv_scales = [int(v) for v in self.perm], [float(v) for v in self.inv_scales]
            p.clip, p.uint8_scale, p.uint8_zero_point = int(s.clip_boxes), float(fmt.scale), float(fmt.zero_point)
            p.anchors = self._anchors
            if s.layout == "retinanet":  # logits: the kernel thresholds them (postprocess/retinanet.py)
                from .retinanet import logit_threshold

                p.retinanet, p.score_threshold = 1, float(logit_threshold(s.score_threshold))
                p.level_anchors = [int(n) for n in s.level_anchors]
                p.box_exp_clip, p.image_size, p.clip = float(np.float32(s.box_exp_clip)), float(s.image_size), 0
            spec = self._specs[num_classes] = ("nms", p)
        return spec

    def __call__(self, boxes: np.ndarray, scores: np.ndarray, qsl_idx: int, out: np.ndarray) -> int:
        """BOXES: encodings ([4, A] class-major or [A, 4] box-major, float32); SCORES: raw, in
        this workload's layout and this format's dtype. Writes detections into OUT
        [max_per_image, 7]; returns how many. Releases the GIL while the kernel runs."""
        C = scores.shape[0] if self.spec.layout == "class-major" else scores.shape[-1]
        kernels = getattr(self._local, "kernels", None)
        if kernels is None or kernels[0] is not self._specs.get(C):  # anchors changed, or a new C
            spec = self._specs.get(C) or self.engine_spec(C)
            kernels = self._local.kernels = (spec, _engine.Nms(spec))  # its scratch: this thread's
        direct = out.dtype == np.float32 and out.flags.c_contiguous
        dst = out if direct else np.empty((self.spec.max_per_image, 7), np.float32)
        n = kernels[1](np.ascontiguousarray(boxes), np.ascontiguousarray(scores), float(qsl_idx), dst)
        if not direct:
            out[:n] = dst[:n]
        return n
