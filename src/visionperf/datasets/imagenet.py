"""ImageNet 2012 validation: the `val_map.txt` reader and the reference preprocessing.

The recipe is the MLCommons reference's `pre_process_vgg` (FACTS.md section 1): BGR->RGB,
resize so the short side is 256 with INTER_AREA, centre crop 224, float32, subtract the RGB
mean, no std. Any drift from it costs top-1 accuracy, so it is reproduced step by step.
"""

from __future__ import annotations

import os
import sys
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Callable, Iterator

import cv2
import numpy as np

from ..errors import UserError
from ..workloads import Workload
from .listing import ImageListing


@dataclass(frozen=True)
class ImageNetVal(ImageListing):
    labels: np.ndarray  # int32, 0-based, in val_map.txt order


def open_imagenet(root: str | Path, count: int | None = None) -> ImageNetVal:
    """Read `ROOT/val_map.txt` (`file label` per line) and check every image it names exists."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(
            f"dataset directory {root} does not exist: pass --dataset DIR holding val_map.txt "
            f"and the images (`visionperf sample-data imagenet --out {root}` makes one)"
        )
    val_map = root / "val_map.txt"
    if not val_map.is_file():
        raise UserError(
            f"{val_map} is missing: an ImageNet validation directory needs val_map.txt "
            "with one 'FILE LABEL' line per image"
        )
    files: list[str] = []
    labels: list[int] = []
    with open(val_map, encoding="utf-8", errors="replace") as f:
        for lineno, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
                raise UserError(
                    f"{val_map}:{lineno}: expected 'FILE LABEL', got {line.strip()!r}; "
                    "fix or remove that line"
                )
            label = int(parts[1])
            if not 0 <= label < 1000:
                raise UserError(
                    f"{val_map}:{lineno}: label {label} is outside 0..999 (labels are 0-based)"
                )
            files.append(parts[0])
            labels.append(label)
            if count is not None and len(files) >= count:
                break
    if not files:
        raise UserError(f"{val_map} lists no images: the dataset is empty")
    for name in files:
        if not (root / name).is_file():
            raise UserError(
                f"{root / name} is missing but {val_map} names it: restore the image or "
                "remove its line"
            )
    return ImageNetVal(root, tuple(files), np.asarray(labels, dtype=np.int32))


MAX_PIXELS = 100_000_000  # 100 megapixels: far above any real dataset image (ImageNet, COCO)

# JPEG start-of-frame markers (baseline, extended, progressive, lossless, arithmetic...): not
# DHT (C4), JPG (C8) or DAC (CC), which share the range.
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def header_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a JPEG's SOF marker or a PNG's IHDR, reading only the header;
    None for other formats or a header that cannot be walked."""
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if data[:2] != b"\xff\xd8":
        return None
    i, n = 2, len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):  # standalone markers, no length
            i += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image / start of scan before any frame header
            return None
        length = int.from_bytes(data[i + 2:i + 4], "big")
        if marker in _SOF:
            if i + 9 > n:
                return None
            h = int.from_bytes(data[i + 5:i + 7], "big")
            w = int.from_bytes(data[i + 7:i + 9], "big")
            return w, h
        i += 2 + length
    return None


_stderr_copy: IO[bytes] | None = None


@contextmanager
def _decoder_warnings() -> Iterator[Callable[[], list[str]]]:
    """What libjpeg prints on file descriptor 2 while the block runs (a scan with corrupt data
    decodes with a warning that names no file), captured so that the caller can name it.
    Descriptor-wide: decoding threads of a process would share it, and each preprocessing
    worker decodes on one thread."""
    global _stderr_copy
    if _stderr_copy is None:
        _stderr_copy = tempfile.TemporaryFile()
    sys.stderr.flush()
    _stderr_copy.seek(0)
    _stderr_copy.truncate()
    saved = os.dup(2)
    os.dup2(_stderr_copy.fileno(), 2)
    lines: list[str] = []
    try:
        yield lambda: lines
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        _stderr_copy.seek(0)
        lines += [ln.strip() for ln in _stderr_copy.read(4096).decode("utf-8", "replace").splitlines() if ln.strip()]


def decode_bgr(path: Path) -> np.ndarray:
    """Decode an image file to HxWx3 uint8 BGR, as `cv2.imread` does for the reference.

    Refuses a file that is empty, not an image, or a JPEG cut short (libjpeg would pad it with
    grey and only warn): a bad file must never turn into a plausible-looking input.
    """
    data = path.read_bytes()
    if not data:
        raise UserError(f"{path} is empty: replace it with the original image")
    if data[:2] == b"\xff\xd8" and b"\xff\xd9" not in data[-64:]:
        raise UserError(
            f"{path} is a truncated JPEG (no end-of-image marker): replace it with the original"
        )
    size = header_size(data)
    if size is not None and size[0] * size[1] > MAX_PIXELS:
        w, h = size
        raise UserError(
            f"{path} is {w}x{h} pixels ({w * h / 1e6:.0f} megapixels), over the limit of "
            f"{MAX_PIXELS // 1_000_000} megapixels per image: replace it with the original "
            "(or preprocess with --skip-bad to leave it out)"
        )
    with _decoder_warnings() as said:
        try:
            img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        except cv2.error:
            img = None  # OpenCV refuses some headers (e.g. over its own pixel limit) by raising
    for line in said() if img is not None else ():
        print(f"visionperf: warning: {path}: {line} (decoded as the reference's cv2.imread decodes it)",
              file=sys.stderr, flush=True)
    if img is None:
        raise UserError(f"{path} is not a readable image (corrupt?): replace it with the original")
    return img


def resize_short_center_crop(img_rgb: np.ndarray, workload: Workload) -> np.ndarray:
    """The reference's resize_with_aspectratio + center_crop, to uint8 HxWx3."""
    pre = workload.preprocessing
    out = workload.input_size
    short = pre.resize_short_side
    h, w = img_rgb.shape[:2]
    if h > w:
        new_w, new_h = short, int(short * h / w)
    else:
        new_h, new_w = short, int(short * w / h)
    img = cv2.resize(img_rgb, (new_w, new_h), interpolation=getattr(cv2, pre.interpolation))
    h, w = img.shape[:2]
    left, top = int((w - out) / 2), int((h - out) / 2)
    return img[top : top + out, left : left + out]


def preprocess_imagenet(path: Path, workload: Workload, layout: str = "NCHW") -> np.ndarray:
    """One image file to one float32 model input row (CHW or HWC), exactly as the reference."""
    return preprocess_bgr(decode_bgr(path), workload, layout)


def preprocess_bgr(img_bgr: np.ndarray, workload: Workload, layout: str = "NCHW") -> np.ndarray:
    """One decoded HxWx3 BGR image to one float32 model input row."""
    img = cv2.cvtColor(img_bgr, cv2.COLOR_BGR2RGB)
    img = resize_short_center_crop(img, workload).astype(np.float32)
    pre = workload.preprocessing
    if pre.scale != 1.0:
        img *= np.float32(pre.scale)
    img -= np.asarray(pre.mean, dtype=np.float32)
    if pre.std:
        img /= np.asarray(pre.std, dtype=np.float32)
    if layout == "NCHW":
        img = img.transpose(2, 0, 1)
    return np.ascontiguousarray(img)
