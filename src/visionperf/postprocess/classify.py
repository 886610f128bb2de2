"""Classification responses: one float32 0-based label per sample (what the checker reads)."""

from __future__ import annotations

import numpy as np


def labels_from_output(output: np.ndarray, n: int, label_offset: int) -> np.ndarray:
    """Model output rows -> contiguous float32 labels [n].

    Takes either the ArgMax output (int [N]) or class scores ([N, classes]); the official
    ResNet50 has 1001 classes with 0 = background, hence LABEL_OFFSET.
    """
    out = output[:n]
    if out.ndim == 2:
        out = out.argmax(axis=1)
    return (out.reshape(n) - label_offset).astype(np.float32)
