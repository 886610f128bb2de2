"""Ultralytics' LetterBox as the YOLO reference's predict runs it (data/augment.py, 8.3.214).

Scale the image to fit the target keeping its aspect (upscaling allowed), resize with
INTER_LINEAR only when the size changes, and pad with a constant colour, centred: the smaller
half of each padding at the top/left. Two shape modes:

- `square`: every image becomes size x size (a fixed-shape model, batching).
- `rect`: the reference `.pt`'s minimum rectangle: the padding is cut to what rounds each side
  up to a multiple of the stride, so a 640x427 image becomes 640x448.

The new size uses Python's round (half to even), as the reference does: 426 * 1.25 = 532.5
gives 532 where C's round gives 533.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

SHAPE_MODES = ("square", "rect")


@dataclass(frozen=True)
class Letterbox:
    """Where an image landed inside its letterboxed input."""

    height: int  # the input's shape
    width: int
    new_height: int  # the resized image inside it
    new_width: int
    top: int
    left: int


def letterbox_geometry(h: int, w: int, size: int, mode: str, stride: int = 32) -> Letterbox:
    """The input shape, resized size and padding of an H x W image (the reference's arithmetic)."""
    if mode not in SHAPE_MODES:
        raise ValueError(f"shape mode {mode!r}: choose one of {', '.join(SHAPE_MODES)}")
    r = min(size / h, size / w)
    new_w, new_h = int(round(w * r)), int(round(h * r))
    dw, dh = size - new_w, size - new_h
    if mode == "rect":
        dw, dh = dw % stride, dh % stride
    half_w, half_h = dw / 2, dh / 2
    top, bottom = int(round(half_h - 0.1)), int(round(half_h + 0.1))
    left, right = int(round(half_w - 0.1)), int(round(half_w + 0.1))
    return Letterbox(new_h + top + bottom, new_w + left + right, new_h, new_w, top, left)


def letterbox(img: np.ndarray, size: int, mode: str, stride: int = 32, pad_value: int = 114,
              interpolation: int = cv2.INTER_LINEAR) -> np.ndarray:
    """IMG (H x W x 3 uint8, any channel order) letterboxed; the channel order is kept."""
    h, w = img.shape[:2]
    g = letterbox_geometry(h, w, size, mode, stride)
    if (w, h) != (g.new_width, g.new_height):
        img = cv2.resize(img, (g.new_width, g.new_height), interpolation=interpolation)
    bottom = g.height - g.new_height - g.top
    right = g.width - g.new_width - g.left
    return cv2.copyMakeBorder(img, g.top, bottom, g.left, right, cv2.BORDER_CONSTANT,
                              value=(pad_value, pad_value, pad_value))


def letterbox_sample(img_bgr: np.ndarray, workload, layout: str) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """One decoded BGR image -> (one uint8 row: letterboxed by the workload's settings, RGB;
    its geometry (h0, w0, input h, input w)). The reference's / 255 is the model's. The
    geometry is what post-processing needs to map boxes back (scale_boxes) and normalise them
    by the decoded image, EXIF orientation applied (the reference's orig_shape)."""
    pre = workload.preprocessing
    img = letterbox(img_bgr, workload.input_size, pre.shape_mode, pre.stride, pre.pad_value,
                    getattr(cv2, pre.interpolation))
    row = img[..., ::-1]  # BGR -> RGB
    if layout == "NCHW":
        row = row.transpose(2, 0, 1)
    return np.ascontiguousarray(row), (*img_bgr.shape[:2], *img.shape[:2])


def letterbox_row(img_bgr: np.ndarray, workload, layout: str) -> np.ndarray:
    """letterbox_sample's row alone."""
    return letterbox_sample(img_bgr, workload, layout)[0]
