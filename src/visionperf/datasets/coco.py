"""COCO 2017 validation: `annotations/instances_val2017.json` + `val2017/`, and the SSD recipes.

Images are taken in the order the annotation file lists them (all of them: 48 of the real
5,000 have no annotations and still count). Preprocessing follows the MLCommons reference:
SSD-MobileNet: RGB, straight resize to 300x300 with INTER_LINEAR, kept uint8 NHWC;
SSD-ResNet34: RGB, straight resize to 1200x1200 with INTER_LINEAR, /255, mean/std, NCHW.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .. import jsonfile
from ..errors import UserError
from ..workloads import Workload
from .imagenet import decode_bgr
from .listing import ImageListing

ANNOTATIONS = "annotations/instances_val2017.json"


@dataclass(frozen=True)
class CocoVal(ImageListing):
    image_ids: np.ndarray  # int64, per file ("val2017/000000000139.jpg")
    sizes: np.ndarray  # int64 [n, 2] (height, width) from the annotation file
    annotations: Path
    category_ids: tuple[int, ...]  # sorted COCO category ids (80 in the real set)

    @property
    def labels(self) -> np.ndarray:
        """Detection has no per-image label; the image id stands in where a key is needed."""
        return self.image_ids


def open_coco(root: str | Path, count: int | None = None) -> CocoVal:
    return read_coco_layout(root, ANNOTATIONS, "val2017", count, "coco")


def read_coco_layout(root: str | Path, annotations: str, image_dir: str, count: int | None,
                     sample_kind: str) -> CocoVal:
    """A COCO-format annotation file (ROOT/ANNOTATIONS) and the images it lists (ROOT/IMAGE_DIR),
    validated: COCO 2017 and OpenImages-MLPerf (`sample-data SAMPLE_KIND` makes either)."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"dataset directory {root} does not exist: pass --dataset DIR holding "
                        f"{annotations} and {image_dir}/ (`visionperf sample-data {sample_kind} --out {root}` "
                        "makes one)")
    ann = root / annotations
    if not ann.is_file():
        raise UserError(f"{ann} is missing: a {sample_kind} directory needs {annotations} and {image_dir}/")
    data = load_annotations(ann)
    files, ids, sizes, cats = parse_coco(ann, data, image_dir)
    if count is not None:
        files, ids, sizes = files[:count], ids[:count], sizes[:count]
    if not files:
        raise UserError(f"{ann} lists no images: the dataset is empty")
    for f in files:
        if not (root / f).is_file():
            raise UserError(f"{root / f} is missing but {ann} names it: restore the image "
                            "or use the matching annotation file")
    return CocoVal(root, tuple(files), np.asarray(ids, np.int64), np.asarray(sizes, np.int64).reshape(-1, 2),
                   ann, tuple(cats))


def load_annotations(ann: Path) -> dict:
    try:
        return jsonfile.load(ann, "use the official annotation file")
    except OSError as e:
        raise UserError(f"cannot read {ann}: {e.strerror}") from None


def parse_coco(ann: Path, data: dict, image_dir: str) -> tuple[list[str], list[int], list, list[int]]:
    """The files (IMAGE_DIR/file_name; "" for none), ids, (height, width) sizes and sorted category
    ids of a COCO annotation file's content, validated."""
    prefix = f"{image_dir}/" if image_dir else ""
    try:
        images = data["images"]
        cats = sorted(int(c["id"]) for c in data["categories"])
        data["annotations"]  # noqa: B018 (must exist)
        files = [f"{prefix}{im['file_name']}" for im in images]
        ids = [int(im["id"]) for im in images]
        sizes = [(_side(ann, im, "height"), _side(ann, im, "width")) for im in images]
    except (ValueError, KeyError, TypeError, OverflowError):
        raise UserError(f"{ann} is not a COCO annotation file (needs images, annotations and "
                        "categories): check the file") from None
    _check_annotations(ann, data, ids, cats)
    return files, ids, sizes, cats


MAX_SIDE = 65535  # the largest side a JPEG can have


def _side(ann: Path, image: dict, field: str) -> int:
    """An image's height or width: a whole number of pixels (pycocotools scales boxes by it)."""
    v = image[field]
    if not _number(v) or v != int(v) or not 1 <= v <= MAX_SIDE:
        raise UserError(f"{ann}: image {image.get('id')!r} ({image.get('file_name')}) has {field} {v!r}, "
                        f"not a whole number of pixels in 1..{MAX_SIDE}: fix that image's entry")
    return int(v)


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _check_annotations(ann: Path, data: dict, ids: list[int], cats: list[int]) -> None:
    """What pycocotools would trip over with a traceback (or silently miscount), refused here
    with the annotation and field named."""
    if not cats:
        raise UserError(f"{ann} lists no categories: mAP needs them; use the official "
                        "annotation file (its 'categories' lists every class)")
    seen: set[int] = set()
    for k, i in enumerate(ids):
        if i in seen:
            raise UserError(f"{ann}: image id {i} appears twice in 'images' (entry {k}): "
                            "each image must be listed once; remove the duplicate")
        seen.add(i)
    if not isinstance(data["annotations"], list):
        raise UserError(f"{ann}: 'annotations' is not a list: check the file")
    for k, a in enumerate(data["annotations"]):
        where = f"{ann}: annotation {k}" + (f" (id {a.get('id')})" if isinstance(a, dict) and "id" in a else "")
        if not isinstance(a, dict):
            raise UserError(f"{where} is not an object: check the file")
        for field in ("image_id", "category_id", "bbox", "area", "iscrowd"):
            if field not in a:
                raise UserError(f"{where} has no '{field}': every COCO annotation needs image_id, "
                                "category_id, bbox, area and iscrowd; use the official annotation file")
        bbox = a["bbox"]
        if not isinstance(bbox, list) or len(bbox) != 4 or not all(_number(v) for v in bbox):
            raise UserError(f"{where} has bbox {bbox!r}, not [x, y, width, height] (4 numbers): "
                            "fix or remove that annotation")
        if not _number(a["area"]):
            raise UserError(f"{where} has area {a['area']!r}, not a number: fix or remove that annotation")
        if a["iscrowd"] not in (0, 1) or isinstance(a["iscrowd"], bool):
            raise UserError(f"{where} has iscrowd {a['iscrowd']!r}, not 0 or 1: fix or remove that annotation")
        if not isinstance(a["image_id"], int) or a["image_id"] not in seen:
            raise UserError(f"{where} is for image_id {a['image_id']!r}, which 'images' does not list: "
                            "remove that annotation or use the matching annotation file")
        if not isinstance(a["category_id"], int) or a["category_id"] not in cats:
            raise UserError(f"{where} has category_id {a['category_id']!r}, which 'categories' does not "
                            "list: fix or remove that annotation")


def preprocess_bgr(img_bgr: np.ndarray, workload: Workload, layout: str) -> np.ndarray:
    """One decoded BGR image -> one model input row (uint8 NHWC or float32), as the reference."""
    pre = workload.preprocessing
    s = workload.input_size
    img = cv2.cvtColor(img_bgr, cv2.COLOR_BGR2RGB)
    img = cv2.resize(img, (s, s), interpolation=getattr(cv2, pre.interpolation))
    if workload.input_dtype == "uint8":
        row = img  # the model normalises inside
    else:
        # float64 like the reference's `img / 255. - mean`, then one rounding to float32
        x = img / (1.0 / pre.scale) - np.asarray(pre.mean)
        if pre.std:
            x = x / np.asarray(pre.std)
        row = x.astype(np.float32)
    if layout == "NCHW":
        row = row.transpose(2, 0, 1)
    return np.ascontiguousarray(row)


def preprocess_coco(path: Path, workload: Workload, layout: str) -> np.ndarray:
    return preprocess_bgr(decode_bgr(path), workload, layout)
