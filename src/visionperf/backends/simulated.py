"""The simulated accelerator card's settings: its Table II rate and its realistic outputs.

The card itself is native (engine/src/simulated.cc, written against the plug-in ABI like any
vendor device): it fetches every input batch into its own memory from the sample buffer, as a
DMA engine does (`--backend-option fetch=0`: from the host's gather instead), keeps its engine busy for
`batch / rate` seconds, and returns outputs of the real size and layout. What it returns is
made here: for the SSD models, realistic raw boxes and scores in the paper's formats (fp16
scores for SSD-ResNet34, uint8 for SSD-MobileNet), for RetinaNet realistic heads with fp16
logits, so host post-processing does its real work.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import UserError
from ..workloads import Workload
from .base import Backend, DeviceRequest, native_devices

# The paper's Table II: samples/s and batch size of one Cloud AI 100 card, Offline.
PRESETS = {"resnet50": (22667.0, 8), "ssd-resnet34": (435.0, 1), "ssd-mobilenet": (19363.0, 4),
           # not in Table II: MLPerf v3.0 closed, Qualcomm G292-Z43, 16 Cloud AI 100 Pro cards,
           # Offline 4189.21 samples/s = 262 per card (workloads.RETINANET.card_rate)
           "retinanet": (262.0, 1),
           # not in Table II either: Ultralytics' own figure for YOLO11l, 6.2 ms a 640x640 image on an
           # NVIDIA T4 with TensorRT 10 at batch 1 (docs/en/macros/yolo-det-perf.md) = 161 per card
           "yolo": (161.0, 1)}
POOL = 8  # distinct realistic output samples cycled through
RETINANET_POOL = 2  # RetinaNet's heads are 65 MB a sample (fp16 logits): fewer, still distinct


def score_format(workload: Workload):
    """The raw score format the simulated card returns (the paper's section II-F)."""
    from ..postprocess.nms import ScoreFormat

    if workload.name in ("ssd-resnet34", "retinanet", "yolo"):  # RetinaNet: fp16 logits; YOLO: fp16 heads
        return ScoreFormat("float16")
    if workload.name == "ssd-mobilenet":
        return ScoreFormat("uint8", 1 / 255, 0)
    return None


def output_pool(workload: Workload, kind: str, output_shapes) -> list[np.ndarray]:
    """POOL samples per output, in the card's formats: [POOL, *one sample's shape]."""
    rng = np.random.default_rng(0)
    if workload.name == "retinanet" and kind == "raw":
        from ..postprocess.heads import retinanet_heads

        regs, logits = zip(*(retinanet_heads(rng, objects=int(rng.integers(0, 12)), dtype=np.float16)
                             for _ in range(RETINANET_POOL)))
        return [np.stack(regs), np.stack(logits)]
    if workload.name == "yolo" and kind == "raw":
        from ..postprocess.heads import yolo_heads

        size = workload.input_size
        return [np.stack([yolo_heads(rng, size, size, objects=int(rng.integers(0, 12))).astype(np.float16)
                          for _ in range(POOL)])]
    if workload.task == "detection" and kind == "raw":
        from ..postprocess.heads import raw_heads

        boxes, scores = zip(*(raw_heads(workload.name, rng, objects=int(rng.integers(0, 12))) for _ in range(POOL)))
        fmt = score_format(workload)
        s = np.stack(scores)
        if fmt.dtype == "float16":
            s = s.astype(np.float16)
        elif fmt.dtype == "uint8":
            s = np.clip(np.rint(s / fmt.scale) + fmt.zero_point, 0, 255).astype(np.uint8)
        return [np.stack(boxes), s]
    pools = []
    for shape, dtype in output_shapes:
        one = shape[1:]
        if np.issubdtype(dtype, np.integer):
            pools.append(rng.integers(1, 1001, (POOL, *one)).astype(dtype))
        else:
            pools.append(rng.random((POOL, *one), dtype=np.float32).astype(dtype))
    return pools


def card_rate_for(workload: Workload, card_rate: float | None) -> tuple[float, int]:
    rate, batch = PRESETS[workload.name]
    return (card_rate or rate), batch


# The paper's densest server (G292-Z43, 16 cards on 64 cores) gives each card 4 cores; every card
# has a driver thread of its own, and beyond this many sharing one core they only take turns (a
# thousand cards on 2 cores run a 1 s test for minutes).
CARDS_PER_CORE = 16

# A card slower than this per batch gives the warm-up (windows of 0.5 s) nothing to measure and
# holds every wait on it for as long: --card-rate 1e-9 would make one batch take centuries.
MAX_BATCH_S = 60.0


class Simulated(Backend):
    """Native simulated cards at a configured rate, planned like the paper's cards."""

    name = "simulated"
    is_card = True
    real_devices = False
    devices_per_core = CARDS_PER_CORE
    devices_noun = "simulated cards"

    def score_format(self, workload, model):
        return score_format(workload)

    def card_memory_bytes(self, in_flight: int, batch_size: int, row_bytes: int) -> int:
        """A card's own memory: a copy of every input batch it holds (engine/src/simulated.cc)."""
        return in_flight * batch_size * row_bytes

    def examples_bytes(self, workload: Workload, sample_bytes: int) -> int:
        """The output examples every card returns (one pool for them all)."""
        return (RETINANET_POOL if workload.name == "retinanet" else POOL) * sample_bytes

    def card_rate(self, workload: Workload, card_rate: float | None, batch_size: int, max_s: float) -> float:
        """Each card's samples/s; a --card-rate at which one batch would take longer than
        MAX_BATCH_S (or MAX_S) is refused, naming the smallest rate allowed."""
        rate, _ = card_rate_for(workload, card_rate)
        limit = min(MAX_BATCH_S, max_s)
        if batch_size / rate > limit:
            raise UserError(f"--card-rate {rate:g}: one batch of {batch_size} would take {_seconds(batch_size / rate)} "
                            f"on a card, more than the {limit:g} s a batch may take: pass --card-rate "
                            f"{_rate_up(batch_size / limit)} or more")
        return rate

    def devices(self, request: DeviceRequest, log=print) -> list:
        rate, _ = card_rate_for(request.workload, request.card_rate)
        pool = output_pool(request.workload, request.model.kind, request.output_shapes)
        # --backend-option fetch=0: the host gathers every batch (the card then copies it again),
        # for a side-by-side with the card's own fetch (device.h ABI 2, the default)
        options = f"rate={rate!r}" + (f";{request.options}" if request.options else "")
        return native_devices("simulated", "card", request, request.in_flight, options, pool, rate)


def _seconds(s: float) -> str:
    return f"{s / (365.25 * 86400):.3g} years" if s > 2 * 365 * 86400 else f"{s:,.0f} s"


def _rate_up(rate: float) -> str:
    """RATE written with 3 significant digits, rounded up (so that the figure passes)."""
    digits = 2 - math.floor(math.log10(rate))
    return f"{math.ceil(rate * 10 ** digits) / 10 ** digits:g}"
