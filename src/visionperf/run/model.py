"""The model a run's devices load: the file given, or, for an Ultralytics YOLO export (float32
pixels / 255), a copy that reads the uint8 cache itself.

The copy puts Cast and Div(255) in front of the unchanged graph (models/yolo11.wrap_float_input):
the same float32 the reference's `img.float() / 255` gives, bit for bit, from rows 4x smaller
than float32. It is made once per model file (named by its content's hash) beside the caches.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from ..accuracy import file_sha256
from ..cache import default_cache_root, is_cache
from ..errors import UserError
from ..models.check import ModelInfo


def models_dir(cache_arg: str | None) -> Path:
    """Where derived models live: beside the caches (--cache's root, or the per-user cache)."""
    root = Path(cache_arg) if cache_arg else default_cache_root()
    return (root.parent if is_cache(root) else root) / "models"


def uint8_model(model: ModelInfo, cache_arg: str | None, log=print) -> ModelInfo:
    """MODEL as the devices load it: unchanged, or its uint8-input copy when it takes float32 pixels."""
    if not model.float_pixels:
        return model
    from ..models.yolo11 import wrap_float_input

    digest = file_sha256(model.path)[:16]
    out = models_dir(cache_arg) / f"{model.path.stem}-uint8-{digest}.onnx"
    if not out.is_file():
        log(f"model: {model.path.name} takes float32 pixels / 255; writing {out} (uint8 input, Cast + Div(255) "
            "in front of the unchanged graph) so that it reads the uint8 cache")
        try:
            wrap_float_input(model.path, out)
        except OSError as e:
            raise UserError(f"cannot write {out} ({e.strerror}): free space there, or pass --cache DIR "
                            "elsewhere") from None
    return replace(model, path=out, input_dtype="uint8", float_pixels=False)
