"""The graph TensorRT builds an engine from: the run's model, typed the way TensorRT wants.

TensorRT 11 builds strongly typed networks only (its FP16 and INT8 builder flags and its int8
calibrators are gone; TensorRT 10 accepts the same networks with its STRONGLY_TYPED flag), so
the precision is in the graph itself:

* fp16: the float32 model with its float ops in float16 (onnxconverter-common's converter),
  inputs and outputs kept float32; the cache rows go in as they are (float32).
* int8: an explicit Q/DQ graph with symmetric int8 activations and weights (zero points 0),
  as `visionperf quantize --symmetric` writes it from the MLPerf calibration list. Its input is
  the int8 cache row. TensorRT takes 8-bit integer network inputs most reliably as UINT8 followed
  by a Cast, so the engine's input is the row's bytes *as they are* (no host conversion: the
  int8 array is viewed as uint8), and the graph turns them back into int8 values:
  Cast(float) -> Where(x > 127, x - 256, x) -> QuantizeLinear(scale 1) -> the model's own
  DequantizeLinear. All of it is exact; TensorRT fuses it into the first layer's input.

ONNX Runtime runs every graph made here, so the surgery is checked on a CPU machine against
the model it came from (tests/test_tensorrt.py).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..errors import UserError
from .check import ModelInfo

PRECISIONS = ("int8", "fp16")


def _zero_points(model: onnx.ModelProto) -> list[tuple[str, np.ndarray | None]]:
    """(node name, zero point or None) of every QuantizeLinear / DequantizeLinear."""
    inits = {i.name: i for i in model.graph.initializer}
    consts = {n.output[0]: n for n in model.graph.node if n.op_type == "Constant"}
    out = []
    for n in model.graph.node:
        if n.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        zp = None
        if len(n.input) > 2 and n.input[2]:
            name = n.input[2]
            if name in inits:
                zp = numpy_helper.to_array(inits[name])
            elif name in consts:
                zp = numpy_helper.to_array(consts[name].attribute[0].t)
        out.append((n.name or n.output[0], zp))
    return out


def is_qdq(model: onnx.ModelProto) -> bool:
    return any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in model.graph.node)


def check_symmetric_int8(model: onnx.ModelProto, path) -> None:
    """TensorRT's explicit quantisation is int8 with zero points of 0, nothing else."""
    qdq = _zero_points(model)
    if not qdq:
        raise UserError(f"{path} is a float model: an int8 engine is built from a Q/DQ graph; quantise it with "
                        "`visionperf quantize --symmetric`, or pass --backend-option precision=fp16")
    for name, zp in qdq:
        if zp is not None and (zp.dtype != np.int8 or np.any(zp != 0)):
            kind = "uint8 (asymmetric)" if zp.dtype == np.uint8 else f"{zp.dtype} with non-zero zero points"
            raise UserError(f"{path} is quantised with {kind} values (node {name}), which TensorRT cannot run: "
                            "quantise the float32 model with `visionperf quantize --symmetric`")


def _raw_uint8_input(model: onnx.ModelProto, info: ModelInfo) -> onnx.ModelProto:
    """The int8 input becomes a UINT8 input of the same bytes (see the module's note)."""
    name = info.input_name
    q = info.quantization
    if q is None or q.dtype != "int8" or q.zero_point != 0:
        raise UserError(f"{info.path}: input {name} must be int8 with a zero point of 0 for an int8 engine: "
                        "quantise the float32 model with `visionperf quantize --symmetric`")
    g = model.graph
    f, c256, half = f"{name}__vp_float", f"{name}__vp_256", f"{name}__vp_127_5"
    high, wrapped, signed = f"{name}__vp_high", f"{name}__vp_wrapped", f"{name}__vp_signed"
    one, zero, as_int8 = f"{name}__vp_one", f"{name}__vp_zero", f"{name}__vp_int8"
    g.initializer.extend([
        numpy_helper.from_array(np.array(256.0, np.float32), c256),
        numpy_helper.from_array(np.array(127.5, np.float32), half),
        numpy_helper.from_array(np.array(1.0, np.float32), one),
        numpy_helper.from_array(np.array(0, np.int8), zero),
    ])
    for n in g.node:  # the model's consumers now read the int8 tensor made below
        for k, x in enumerate(n.input):
            if x == name:
                n.input[k] = as_int8
    prologue = [
        helper.make_node("Cast", [name], [f], to=TensorProto.FLOAT, name=f"{name}__vp_cast"),
        helper.make_node("Greater", [f, half], [high], name=f"{name}__vp_greater"),
        helper.make_node("Sub", [f, c256], [wrapped], name=f"{name}__vp_sub"),
        helper.make_node("Where", [high, wrapped, f], [signed], name=f"{name}__vp_where"),
        helper.make_node("QuantizeLinear", [signed, one, zero], [as_int8], name=f"{name}__vp_quantize"),
    ]
    nodes = list(g.node)
    del g.node[:]
    g.node.extend(prologue + nodes)
    inp = next(i for i in g.input if i.name == name)
    inp.type.tensor_type.elem_type = TensorProto.UINT8
    return model


def _fp16_output(model: onnx.ModelProto, name: str) -> None:
    """Output NAME becomes float16: a detection head's scores cross to the host at half the
    bytes, and the host NMS thresholds fp16 scores as they are (postprocess/nms.py)."""
    g = model.graph
    out = next((o for o in g.output if o.name == name), None)
    if out is None or out.type.tensor_type.elem_type == TensorProto.FLOAT16:
        return
    wide = f"{name}__vp_float"
    for n in g.node:
        for k, x in enumerate(n.output):
            if x == name:
                n.output[k] = wide
        for k, x in enumerate(n.input):  # an output that other nodes also read
            if x == name:
                n.input[k] = wide
    g.node.append(helper.make_node("Cast", [wide], [name], to=TensorProto.FLOAT16, name=f"{name}__vp_to_fp16"))
    out.type.tensor_type.elem_type = TensorProto.FLOAT16


def tensorrt_graph(info: ModelInfo, precision: str, fp16_outputs=()) -> onnx.ModelProto:
    """The ONNX graph for an engine of PRECISION ("int8" | "fp16") from the run's model, with
    the outputs named in FP16_OUTPUTS in float16."""
    if precision not in PRECISIONS:
        raise UserError(f"precision {precision!r}: choose one of {', '.join(PRECISIONS)}")
    model = _graph(info, precision)
    for name in fp16_outputs:
        _fp16_output(model, name)
    return model


def _graph(info: ModelInfo, precision: str) -> onnx.ModelProto:
    model = onnx.load(str(info.path))
    if precision == "int8":
        check_symmetric_int8(model, info.path)
        return _raw_uint8_input(model, info)
    if is_qdq(model) or info.quantization is not None:
        raise UserError(f"{info.path} is quantised: an fp16 engine is built from the float32 model "
                        "(pass that one), or build an int8 engine (--backend-option precision=int8)")
    try:
        from onnxconverter_common import float16
    except ImportError:
        raise UserError("fp16 engines need onnxconverter-common: pip install 'visionperf[tensorrt]' "
                        "(or make install EXTRAS=tensorrt)") from None
    import warnings

    # The converter warns once per weight it clamps into float16's range (magnitudes under 1e-7
    # to 1e-7, over 1e4 to 1e4): hundreds of lines for an ordinary network, and what an fp16
    # engine means anyway. What the clamping costs is measured instead (the fp16 graph against
    # the float32 model: tests/test_tensorrt.py, benchmarks/gpu_check.py).
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"the float32 number .* will be truncated", category=UserWarning)
        return float16.convert_float_to_float16(model, keep_io_types=True, disable_shape_infer=False)

