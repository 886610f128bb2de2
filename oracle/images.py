"""Write the oracle's image set: small, varied, the same bytes on every run.

Each image stresses one step of Ultralytics' predict path: odd sizes and both orientations (the
rect letterbox), grayscale (IMREAD_COLOR makes three channels), EXIF orientations 6 and 8
(IMREAD_COLOR applies them), a tiny and a very wide image (extreme scale factors), the
round-half-to-even case (426 px at scale 1.25 = 532.5) and a PNG. The content is gradients,
shapes and noise, so a random-weight model gives varied scores and many boxes.

Usage: python oracle/images.py --out DIR
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

SEED = 20240


def scene(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """An H x W x 3 uint8 BGR picture: a two-way gradient, filled shapes, then noise."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    c = rng.uniform(0, 255, (3, 3)).astype(np.float32)
    img = np.stack([c[i, 0] * x / max(w - 1, 1) + c[i, 1] * y / max(h - 1, 1) + c[i, 2] for i in range(3)], -1)
    img = np.clip(img * 0.6, 0, 255).astype(np.uint8)
    for _ in range(int(rng.integers(3, 9))):
        color = tuple(int(v) for v in rng.integers(0, 256, 3))
        cx, cy = int(rng.integers(0, w)), int(rng.integers(0, h))
        r = int(rng.integers(1, max(2, min(h, w) // 2)))
        if rng.random() < 0.5:
            cv2.circle(img, (cx, cy), r, color, -1, cv2.LINE_AA)
        else:
            cv2.rectangle(img, (cx - r, cy - r // 2), (cx + r, cy + r // 2), color, -1)
    noise = rng.normal(0, 6, img.shape)
    return np.clip(img + noise, 0, 255).astype(np.uint8)


def write_jpeg(path: Path, bgr: np.ndarray, quality: int = 85) -> None:
    ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise SystemExit(f"{path}: OpenCV could not encode it")
    path.write_bytes(buf.tobytes())


def write_exif_jpeg(path: Path, bgr: np.ndarray, orientation: int) -> None:
    """A JPEG of BGR as stored, whose EXIF orientation tells a reader to rotate it."""
    exif = Image.Exif()
    exif[0x0112] = orientation  # Orientation
    out = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(bgr[..., ::-1])).save(out, "JPEG", quality=85, exif=exif.tobytes())
    path.write_bytes(out.getvalue())


# name, height, width, kind; the names sort in the order written.
IMAGES = (
    ("01_landscape_640x427.jpg", 427, 640, "jpeg"),
    ("02_portrait_427x640.jpg", 640, 427, "jpeg"),
    ("03_odd_501x333.jpg", 333, 501, "jpeg"),
    ("04_gray_500x375.jpg", 375, 500, "gray"),
    ("05_exif6_stored_500x300.jpg", 300, 500, "exif6"),
    ("06_exif8_stored_360x480.jpg", 480, 360, "exif8"),
    ("07_tiny_9x7.jpg", 7, 9, "jpeg"),
    ("08_wide_1200x70.jpg", 70, 1200, "jpeg"),
    ("09_half_even_512x426.jpg", 426, 512, "jpeg"),
    ("10_png_211x143.png", 143, 211, "png"),
    ("11_large_1024x683.jpg", 683, 1024, "jpeg"),
    ("12_tall_90x700.jpg", 700, 90, "jpeg"),
)


def write_images(out: Path) -> list[Path]:
    """Write every image of IMAGES into OUT; return their paths."""
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(SEED)
    paths = []
    for name, h, w, kind in IMAGES:
        img = scene(h, w, rng)
        path = out / name
        if kind == "jpeg":
            write_jpeg(path, img)
        elif kind == "gray":
            write_jpeg(path, cv2.cvtColor(img, cv2.COLOR_BGR2GRAY))
        elif kind == "exif6":
            write_exif_jpeg(path, img, 6)
        elif kind == "exif8":
            write_exif_jpeg(path, img, 8)
        elif kind == "png":
            cv2.imwrite(str(path), img)
        else:
            raise ValueError(kind)
        paths.append(path)
    return paths


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    for p in write_images(args.out):
        img = cv2.imread(str(p), cv2.IMREAD_COLOR)
        print(f"{p.name}: decodes to {img.shape[1]}x{img.shape[0]}")


if __name__ == "__main__":
    main()
