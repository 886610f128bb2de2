"""SSD default boxes (anchors) and box decoding for both detection workloads.

SSD-ResNet34 follows the MLPerf reference `DefaultBoxes` / `dboxes_R34_coco` (fig size 1200,
feature maps 50/25/13/7/3/3); SSD-MobileNet-v1 follows TensorFlow's `create_ssd_anchors` with
`MultipleGridAnchorGenerator` and the model's pipeline.config (min scale 0.2, max scale 0.95,
lowest layer reduced to 3 boxes). A model cut before NMS was trained against exactly these
boxes, so every rounding the references do is done here too. Anchors are float32
(cy, cx, h, w) for both, in the order the heads emit them.
"""

from __future__ import annotations

import itertools
from functools import lru_cache

import numpy as np

# SSD-ResNet34 (MLPerf reference, vision/classification_and_detection/python/models/ssd_r34.py)
R34_FIG = 1200
R34_FEATURES = (50, 25, 13, 7, 3, 3)
R34_SCALES_300 = (21, 45, 99, 153, 207, 261, 315)  # given for a 300x300 input...
R34_RATIOS = ((2,), (2, 3), (2, 3), (2, 3), (2,), (2,))

# SSD-MobileNet-v1 (ssd_mobilenet_v1_coco pipeline.config). The config's numbers are proto
# float32s, and its smallest aspect ratio is written 0.3333, not 1/3.
MBV1_GRIDS = (19, 10, 5, 3, 2, 1)
MBV1_MIN_SCALE, MBV1_MAX_SCALE = float(np.float32(0.2)), float(np.float32(0.95))
MBV1_RATIOS = tuple(float(np.float32(a)) for a in (1.0, 2.0, 0.5, 3.0, 0.3333))


def r34_grid(fig: int = R34_FIG) -> tuple[list[tuple[int, int, int]], list[int]]:
    """([(cells per side, grid step in pixels, grid divisor fk)] per feature map, box sizes in pixels).

    All integers, as the reference makes them: the step is int(fig / f), the divisor
    fig // step (13 and 7 where fig / step would be 13.04 and 7.02), and the sizes are the 300x300
    ones scaled to FIG and truncated, int(s * fig / 300) (84, 180, 396, ... at 1200).
    """
    grids = []
    for f in R34_FEATURES:
        step = int(fig / f)
        grids.append((f, step, fig // step))
    return grids, [int(s * fig / 300) for s in R34_SCALES_300]


@lru_cache(maxsize=None)
def resnet34_anchors() -> np.ndarray:
    """15,130 boxes: per feature map, per box size, every cell row-major; clamped to [0, 1].

    Sizes per cell: (s_k, s_k), (s', s') with s' = sqrt(s_k s_k+1), then per aspect ratio a
    (s_k sqrt(a), s_k / sqrt(a)) and its transpose, s_k = size_k / fig. Centres
    ((j + 0.5) / fk, (i + 0.5) / fk). The reference clamps (cx, cy, w, h), not the corners.
    """
    grids, size_px = r34_grid()
    boxes = []
    for k, (f, _step, fk) in enumerate(grids):
        s1, s2 = size_px[k] / R34_FIG, size_px[k + 1] / R34_FIG
        sizes = [(s1, s1), (np.sqrt(s1 * s2),) * 2]
        for a in R34_RATIOS[k]:
            w, h = s1 * np.sqrt(a), s1 / np.sqrt(a)
            sizes += [(w, h), (h, w)]
        for w, h in sizes:
            for i, j in itertools.product(range(f), repeat=2):
                boxes.append(((i + 0.5) / fk, (j + 0.5) / fk, h, w))  # (cy, cx, h, w)
    return np.clip(np.asarray(boxes, np.float64), 0, 1).astype(np.float32)


@lru_cache(maxsize=None)
def mobilenet_anchors() -> np.ndarray:
    """1,917 boxes: per layer, row-major cells, per cell its box specs.

    TF: scales min + (max - min) i / (n - 1) plus 1.0 past the last layer (for the interpolated
    box sqrt(s_i s_i+1)); box (h, w) = (s / sqrt(a), s sqrt(a)) times base_anchor_size (1, 1);
    stride 1/g and offset stride/2, so centres (y + 0.5) / g.
    """
    n = len(MBV1_GRIDS)
    scales = [MBV1_MIN_SCALE + (MBV1_MAX_SCALE - MBV1_MIN_SCALE) * i / (n - 1) for i in range(n)] + [1.0]
    out = []
    for layer, g in enumerate(MBV1_GRIDS):
        scale, nxt = scales[layer], scales[layer + 1]
        if layer == 0:
            specs = [(0.1, 1.0), (scale, 2.0), (scale, 0.5)]
        else:
            specs = [(scale, a) for a in MBV1_RATIOS] + [(np.sqrt(scale * nxt), 1.0)]
        for y in range(g):
            for x in range(g):
                for s, a in specs:
                    out.append(((y + 0.5) / g, (x + 0.5) / g, s / np.sqrt(a), s * np.sqrt(a)))
    return np.asarray(out, np.float32)


def anchors_for(workload_name: str) -> np.ndarray:
    """A detection workload's anchors as the engine's kernels take them: float32 (cy, cx, h, w)."""
    if workload_name == "retinanet":
        from .retinanet import retinanet_anchors
        return retinanet_anchors()
    return resnet34_anchors() if workload_name == "ssd-resnet34" else mobilenet_anchors()


def decode(enc: np.ndarray, anchors: np.ndarray, scales, clip: bool, encoding: str = "yxhw") -> np.ndarray:
    """Encoded boxes [A, 4] -> (ymin, xmin, ymax, xmax) [A, 4], float32.

    ENCODING names the order of the four values: "yxhw" (TensorFlow) or "xywh" (PyTorch).

    cy = ty / s0 * h_a + cy_a, cx = tx / s1 * w_a + cx_a, h = exp(th / s2) * h_a,
    w = exp(tw / s3) * w_a: TensorFlow's FasterRcnnBoxCoder and the MLPerf SSD-ResNet34
    `decode_boxes` (scale_xy 0.1, scale_wh 0.2) are the same formula.
    """
    a = anchors.astype(np.float32)
    e = enc.astype(np.float32)
    if encoding == "xywh":
        e = e[:, [1, 0, 3, 2]]
    cy = e[:, 0] / np.float32(scales[0]) * a[:, 2] + a[:, 0]
    cx = e[:, 1] / np.float32(scales[1]) * a[:, 3] + a[:, 1]
    h = np.exp(e[:, 2] / np.float32(scales[2])) * a[:, 2]
    w = np.exp(e[:, 3] / np.float32(scales[3])) * a[:, 3]
    out = np.stack([cy - h / 2, cx - w / 2, cy + h / 2, cx + w / 2], axis=1).astype(np.float32)
    return np.clip(out, 0, 1) if clip else out
