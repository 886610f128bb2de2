"""Architecture-faithful ONNX builders and the checks a model file must pass before a run."""

from .check import ModelInfo, check_model
from .resnet50 import build_resnet50
from .retinanet import build_retinanet
from .ssd import build_ssd_mobilenet, build_ssd_resnet34
from .yolo11 import VARIANTS as YOLO11_VARIANTS
from .yolo11 import build_yolo11, wrap_float_input

BUILDERS = {"resnet50": build_resnet50, "ssd-mobilenet": build_ssd_mobilenet, "ssd-resnet34": build_ssd_resnet34,
            "retinanet": build_retinanet}

__all__ = ["BUILDERS", "ModelInfo", "YOLO11_VARIANTS", "build_resnet50", "build_yolo11", "check_model",
           "wrap_float_input"]
