"""NMS (decode included) per image on one core: the engine's C++ kernels (engine/src/nms.cc)
against vectorised NumPy, side by side in one run.

The C++ kernels replaced numba kernels; the record of that comparison is commit 1f35a12:
"NMS in the engine (C++): both layouts, float32/fp16/uint8 raw scores thresholded in vectorised
128-byte blocks, decode only survivors, greedy IoU 16 kept boxes at a time, per-thread scratch;
equal detection for detection to the NumPy reference (58 tests); 2.5-5.4x faster than the numba
kernels per image on one core (benchmarks/nms_engine.py)". The numba kernels then left the
package, so this benchmark no longer runs them.

Inputs: realistic raw head outputs (postprocess/heads.py) over a spread of score distributions
(0 to 20 objects, low to high noise), for both workloads, in each card's score format (uint8
for SSD-MobileNet, fp16 for SSD-ResNet34, as the paper's section II-F) and in float32. Every
kernel runs warm: on the image it has just run (its scores in cache, as when NMS follows the
device's write of them). Medians over images, then the median of the repeats.

* C++: `_engine.nms_image(spec, boxes, scores, repeats=R)` runs the kernel R times in C++ on one
  image; its per-image time is (t(R) - t(1)) / (R - 1), so the parameter conversion, table and
  scratch set-up of a call cancel out: the kernel alone, as the engine's post threads run it.
* NMS(): one `NMS.__call__` from Python (postprocess/nms.py, as DetectRaw.__call__ calls it): the
  same kernel plus that per-call set-up and the rows' conversion to NumPy. Only Python callers
  pay it; the engine's post threads do not.
* NumPy: `numpy_nms` below on the float32 values (a good vectorised implementation).

`match` is the share of images where NumPy and C++ give the same detections (index, score and
class exactly, boxes to float32 rounding; tests/test_nms.py holds the kernels detection for
detection against a plain reference). The paper's per-image budgets: 51.6 us (SSD-MobileNet),
2.3 ms (SSD-ResNet34).

    taskset -c 0 python benchmarks/nms.py [--images 200] [--repeats 3] [-R 40]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

from visionperf import _engine
from visionperf.postprocess.heads import raw_heads
from visionperf.postprocess.nms import NMS, ScoreFormat
from visionperf.postprocess.ssd import anchors_for, decode
from visionperf.workloads import DETECTION, get_workload


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
    """[(boxes, float32 scores, raw scores in FMT)] per image."""
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


def per_image_us(fn, items) -> float:
    """Median over images of one warm call: the image has just run, so its scores sit in cache."""
    times = []
    for k, item in enumerate(items):
        fn(item, k)
        t = time.perf_counter()
        fn(item, k)
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e6


def cpp_per_image_us(spec, items, R: int) -> float:
    """Median over images of (t(R) - t(1)) / (R - 1): the kernel alone, warm."""
    times = []
    for k, (boxes, _, raw) in enumerate(items):
        _engine.nms_image(spec, boxes, raw, k, repeats=1)  # warm the image
        t = time.perf_counter()
        _engine.nms_image(spec, boxes, raw, k, repeats=1)
        t1 = time.perf_counter() - t
        t = time.perf_counter()
        _engine.nms_image(spec, boxes, raw, k, repeats=R)
        tr = time.perf_counter() - t
        times.append((tr - t1) / (R - 1))
    return statistics.median(times) * 1e6


def same(a: np.ndarray, b: np.ndarray) -> bool:
    return (a.shape == b.shape and np.array_equal(a[:, [0, 5, 6]], b[:, [0, 5, 6]])
            and np.allclose(a[:, 1:5], b[:, 1:5], rtol=2e-5, atol=2e-6))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("-R", type=int, default=40, help="C++ kernel runs per image per timing")
    a = ap.parse_args()
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core
    cases = [("ssd-mobilenet", "uint8", 51.6), ("ssd-mobilenet", "float32", 51.6),
             ("ssd-resnet34", "float16", 2300), ("ssd-resnet34", "float32", 2300)]
    print(f"{'workload':14s} {'scores':8s} {'C++ us':>8s} {'NMS() us':>9s} {'numpy us':>9s} {'numpy/C++':>9s} "
          f"{'dets/img':>8s} {'match':>6s} {'budget us':>9s} {'C++/budget':>10s}")
    for name, fmt, budget in cases:
        items = workload_inputs(name, a.images, fmt)
        scale = 1 / 255 if fmt == "uint8" else 1.0
        nms = NMS(DETECTION[name], anchors_for(name), ScoreFormat(fmt, scale, 0))
        spec = nms.engine_spec(get_workload(name).num_classes)
        out = np.zeros((DETECTION[name].max_per_image, 7), np.float32)
        deq = [(b, s, (r * scale).astype(np.float32) if fmt == "uint8" else r.astype(np.float32))
               for b, s, r in items]  # uint8: float32((q - 0) * scale), the engine's table
        dets, matches = [], 0
        for k, ((boxes, _, raw), (_, _, f)) in enumerate(zip(items, deq)):  # outside the timing
            n = nms(boxes, raw, k, out)
            dets.append(n)
            matches += same(out[:n], numpy_nms(name, boxes, f, k))
        cpp, call, base = [], [], []
        for _ in range(a.repeats):
            cpp.append(cpp_per_image_us(spec, items, a.R))
            call.append(per_image_us(lambda it, k: nms(it[0], it[2], k, out), items))
            base.append(per_image_us(lambda it, k: numpy_nms(name, it[0], it[2], k), deq))
        c, p, b = statistics.median(cpp), statistics.median(call), statistics.median(base)
        print(f"{name:14s} {fmt:8s} {c:8.1f} {p:9.1f} {b:9.1f} {b / c:8.1f}x {statistics.mean(dets):8.1f} "
              f"{matches / len(items):6.0%} {budget:9.1f} {c / budget:10.1%}", flush=True)


if __name__ == "__main__":
    main()
