"""visionperf against Ultralytics' own predict, image by image (runs in the main .venv).

Reads what oracle/ultralytics_side.py wrote into RUN (the models, each image's oracle tensor,
head and records per mode) and checks, for every image and mode:

- tensor: visionperf's letterbox row (decode_bgr + letterbox_sample) equals the oracle's
  preprocessed tensor byte for byte;
- head: ONNX Runtime on `wrap_float_input(onnx)` fed visionperf's own uint8 row equals the
  oracle's head (or the largest absolute difference is said); `pt-rect` compares the PyTorch
  head with visionperf's run of the dynamic ONNX, for information only;
- numpy, c++: the NumPy reference and the engine's C++ kernel, each on the ORACLE's head, give
  the oracle's records exactly: boxes, scores, classes and order, bit for bit (the first
  difference is printed otherwise);
- e2e: the C++ kernel on visionperf's own head gives the oracle's records (follows from the two
  above when the heads are equal);
- run: the whole run path, `visionperf run yolo --mode accuracy` (cache, ONNX Runtime device,
  the engine's post threads, LoadGen) on the images as a COCO-safe folder, in the mode's shape
  mode: the records in LoadGen's accuracy log equal the oracle's (skip with --no-run).

Prints a table and a verdict; exits 1 on any mismatch of tensor, numpy, c++ or run (a head that
differs is reported, not failed: its e2e column says whether it changed a detection).

Usage: python oracle/compare.py RUN [--no-run] [--write-fixtures [DIR]]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import shutil
import sys
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import onnxruntime as ort

from visionperf.datasets.imagenet import decode_bgr
from visionperf.datasets.letterbox import letterbox_sample
from visionperf.models.yolo11 import wrap_float_input
from visionperf.workloads import YOLO, YOLO_DETECTION

# Each oracle mode: visionperf's shape mode, and the model visionperf runs for it.
MODES = {"rect": ("rect", "yolo11n_dynamic.onnx"), "square": ("square", "yolo11n_640.onnx"),
         "pt-rect": ("rect", "yolo11n_dynamic.onnx")}
FIELDS = ("qsl_idx", "y1/h0", "x1/w0", "y2/h0", "x2/w0", "score", "coco_id")
FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "yolo_oracle"
FIXTURE_CAP = 3584 * 1024  # the brief: about 4 MB in all


def workload(mode: str):
    """The yolo workload letterboxing in shape MODE ("square" or "rect")."""
    return replace(YOLO, preprocessing=replace(YOLO.preprocessing, shape_mode=mode))


def visionperf_sample(path: Path, mode: str) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """visionperf's uint8 NCHW row of PATH in shape MODE, and its geometry (h0, w0, in_h, in_w)."""
    return letterbox_sample(decode_bgr(path), workload(mode), "NCHW")


def numpy_records(head: np.ndarray, geometry, qsl_idx: int) -> np.ndarray:
    """The NumPy reference's [n, 7] float32 records for one [84, A] head."""
    from visionperf.postprocess.yolo import reference_detections

    return np.asarray(reference_detections(head, geometry, YOLO_DETECTION, qsl_idx=qsl_idx), np.float32).reshape(-1, 7)


def cpp_records(head: np.ndarray, geometry, qsl_idx: int) -> np.ndarray:
    """The engine's C++ kernel's [n, 7] float32 records for one [84, A] head (as DetectYolo
    runs it per image: the geometry is looked up by QSL index)."""
    from visionperf import _engine
    from visionperf.postprocess.yolo import yolo_params

    table = np.tile(np.asarray(geometry, np.int32), (qsl_idx + 1, 1))
    kernel = _engine.YoloNms(yolo_params(table, YOLO.input_size))
    out = np.empty((YOLO_DETECTION.max_per_image, 7), np.float32)
    n = kernel(np.ascontiguousarray(head, np.float32), qsl_idx, out)
    return out[:n].copy()


def first_difference(got: np.ndarray, want: np.ndarray) -> str | None:
    """None when GOT and WANT ([n, 7] float32 records) are equal bit for bit; else the first
    difference, in words."""
    if got.shape != want.shape:
        n = min(len(got), len(want))
        rows = [i for i in range(n) if got[i].tobytes() != want[i].tobytes()]
        where = f"; first differing row {rows[0]}: {describe(got[rows[0]])} != {describe(want[rows[0]])}" if rows else ""
        return f"{len(got)} detections, the oracle has {len(want)}{where}"
    bad = np.nonzero(got.view(np.uint32) != want.view(np.uint32))
    if not len(bad[0]):
        return None
    if tie_order_only(got, want):
        return TIE_ORDER
    i, j = int(bad[0][0]), int(bad[1][0])
    return (f"row {i} of {len(want)}, {FIELDS[j]}: {got[i, j]!r} != {want[i, j]!r} "
            f"({describe(got[i])} vs {describe(want[i])})")


# Records equal but for the order of detections with equal scores. The reference's predict runs
# Ultralytics' TorchNMS, which orders equal scores by torch.argsort (unstable: its order depends on
# the sort torch picks for the CPU); visionperf orders them by anchor, as torchvision's NMS does.
TIE_ORDER = "equal up to ties"


def _verdict(diff: str | None) -> str:
    return "equal" if diff is None else TIE_ORDER if diff == TIE_ORDER else "DIFFER"


def tie_order_only(got: np.ndarray, want: np.ndarray) -> bool:
    """GOT and WANT hold the same records, and differ only in the order of equal-score ones."""
    if got.shape != want.shape or got[:, 5].tobytes() != want[:, 5].tobytes():
        return False
    canon = [np.array(sorted(map(bytes, r.view(np.uint32).reshape(len(r), -1).view(np.uint8).reshape(len(r), -1))))
             for r in (got, want)]
    return all(a == b for a, b in zip(*canon))


def describe(row: np.ndarray) -> str:
    return "[" + ", ".join(f"{v:.9g}" for v in row) + "]"


@dataclass
class Check:
    image: str
    mode: str
    input_hw: tuple[int, int]
    detections: int
    tensor: str = "-"
    head: str = "-"
    numpy: str = "-"
    cpp: str = "-"
    e2e: str = "-"
    run: str = "-"
    notes: list[str] | None = None

    def failed(self) -> bool:
        return any(v not in ("equal", "-", TIE_ORDER) for v in (self.tensor, self.numpy, self.cpp, self.run))

    def ties(self) -> bool:
        return TIE_ORDER in (self.numpy, self.cpp, self.run)


def run_check(run: Path, mode: str, image: Path, qsl_idx: int, sessions: dict) -> Check:
    """Every comparison for one image in one oracle mode."""
    vp_mode, onnx_name = MODES[mode]
    oracle = np.load(run / mode / f"{image.stem}.npz")
    want_tensor, want_head, want_rec = oracle["tensor"], oracle["head"], oracle["records"]
    c = Check(image.name, mode, tuple(want_tensor.shape[1:]), len(want_rec), notes=[])

    row, geometry = visionperf_sample(image, vp_mode)
    if row.shape != want_tensor.shape:
        c.tensor = "SHAPE"
        c.notes.append(f"tensor {row.shape} != oracle {want_tensor.shape}")
    elif not np.array_equal(row, want_tensor):
        c.tensor = "DIFFER"
        c.notes.append(f"tensor: {int(np.count_nonzero(row != want_tensor))} bytes differ")
    else:
        c.tensor = "equal"
    if tuple(oracle["orig_hw"]) != tuple(geometry[:2]):
        c.notes.append(f"decoded {geometry[:2]} != oracle orig_shape {tuple(oracle['orig_hw'])}")
        c.tensor = "DIFFER"

    head = None
    if c.tensor == "equal":
        head = sessions[onnx_name].run(None, {"images": row[None]})[0][0]
        if head.shape != want_head.shape:
            c.head = "SHAPE"
        elif np.array_equal(head, want_head):
            c.head = "equal"
        else:
            c.head = f"max|d|={float(np.max(np.abs(head - want_head))):.2g}"

    for col, fn in (("numpy", numpy_records), ("cpp", cpp_records)):
        try:
            diff = first_difference(fn(want_head, geometry, qsl_idx), want_rec)
        except ImportError as e:
            setattr(c, col, "ABSENT")
            c.notes.append(f"{col}: {e}")
            continue
        setattr(c, col, _verdict(diff))
        if diff and diff != TIE_ORDER:
            c.notes.append(f"{col}: {diff}")
    if head is not None and c.cpp != "ABSENT":
        diff = first_difference(cpp_records(head, geometry, qsl_idx), want_rec)
        c.e2e = "equal" if diff is None else TIE_ORDER if diff == TIE_ORDER else "differ"
        if diff and diff != TIE_ORDER and c.head == "equal":
            c.notes.append(f"e2e: {diff}")
    return c


def coco_safe_folder(run: Path, dest: Path) -> Path:
    """The oracle's images as a COCO-safe folder (DEST/val2017_safe + DEST/annotations), in the
    oracle's order so that QSL index = the image's place; one placeholder box per image."""
    import json as _json

    manifest = _json.loads((run / "oracle.json").read_text())
    (dest / "val2017_safe").mkdir(parents=True, exist_ok=True)
    (dest / "annotations").mkdir(exist_ok=True)
    images, anns = [], []
    for i, (path, row) in enumerate(zip(images_of(run), manifest["modes"]["rect"])):
        shutil.copyfile(path, dest / "val2017_safe" / path.name)
        h, w = row["orig_hw"]
        images.append({"id": i + 1, "file_name": path.name, "height": h, "width": w, "license": 4})
        anns.append({"id": i + 1, "image_id": i + 1, "category_id": 1, "bbox": [0, 0, w / 2, h / 2],
                     "area": w * h / 4, "iscrowd": 0})
    data = {"images": images, "annotations": anns,
            "categories": [{"id": c, "name": str(c)} for c in YOLO_DETECTION.coco_ids],
            "licenses": [{"id": 4, "url": "http://creativecommons.org/licenses/by/2.0/", "name": "by"}]}
    (dest / "annotations" / "instances_val2017.json").write_text(_json.dumps(data))
    return dest


def run_path_records(run: Path, mode: str, work: Path) -> dict[int, np.ndarray]:
    """`visionperf run yolo --mode accuracy` on the oracle's images through MODE's model and
    shape mode: each QSL index's [n, 7] records, from LoadGen's accuracy log."""
    import json as _json
    import subprocess

    vp_mode, onnx_name = MODES[mode]
    data = coco_safe_folder(run, work / "coco-safe")
    out = work / f"out-{mode}"
    cmd = [sys.executable, "-m", "visionperf", "run", "yolo", "--scenario", "Offline", "--mode", "accuracy",
           "--backend", "onnxruntime", "--model", str(run / onnx_name), "--dataset", str(data),
           "--shape-mode", vp_mode, "--cache", str(work / "cache"), "--out", str(out), "--quiet"]
    p = subprocess.run(cmd, capture_output=True, text=True)
    log = out / "yolo" / "Offline" / "accuracy" / "mlperf_log_accuracy.json"
    if not log.exists():
        lines = [ln for ln in (p.stderr + p.stdout).splitlines() if ln.strip()]
        raise RuntimeError(f"visionperf run failed ({p.returncode}): {lines[-1] if lines else ''}")
    got: dict[int, np.ndarray] = {}
    for entry in _json.loads(log.read_text()):
        rec = np.frombuffer(bytes.fromhex(entry["data"]), np.float32).reshape(-1, 7)
        got[int(entry["qsl_idx"])] = rec
    return got


def images_of(run: Path) -> list[Path]:
    manifest = json.loads((run / "oracle.json").read_text())
    return [Path(manifest["images"]) / r["image"] for r in manifest["modes"]["rect"]]


def compare(run: Path, through_run: bool = True) -> list[Check]:
    """Every check of every image and mode in RUN."""
    images = images_of(run)
    sessions = {}
    with tempfile.TemporaryDirectory() as tmp:
        for _, onnx_name in MODES.values():
            if onnx_name not in sessions:
                wrapped = wrap_float_input(run / onnx_name, Path(tmp) / onnx_name)
                sessions[onnx_name] = ort.InferenceSession(str(wrapped), providers=["CPUExecutionProvider"])
        checks = [run_check(run, mode, image, i, sessions) for mode in MODES for i, image in enumerate(images)]
        if through_run:
            for mode in ("rect", "square"):
                try:
                    got, why = run_path_records(run, mode, Path(tmp)), None
                except RuntimeError as e:
                    got, why = {}, str(e)
                for i, c in enumerate(c for c in checks if c.mode == mode):
                    want = np.load(run / mode / f"{images[i].stem}.npz")["records"]
                    if why:
                        c.run = "FAILED"
                        c.notes.append(f"run: {why}")
                        continue
                    diff = first_difference(got.get(i, np.zeros((0, 7), np.float32)), want)
                    c.run = _verdict(diff)
                    if diff and diff != TIE_ORDER:
                        c.notes.append(f"run: {diff}")
        return checks


def print_table(checks: list[Check]) -> None:
    head = ("image", "mode", "input", "dets", "tensor", "head", "numpy", "c++", "e2e", "run")
    rows = [(c.image, c.mode, f"{c.input_hw[0]}x{c.input_hw[1]}", str(c.detections), c.tensor, c.head, c.numpy,
             c.cpp, c.e2e, c.run) for c in checks]
    widths = [max(len(r[i]) for r in (head, *rows)) for i in range(len(head))]
    for r in (head, *rows):
        print("  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip())
    for c in checks:
        for n in c.notes or ():
            print(f"  {c.image} {c.mode}: {n}")


def compressed_size(*arrays: np.ndarray) -> int:
    buf = io.BytesIO()
    np.savez_compressed(buf, *arrays)
    return buf.tell()


def write_fixtures(run: Path, dest: Path) -> None:
    """The default suite's fixtures: the images, each oracle tensor's sha256 and shape, every
    record set, the heads that fit the cap (sparse: only the anchors whose best score passes
    the threshold; the others cannot become detections and are zero when the head is rebuilt),
    and a README saying how they were made."""
    manifest = json.loads((run / "oracle.json").read_text())
    images = images_of(run)
    if dest.exists():
        shutil.rmtree(dest)
    (dest / "images").mkdir(parents=True)
    for p in images:
        shutil.copyfile(p, dest / "images" / p.name)
    tensors, records, heads = {}, {}, {}
    for mode in ("rect", "square"):
        for i, p in enumerate(images):
            o = np.load(run / mode / f"{p.stem}.npz")
            key = f"{mode}/{p.stem}"
            tensors[key] = {"image": p.name, "shape": list(o["tensor"].shape), "sha256": hashlib.sha256(o["tensor"].tobytes()).hexdigest(),
                            "orig_hw": [int(v) for v in o["orig_hw"]], "qsl_idx": i}
            records[key] = o["records"]
            head = o["head"]
            keep = np.nonzero(head[4:].max(0) > YOLO_DETECTION.score_threshold)[0]
            heads[key] = (head.shape[1], keep.astype(np.int32), head[:, keep])
    # Largest first for square (at least one 640x640 head), then every rect head that fits.
    budget = FIXTURE_CAP - sum(f.stat().st_size for f in (dest / "images").iterdir()) - 64 * 1024
    order = sorted((k for k in heads if k.startswith("square/")), key=lambda k: -heads[k][1].size)[:1]
    order += sorted((k for k in heads if k.startswith("rect/")), key=lambda k: heads[k][1].size)
    order += [k for k in heads if k.startswith("square/") and k not in order]
    kept = {}
    for key in order:
        anchors, idx, cols = heads[key]
        size = compressed_size(idx, cols)
        if size > budget:
            continue
        kept[key] = (anchors, idx, cols)
        budget -= size
    (dest / "tensors.json").write_text(json.dumps(tensors, indent=1) + "\n")
    np.savez_compressed(dest / "records.npz", **{k.replace("/", "__"): v for k, v in records.items()})
    arrays = {}
    for key, (anchors, idx, cols) in kept.items():
        k = key.replace("/", "__")
        arrays[f"{k}__anchors"] = np.int64(anchors)
        arrays[f"{k}__index"] = idx
        arrays[f"{k}__columns"] = cols
    np.savez_compressed(dest / "heads.npz", **arrays)
    v = manifest["versions"]
    w = manifest["weights"]
    listed = "\n".join(f"  - `{k}`: A = {kept[k][0]}, {kept[k][1].size} anchors stored" for k in sorted(kept))
    readme = f"""# YOLO oracle fixtures (issue 24)

What Ultralytics' own `predict(conf={manifest['conf']})` made of each image in `images/`. Written by
`make oracle`, then `.venv/bin/python oracle/compare.py {run} --write-fixtures`.
Read by tests/test_yolo_oracle.py (the default suite: no PyTorch, no Ultralytics).

- Model: `YOLO("yolo11n.yaml")` (nothing downloaded), seed {manifest['seed']}, its weights re-drawn by
  `oracle/ultralytics_side.py:varied_weights` (He-normal convolutions; the head's last layers
  scaled to box-logit std {w['box_logit_std']}, class-logit mean {w['class_logit_mean']} and std {w['class_logit_std']}), because
  Ultralytics' own initialisation gives every anchor a score near 1e-5 and so no detections.
  Saved as `.pt`, then exported from it to ONNX twice (the TorchScript exporter, as Ultralytics
  itself passes dynamo=False on PyTorch >= 2.9): `rect` is the `dynamic=True` export (predict
  letterboxes to the minimum rectangle, as the reference's `.pt`), `square` the 640x640 one.
- Post-processing as the reference runs it: `non_max_suppression` with torchvision never
  imported, so Ultralytics' `{manifest['nms']}` (equal scores in torch's CPU argsort order).
- Versions: ultralytics {v['ultralytics']}, torch {v['torch']}, torchvision {v['torchvision']},
  onnx {v['onnx']}, onnxslim {v['onnxslim']}, onnxruntime {v['onnxruntime']},
  opencv-python-headless {v['opencv-python-headless']}, numpy {v['numpy']}, Python {manifest['python']}.

Files:
- `images/`: {len(images)} images: odd sizes, both orientations, grayscale, EXIF orientations 6
  and 8, tiny (9x7), very wide (1200x70), very tall (90x700), 512x426 (426 x 1.25 = 532.5,
  rounded half to even), a PNG.
- `tensors.json`: per `mode/image stem`: the image file, the shape and sha256 of the uint8
  tensor Ultralytics' predictor fed the model (its float tensor times 255, checked exact), the
  decoded height and width, and the qsl_idx the records carry (the image's place in the set).
- `records.npz`: per `mode__stem`, the float32 [n, 7] records the MLCommons reference
  (`yolo_loadgen.py`) sends: qsl_idx, y1/h0, x1/w0, y2/h0, x2/w0, score, COCO id, in
  Ultralytics' order.
- `heads.npz`: the raw `output0` heads [84, A] that fit a {FIXTURE_CAP / 2**20:.1f} MiB cap, {len(kept)} of {len(heads)},
  sparse: `<key>__anchors` (A), `<key>__index` (the anchors whose best class score is above
  {YOLO_DETECTION.score_threshold}) and `<key>__columns` (their 84 values). No other anchor can become a
  detection, so the test rebuilds each head with zeros there.
{listed}
"""
    (dest / "README.md").write_text(readme)
    total = sum(f.stat().st_size for f in dest.rglob("*") if f.is_file())
    print(f"wrote {dest}: {total / 1024:.0f} KiB, {len(kept)} of {len(heads)} heads "
          f"({', '.join(sorted(kept))})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path, help="the folder oracle/ultralytics_side.py wrote")
    ap.add_argument("--no-run", action="store_true", help="leave out the run column (visionperf run yolo)")
    ap.add_argument("--write-fixtures", nargs="?", type=Path, const=FIXTURES, default=None, metavar="DIR",
                    help=f"also write the default suite's fixtures (default {FIXTURES})")
    args = ap.parse_args()
    if not (args.run / "oracle.json").exists():
        sys.exit(f"{args.run}/oracle.json is missing: run `make oracle` (or oracle/ultralytics_side.py) first")
    checks = compare(args.run, through_run=not args.no_run)
    print_table(checks)
    failed = [c for c in checks if c.failed()]
    heads = sum(c.head == "equal" for c in checks if c.mode != "pt-rect")
    ties = [c for c in checks if c.ties() and not c.failed()]
    print(f"\nverdict: {'MISMATCH' if failed else 'EQUAL'}: {len(checks) - len(failed)} of {len(checks)} checks equal "
          f"(tensor, NumPy, C++ and run records); ONNX heads equal in {heads} of "
          f"{sum(c.mode != 'pt-rect' for c in checks)}")
    if ties:
        print(f"{len(ties)} of them ({', '.join(f'{c.mode}/{c.image}' for c in ties)}) hold the oracle's records "
              "with equal scores in another order: Ultralytics' TorchNMS orders equal scores by an unstable "
              "torch.argsort, visionperf by anchor (as torchvision's NMS)")
    if args.write_fixtures:
        write_fixtures(args.run, args.write_fixtures)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
