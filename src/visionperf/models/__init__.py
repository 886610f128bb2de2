"""Architecture-faithful ONNX builders and the checks a model file must pass before a run."""

from .check import ModelInfo, check_model
from .resnet50 import build_resnet50

BUILDERS = {"resnet50": build_resnet50}

__all__ = ["BUILDERS", "ModelInfo", "build_resnet50", "check_model"]
