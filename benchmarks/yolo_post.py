"""YOLO post-processing per image on one core: the engine's C++ kernel (engine/src/yolo_post.cc)
against Ultralytics' own (non_max_suppression + scale_boxes, PyTorch on the CPU, one thread) on
the same heads, side by side in one run.

Heads (postprocess/heads.py's yolo_heads): "realistic" (a trained model's score spread: most
anchors far below 0.001, a few hundred candidates), square 640x640 and rect 448x640, and
"random" (random weights: every score uniform, all 8,400 anchors candidates, 300 kept). The C++
kernel also runs on the same heads in fp16 and channels last.

* C++: `_engine.YoloNms(params)(head, qsl_idx, out)`, each call timed: the kernel as the
  engine's post threads run it, plus about a microsecond of Python call; warm (the head in
  cache, as right after the device wrote it).
* Ultralytics (`--ultralytics [PYTHON]`, the oracle environment's Python by default: it has
  torch, torchvision and ultralytics): the heads go to an .npz, a subprocess of that Python times
  `non_max_suppression(head, 0.001, 0.7, max_det=300)` + `scale_boxes` per image (each call on a
  fresh copy of the head, made outside the timing: the function writes into its input),
  torch.set_num_threads(1), pinned to the same core. Twice: as the reference's predict runs it
  (torchvision never imported, so Ultralytics' TorchNMS) and with torchvision.ops.nms.
  `match` counts the images whose records (the reference's 7 floats) equal the C++ kernel's.

Both sides: the median of an image's R calls, then the median over images (the same
statistic, so that other load on the machine weighs on both alike). Targets (issue 24): at least 10x
faster than Ultralytics, below 1 ms per image for realistic heads.

    python benchmarks/yolo_post.py [--images 10] [-R 40] [--cpu 0] [--ultralytics [PYTHON]]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
ORACLE_PYTHON = ROOT / ".venv-oracle" / "bin" / "python"
KINDS = {  # name: (in_h, in_w, heads kind)
    "realistic 640x640": (640, 640, "realistic"),
    "realistic 448x640 (rect)": (448, 640, "realistic"),
    "random 640x640": (640, 640, "random"),
}
GEOMETRY = {(640, 640): (480, 640), (448, 640): (427, 640)}  # input -> the image it letterboxes
ULTRALYTICS_BUDGET_S = 3.0  # Ultralytics' repeats of one image stop past this (TorchNMS on a random head takes seconds)


def make_heads(images: int) -> dict[str, list[np.ndarray]]:
    from visionperf.postprocess.heads import yolo_heads

    return {name: [yolo_heads(np.random.default_rng(1000 + i), h, w, objects=2 + i % 8, kind=kind)
                   for i in range(images)] for name, (h, w, kind) in KINDS.items()}


def geometry_table() -> tuple[np.ndarray, dict[tuple[int, int], int]]:
    rows, index = [], {}
    for (in_h, in_w), (h0, w0) in GEOMETRY.items():
        index[(in_h, in_w)] = len(rows)
        rows.append((h0, w0, in_h, in_w))
    return np.array(rows, np.int32), index


def time_cpp(heads: dict[str, list[np.ndarray]], R: int) -> tuple[dict, dict]:
    """Per kind and variant: median us per image; and the float32 rows per kind (float32, channels first)."""
    from visionperf import _engine
    from visionperf.postprocess.yolo import yolo_params

    geometry, index = geometry_table()
    out = np.empty((300, 7), np.float32)
    times: dict = {}
    rows: dict = {}
    for variant, layout, dtype in (("float32", "channels-first", "float32"), ("fp16", "channels-first", "float16"),
                                   ("channels last", "channels-last", "float32")):
        kernel = _engine.YoloNms(yolo_params(geometry, 640, layout=layout, dtype=dtype))
        for name, hs in heads.items():
            q = index[KINDS[name][:2]]
            per_image = []
            for k, h in enumerate(hs):
                x = np.ascontiguousarray(h if layout == "channels-first" else h.T,
                                         np.float16 if dtype == "float16" else np.float32)
                n = kernel(x, q, out)
                if variant == "float32":
                    rows.setdefault(name, []).append(out[:n].copy())
                per_call = []
                for _ in range(R):
                    t0 = time.perf_counter()
                    kernel(x, q, out)
                    per_call.append((time.perf_counter() - t0) * 1e6)
                per_image.append(statistics.median(per_call))
            times[(name, variant)] = statistics.median(per_image)
    return times, rows


def time_ultralytics(python: str, heads: dict[str, list[np.ndarray]], R: int, nms: str) -> dict:
    """Runs this file's worker in PYTHON: {kind: (median us per image, [records per image])}."""
    geometry, index = geometry_table()
    with tempfile.TemporaryDirectory() as tmp:
        arrays = {"geometry": geometry}
        meta = []
        for name, hs in heads.items():
            for k, h in enumerate(hs):
                key = f"h{len(meta)}"
                arrays[key] = h
                meta.append((name, key, index[KINDS[name][:2]]))
        np.savez(Path(tmp) / "heads.npz", **arrays)
        (Path(tmp) / "meta.json").write_text(json.dumps(meta))
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        subprocess.run([python, __file__, "--worker", tmp, "--repeats", str(R), "--nms", nms], check=True, env=env)
        result = json.loads((Path(tmp) / "times.json").read_text())
        recs = np.load(Path(tmp) / "records.npz")
        out: dict = {}
        for (name, key, _), us in zip(meta, result):
            t, r = out.setdefault(name, ([], []))
            t.append(us)
            r.append(recs[key])
        return {name: (statistics.median(t), r) for name, (t, r) in out.items()}


def worker(folder: str, R: int, nms: str) -> None:
    """In the Ultralytics environment: time non_max_suppression + scale_boxes per head."""
    import torch

    if nms == "torchvision":
        import torchvision  # noqa: F401  (Ultralytics then calls torchvision.ops.nms)
    from ultralytics.utils import LOGGER
    from ultralytics.utils.nms import non_max_suppression
    from ultralytics.utils.ops import scale_boxes

    assert ("torchvision" in sys.modules) == (nms == "torchvision"), "torchvision imported unexpectedly"
    torch.set_num_threads(1)
    coco = np.array([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 27, 28,
                     31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55,
                     56, 57, 58, 59, 60, 61, 62, 63, 64, 65, 67, 70, 72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 82, 84,
                     85, 86, 87, 88, 89, 90], np.float32)
    data = np.load(Path(folder) / "heads.npz")
    geometry = data["geometry"]
    meta = json.loads((Path(folder) / "meta.json").read_text())
    times, records = [], {}
    LOGGER.setLevel(40)  # TorchNMS's time-limit warning on random heads
    for name, key, q in meta:
        h0, w0, in_h, in_w = (int(v) for v in geometry[q])
        head = torch.from_numpy(data[key])[None]
        spent, per = 0.0, []
        for r in range(R):
            x = head.clone()  # the function writes into its input
            t0 = time.perf_counter()
            pred = non_max_suppression(x, 0.001, 0.7, max_det=300)[0]
            pred[:, :4] = scale_boxes((in_h, in_w), pred[:, :4], (h0, w0, 3))
            t1 = time.perf_counter()
            per.append((t1 - t0) * 1e6)
            spent += t1 - t0
            if r == 0:  # the reference's records (yolo_loadgen.py: NumPy float32 / int)
                b = pred[:, :4].numpy()
                rec = np.empty((len(b), 7), np.float32)
                rec[:, 0] = q
                rec[:, 1], rec[:, 2], rec[:, 3], rec[:, 4] = b[:, 1] / h0, b[:, 0] / w0, b[:, 3] / h0, b[:, 2] / w0
                rec[:, 5] = pred[:, 4].numpy()
                rec[:, 6] = coco[pred[:, 5].numpy().astype(int)]
                records[key] = rec
            if spent > ULTRALYTICS_BUDGET_S:
                break
        times.append(statistics.median(per))
    (Path(folder) / "times.json").write_text(json.dumps(times))
    np.savez(Path(folder) / "records.npz", **records)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=10, help="heads per kind")
    ap.add_argument("-R", "--repeats", type=int, default=40, help="runs of each image")
    ap.add_argument("--cpu", type=int, default=0, help="the one core everything runs on")
    ap.add_argument("--ultralytics", nargs="?", const=str(ORACLE_PYTHON), default=None, metavar="PYTHON",
                    help=f"also time Ultralytics in PYTHON (default {ORACLE_PYTHON})")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--nms", default="torchnms", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args.worker, args.repeats, args.nms)
        return
    os.sched_setaffinity(0, {args.cpu})
    heads = make_heads(args.images)
    cands = {name: statistics.median(int((h[4:].max(0) > np.float32(0.001)).sum()) for h in hs)
             for name, hs in heads.items()}
    cpp, rows = time_cpp(heads, args.repeats)
    ul: dict = {}
    if args.ultralytics:
        if not Path(args.ultralytics).exists():
            sys.exit(f"{args.ultralytics} does not exist: make the oracle environment first (make oracle), "
                     "or pass --ultralytics PYTHON with torch and ultralytics installed")
        for nms in ("torchnms", "torchvision"):
            ul[nms] = time_ultralytics(args.ultralytics, heads, args.repeats, nms)
    print(f"YOLO post-processing per image on core {args.cpu} ({args.images} heads per kind, {args.repeats} "
          f"runs each; medians)")
    head = f"{'heads':26} {'cands':>6} {'kept':>5} {'C++ f32':>9} {'C++ fp16':>9} {'C++ [A,84]':>10}"
    if ul:
        head += f" {'UL TorchNMS':>12} {'ratio':>6} {'UL torchvision':>15} {'ratio':>6} {'match':>7}"
    print(head + "   (us/image)")
    for name in heads:
        kept = statistics.median(len(r) for r in rows[name])
        line = (f"{name:26} {cands[name]:6.0f} {kept:5.0f} {cpp[(name, 'float32')]:9.1f} "
                f"{cpp[(name, 'fp16')]:9.1f} {cpp[(name, 'channels last')]:10.1f}")
        if ul:
            base = cpp[(name, "float32")]
            t_nms, r_nms = ul["torchnms"][name]
            t_tv, r_tv = ul["torchvision"][name]
            match = sum(np.array_equal(a, b) for a, b in zip(rows[name], r_tv))
            match_nms = sum(np.array_equal(a, b) for a, b in zip(rows[name], r_nms))
            line += (f" {t_nms:12.0f} {t_nms / base:5.0f}x {t_tv:15.0f} {t_tv / base:5.0f}x"
                     f" {match}/{len(rows[name])} tv, {match_nms}/{len(rows[name])} TorchNMS")
        print(line)


if __name__ == "__main__":
    main()
