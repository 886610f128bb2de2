"""OpenImages-MLPerf (RetinaNet): `annotations/openimages-mlperf.json` + `validation/data/`.

The annotation file is COCO format (made by the MLCommons `openimages_mlperf.sh`): images sorted
by ImageID with ids 1..24,781 in list order (qsl_idx i is images[i]), category ids 0..263 in the
order of the reference's class list (the heads' class index, no background), boxes
[x, y, w, h] in pixels, iscrowd = IsGroupOf. Preprocessing follows the reference's
pre_process_openimages_retinanet: BGR uint8 -> float32 -> RGB -> cv2.resize to 800x800
INTER_LINEAR on the float32 image (aspect ratio not kept) -> / 255 (no mean/std: the model
normalises inside), NCHW.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from ..workloads import Workload
from .coco import CocoVal, read_coco_layout
from .imagenet import decode_bgr

ANNOTATIONS = "annotations/openimages-mlperf.json"
IMAGES = "validation/data"


def open_openimages(root: str | Path, count: int | None = None) -> CocoVal:
    return read_coco_layout(root, ANNOTATIONS, IMAGES, count, "openimages")


def preprocess_openimages_bgr(img_bgr: np.ndarray, workload: Workload, layout: str) -> np.ndarray:
    """One decoded BGR image -> one float32 row, every step in float32 as the reference does it."""
    s = workload.input_size
    img = cv2.cvtColor(img_bgr.astype(np.float32), cv2.COLOR_BGR2RGB)
    img = cv2.resize(img, (s, s), interpolation=getattr(cv2, workload.preprocessing.interpolation))
    img /= np.float32(1 / workload.preprocessing.scale)  # the reference's `img /= 255.0` in float32
    if layout == "NCHW":
        img = img.transpose(2, 0, 1)
    return np.ascontiguousarray(img)


def preprocess_openimages(path: Path, workload: Workload, layout: str) -> np.ndarray:
    return preprocess_openimages_bgr(decode_bgr(path), workload, layout)
