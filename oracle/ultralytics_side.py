"""Ultralytics as the oracle: what its own predict makes of each image (runs in .venv-oracle).

A random-weight yolo11n (fixed seed; `YOLO("yolo11n.yaml")` downloads nothing) is saved as
`.pt`, then exported from that `.pt` to ONNX twice: `dynamic=True` and fixed 640x640. Then
`predict(conf=0.001)` runs on every image in three modes:

- `rect`: the dynamic ONNX (Ultralytics letterboxes to the minimum rectangle, as for a `.pt`);
- `square`: the fixed ONNX (640x640);
- `pt-rect`: the `.pt` itself, the reference harness's own model (for comparison only).

For each image and mode it saves, taken from inside Ultralytics' predictor: the preprocessed
tensor as uint8 (checked to be exactly the float tensor times 255), the raw head the model
returned for it, and the detections as the 7-float records the MLCommons reference
(`yolo_loadgen.py`) sends LoadGen, in Ultralytics' order.

Usage: python oracle/ultralytics_side.py --images DIR --out DIR
       python oracle/ultralytics_side.py --variant l --models-only --out DIR  (for benchmarks)
Writes OUT/yolo11n.pt, OUT/yolo11n_dynamic.onnx, OUT/yolo11n_640.onnx,
OUT/<mode>/<image stem>.npz (tensor, head, records, orig_hw) and OUT/oracle.json.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import random
import shutil
import sys
from contextlib import contextmanager
from importlib.metadata import version
from pathlib import Path

# Nothing may be fetched or installed behind our back: no settings sync, no auto-install, no
# network checks; settings in a scratch folder, not the user's.
os.environ.setdefault("YOLO_OFFLINE", "true")
os.environ.setdefault("YOLO_AUTOINSTALL", "false")
os.environ.setdefault("PIP_NO_INDEX", "1")

SEED = 0
CONF = 0.001
BOX_LOGIT_STD, CLASS_LOGIT_MEAN, CLASS_LOGIT_STD = 2.0, -11.0, 1.5  # see varied_weights
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
# The reference's class map (yolo_loadgen.py COCO_80_TO_91): the 80 training classes to COCO ids.
COCO_80_TO_91 = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 27,
                 28, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 46, 47, 48, 49, 50, 51, 52, 53,
                 54, 55, 56, 57, 58, 59, 60, 61, 62, 63, 64, 65, 67, 70, 72, 73, 74, 75, 76, 77, 78, 79, 80,
                 81, 82, 84, 85, 86, 87, 88, 89, 90)


def seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@contextmanager
def torchscript_onnx_exporter():
    """torch.onnx.export with dynamo=False while the block runs. PyTorch 2.9 made the
    torch.export-based exporter the default; Ultralytics 8.3.214 predates that and calls
    torch.onnx.export without saying which, and later Ultralytics releases pass dynamo=False
    themselves on PyTorch >= 2.9. So the export is the one this release was written for."""
    import torch

    export = torch.onnx.export
    torch.onnx.export = functools.partial(export, dynamo=False)
    try:
        yield
    finally:
        torch.onnx.export = export


def varied_weights(model) -> None:
    """Re-draw MODEL's weights so that its head varies with the image and gives detections.

    Ultralytics' own initialisation makes a head nearly the same for every anchor of every
    image, every class score near 1e-5 (the classification bias prior): predict(conf=0.001)
    finds nothing, which tests nothing. Here every convolution but the DFL's fixed bin weights
    is He-normal, then the last convolution of each head branch is rescaled on a seeded random
    input: box-distribution logits to std BOX_LOGIT_STD, class logits to mean CLASS_LOGIT_MEAN
    and std CLASS_LOGIT_STD. On the oracle's images that gives from none to the 300-detection cap,
    a few classes each, so NMS suppresses many overlapping boxes of one class.
    """
    import torch

    detect = model.model[-1]
    fixed = set(detect.dfl.modules())
    for m in model.modules():
        if isinstance(m, torch.nn.Conv2d) and m not in fixed:
            torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            if m.bias is not None:
                torch.nn.init.zeros_(m.bias)
    lasts = [(b[-1], 0.0, BOX_LOGIT_STD) for b in detect.cv2]
    lasts += [(b[-1], CLASS_LOGIT_MEAN, CLASS_LOGIT_STD) for b in detect.cv3]
    seen = {}
    hooks = [conv.register_forward_hook(lambda m, i, o: seen.__setitem__(m, o.detach())) for conv, _, _ in lasts]
    model.eval()
    x = torch.rand(1, 3, 640, 640, generator=torch.Generator().manual_seed(SEED + 1))
    with torch.no_grad():
        model(x)
        for conv, mean, std in lasts:
            o = seen[conv] - conv.bias.view(1, -1, 1, 1)
            gain = std / float(o.std())
            conv.weight.mul_(gain)
            conv.bias.fill_(mean - float(o.mean()) * gain)
    for h in hooks:
        h.remove()


def build_models(out: Path, variant: str = "n") -> dict[str, Path]:
    """The random-weight yolo11<VARIANT> as .pt, and its ONNX exports from that .pt (dynamic
    and 640): OUT/yolo11n.pt, OUT/yolo11n_dynamic.onnx, OUT/yolo11n_640.onnx for "n"."""
    from ultralytics import YOLO

    name = f"yolo11{variant}"
    pt = out / f"{name}.pt"
    yolo = YOLO(f"{name}.yaml")
    varied_weights(yolo.model)
    yolo.save(pt)
    paths = {"pt": pt}
    for onnx_name, dynamic in ((f"{name}_dynamic.onnx", True), (f"{name}_640.onnx", False)):
        with torchscript_onnx_exporter():
            exported = YOLO(pt).export(format="onnx", dynamic=dynamic, imgsz=640, device="cpu", verbose=False)
        shutil.move(exported, out / onnx_name)
        paths["dynamic" if dynamic else "fixed"] = out / onnx_name
    return paths


def recording_predictor(store: dict):
    """A DetectionPredictor that keeps what its preprocess and inference returned last."""
    from ultralytics.models.yolo.detect import DetectionPredictor

    class Recording(DetectionPredictor):
        def preprocess(self, im):
            x = super().preprocess(im)
            store["tensor"] = x.detach().cpu().numpy().copy()
            return x

        def inference(self, im, *args, **kwargs):
            preds = super().inference(im, *args, **kwargs)
            head = preds[0] if isinstance(preds, (list, tuple)) else preds
            store["head"] = head.detach().cpu().numpy().copy()
            return preds

    return Recording


def as_uint8(x):
    """The predictor's float tensor (uint8 / 255) back to uint8, refusing anything inexact."""
    import numpy as np

    u = np.rint(x * 255).astype(np.uint8)
    if not np.array_equal(u.astype(np.float32) / np.float32(255), x):
        raise SystemExit("Ultralytics' preprocessed tensor is not uint8 / 255: the oracle cannot store it as uint8")
    return u


def reference_records(qsl_idx: int, result):
    """The reference's records for one Results (yolo_loadgen.py): qsl_idx, y1/h, x1/w, y2/h,
    x2/w, score, COCO id; the division in float32 by the decoded image's height and width."""
    import numpy as np

    h, w = result.orig_shape
    boxes = result.boxes.xyxy.cpu().numpy()
    if len(boxes) == 0:
        return np.zeros((0, 7), np.float32)
    scores = result.boxes.conf.cpu().numpy()
    classes = result.boxes.cls.cpu().numpy().astype(int)
    rec = np.empty((len(boxes), 7), np.float32)
    rec[:, 0] = qsl_idx
    rec[:, 1] = boxes[:, 1] / h  # float32 array / int stays float32, as the reference's scalars do
    rec[:, 2] = boxes[:, 0] / w
    rec[:, 3] = boxes[:, 3] / h
    rec[:, 4] = boxes[:, 2] / w
    rec[:, 5] = scores
    rec[:, 6] = np.asarray(COCO_80_TO_91, np.float32)[classes]
    return rec


def run_mode(model_path: Path, images: list[Path], out: Path) -> list[dict]:
    """predict(conf=0.001) on every image through MODEL_PATH; one npz per image in OUT."""
    import numpy as np
    from ultralytics import YOLO

    out.mkdir(parents=True, exist_ok=True)
    model = YOLO(model_path, task="detect")
    store: dict = {}
    predictor = recording_predictor(store)
    rows = []
    for qsl_idx, path in enumerate(images):
        store.clear()
        result = model.predict(str(path), conf=CONF, verbose=False, device="cpu", predictor=predictor)[0]
        tensor, head = store["tensor"], store["head"]
        if tensor.shape[0] != 1 or head.shape[0] != 1:
            raise SystemExit(f"{path}: expected a batch of one, got {tensor.shape} and {head.shape}")
        records = reference_records(qsl_idx, result)
        np.savez_compressed(out / f"{path.stem}.npz", tensor=as_uint8(tensor[0]), head=head[0].astype(np.float32),
                            records=records, orig_hw=np.asarray(result.orig_shape, np.int64))
        rows.append({"image": path.name, "qsl_idx": qsl_idx, "orig_hw": list(result.orig_shape),
                     "input_hw": list(tensor.shape[2:]), "anchors": int(head.shape[2]),
                     "detections": len(records)})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--variant", choices=("n", "s", "m", "l", "x"), default="n")
    ap.add_argument("--models-only", action="store_true", help="write the .pt and ONNX models, predict nothing")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("YOLO_CONFIG_DIR", str((args.out / "config").resolve()))
    if args.models_only:
        seed_everything(SEED)
        for path in build_models(args.out, args.variant).values():
            print(path)
        return
    if args.variant != "n":
        raise SystemExit("the oracle's predictions use yolo11n: --variant goes with --models-only")
    images = sorted(p for p in args.images.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) if args.images else []
    if not images:
        raise SystemExit(f"{args.images}: no images: run oracle/images.py --out DIR first, then pass --images DIR")

    import torch
    from ultralytics.utils import SETTINGS

    SETTINGS.update({"sync": False})
    seed_everything(SEED)
    paths = build_models(args.out)
    modes = {"rect": paths["dynamic"], "square": paths["fixed"], "pt-rect": paths["pt"]}
    results = {mode: run_mode(path, images, args.out / mode) for mode, path in modes.items()}
    versions = {p: version(p) for p in ("ultralytics", "torch", "torchvision", "onnx", "onnxslim",
                                        "onnxruntime", "opencv-python-headless", "numpy")}
    versions["torch"] = torch.__version__  # with its build (+cpu, +cu130)
    manifest = {
        "seed": SEED, "conf": CONF, "model": "yolo11n.yaml (random weights, varied_weights)",
        "weights": {"box_logit_std": BOX_LOGIT_STD, "class_logit_mean": CLASS_LOGIT_MEAN,
                    "class_logit_std": CLASS_LOGIT_STD}, "images": str(args.images.resolve()),
        "models": {mode: path.name for mode, path in modes.items()},
        "versions": versions,
        "python": sys.version.split()[0], "torch_threads": torch.get_num_threads(),
        # non_max_suppression takes torchvision.ops.nms only when torchvision is imported; the
        # reference's process never imports it, and neither does this one.
        "nms": "torchvision.ops.nms" if "torchvision" in sys.modules else "TorchNMS.nms",
        "command": "make oracle (oracle/ultralytics_side.py --images IMAGES --out OUT)",
        "modes": results,
    }
    (args.out / "oracle.json").write_text(json.dumps(manifest, indent=1) + "\n")
    for mode, rows in results.items():
        dets = ", ".join(f"{r['image'].split('_')[0]}:{r['detections']}" for r in rows)
        print(f"{mode:8s} {dets}")


if __name__ == "__main__":
    main()
