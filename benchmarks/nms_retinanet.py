"""RetinaNet post-processing (per-level top-k, decode, clip, per-class NMS, top 300) per image on
one core: the engine's C++ kernel (engine/src/nms.cc, retinanet_image) against vectorised NumPy
(postprocess/retinanet.py's reference_detections), side by side in one run.

Inputs: realistic heads (postprocess/heads.py retinanet_heads: cls_logits [120087, 264] and
bbox_regression [120087, 4]) over a spread of objects and noise, with logits in float32 and in
fp16 (what a card would return). One image's logits are 127 MB (fp16: 63 MB), far beyond any
cache, so every call streams them from memory: a scan at memory bandwidth is the floor.

* C++: `_engine.nms_image(spec, reg, logits, repeats=R)`; per image (t(R) - t(1)) / (R - 1), so
  the per-call set-up (tables, scratch) cancels out: the kernel as the engine's post threads run it.
  Both thresholds compare raw logits against logit(0.05) (fp16 as order-preserving bit keys), so
  only survivors are converted, sorted, decoded and given a sigmoid.
* NumPy: reference_detections on the same logits (fp16 converted to float32 first, as part of
  its time): thresholds the logits with one vectorised compare per level, argsorts the
  survivors, decodes the top 1000 and runs greedy NMS per class with vectorised IoUs.

`match` is the share of images where both give the same detections (index, score and label
exactly, boxes to float32 rounding). The budget column is one Cloud AI 100 card's share of a
second at 262 samples/s (MLPerf v3.0, 16 cards, 4189.21 samples/s): the host time one card's
images may take on one core before that core falls behind the card.

    taskset -c 0 python benchmarks/nms_retinanet.py [--images 6] [--repeats 3] [-R 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

from visionperf import _engine
from visionperf.postprocess.heads import retinanet_heads
from visionperf.postprocess.nms import NMS, ScoreFormat
from visionperf.postprocess.retinanet import reference_detections, retinanet_anchors
from visionperf.workloads import DETECTION, RETINANET


def same(a: np.ndarray, b: np.ndarray) -> bool:
    return (a.shape == b.shape and np.array_equal(a[:, [0, 5, 6]], b[:, [0, 5, 6]])
            and np.allclose(a[:, 1:5], b[:, 1:5], rtol=2e-6, atol=2e-7))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=6)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("-R", type=int, default=5, help="C++ kernel runs per image per timing")
    a = ap.parse_args()
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core
    spreads = [(0, 0.8), (5, 1.0), (20, 1.2), (50, 1.4)]
    rng = np.random.default_rng(0)
    images = [retinanet_heads(rng, *spreads[i % len(spreads)]) for i in range(a.images)]
    budget_us = 1e6 / RETINANET.card_rate
    print(f"{'logits':8s} {'C++ ms':>8s} {'numpy ms':>9s} {'numpy/C++':>9s} {'dets/img':>8s} {'match':>6s} "
          f"{'budget ms':>9s} {'C++/budget':>10s}")
    for fmt in ("float16", "float32"):
        items = [(reg, lg.astype(np.float16) if fmt == "float16" else lg) for reg, lg in images]
        spec = NMS(DETECTION["retinanet"], retinanet_anchors(), ScoreFormat(fmt)).engine_spec(RETINANET.num_classes)
        cpp_runs, np_runs = [], []
        dets, matches = [], []
        for rep in range(a.repeats):
            cpp_t, np_t = [], []
            for k, (reg, lg) in enumerate(items):
                t = time.perf_counter()
                got = np.asarray(_engine.nms_image(spec, reg, lg, k, repeats=1), np.float32).reshape(-1, 7)
                t1 = time.perf_counter() - t
                t = time.perf_counter()
                _engine.nms_image(spec, reg, lg, k, repeats=a.R)
                cpp_t.append((time.perf_counter() - t - t1) / (a.R - 1))
                t = time.perf_counter()
                ref = reference_detections(reg, lg, k)
                np_t.append(time.perf_counter() - t)
                if rep == 0:
                    dets.append(len(got))
                    matches.append(same(got, ref))
            cpp_runs.append(statistics.median(cpp_t) * 1e3)
            np_runs.append(statistics.median(np_t) * 1e3)
        c, n = statistics.median(cpp_runs), statistics.median(np_runs)
        print(f"{fmt:8s} {c:8.2f} {n:9.2f} {n / c:9.1f} {statistics.mean(dets):8.0f} "
              f"{100 * np.mean(matches):5.0f}% {budget_us / 1e3:9.2f} {c / (budget_us / 1e3):10.2f}")


if __name__ == "__main__":
    main()
