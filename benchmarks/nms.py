"""NMS (decode included) per image on one core: the numba kernels against vectorised NumPy.

Inputs are realistic raw head outputs (postprocess/heads.py) over a spread of score
distributions (0 to 40 objects, low to high noise), for each workload and score format.
Side by side in one run; medians over images, repeated.

    python benchmarks/nms.py [--images 200] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

from visionperf.postprocess.heads import raw_heads
from visionperf.postprocess.nms import NMS, ScoreFormat
from visionperf.postprocess.ssd import anchors_for, decode
from visionperf.workloads import DETECTION


def numpy_nms(name: str, boxes: np.ndarray, scores: np.ndarray, qsl_idx: int) -> np.ndarray:
    """A good vectorised NumPy implementation of the same algorithm (the baseline)."""
    spec = DETECTION[name]
    anchors = anchors_for(name)
    S = scores if spec.layout == "class-major" else scores.T
    E = boxes.T if spec.layout == "class-major" else boxes
    out_s, out_b, out_c = [], [], []
    live_c, live_a = np.nonzero(S[1:] > spec.score_threshold)
    live_c += 1
    for c in np.unique(live_c):
        cand = live_a[live_c == c]
        s = S[c, cand]
        order = np.argsort(-s, kind="stable")[: spec.max_candidates_per_class]
        cand, s = cand[order], s[order]
        b = decode(E[cand], anchors[cand], spec.box_coder_scales, spec.clip_boxes, spec.encoding)
        area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
        alive = np.ones(len(cand), bool)
        kept = []
        for t in range(len(cand)):
            if not alive[t]:
                continue
            kept.append(t)
            if len(kept) == spec.max_per_class:
                break
            ih = np.minimum(b[t, 2], b[t + 1:, 2]) - np.maximum(b[t, 0], b[t + 1:, 0])
            iw = np.minimum(b[t, 3], b[t + 1:, 3]) - np.maximum(b[t, 1], b[t + 1:, 1])
            inter = np.clip(ih, 0, None) * np.clip(iw, 0, None)
            iou = inter / (area[t] + area[t + 1:] - inter)
            alive[t + 1:] &= iou < spec.iou_threshold
        out_s.append(s[kept])
        out_b.append(b[kept])
        out_c.append(np.full(len(kept), c, np.float32))
    if not out_s:
        return np.zeros((0, 7), np.float32)
    s, b, c = np.concatenate(out_s), np.concatenate(out_b), np.concatenate(out_c)
    top = np.argsort(-s, kind="stable")[: spec.max_per_image]
    return np.column_stack([np.full(len(top), qsl_idx), b[top], s[top], c[top]]).astype(np.float32)


def workload_inputs(name: str, images: int, fmt: str):
    rng = np.random.default_rng(0)
    spreads = [(0, 0.5), (2, 0.8), (5, 1.0), (10, 1.2), (20, 1.5)]
    items = []
    for i in range(images):
        objects, noise = spreads[i % len(spreads)]
        boxes, scores = raw_heads(name, rng, objects, noise)
        if fmt == "float16":
            raw = scores.astype(np.float16)
        elif fmt == "uint8":
            raw = np.clip(np.rint(scores * 255), 0, 255).astype(np.uint8)
        else:
            raw = scores
        items.append((boxes, scores, raw))
    return items


def per_image_us(fn, items, warm: bool = False) -> float:
    """Median per image. Cold: each image once, rotating (its scores come from DRAM). Warm: the
    image just ran, so its scores sit in cache, as they do when NMS follows the device's
    write of them."""
    times = []
    for k, item in enumerate(items):
        if warm:
            fn(item, k)
        t = time.perf_counter()
        fn(item, k)
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core
    cases = [("ssd-mobilenet", "float32", 51.6, 25), ("ssd-mobilenet", "uint8", 51.6, 25),
             ("ssd-resnet34", "float32", 2300, 1000), ("ssd-resnet34", "float16", 2300, 1000)]
    print(f"{'workload':14s} {'scores':8s} {'cold us':>9s} {'warm us':>9s} {'numpy us':>9s} {'speed-up':>8s} "
          f"{'target':>7s} {'paper budget':>12s}")
    for name, fmt, budget, target in cases:
        items = workload_inputs(name, a.images, fmt)
        scale = 1 / 255 if fmt == "uint8" else 1.0
        nms = NMS(DETECTION[name], anchors_for(name), ScoreFormat(fmt, scale, 0))
        out = np.zeros((DETECTION[name].max_per_image, 7), np.float32)
        nms(items[0][0], items[0][2], 0, out)  # compile outside the timing
        ours, warm, base = [], [], []
        for _ in range(a.repeats):
            ours.append(per_image_us(lambda it, k: nms(it[0], it[2], k, out), items))
            warm.append(per_image_us(lambda it, k: nms(it[0], it[2], k, out), items, warm=True))
            deq = [(b, s, (r.astype(np.float32) * scale) if fmt == "uint8" else r.astype(np.float32))
                   for b, s, r in items]
            base.append(per_image_us(lambda it, k: numpy_nms(name, it[0], it[2], k), deq))
        o, wm, b = statistics.median(ours), statistics.median(warm), statistics.median(base)
        print(f"{name:14s} {fmt:8s} {o:9.1f} {wm:9.1f} {b:9.1f} {b / o:7.1f}x {target:>6d}  {budget:>10.1f} us")


if __name__ == "__main__":
    main()
