"""COCO safe (YOLO): the val2017 images under the licences MLCommons may redistribute.

The reference (inference `yolo/filter_coco_safe_images.py`) keeps an image when its licence URL
contains one of SAFE_LICENSE_KEYS: licence ids 4-8 of COCO 2017 (1,525 of the 5,000 images).
Its QSL order is the annotation file's order, keeping only the listed files that exist
(`yolo_loadgen.py`). Three folders are accepted for --dataset:

- the distributed set, annotations beside the images: DIR/val2017_safe/ + DIR/annotations/
  (or --dataset DIR/val2017_safe itself);
- the MLCommons automation's: DIR/val2017_safe/ holding the images and annotations/;
- a full COCO val2017 folder (val2017/ + annotations/), from which the safe subset is selected.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import UserError
from .coco import CocoVal, load_annotations, parse_coco

ANNOTATIONS = "annotations/instances_val2017.json"
SAFE_DIR = "val2017_safe"
FULL_DIR = "val2017"
SAFE_LICENSE_KEYS = ("creativecommons.org/licenses/by/", "creativecommons.org/licenses/by-sa/",
                     "creativecommons.org/licenses/by-nd", "flickr.com/commons/usage", "www.usa.gov")
SAFE_LICENSE_IDS = frozenset({4, 5, 6, 7, 8})  # what the keys keep of COCO 2017's licences block


def _layout(root: Path) -> tuple[Path, Path, str, bool]:
    """(annotation file, root the files are relative to, image folder under it, select by licence)."""
    candidates = (
        (root / ANNOTATIONS, root, SAFE_DIR, False),  # DIR/val2017_safe + DIR/annotations
        (root / ANNOTATIONS, root, "", False),  # DIR = val2017_safe holding annotations/ (MLCommons automation)
        (root.parent / ANNOTATIONS, root, "", False),  # DIR = val2017_safe, annotations beside it
        (root / ANNOTATIONS, root, FULL_DIR, True),  # full COCO val2017
    )
    for ann, base, images, select in candidates:
        folder = base / images if images else base
        if not ann.is_file() or not folder.is_dir():
            continue
        if images or (root.name == SAFE_DIR or any(folder.glob("*.jpg"))):
            return ann, base, images, select
    raise UserError(f"{root} is not a COCO safe or COCO val2017 folder: pass --dataset DIR holding "
                    f"{SAFE_DIR}/ and {ANNOTATIONS} (either inside {SAFE_DIR}/ or beside it), or {FULL_DIR}/ and "
                    f"{ANNOTATIONS} (`visionperf sample-data coco --out DIR` makes one)")


def safe_license_ids(data: dict) -> frozenset[int]:
    """The licence ids whose URL the reference's filter keeps; COCO 2017's 4-8 without a licences block."""
    licenses = data.get("licenses")
    if not isinstance(licenses, list) or not licenses:
        return SAFE_LICENSE_IDS
    keep = set()
    for lic in licenses:
        if isinstance(lic, dict) and any(k in str(lic.get("url", "")).lower() for k in SAFE_LICENSE_KEYS):
            keep.add(lic.get("id"))
    return frozenset(keep)


def select_safe(data: dict, by_license: bool, exists) -> dict:
    """DATA with only the images the reference reads, in its order: under a safe licence (where
    BY_LICENSE) and whose file EXISTS(file_name); their annotations with them."""
    images = data.get("images") if isinstance(data, dict) else None
    if not isinstance(images, list) or not all(isinstance(im, dict) for im in images):
        return data  # parse_coco names what is wrong
    safe = safe_license_ids(data) if by_license else None
    kept = [im for im in images
            if (safe is None or im.get("license") in safe) and exists(str(im.get("file_name", "")))]
    ids = {im.get("id") for im in kept}
    anns = data.get("annotations")
    if isinstance(anns, list):
        anns = [a for a in anns if not isinstance(a, dict) or a.get("image_id") in ids]
    return dict(data, images=kept, annotations=anns)


def open_coco_safe(root: str | Path, count: int | None = None) -> CocoVal:
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"dataset directory {root} does not exist: pass --dataset DIR holding {SAFE_DIR}/ and "
                        f"{ANNOTATIONS} (`visionperf sample-data coco --out {root}` makes one)")
    ann, base, images, by_license = _layout(root)
    folder = base / images if images else base
    data = select_safe(load_annotations(ann), by_license, lambda name: name != "" and (folder / name).is_file())
    files, ids, sizes, cats = parse_coco(ann, data, images)
    if count is not None:
        files, ids, sizes = files[:count], ids[:count], sizes[:count]
    if not files:
        what = "under a safe licence (ids 4-8) and present" if by_license else "present"
        raise UserError(f"{ann} lists no image {what} in {folder}: the dataset is empty")
    return CocoVal(base, tuple(files), np.asarray(ids, np.int64), np.asarray(sizes, np.int64).reshape(-1, 2),
                   ann, tuple(cats))
