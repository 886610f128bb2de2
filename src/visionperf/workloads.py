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

WORKLOADS: dict[str, Workload] = {w.name: w for w in (RESNET50,)}

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
