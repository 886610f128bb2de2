"""One declarative spec per benchmark: Table I of the paper plus the MLPerf facts.

A workload is data. Code that needs a size, a count, a bound or a tensor name reads it from
here; nothing else in the package hard-codes a benchmark's numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from .errors import UserError


@dataclass(frozen=True)
class Preprocessing:
    """How the reference turns one decoded image into one model input row."""

    method: str  # "resize_short_center_crop" (ResNet50) | "resize" (SSD) | "resize_float" (RetinaNet) | "letterbox" (YOLO)
    interpolation: str  # OpenCV flag name, e.g. "INTER_AREA"
    resize_short_side: int | None  # resize so the short side is this, keeping aspect
    mean: tuple[float, float, float]  # RGB, subtracted after scaling
    std: tuple[float, float, float] | None
    scale: float  # pixels are multiplied by this before mean/std (1/255 for SSD-ResNet34)
    # Letterbox only (YOLO): "square" (input_size x input_size, one shape for batching) or "rect"
    # (the reference's minimum rectangle, per image); the padding value and stride of the pad.
    shape_mode: str | None = None
    pad_value: int | None = None
    stride: int | None = None

    def settings(self) -> dict:
        """Everything that changes the bytes of a preprocessed row (hashed into cache keys)."""
        out = {
            "method": self.method,
            "interpolation": self.interpolation,
            "resize_short_side": self.resize_short_side,
            "mean": list(self.mean),
            "std": list(self.std) if self.std else None,
            "scale": self.scale,
        }
        if self.method == "letterbox":  # only here, so the other workloads' cache keys stay as they were
            out.update(shape_mode=self.shape_mode, pad_value=self.pad_value, stride=self.stride)
        return out


@dataclass(frozen=True)
class Workload:
    name: str  # the model name LoadGen's mlperf.conf uses
    task: str  # "classification" | "detection"
    dataset: str  # "imagenet" | "coco" | "openimages"
    input_size: int  # square: input_size x input_size x 3
    layout: str  # layout the official model takes: "NCHW" | "NHWC"
    input_dtype: str  # dtype the official model takes
    performance_sample_count: int
    server_latency_bound_ms: float | None  # p99 bound; None where the workload has no Server
    accuracy_target: float  # in percent (top-1 or mAP)
    accuracy_metric: str  # "top-1" | "mAP"
    default_batch_size: int  # the paper's per-card batch size (Table II)
    input_names: tuple[str, ...]  # accepted model input names, official first
    output_names: tuple[str, ...]  # outputs the post-processing reads, in preference order
    num_classes: int
    label_offset: int  # official classifier index 0 is background: label = argmax - offset
    preprocessing: Preprocessing
    card_rate: float | None  # the paper's per-card Offline samples/s (Table II); None: no citable rate
    notes: tuple[str, ...] = field(default_factory=tuple)
    dataset_size: int | None = None  # images an accuracy run covers, where the round fixes it
    multistream_samples_per_query: int | None = None  # where mlperf.conf sets it for this model
    offline_min_samples_per_query: int | None = None  # the round's closed-division minimum for this model
    benchmarks: tuple[tuple[str, float], ...] = ()  # submission benchmark names and their mAP targets

    def row_shape(self, layout: str) -> tuple[int, int, int]:
        s = self.input_size
        return (3, s, s) if layout == "NCHW" else (s, s, 3)


RESNET50 = Workload(
    name="resnet50",
    task="classification",
    dataset="imagenet",
    input_size=224,
    layout="NCHW",
    input_dtype="float32",
    performance_sample_count=1024,
    server_latency_bound_ms=15.0,
    accuracy_target=75.6954,  # 99% of the fp32 reference's 76.46%
    accuracy_metric="top-1",
    default_batch_size=8,
    input_names=("input_tensor:0",),
    output_names=("ArgMax:0", "softmax_tensor:0"),
    num_classes=1001,
    label_offset=1,
    preprocessing=Preprocessing(
        method="resize_short_center_crop",
        interpolation="INTER_AREA",
        resize_short_side=256,  # int(224 / 0.875)
        mean=(123.68, 116.78, 103.94),
        std=None,
        scale=1.0,
    ),
    card_rate=22667.0,
)


@dataclass(frozen=True)
class Detection:
    """Detection post-processing: anchors, box coding and NMS parameters (FACTS.md section 2;
    RetinaNet: /tmp/research notes of torchvision's RetinaNet.postprocess_detections)."""

    layout: str  # "box-major" (scores [A, C]) | "class-major" (scores [C, A]) | "retinanet" (logits [A, C], per level)
    num_anchors: int
    score_threshold: float  # a candidate's score (after the activation) must be above this
    iou_threshold: float  # a candidate is suppressed by a kept box with IoU >= this (> this where iou_strict)
    max_candidates_per_class: int  # top-scoring candidates considered per class (RetinaNet: per level)
    max_per_class: int
    max_per_image: int
    encoding: str  # order of the 4 encoded values: "yxhw" (TF) or "xywh" (MLPerf PyTorch, torchvision)
    box_coder_scales: tuple[float, ...]  # divisors of the encoded (y, x, h, w) offsets
    clip_boxes: bool  # clip decoded boxes to the image ([0, 1], or [0, image_size] pixels)
    raw_outputs: tuple[str, str]  # (boxes/locs, scores/confs) of a graph cut before NMS
    nms_outputs: tuple[str, ...]  # outputs of the official graph with NMS inside
    coco_label_map: bool  # labels are contiguous 1..80 and map to COCO ids (SSD-ResNet34)
    # RetinaNet only (the SSDs keep the defaults): the raw scores are logits and class 0 is a
    # real class (sigmoid, no background); candidates are the top `max_candidates_per_class` of
    # each level separately; log-size offsets are clamped; boxes are decoded in pixels of an
    # IMAGE_SIZE square input and the response normalises them by it.
    level_anchors: tuple[int, ...] = ()  # anchors per feature level, in head order (sum = num_anchors)
    box_exp_clip: float | None = None  # max of the encoded log-size offsets before exp
    image_size: int | None = None  # boxes in pixels of this square input
    iou_strict: bool = False  # suppress at IoU > threshold (torchvision) rather than >=


SSD_MOBILENET = Workload(
    name="ssd-mobilenet",
    task="detection",
    dataset="coco",
    input_size=300,
    layout="NHWC",
    input_dtype="uint8",  # the model normalises to [-1, 1] inside
    performance_sample_count=256,
    server_latency_bound_ms=None,  # Edge only
    accuracy_target=21.78,  # 99% of the fp32 reference's mAP 22.0
    accuracy_metric="mAP",
    default_batch_size=4,
    input_names=("image_tensor:0",),
    output_names=("raw_scores", "detection_scores:0"),
    num_classes=91,
    label_offset=0,
    preprocessing=Preprocessing(method="resize", interpolation="INTER_LINEAR", resize_short_side=None,
                                mean=(0.0, 0.0, 0.0), std=None, scale=1.0),
    card_rate=19363.0,
)

SSD_RESNET34 = Workload(
    name="ssd-resnet34",
    task="detection",
    dataset="coco",
    input_size=1200,
    layout="NCHW",
    input_dtype="float32",
    performance_sample_count=64,
    server_latency_bound_ms=100.0,
    accuracy_target=19.8,  # 99% of the fp32 reference's mAP 20.0
    accuracy_metric="mAP",
    default_batch_size=1,
    input_names=("image",),
    output_names=("confs", "scores"),
    num_classes=81,
    label_offset=0,
    preprocessing=Preprocessing(method="resize", interpolation="INTER_LINEAR", resize_short_side=None,
                                mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), scale=1 / 255),
    card_rate=435.0,
)

RETINANET = Workload(
    name="retinanet",  # LoadGen's mlperf.conf: retinanet.*.performance_sample_count_override = 64
    task="detection",
    dataset="openimages",  # OpenImages-MLPerf v6 validation subset: 24,781 images, 264 classes
    input_size=800,
    layout="NCHW",
    input_dtype="float32",  # RGB in [0, 1]: the model normalises (ImageNet mean/std) inside
    performance_sample_count=64,
    server_latency_bound_ms=100.0,
    accuracy_target=37.1745,  # 99% of the fp32 reference's mAP 37.55
    accuracy_metric="mAP",
    default_batch_size=1,
    input_names=("images",),
    output_names=("cls_logits", "boxes"),
    num_classes=264,  # sigmoid, no background: class c is category_id c of openimages-mlperf.json
    label_offset=0,
    # The reference (dataset.py pre_process_openimages_retinanet): BGR uint8 -> float32 -> RGB ->
    # cv2.resize to 800x800 INTER_LINEAR on the float32 image (aspect not kept) -> / 255.
    preprocessing=Preprocessing(method="resize_float", interpolation="INTER_LINEAR", resize_short_side=None,
                                mean=(0.0, 0.0, 0.0), std=None, scale=1 / 255),
    # Not in the paper's Table II: MLPerf v3.0 closed, Qualcomm GIGABYTE G292-Z43 with 16 Cloud AI 100
    # Pro cards (SDK 1.8.3), Offline 4189.21 samples/s = 261.8 per card
    # (inference_results_v3.0/closed/Qualcomm/results/g292_z43_q16-qaic-v1.8.3.7-aic100/retinanet).
    card_rate=262.0,
)

YOLO = Workload(
    name="yolo",  # LoadGen's mlperf.conf: yolo.*.performance_sample_count_override = 64
    task="detection",
    dataset="coco-safe",  # COCO val2017 images with licence ids 4-8, in the annotation file's order
    input_size=640,
    layout="NCHW",
    # The rows a cache holds: letterboxed pixels. The official export takes float32 / 255; that
    # division belongs to the model, so a cache is 4x smaller than float32.
    input_dtype="uint8",
    performance_sample_count=64,
    server_latency_bound_ms=None,  # edge only: SingleStream, MultiStream, Offline
    accuracy_target=53.4 * 0.99,  # yolo-99; yolo-95 is 53.4 * 0.95 (checker constants.py, v6.1)
    accuracy_metric="mAP",
    default_batch_size=1,
    input_names=("images",),
    output_names=("output0",),  # [N, 84, A]: cx, cy, w, h in input pixels, then 80 sigmoided scores
    num_classes=80,
    label_offset=0,
    # Ultralytics' predict: OpenCV BGR decode, LetterBox(640, stride 32, centred, scale-up, 114,
    # INTER_LINEAR), BGR -> RGB, / 255 (in the model).
    preprocessing=Preprocessing(method="letterbox", interpolation="INTER_LINEAR", resize_short_side=None,
                                mean=(0.0, 0.0, 0.0), std=None, scale=1 / 255, shape_mode="square",
                                pad_value=114, stride=32),
    # Not in the paper: Ultralytics' YOLO11l on an NVIDIA T4 with TensorRT 10, 6.2 ms a 640x640 image at
    # batch 1 (docs/en/macros/yolo-det-perf.md), the model alone = 161 samples/s a card.
    card_rate=161.0,
    dataset_size=1525,
    multistream_samples_per_query=8,
    offline_min_samples_per_query=1525,
    benchmarks=(("yolo-95", 53.4 * 0.95), ("yolo-99", 53.4 * 0.99)),
)


@dataclass(frozen=True)
class YoloDetection:
    """Ultralytics' non_max_suppression as the reference's predict calls it (yolo.md section 4)."""

    score_threshold: float  # the best class score must be above this (strict)
    iou_threshold: float  # suppressed by a kept box of the same class with IoU > this (strict)
    class_offset: float  # boxes are shifted by class * this, in float32, so one NMS separates classes
    max_per_image: int
    max_candidates: int  # kept by score before NMS (never reached: A <= 8400)
    best_class_only: bool  # multi_label=False: one candidate per anchor
    strides: tuple[int, ...]  # anchors: (H/s) * (W/s) per stride, A = 8400 at 640 x 640
    coco_ids: tuple[int, ...]  # class index 0..79 -> COCO category id (the reference's COCO_80_TO_91)


YOLO_DETECTION = YoloDetection(
    score_threshold=0.001, iou_threshold=0.7, class_offset=7680.0, max_per_image=300, max_candidates=30000,
    best_class_only=True, strides=(8, 16, 32),
    coco_ids=(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 27, 28,
              31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55,
              56, 57, 58, 59, 60, 61, 62, 63, 64, 65, 67, 70, 72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 82, 84,
              85, 86, 87, 88, 89, 90),
)

DETECTION = {
    "ssd-mobilenet": Detection(
        layout="box-major", num_anchors=1917, score_threshold=0.3, iou_threshold=0.6,
        max_candidates_per_class=1917, max_per_class=100, max_per_image=100, encoding="yxhw",
        box_coder_scales=(10.0, 10.0, 5.0, 5.0), clip_boxes=True,
        raw_outputs=("raw_boxes", "raw_scores"),
        nms_outputs=("num_detections:0", "detection_boxes:0", "detection_scores:0", "detection_classes:0"),
        coco_label_map=False),
    "ssd-resnet34": Detection(
        layout="class-major", num_anchors=15130, score_threshold=0.05, iou_threshold=0.5,
        max_candidates_per_class=200, max_per_class=200, max_per_image=200, encoding="xywh",
        box_coder_scales=(10.0, 10.0, 5.0, 5.0), clip_boxes=False,
        raw_outputs=("locs", "confs"), nms_outputs=("bboxes", "labels", "scores"),
        coco_label_map=True),
    # torchvision RetinaNet.postprocess_detections (MLPerf's ResNeXt50-32x4d FPN, 800x800): per
    # level P3..P7, sigmoid scores > 0.05, the top 1000, decoded (weights 1, log-size clamp
    # log(1000/16)) and clipped to the image; then per-class NMS at IoU > 0.5; the best 300.
    "retinanet": Detection(
        layout="retinanet", num_anchors=120087, score_threshold=0.05, iou_threshold=0.5,
        max_candidates_per_class=1000, max_per_class=300, max_per_image=300, encoding="xywh",
        box_coder_scales=(1.0, 1.0, 1.0, 1.0), clip_boxes=True,
        raw_outputs=("bbox_regression", "cls_logits"), nms_outputs=("boxes", "scores", "labels"),
        coco_label_map=False, level_anchors=(90000, 22500, 5625, 1521, 441),
        box_exp_clip=math.log(1000.0 / 16), image_size=800, iou_strict=True),
}

WORKLOADS: dict[str, Workload] = {w.name: w for w in (RESNET50, SSD_MOBILENET, SSD_RESNET34, RETINANET, YOLO)}

# What a workload lacks, by the command that needs it, and what to do instead: refused in one line.
NOT_BUILT: dict[str, dict[str, str]] = {
    "yolo": {"quantize": "run its float32 model (the cache already feeds it uint8 pixels), or quantise it with "
                         "your own tools keeping its uint8 `images` input"},
}


def with_shape_mode(workload: Workload, mode: str) -> Workload:
    """WORKLOAD letterboxed in shape MODE ("square" | "rect"); the mode is part of the cache's key."""
    from dataclasses import replace

    if workload.preprocessing.method != "letterbox":
        raise UserError(f"{workload.name} is not letterboxed: --shape-mode is for yolo only")
    if mode not in ("square", "rect"):
        raise UserError(f"shape mode {mode!r}: choose square or rect")
    return replace(workload, preprocessing=replace(workload.preprocessing, shape_mode=mode))


def coco_label_map(workload: Workload) -> bool:
    """The responses carry contiguous labels that accuracy maps to COCO ids (SSD-ResNet34); YOLO's
    post-processing writes COCO ids itself (accuracy-coco.py without --use-inv-map)."""
    spec = DETECTION.get(workload.name)
    return bool(spec and spec.coco_label_map)


def require(workload: Workload, command: str) -> None:
    """Refuse COMMAND for WORKLOAD where what it needs is not built."""
    instead = NOT_BUILT.get(workload.name, {}).get(command)
    if instead:
        raise UserError(f"{workload.name}: `{command}` does not support it yet: {instead}")

SCENARIOS = ("Offline", "Server", "SingleStream", "MultiStream")


def get_workload(name: str) -> Workload:
    try:
        return WORKLOADS[name]
    except KeyError:
        raise UserError(
            f"unknown workload {name!r}: choose one of {', '.join(sorted(WORKLOADS))}"
        ) from None


def check_scenario(name: str) -> str:
    for s in SCENARIOS:
        if s.lower() == name.lower():
            return s
    raise UserError(f"unknown scenario {name!r}: choose one of {', '.join(SCENARIOS)}")
