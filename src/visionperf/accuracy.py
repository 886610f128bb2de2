"""Accuracy from `mlperf_log_accuracy.json`, written in the format the submission checker parses."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import jsonfile
from .errors import UserError


def read_accuracy_log(path: str | Path) -> list[dict]:
    path = Path(path)
    try:
        records = jsonfile.load(path, "is it a complete mlperf_log_accuracy.json?")
    except OSError as e:
        raise UserError(f"cannot read accuracy log {path}: {e.strerror}") from None
    if not isinstance(records, list) or any(not isinstance(r, dict) or "qsl_idx" not in r or "data" not in r
                                            for r in records):
        raise UserError(f"{path} is not an MLPerf accuracy log (a list of {{seq_id, qsl_idx, data}})")
    return records


def _response(log_path, n: int, r: dict, size: int) -> tuple[int, bytes]:
    """Record N's (qsl_idx, response bytes), checked: one UserError line naming the field."""
    i = r["qsl_idx"]
    whole = isinstance(i, int) or (isinstance(i, float) and i.is_integer())
    if isinstance(i, bool) or not whole:
        raise UserError(f"{log_path}: record {n} has qsl_idx {i!r}, not a whole number: "
                        "the log is damaged; rerun in accuracy mode")
    i = int(i)
    if not 0 <= i < size:
        raise UserError(f"{log_path}: qsl_idx {i} is outside the dataset ({size} images): "
                        "wrong --dataset?")
    data = r["data"]
    try:
        if not isinstance(data, str):
            raise ValueError
        raw = bytes.fromhex(data)
    except ValueError:
        shown = data if not isinstance(data, str) or len(data) <= 20 else data[:20] + "..."
        raise UserError(f"{log_path}: record {n} (qsl_idx {i}) has data {shown!r}, not an even-length "
                        "hex string: the log is damaged; rerun in accuracy mode") from None
    return i, raw


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass
class Top1:
    good: int
    total: int
    log_hash: str

    @property
    def percent(self) -> float:
        return 100.0 * self.good / self.total if self.total else 0.0

    def text(self) -> str:
        """accuracy.txt as the checker reads it."""
        return (f"accuracy={self.percent:.3f}%, good={self.good}, total={self.total}\n"
                f"hash={self.log_hash}\n")


def top1(log_path: str | Path, labels: np.ndarray) -> Top1:
    """Top-1 over unique qsl_idx (as the reference script: a repeated sample counts once).

    Each response is one float32 0-based label (any harness that follows the format).
    """
    records = read_accuracy_log(log_path)
    seen: set[int] = set()
    good = 0
    for n, r in enumerate(records):
        i, raw = _response(log_path, n, r, len(labels))
        if i in seen:
            continue
        seen.add(i)
        if not raw:
            continue  # an empty response counts as wrong
        if len(raw) != 4:
            raise UserError(f"{log_path}: the response for qsl_idx {i} is {len(raw)} bytes, not one float32 "
                            "class index (4 bytes): wrong workload for this log?")
        value = float(np.frombuffer(raw[:4], dtype=np.float32)[0])
        if not np.isfinite(value):
            raise UserError(f"{log_path}: the response for qsl_idx {i} decodes to {value}, not a label "
                            "(one float32 class index): is this a classification log?")
        pred = int(value)
        good += pred == int(labels[i])
    if not seen:
        raise UserError(f"{log_path} holds no responses: was the run in accuracy mode?")
    return Top1(good, len(seen), file_sha256(log_path))




@dataclass
class CocoMap:
    map: float  # percent, COCO mAP@[.5:.95]
    images: int
    detections: int
    log_hash: str

    @property
    def percent(self) -> float:
        return self.map

    def text(self) -> str:
        return f"mAP={self.map:.3f}%\nhash={self.log_hash}\n"


def coco_map(log_path: str | Path, dataset, use_label_map: bool) -> CocoMap:
    """COCO mAP with pycocotools over the images that appear in the log (as the reference).

    Each response is K detections of 7 float32 [qsl_idx, ymin, xmin, ymax, xmax, score, class],
    boxes normalised. USE_LABEL_MAP: classes are contiguous 1..80 (SSD-ResNet34) and map to
    COCO ids through `[0] + sorted(category ids)`.
    """
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    records = read_accuracy_log(log_path)
    inv_map = [0, *dataset.category_ids]
    dets, seen = [], set()
    for n, r in enumerate(records):
        i, raw = _response(log_path, n, r, len(dataset))
        if i in seen:
            continue
        seen.add(i)
        if len(raw) % 28:
            raise UserError(f"{log_path}: a response of {len(raw)} bytes is not whole detections "
                            "(7 float32 each): is this a detection log?")
        rows = np.frombuffer(raw, np.float32).reshape(-1, 7)
        if not np.isfinite(rows).all():
            raise UserError(f"{log_path}: the response for qsl_idx {i} holds NaN or infinite values "
                            "(boxes, scores or classes): the model's output is broken; check the run")
        if (rows[:, 0] != i).any():  # the reference's check: LoadGen and the payload agree on the image
            raise UserError(f"{log_path}: the response for qsl_idx {i} has detections for image "
                            f"{rows[rows[:, 0] != i][0, 0]:g}: wrong workload for this log?")
        cls = rows[:, 6]
        top = len(inv_map) - 1 if use_label_map else 1_000_000
        bad = (cls != np.round(cls)) | (cls < 0) | (cls > top)
        if bad.any():
            raise UserError(f"{log_path}: the response for qsl_idx {i} has class id {cls[bad][0]:g}, "
                            f"not a whole number in 0..{top}"
                            + (" (this workload's classes are contiguous 1..N)" if use_label_map else "")
                            + ": wrong workload for this log?")
        h, w = dataset.sizes[i]
        for _, ymin, xmin, ymax, xmax, score, cls in rows.tolist():
            cat = inv_map[int(cls)] if use_label_map else int(cls)
            dets.append({"image_id": int(dataset.image_ids[i]), "category_id": cat, "score": score,
                         "bbox": [xmin * w, ymin * h, (xmax - xmin) * w, (ymax - ymin) * h]})
    if not seen:
        raise UserError(f"{log_path} holds no responses: was the run in accuracy mode?")
    quiet = io.StringIO()
    with contextlib.redirect_stdout(quiet):
        gt = COCO(str(dataset.annotations))
        if not dets:
            value = 0.0
        else:
            res = gt.loadRes(dets)
            ev = COCOeval(gt, res, iouType="bbox")
            ev.params.imgIds = sorted(int(dataset.image_ids[i]) for i in seen)
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
            value = max(0.0, float(ev.stats[0])) * 100
    return CocoMap(value, len(seen), len(dets), file_sha256(log_path))
