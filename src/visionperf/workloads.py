"""One declarative spec per benchmark: Table I of the paper plus the MLPerf facts.

A workload is data. Code that needs a size, a count, a bound or a tensor name reads it from
here; nothing else in the package hard-codes a benchmark's numbers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import UserError


@dataclass(frozen=True)
class Preprocessing:
    """How the reference turns one decoded image into one model input row."""

    method: str  # "resize_short_center_crop" (ResNet50) | "resize" (SSD)
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
    dataset: str  # "imagenet" | "coco"
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

    @property
    def input_shape_chw(self) -> tuple[int, int, int]:
        return (3, self.input_size, self.input_size)

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
    """SSD post-processing: anchors, box coding and NMS parameters (FACTS.md section 2)."""

    layout: str  # "box-major" (scores [A, C]) | "class-major" (scores [C, A])
    num_anchors: int
    score_threshold: float
    iou_threshold: float  # a candidate is suppressed by a kept box with IoU >= this
    max_candidates_per_class: int  # top-scoring candidates considered per class
    max_per_class: int
    max_per_image: int
    encoding: str  # order of the 4 encoded values: "yxhw" (TF) or "xywh" (MLPerf PyTorch)
    box_coder_scales: tuple[float, ...]  # divisors of the encoded (y, x, h, w) offsets
    clip_boxes: bool  # clip decoded boxes to [0, 1]
    raw_outputs: tuple[str, str]  # (boxes/locs, scores/confs) of a graph cut before NMS
    nms_outputs: tuple[str, ...]  # outputs of the official graph with NMS inside
    coco_label_map: bool  # labels are contiguous 1..80 and map to COCO ids (SSD-ResNet34)


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
}

WORKLOADS: dict[str, Workload] = {w.name: w for w in (RESNET50, SSD_MOBILENET, SSD_RESNET34)}

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
