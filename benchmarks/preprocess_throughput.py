"""Preprocessing images/s: `visionperf preprocess` (all workers) against a one-process loop.

Both do the same work on the same synthetic ImageNet-layout JPEGs: decode, resize, crop,
normalise, write each row into a memory-mapped array. Side by side, repeated, medians.

    python benchmarks/preprocess_throughput.py [--count 512] [--repeats 3] [--dtype float32]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def one_process_loop(dataset_dir: str, out: Path, count: int, cv2_threads: int) -> float:
    import cv2

    from visionperf.datasets import open_dataset, preprocess_one
    from visionperf.workloads import RESNET50

    cv2.setNumThreads(cv2_threads)
    ds = open_dataset(RESNET50, dataset_dir, count)
    t = time.perf_counter()
    arr = np.lib.format.open_memmap(out, mode="w+", dtype=np.float32, shape=(len(ds), 3, 224, 224))
    for i in range(len(ds)):
        arr[i] = preprocess_one(RESNET50, ds.path(i), "NCHW")
    arr.flush()
    return len(ds) / (time.perf_counter() - t)


def visionperf_preprocess(dataset_dir: str, out: Path, count: int, workers: int, dtype: str) -> tuple[float, float]:
    """(images/s of the whole command, images/s of its pool as the command reports it)."""
    import re

    shutil.rmtree(out, ignore_errors=True)
    t = time.perf_counter()
    extra = ["--dtype", dtype, "--scale", "1.0789", "--zero-point", "114"] if dtype != "float32" else []
    p = subprocess.run([sys.executable, "-m", "visionperf", "preprocess", "resnet50", "--dataset", dataset_dir,
                        "--out", str(out), "--count", str(count), "--workers", str(workers), *extra],
                       check=True, capture_output=True, text=True)
    whole = count / (time.perf_counter() - t)
    pool = float(re.search(r"([\d,.]+) images/s", p.stdout).group(1).replace(",", ""))
    return whole, pool


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--dtype", default="float32")
    a = ap.parse_args()
    from visionperf.datasets.synthetic import make_imagenet

    work = Path(tempfile.mkdtemp(prefix="vp-pre-"))
    ds = str(make_imagenet(work / "imagenet", count=a.count))
    cores = len(os.sched_getaffinity(0))
    whole_key = f"visionperf preprocess, {cores} workers (whole command)"
    pool_key = f"visionperf preprocess, {cores} workers (pool, as reported)"
    rows = {"one process, OpenCV 1 thread": [], "one process, OpenCV default threads": [],
            whole_key: [], pool_key: []}
    for r in range(a.repeats):
        rows["one process, OpenCV 1 thread"].append(one_process_loop(ds, work / "loop.npy", a.count, 1))
        rows["one process, OpenCV default threads"].append(one_process_loop(ds, work / "loop.npy", a.count, -1))
        whole, pool = visionperf_preprocess(ds, work / "cache", a.count, cores, a.dtype)
        rows[whole_key].append(whole)
        rows[pool_key].append(pool)
        print(f"repeat {r + 1}: " + ", ".join(f"{v[-1]:.0f}" for v in rows.values()), flush=True)
    base = statistics.median(rows["one process, OpenCV 1 thread"])
    print(f"\n{a.count} images, {a.dtype}, medians of {a.repeats} (images/s; per core = / {cores} for the pool)")
    for k, v in rows.items():
        m = statistics.median(v)
        per_core = m / cores if "workers" in k else m
        print(f"  {k:52s} {m:7.1f}/s  {m / base:4.2f}x  per core {per_core:6.1f}/s")


if __name__ == "__main__":
    main()
