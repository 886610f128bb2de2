"""Accuracy from `mlperf_log_accuracy.json`, written in the format the submission checker parses."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import UserError


def read_accuracy_log(path: str | Path) -> list[dict]:
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as f:
            records = json.load(f)
    except OSError as e:
        raise UserError(f"cannot read accuracy log {path}: {e.strerror}") from None
    except ValueError:
        raise UserError(f"{path} is not valid JSON: is it a complete mlperf_log_accuracy.json?") from None
    if not isinstance(records, list) or any(not isinstance(r, dict) or "qsl_idx" not in r or "data" not in r
                                            for r in records):
        raise UserError(f"{path} is not an MLPerf accuracy log (a list of {{seq_id, qsl_idx, data}})")
    return records


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
    for r in records:
        i = int(r["qsl_idx"])
        if i in seen:
            continue
        if not 0 <= i < len(labels):
            raise UserError(f"{log_path}: qsl_idx {i} is outside the dataset ({len(labels)} images): "
                            "wrong --dataset?")
        seen.add(i)
        raw = bytes.fromhex(r["data"])
        if len(raw) < 4:
            continue  # an empty response counts as wrong
        pred = int(np.frombuffer(raw[:4], dtype=np.float32)[0])
        good += pred == int(labels[i])
    if not seen:
        raise UserError(f"{log_path} holds no responses: was the run in accuracy mode?")
    return Top1(good, len(seen), file_sha256(log_path))


def write_text_atomic(path: str | Path, text: str) -> None:
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
