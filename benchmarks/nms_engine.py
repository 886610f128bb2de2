"""NMS (decode included) per image on one core: the engine's C++ kernels against the numba
kernels and vectorised NumPy, side by side in one run.

Inputs are benchmarks/nms.py's: realistic raw head outputs (postprocess/heads.py) over a spread
of score distributions (0 to 20 objects, low to high noise), in each card's score format
(fp16 for SSD-ResNet34, uint8 for SSD-MobileNet) and in float32. Every kernel runs warm: after
its compile (numba), on the image it has just run (its scores in cache, as when NMS follows the
device's write of them). Medians over images, then the median of the repeats.

* C++: `_engine.nms_image(spec, boxes, scores, repeats=R)` runs the kernel R times in C++ on
  one image; its per-image time is (t(R) - t(1)) / (R - 1), so the parameter conversion, table
  and scratch set-up of a call cancel out: the kernel alone, as the engine's post threads run it.
* numba: one `NMS.__call__` (its Python dispatch included, as DetectRaw calls it).
* NumPy: benchmarks/nms.py's numpy_nms on the float32 values.

    taskset -c 0 python benchmarks/nms_engine.py [--images 200] [--repeats 3] [-R 40]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nms import numpy_nms, per_image_us, workload_inputs  # noqa: E402  (benchmarks/nms.py)

from visionperf import _engine  # noqa: E402
from visionperf.postprocess.nms import NMS, ScoreFormat  # noqa: E402
from visionperf.postprocess.ssd import anchors_for  # noqa: E402
from visionperf.workloads import DETECTION, get_workload  # noqa: E402

DTYPE_CODES = {"uint8": 1, "float16": 3, "float32": 4}  # vp_dtype, as _engine.DTYPES


def engine_spec(name: str, nms: NMS):
    """("nms", {...}) as postprocess.DetectRaw.engine_spec builds it."""
    s, fmt = DETECTION[name], nms.fmt
    return ("nms", {
        "class_major": int(s.layout == "class-major"), "num_anchors": s.num_anchors,
        "num_classes": get_workload(name).num_classes, "score_dtype": DTYPE_CODES[fmt.dtype],
        "box_dtype": DTYPE_CODES["float32"], "score_threshold": s.score_threshold,
        "iou_threshold": s.iou_threshold, "max_candidates": s.max_candidates_per_class,
        "max_per_class": s.max_per_class, "max_per_image": s.max_per_image,
        "perm": [int(v) for v in nms.perm], "inv_scales": [float(v) for v in nms.inv_scales],
        "clip": int(s.clip_boxes), "uint8_scale": float(fmt.scale),
        "uint8_zero_point": float(fmt.zero_point), "anchors": nms.anchors})


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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("-R", type=int, default=40, help="C++ kernel runs per image per timing")
    a = ap.parse_args()
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core
    cases = [("ssd-mobilenet", "uint8", 51.6), ("ssd-mobilenet", "float32", 51.6),
             ("ssd-resnet34", "float16", 2300), ("ssd-resnet34", "float32", 2300)]
    print(f"{'workload':14s} {'scores':8s} {'C++ us':>8s} {'numba us':>9s} {'numpy us':>9s} "
          f"{'numba/C++':>9s} {'numpy/C++':>9s} {'dets/img':>8s} {'paper budget':>12s}")
    for name, fmt, budget in cases:
        items = workload_inputs(name, a.images, fmt)
        scale = 1 / 255 if fmt == "uint8" else 1.0
        nms = NMS(DETECTION[name], anchors_for(name), ScoreFormat(fmt, scale, 0))
        spec = engine_spec(name, nms)
        out = np.zeros((DETECTION[name].max_per_image, 7), np.float32)
        nms(items[0][0], items[0][2], 0, out)  # compile outside the timing
        dets = []
        for k, (boxes, _, raw) in enumerate(items):  # same detections as numba, row for row
            n = nms(boxes, raw, k, out)
            got = np.asarray(_engine.nms_image(spec, boxes, raw, k), np.float32).reshape(-1, 7)
            assert len(got) == n and np.array_equal(got[:, [0, 5, 6]], out[:n, [0, 5, 6]]), (name, fmt, k)
            np.testing.assert_allclose(got[:, 1:5], out[:n, 1:5], rtol=2e-5, atol=2e-6)
            dets.append(n)
        deq = [(b, s, (r.astype(np.float32) * scale) if fmt == "uint8" else r.astype(np.float32))
               for b, s, r in items]
        cpp, nb, base = [], [], []
        for _ in range(a.repeats):
            cpp.append(cpp_per_image_us(spec, items, a.R))
            nb.append(per_image_us(lambda it, k: nms(it[0], it[2], k, out), items, warm=True))
            base.append(per_image_us(lambda it, k: numpy_nms(name, it[0], it[2], k), deq, warm=True))
        c, n, b = statistics.median(cpp), statistics.median(nb), statistics.median(base)
        print(f"{name:14s} {fmt:8s} {c:8.1f} {n:9.1f} {b:9.1f} {n / c:8.1f}x {b / c:8.1f}x "
              f"{statistics.mean(dets):8.1f} {budget:>9.1f} us", flush=True)


if __name__ == "__main__":
    main()
