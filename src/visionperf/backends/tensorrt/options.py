"""What --backend tensorrt is told: --backend-options, and where built plans are kept."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ...errors import UserError

SWEEP_SIZES = (32, 64, 128, 256, 512, 1024)


def require_tensorrt():
    try:
        import tensorrt as trt
    except ImportError:
        raise UserError("--backend tensorrt needs tensorrt and cuda-python: pip install 'visionperf[tensorrt]' "
                        "(or make install EXTRAS=tensorrt)") from None
    return trt


def cache_dir() -> Path:
    """Where built engines and batch sweeps are kept ($VISIONPERF_TENSORRT_CACHE)."""
    env = os.environ.get("VISIONPERF_TENSORRT_CACHE")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "visionperf" / "tensorrt"


@dataclass(frozen=True)
class TrtOptions:
    precision: str = "int8"  # "int8" (Q/DQ graph) | "fp16" (float32 model)
    sweep: bool = False  # Offline: find the best batch size on this GPU (remembered) instead of --batch-size
    workspace_mb: int = 0  # builder workspace limit (0: TensorRT's default)
    sizes: tuple[int, ...] = SWEEP_SIZES  # the batch sizes a sweep tries
    # Device fetch (issue 27): the GPU copies each batch's rows from the page-locked sample
    # buffer itself, no host gather. Off by default until measured on a GPU (fake-GPU tested).
    fetch: bool = False

    @classmethod
    def parse(cls, text: str, default_precision: str, default_sweep: bool = False) -> TrtOptions:
        """--backend-option "precision=fp16;sweep=1;sizes=64,128,256;fetch=1"."""
        values = {"precision": default_precision}
        for part in filter(None, (p.strip() for p in text.split(";"))):
            key, eq, value = part.partition("=")
            if not eq or key not in ("precision", "sweep", "workspace_mb", "sizes", "fetch"):
                raise UserError(f"--backend-option {part!r}: tensorrt takes precision=int8|fp16, sweep=0|1, "
                                "sizes=N,N,... (the sweep's batch sizes), workspace_mb=N, fetch=0|1 (the GPU "
                                "copies rows from the sample buffer itself) (separated by ';')")
            values[key] = value
        precision = values["precision"]
        if precision not in ("int8", "fp16"):
            raise UserError(f"--backend-option precision={precision}: choose int8 or fp16")
        try:
            sizes = tuple(sorted({int(v) for v in values["sizes"].split(",")})) if "sizes" in values else SWEEP_SIZES
            if not sizes or sizes[0] < 1:
                raise ValueError
        except ValueError:
            raise UserError(f"--backend-option sizes={values['sizes']}: give batch sizes of 1 or more, "
                            "separated by commas") from None
        try:
            sweep = values.get("sweep", "1" if default_sweep else "0") in ("1", "true", "yes")
            fetch = values.get("fetch", "0") in ("1", "true", "yes")
            return cls(precision, sweep, int(values.get("workspace_mb", 0)), sizes, fetch)
        except ValueError:
            raise UserError(f"--backend-option workspace_mb={values['workspace_mb']}: give a whole number") from None
