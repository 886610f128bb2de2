"""Realistic raw SSD head outputs: what a trained model emits, without the model.

Most anchors see background (its class dominates); around a few objects, anchors of matching
size and place score one class highly. Scores go through the real activation (softmax over
classes for SSD-ResNet34, sigmoid for SSD-MobileNet), so thresholds cut where they would on a
real image. Used by the NMS tests and benchmark, and by the simulated card's outputs.
"""

from __future__ import annotations

import numpy as np

from ..workloads import DETECTION, get_workload
from .ssd import anchors_for


def raw_heads(workload_name: str, rng: np.random.Generator, objects: int = 5,
              noise: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """One image's (boxes, scores) in the workload's raw layout, float32.

    SSD-ResNet34: locs [4, A], confs [C, A] (class-major, softmax).
    SSD-MobileNet: boxes [A, 4], scores [A, C] (box-major, sigmoid).
    """
    spec = DETECTION[workload_name]
    C = get_workload(workload_name).num_classes
    anchors = anchors_for(workload_name)
    A = len(anchors)
    # Class logits sit well below the threshold except near objects; NOISE (0.5..1.5 is
    # realistic) widens their spread, so some background anchors pass too.
    logits = rng.normal(-3.0 if spec.layout == "class-major" else -6.0, noise, (A, C)).astype(np.float32)
    logits[:, 0] = 4.0 + rng.normal(0, noise, A).astype(np.float32)  # background
    for _ in range(objects):
        cy, cx = rng.uniform(0.1, 0.9, 2)
        size = rng.uniform(0.05, 0.6)
        cls = int(rng.integers(1, C))
        # the few anchors of about its place and size: an SSD's positives
        near = (np.abs(anchors[:, 0] - cy) < size / 4) & (np.abs(anchors[:, 1] - cx) < size / 4) \
            & (np.abs(np.log(anchors[:, 2] / size)) < 0.35)
        logits[near, cls] = rng.uniform(3.0, 9.0, near.sum()).astype(np.float32)
        logits[near, 0] = 0.0
    enc = rng.normal(0, 0.5, (A, 4)).astype(np.float32)
    if spec.layout == "class-major":
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        probs = (e / e.sum(axis=1, keepdims=True)).astype(np.float32)
        return np.ascontiguousarray(enc.T), np.ascontiguousarray(probs.T)
    return enc, (1.0 / (1.0 + np.exp(-logits))).astype(np.float32)


def retinanet_heads(rng: np.random.Generator, objects: int = 5, noise: float = 1.0,
                    dtype=np.float32) -> tuple[np.ndarray, np.ndarray]:
    """One image's RetinaNet heads: bbox_regression [A, 4] float32 (dx, dy, dw, dh) and
    cls_logits [A, 264] in DTYPE (float32 or float16), A = 120,087.

    A focal-loss head leaves background logits far below the threshold (trained from a prior of
    -4.6; here about -6.5), so with NOISE 1 a few thousand of its 31.7 M logits pass 0.05 by
    chance, most of them on P3 (past its 1,000-candidate cap, as a real image's are). Around each
    object, the anchors of about its place and size score its class highly.
    """
    from .retinanet import retinanet_anchors

    anchors = retinanet_anchors()  # (cy, cx, h, w) pixels
    A, C = len(anchors), get_workload("retinanet").num_classes
    logits = rng.standard_normal((A, C), dtype=np.float32)
    logits *= np.float32(noise)
    logits -= np.float32(6.5)
    for _ in range(objects):
        cy, cx = rng.uniform(80, 720, 2)
        size = rng.uniform(30, 500)
        cls = int(rng.integers(0, C))
        near = (np.abs(anchors[:, 0] - cy) < size / 4) & (np.abs(anchors[:, 1] - cx) < size / 4) \
            & (np.abs(np.log(np.sqrt(anchors[:, 2] * anchors[:, 3]) / size)) < 0.35)
        logits[near, cls] = rng.uniform(-1.0, 5.0, int(near.sum())).astype(np.float32)
    reg = rng.normal(0, 0.3, (A, 4)).astype(np.float32)
    return reg, logits if dtype == np.float32 else logits.astype(dtype)


def yolo_heads(rng: np.random.Generator, in_h: int = 640, in_w: int = 640, objects: int = 5,
               layout: str = "channels-first", kind: str = "realistic") -> np.ndarray:
    """One image's raw YOLO head (Ultralytics' Detect output): float32 [84, A] ("channels-first",
    the export's) or [A, 84] ("channels-last"), A the anchors of an in_h x in_w input; rows cx,
    cy, w, h in input pixels, then 80 sigmoided class scores.

    kind "realistic", as a trained model: background scores far below 0.001 (logits about -11),
    but 1.5% of anchors score some class weakly (0.0003 to 0.02: the low-score detections a
    trained model gives at conf 0.001); around each object, the anchors near its centre on the
    levels suited to its size score its class (and a little a confusable one), their boxes the
    object's, jittered, so NMS really suppresses: several hundred candidates, about 100 kept.
    kind "random", as random weights: every score uniform in [0, 1) (all anchors are candidates),
    boxes of a few strides around their anchors.
    """
    from .yolo import num_anchors

    if layout not in ("channels-first", "channels-last"):
        raise ValueError(f"layout {layout!r}: choose channels-first or channels-last")
    C = 80
    strides = (8, 16, 32)
    A = num_anchors(in_h, in_w, strides)
    # anchor centres, level by level, rows then columns (Ultralytics' make_anchors)
    cx, cy, st = [], [], []
    for s in strides:
        gy, gx = np.meshgrid(np.arange(in_h // s), np.arange(in_w // s), indexing="ij")
        cx.append(((gx.ravel() + 0.5) * s))
        cy.append(((gy.ravel() + 0.5) * s))
        st.append(np.full(gx.size, s))
    cx, cy, st = (np.concatenate(v).astype(np.float32) for v in (cx, cy, st))
    head = np.empty((A, 4 + C), np.float32)
    head[:, 0] = cx + rng.normal(0, 0.3, A).astype(np.float32) * st
    head[:, 1] = cy + rng.normal(0, 0.3, A).astype(np.float32) * st
    head[:, 2] = st * np.exp(rng.normal(1.0, 0.6, A)).astype(np.float32)
    head[:, 3] = st * np.exp(rng.normal(1.0, 0.6, A)).astype(np.float32)
    if kind == "random":
        head[:, 4:] = rng.random((A, C), dtype=np.float32)
    elif kind == "realistic":
        logits = rng.standard_normal((A, C), dtype=np.float32) - np.float32(11.0)
        weak = np.flatnonzero(rng.random(A) < 0.015)
        logits[weak, rng.integers(0, C, len(weak))] = rng.uniform(-8, -4, len(weak))
        for _ in range(objects):
            bw, bh = in_w * rng.uniform(0.05, 0.6), in_h * rng.uniform(0.05, 0.6)
            ox, oy = rng.uniform(bw / 2, in_w - bw / 2), rng.uniform(bh / 2, in_h - bh / 2)
            cls, other = rng.choice(C, 2, replace=False)
            r2 = ((cx - ox) / (bw / 2)) ** 2 + ((cy - oy) / (bh / 2)) ** 2
            level = 2.5 * np.abs(np.log2(np.sqrt(bw * bh) / (8.0 * st)))  # each level suits a size
            near = r2 < 1
            k = int(near.sum())
            logit = (rng.uniform(2, 6) - 30 * r2[near] - level[near] + rng.normal(0, 0.5, k)).astype(np.float32)
            logits[near, cls] = np.maximum(logits[near, cls], logit)
            logits[near, other] = np.maximum(logits[near, other], logit - np.float32(3))
            head[near, 0] = ox + rng.normal(0, 0.02 * bw, k)
            head[near, 1] = oy + rng.normal(0, 0.02 * bh, k)
            head[near, 2] = bw * np.exp(rng.normal(0, 0.05, k))
            head[near, 3] = bh * np.exp(rng.normal(0, 0.05, k))
        head[:, 4:] = 1 / (1 + np.exp(-logits))
    else:
        raise ValueError(f"kind {kind!r}: choose realistic or random")
    return np.ascontiguousarray(head.T) if layout == "channels-first" else head
