"""Dataset readers (ImageNet, COCO, COCO safe, OpenImages-MLPerf: real on-disk layouts) and the synthetic sample datasets."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..workloads import Workload
from .coco import CocoVal, open_coco, preprocess_coco
from .coco_safe import open_coco_safe
from .imagenet import ImageNetVal, decode_bgr, open_imagenet, preprocess_imagenet
from .letterbox import letterbox_row, letterbox_sample
from .openimages import open_openimages, preprocess_openimages

Dataset = ImageNetVal | CocoVal


def open_dataset(workload: Workload, root: str | Path, count: int | None = None) -> Dataset:
    """The dataset a workload reads, validated (every listed image exists)."""
    if workload.dataset == "imagenet":
        return open_imagenet(root, count)
    if workload.dataset == "coco":
        return open_coco(root, count)
    if workload.dataset == "openimages":
        return open_openimages(root, count)
    if workload.dataset == "coco-safe":
        return open_coco_safe(root, count)
    raise NotImplementedError(f"dataset {workload.dataset!r}")


def preprocess_one(workload: Workload, path: Path, layout: str) -> np.ndarray:
    """One image file to one model input row, by the workload's reference recipe."""
    if workload.preprocessing.method == "resize_short_center_crop":
        return preprocess_imagenet(path, workload, layout)
    if workload.preprocessing.method == "resize":
        return preprocess_coco(path, workload, layout)
    if workload.preprocessing.method == "resize_float":
        return preprocess_openimages(path, workload, layout)
    if workload.preprocessing.method == "letterbox":
        return letterbox_row(decode_bgr(path), workload, layout)
    raise NotImplementedError(f"preprocessing {workload.preprocessing.method!r}")


def preprocess_sample(workload: Workload, path: Path, layout: str) -> tuple[np.ndarray, tuple | None]:
    """preprocess_one's row and, for letterboxed workloads, its geometry (h0, w0, input h, input w):
    what the cache keeps beside the row so post-processing can map boxes back."""
    if workload.preprocessing.method == "letterbox":
        return letterbox_sample(decode_bgr(path), workload, layout)
    return preprocess_one(workload, path, layout), None
