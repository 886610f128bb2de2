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

    method: str  # "resize_short_center_crop" (ResNet50) | "resize" (SSD) | "resize_float" (RetinaNet)
    interpolation: str  # OpenCV flag name, e.g. "INTER_AREA"
    resize_short_side: int | None  # resize so the short side is this, keeping aspect
    mean: tuple[float, float, float]  # RGB, subtracted after scaling
    std: tuple[float, float, float] | None
    scale: float  # pixels are multiplied by this before mean/std (1/255 for SSD-ResNet34)

    def settings(self) -> dict:
        """Everything that changes the bytes of a preprocessed row (hashed into cache keys)."""
        return {
            "method": self.method,
            "interpolation": self.interpolation,
            "resize_short_side": self.resize_short_side,
            "mean": list(self.mean),
            "std": list(self.std) if self.std else None,
            "scale": self.scale,
        }


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
    card_rate: float  # the paper's per-card Offline samples/s (Table II)
    notes: tuple[str, ...] = field(default_factory=tuple)

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

WORKLOADS: dict[str, Workload] = {w.name: w for w in (RESNET50, SSD_MOBILENET, SSD_RESNET34, RETINANET)}

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
