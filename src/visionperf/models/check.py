"""What a model file must look like before a run starts: names, shapes and dtypes that fit."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import onnx

from ..errors import UserError
from ..workloads import Workload

_ONNX_DTYPES = {1: "float32", 2: "uint8", 3: "int8", 7: "int64", 10: "float16"}


@dataclass(frozen=True)
class ModelInfo:
    path: Path
    input_name: str
    input_dtype: str
    fixed_batch: int | None  # None where the batch dimension is dynamic
    output_name: str  # the output post-processing reads
    synthetic_weights: bool
    quantization: object = None  # cache.Quantization of a quantised input, else None
    kind: str = "classify"  # "classify" | "raw" (heads, NMS on the host) | "nms" (official, NMS inside)
    outputs: tuple[str, ...] = ()  # every output the post-processing reads
    # YOLO only. An Ultralytics export takes float32 pixels / 255: a run wraps it (yolo11.wrap_float_input)
    # to read the uint8 cache. Its head is [N, 4 + classes, A] ("NCA", the export's) or the transpose
    # ("NAC"). input_hw: the fixed (height, width), or None where both are dynamic (rect letterboxing).
    float_pixels: bool = False
    head_layout: str | None = None
    input_hw: tuple[int, int] | None = None


def _dims(value_info) -> list:
    return [d.dim_value if d.HasField("dim_value") else None
            for d in value_info.type.tensor_type.shape.dim]


def check_model(path: str | Path, workload: Workload) -> ModelInfo:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"model file {path} does not exist: pass --model FILE "
                        f"(`visionperf build-model {workload.name} --out {path}` makes one)")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # protobuf raises several unrelated types for a bad file
        raise UserError(f"{path} is not a readable ONNX model ({type(e).__name__}): "
                        "check the file or rebuild it") from None
    inits = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    if len(inputs) != 1 or inputs[0].name not in workload.input_names:
        got = ", ".join(i.name for i in inputs) or "none"
        raise UserError(f"{path} has input(s) {got}, but {workload.name} needs one input named "
                        f"{' or '.join(workload.input_names)}: is this the right model?")
    inp = inputs[0]
    dims = _dims(inp)
    if workload.preprocessing.method == "letterbox":
        return _yolo(path, model, workload, inp, dims)
    row = list(workload.row_shape(workload.layout))
    if len(dims) != 4 or any(d is not None and d != r for d, r in zip(dims[1:], row)):
        raise UserError(f"{path}: input {inp.name} has shape {dims}, but {workload.name} needs "
                        f"[N, {', '.join(map(str, row))}] ({workload.layout})")
    dtype = _ONNX_DTYPES.get(inp.type.tensor_type.elem_type, "unsupported")
    quantization = None
    if dtype != workload.input_dtype:
        if dtype in ("uint8", "int8") and workload.input_dtype == "float32":
            quantization = _input_quantization(model, inp.name, dtype, path)
        else:
            raise UserError(f"{path}: input {inp.name} is {dtype}, but {workload.name} feeds "
                            f"{workload.input_dtype} (or a quantised input with its DequantizeLinear)")
    outputs = {o.name: _dims(o) for o in model.graph.output}
    if workload.task == "classification":
        kind, chosen = "classify", next((n for n in workload.output_names if n in outputs), None)
        names: tuple[str, ...] = (chosen,)
        if chosen is None:
            raise UserError(f"{path} has outputs {', '.join(outputs)}, but {workload.name} reads "
                            f"{' or '.join(workload.output_names)}: is this the right model?")
    else:
        kind, names = _detection_outputs(path, workload, outputs)
        chosen = names[-1]
    props = {p.key: p.value for p in model.metadata_props}
    return ModelInfo(path=path, input_name=inp.name, input_dtype=dtype,
                     fixed_batch=dims[0] if dims[0] else None, output_name=chosen,
                     synthetic_weights=props.get("visionperf.synthetic_weights") == "true",
                     quantization=quantization, kind=kind, outputs=names)


def _yolo(path: Path, model, workload: Workload, inp, dims: list) -> ModelInfo:
    """An Ultralytics-style YOLO detector: `images` [N, 3, H, W] uint8 (ours) or float32 (an
    export), H and W fixed or dynamic; `output0` [N, 4 + classes, A] or its transpose."""
    from ..workloads import YOLO_DETECTION

    size = workload.input_size
    h, w = (dims[2], dims[3]) if len(dims) == 4 else (0, 0)
    if len(dims) != 4 or dims[1] not in (3, None) or (h, w) not in ((None, None), (size, size)):
        raise UserError(f"{path}: input {inp.name} has shape {dims}, but {workload.name} needs "
                        f"[N, 3, {size}, {size}] or [N, 3, H, W] with dynamic H and W (NCHW)")
    dtype = _ONNX_DTYPES.get(inp.type.tensor_type.elem_type, "unsupported")
    if dtype not in ("uint8", "float32"):
        raise UserError(f"{path}: input {inp.name} is {dtype}, but {workload.name} takes uint8 pixels "
                        "(or float32 / 255, an Ultralytics export)")
    outputs = {o.name: _dims(o) for o in model.graph.output}
    name = workload.output_names[0]
    if name not in outputs:
        raise UserError(f"{path} has outputs {', '.join(outputs) or 'none'}, but {workload.name} reads "
                        f"{name} (the raw head, NMS on the host): is this an Ultralytics detection export?")
    per_anchor = 4 + workload.num_classes
    anchors = sum((h // s) * (w // s) for s in YOLO_DETECTION.strides) if h is not None else None
    got = outputs[name]
    if len(got) == 3 and got[1] is None and got[2] is None:
        got = _inferred_dims(model, name) or got
    if len(got) == 3 and got[1] == per_anchor and got[2] in (anchors, None):
        layout = "NCA"
    elif len(got) == 3 and got[2] == per_anchor and got[1] in (anchors, None):
        layout = "NAC"
    else:
        raise UserError(f"{path}: output {name} has shape {got}, but {workload.name} needs "
                        f"[N, {per_anchor}, A] or [N, A, {per_anchor}]"
                        + (f" with A = {anchors} at {h}x{w}" if anchors else ""))
    props = {p.key: p.value for p in model.metadata_props}
    return ModelInfo(path=path, input_name=inp.name, input_dtype=dtype,
                     fixed_batch=dims[0] if dims[0] else None, output_name=name,
                     synthetic_weights=props.get("visionperf.synthetic_weights") == "true",
                     kind="raw", outputs=(name,), float_pixels=dtype == "float32", head_layout=layout,
                     input_hw=(h, w) if h is not None else None)


def _inferred_dims(model, name: str) -> list:
    """Output NAME's dims as ONNX shape inference finds them, for an export whose exporter left
    them all symbolic (Ultralytics' with simplify=False); [] if inference fails."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    for o in m.graph.output:
        if o.name == name:
            o.type.tensor_type.ClearField("shape")
    try:
        m = onnx.shape_inference.infer_shapes(m, data_prop=True)
    except Exception:  # noqa: BLE001 (onnx raises its own errors on graphs it cannot follow)
        return []
    return next((_dims(o) for o in m.graph.output if o.name == name), [])


def _detection_outputs(path: Path, workload: Workload, outputs: dict) -> tuple[str, tuple[str, ...]]:
    """Raw heads (NMS cut off: host NMS) or the official graph's detections (NMS inside)."""
    from ..workloads import DETECTION

    spec = DETECTION[workload.name]
    if all(n in outputs for n in spec.raw_outputs):
        A, C = spec.num_anchors, workload.num_classes
        want = ([[None, 4, A], [None, C, A]] if spec.layout == "class-major" else [[None, A, 4], [None, A, C]])
        for name, shape in zip(spec.raw_outputs, want):
            got = outputs[name]
            if len(got) != 3 or any(g is not None and w is not None and g != w for g, w in zip(got, shape)):
                raise UserError(f"{path}: output {name} has shape {got}, but {workload.name}'s "
                                f"{spec.layout} NMS needs {['N', *shape[1:]]}")
        return "raw", spec.raw_outputs
    if all(n in outputs for n in spec.nms_outputs):
        return "nms", spec.nms_outputs
    raise UserError(f"{path} has outputs {', '.join(outputs)}, which fit neither {workload.name} layout: "
                    f"raw heads {' + '.join(spec.raw_outputs)} (NMS on the host) or the official "
                    f"{', '.join(spec.nms_outputs)}")


def _input_quantization(model, name: str, dtype: str, path: Path):
    """Scale and zero point of a quantised input, from the DequantizeLinear that reads it."""
    from onnx import numpy_helper

    from ..cache import Quantization

    inits = {i.name: i for i in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "DequantizeLinear" and node.input[0] == name:
            try:
                scale = numpy_helper.to_array(inits[node.input[1]])
                zp = numpy_helper.to_array(inits[node.input[2]]) if len(node.input) > 2 else None
            except KeyError:
                break
            if scale.size != 1 or (zp is not None and zp.size != 1):
                raise UserError(f"{path}: input {name} is quantised per channel; a per-tensor "
                                "scale and zero point are needed")
            return Quantization(float(scale.reshape(())), int(zp.reshape(())) if zp is not None else 0, dtype)
    raise UserError(f"{path}: input {name} is {dtype} but no DequantizeLinear reads it, so its "
                    "scale is unknown: quantise with `visionperf quantize`")
