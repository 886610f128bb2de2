"""NVIDIA GPUs through TensorRT: one asynchronous device per GPU, driven like a card.

    options.py  --backend-options and where built plans are kept
    trt_plans.py TensorRT plans (serialised engines): key, build, on-disk cache, loaded plan
    device.py   one GPU as an asynchronous device: slots of stream, context and buffers
    sweep.py    Offline's batch size from the plan's own rate
    runtime.py  what a run needs once (CUDA, TensorRT, the graph) and the devices it makes

Plans are built from the graph models/tensorrt_graph.py makes (int8 from an explicit Q/DQ
graph, fp16 from the float32 model). The CUDA calls go through backends/cuda.py's `Cuda` and
a TensorRT plan through `LoadedTrtPlan`; tests drive this package with fakes of those two surfaces that run
the same graphs on ONNX Runtime (tests/fake_gpu.py sets `TensorRTBackend.runtime`).
"""

from __future__ import annotations

import numpy as np

from ..base import Backend, DeviceRequest
from .options import SWEEP_SIZES, TrtOptions, require_tensorrt
from .trt_plans import TrtPlanCache, trt_plan_key
from .runtime import TensorRT, fp16_outputs, make_tensorrt_devices, score_format
from .sweep import sweep_batch

__all__ = ["SWEEP_SIZES", "TrtPlanCache", "TensorRT", "TensorRTBackend", "TrtOptions", "fp16_outputs",
           "make_tensorrt_devices", "trt_plan_key", "require_tensorrt", "score_format", "sweep_batch"]


class TensorRTBackend(Backend):
    name = "tensorrt"
    is_card = True
    host_cpu_only = False
    runtime = TensorRT  # what builds and loads plans and opens the GPUs (tests: a fake)

    def preflight(self) -> None:
        self.runtime.preflight()

    def accelerators(self, topology):
        return [a for a in topology.accelerators if a.name == "NVIDIA GPU"]

    def score_format(self, workload, model):
        return score_format(workload, model)  # fp16 scores from the GPU: half the bytes to the host

    def devices(self, request: DeviceRequest, log=print) -> list:
        return make_tensorrt_devices(request.model, request.workload, request.plan, request.batch_size,
                                     request.in_flight, request.options, offline=not request.latency, log=log,
                                     output_dtypes=[np.dtype(dt) for _, dt in request.output_shapes or []],
                                     batch_given=request.batch_given, factory=self.runtime)
