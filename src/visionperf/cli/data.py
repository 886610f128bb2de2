"""The commands that make what a run reads: sample datasets, models, preprocessed caches, int8 models."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import UserError
from .options import (MAX_DEVICES, add_cluster, add_quiet, finite_positive_float, float_range, int_range, path,
                      positive_int, wait_s)
from .tables import console

if TYPE_CHECKING:
    from ..cache import Quantization


def add_sample_data_args(sub) -> None:
    s = sub.add_parser("sample-data", help="write a synthetic dataset in a real on-disk layout")
    s.add_argument("kind", help="imagenet, coco or openimages")
    s.add_argument("--out", type=path, required=True)
    s.add_argument("--count", type=positive_int, default=256)
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(func=cmd_sample_data)


def cmd_sample_data(a) -> int:
    from ..datasets.synthetic import make_coco, make_imagenet, make_openimages

    if a.kind == "imagenet":
        out = make_imagenet(a.out, a.count, a.seed)
        print(f"wrote {a.count} synthetic ImageNet-layout JPEGs, val_map.txt and cal_image_list.txt "
              f"to {out} (synthetic: drawn shapes, random labels)")
    elif a.kind == "coco":
        out = make_coco(a.out, a.count, a.seed)
        print(f"wrote {a.count} synthetic COCO-layout JPEGs and annotations/instances_val2017.json to "
              f"{out} (synthetic: drawn rectangles, their exact boxes annotated)")
    elif a.kind == "openimages":
        out = make_openimages(a.out, a.count, a.seed)
        print(f"wrote {a.count} synthetic OpenImages-MLPerf-layout JPEGs and annotations/openimages-mlperf.json "
              f"to {out} (synthetic: drawn rectangles, their exact boxes annotated)")
    else:
        raise UserError(f"unknown sample dataset {a.kind!r}: choose imagenet, coco or openimages")
    return 0


def add_build_model_args(sub) -> None:
    s = sub.add_parser("build-model", help="write an architecture-faithful ONNX model (synthetic weights)")
    s.add_argument("workload", help="resnet50, ssd-mobilenet, ssd-resnet34, retinanet, or yolo11n/s/m/l/x "
                   "(yolo = yolo11l)")
    s.add_argument("--out", type=path, required=True)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--width", type=float_range(0.0, 4.0), default=1.0,
                   help="channel multiplier; < 1 gives a thinner test-sized variant (default 1; not YOLO: "
                   "its sizes are yolo11n..x)")
    shape = s.add_mutually_exclusive_group()
    shape.add_argument("--dynamic", action="store_true",
                       help="YOLO: dynamic batch, height and width, for rect letterboxing (the default)")
    shape.add_argument("--input-size", type=positive_int, metavar="PIXELS",
                       help="YOLO: a fixed square input, e.g. 640, for square letterboxing and batching")
    s.add_argument("--batch", type=positive_int, help="YOLO with --input-size: the fixed batch (default 1)")
    s.add_argument("--from", dest="checkpoint", type=path, metavar="PT",
                   help="YOLO: export this Ultralytics checkpoint (the official yolo11l.pt) with Ultralytics' "
                   "own exporter instead of synthetic weights; needs Ultralytics and PyTorch")
    s.set_defaults(func=cmd_build_model)


def _yolo_variant(name: str) -> str | None:
    """yolo11n..yolo11x -> n..x; yolo (the benchmark's model) -> l; anything else -> None."""
    from ..models import YOLO11_VARIANTS

    if name == "yolo":
        return "l"
    if name.startswith("yolo11") and name[6:] in YOLO11_VARIANTS:
        return name[6:]
    return None


def cmd_build_model(a) -> int:
    from ..models import BUILDERS, YOLO11_VARIANTS

    variant = _yolo_variant(a.workload)
    if variant:
        return _build_yolo(a, variant)
    if a.workload not in BUILDERS:
        yolos = ", ".join(f"yolo11{v}" for v in YOLO11_VARIANTS)
        raise UserError(f"no builder for {a.workload!r}: choose one of {', '.join(BUILDERS)}, {yolos} (yolo = yolo11l)")
    if a.dynamic or a.input_size or a.batch or a.checkpoint:
        raise UserError(f"--dynamic, --input-size, --batch and --from are for YOLO models, not {a.workload}")
    if not 0 < a.width <= 4:
        raise UserError(f"--width must be in (0, 4], got {a.width}")
    out = BUILDERS[a.workload](a.out, seed=a.seed, width=a.width)
    size = out.stat().st_size / 1e6
    print(f"wrote {out} ({size:.1f} MB): {a.workload} architecture"
          + (f" at width {a.width}" if a.width != 1 else "")
          + ", synthetic weights (seeded; accuracy meaningless), official tensor names")
    return 0


def _build_yolo(a, variant: str) -> int:
    from ..models.yolo11 import build_yolo11, export_ultralytics

    if a.width != 1:
        raise UserError(f"--width is not for YOLO: its sizes are the variants (yolo11n is the smallest), got {a.width}")
    shape = f"fixed {a.batch or 1}x3x{a.input_size}x{a.input_size}" if a.input_size else "dynamic batch, height, width"
    if a.checkpoint:
        out = export_ultralytics(a.checkpoint, a.out, a.input_size, a.batch)
        print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB): Ultralytics' ONNX export of {a.checkpoint} "
              f"({shape}), its input taking uint8 pixels (Cast, Div by 255 in front; the graph unchanged)")
        return 0
    out = build_yolo11(a.out, variant, seed=a.seed, input_size=a.input_size, batch=a.batch)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB): YOLO11{variant} architecture ({shape}; uint8 images "
          "-> output0 [N, 84, A]), synthetic weights (seeded; accuracy meaningless)")
    return 0


def add_preprocess_args(sub) -> None:
    s = sub.add_parser("preprocess", help="preprocess a dataset into a cache (parallel, resumable)")
    s.add_argument("workload")
    s.add_argument("--dataset", required=True)
    s.add_argument("--out", type=path, required=True, help="the cache directory to write")
    s.add_argument("--dtype", choices=("float32", "int8", "uint8"))
    s.add_argument("--layout", choices=("NCHW", "NHWC"))
    s.add_argument("--shape-mode", choices=("square", "rect"),
                   help="yolo: square (640x640, default) or rect (each image's own minimum rectangle, "
                   "as the reference runs a dynamic-shape model)")
    s.add_argument("--model", help="take dtype, scale and zero point from this (quantised) model")
    s.add_argument("--scale", type=finite_positive_float)
    s.add_argument("--zero-point", type=int)
    s.add_argument("--workers", type=int_range(1, MAX_DEVICES), help="processes (default: one per CPU)")
    s.add_argument("--count", type=positive_int, help="only the first COUNT images")
    s.add_argument("--chunk-size", type=positive_int, help="images per resumable work unit (default: by dataset size, at most 64)")
    s.add_argument("--skip-bad", action="store_true",
                   help="leave corrupt images out (listed in skipped.txt) instead of stopping")
    s.add_argument("--wait", type=wait_s, metavar="SECONDS",
                   help="if another visionperf is building this cache, wait up to SECONDS for it "
                   "(default: refuse at once)")
    add_quiet(s, "progress bar")
    add_cluster(s)
    s.set_defaults(func=cmd_preprocess)


def _cache_format(a, w) -> tuple[str, Quantization | None]:
    """The cache's dtype and input quantisation: from --model when given, else from --dtype, --scale, --zero-point."""
    from ..cache import Quantization
    from ..models import check_model

    quant = None
    if a.model:
        info = check_model(a.model, w)
        quant = info.quantization
        if a.dtype and quant and a.dtype != quant.dtype:
            raise UserError(f"--dtype {a.dtype} does not match {a.model}, whose input is {quant.dtype}")
        dtype = quant.dtype if quant else (a.dtype or info.input_dtype)
    else:
        dtype = a.dtype or w.input_dtype
        # The model's own input dtype is what `run` caches unquantised (SSD-MobileNet's raw uint8
        # pixels); any other integer input is a quantised model's, whose scale it must be told.
        native = dtype == w.input_dtype and a.scale is None and a.zero_point is None
        if dtype != "float32" and not native:
            if a.scale is None or a.zero_point is None:
                raise UserError(f"--dtype {dtype} needs the model's input quantisation: pass --model "
                                "INT8_MODEL, or --scale and --zero-point")
            lo, hi = (-128, 127) if dtype == "int8" else (0, 255)
            if not lo <= a.zero_point <= hi:
                raise UserError(f"--zero-point {a.zero_point} is outside {dtype}: pass {lo} to {hi}")
            quant = Quantization(a.scale, a.zero_point, dtype)
    return dtype, quant


def cmd_preprocess(a) -> int:
    from ..preprocess import preprocess_to
    from ..datasets import open_dataset
    from ..workloads import get_workload

    w = get_workload(a.workload)
    if a.shape_mode:
        from ..workloads import with_shape_mode

        w = with_shape_mode(w, a.shape_mode)
    layout = (a.layout or w.layout).upper()
    dtype, quant = _cache_format(a, w)
    if a.workers is not None and a.workers < 1:
        raise UserError(f"--workers must be at least 1, got {a.workers}")
    if a.cluster:  # on every node, from its own --dataset (the same path there)
        from ..cluster import preprocess_everywhere

        if a.shape_mode == "rect":
            raise UserError("--shape-mode rect with --cluster: a node builds its rect cache itself at the "
                            "first run; drop --cluster here, or --shape-mode")
        con = console()
        preprocess_everywhere(a.cluster, w.name, a.dataset, a.count, a.out, dtype, layout, quant, a.workers,
                              a.chunk_size, a.skip_bad, log=lambda m: con.print(m, style="dim", markup=False))
        return 0
    dataset = open_dataset(w, a.dataset, a.count)
    preprocess_to(Path(a.out), w, dataset, dtype, layout, quant, workers=a.workers,
                  chunk=a.chunk_size, skip_bad=a.skip_bad, lock_wait=a.wait)
    return 0


def add_quantize_args(sub) -> None:
    s = sub.add_parser("quantize", help="static int8 quantisation, input QuantizeLinear removed")
    s.add_argument("workload")
    s.add_argument("--model", required=True, help="the float32 model")
    s.add_argument("--dataset", required=True, help="where the calibration images are")
    s.add_argument("--calibration-list", help="MLPerf calibration list: one file name per line")
    s.add_argument("--calibration-count", type=positive_int, default=100)
    s.add_argument("--symmetric", action="store_true",
                   help="int8 activations with zero points of 0: what --backend tensorrt runs as int8 "
                        "(default: uint8 activations, faster for ONNX Runtime on CPU)")
    s.add_argument("--out", type=path, required=True)
    s.set_defaults(func=cmd_quantize)


def cmd_quantize(a) -> int:
    from ..datasets import open_dataset
    from ..models import check_model
    from ..models.quantize import default_calibration, quantize, read_calibration_list
    from ..workloads import get_workload, require

    w = get_workload(a.workload)
    require(w, "quantize")
    dataset = open_dataset(w, a.dataset)
    if a.calibration_list:
        cal = read_calibration_list(a.calibration_list, dataset)
    else:
        cal = default_calibration(dataset, a.calibration_count)
        print(f"no --calibration-list: calibrating on {len(cal)} images spread over the dataset")
    out = quantize(a.model, a.out, w, dataset, cal, symmetric=a.symmetric)
    q = check_model(out, w).quantization
    acts = "symmetric int8 activations (TensorRT's int8)" if a.symmetric else "uint8 activations"
    print(f"wrote {out}: int8 weights (per channel), {acts}, input {q.dtype} "
          f"(scale {q.scale:.6g}, zero point {q.zero_point}) fed straight from a {q.dtype} cache")
    return 0
