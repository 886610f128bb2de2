"""A small ONNX graph writer for the architecture-faithful builders.

Convolutions carry their folded batch norm as a bias (as an inference graph has it) and get
seeded He-normal weights: real shapes and FLOPs, synthetic values.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ..atomic import replacing
from ..errors import UserError

# Metadata keys only visionperf writes: build-model's builders, and quantize.
MADE_BY_VISIONPERF = ("visionperf.model", "visionperf.quantization")


def claim_model(out: str | Path) -> None:
    """Refuse OUT unless it is missing or a model visionperf wrote (its metadata says so): a
    model file there may be the user's own, which replacing it would lose."""
    out = Path(out)
    if out.is_dir():
        raise UserError(f"--out {out} is a directory: name the model file to write (e.g. {out / 'model.onnx'})")
    if not out.exists():
        return
    try:
        props = {p.key for p in onnx.load(str(out), load_external_data=False).metadata_props}
    except Exception:  # noqa: BLE001 (protobuf raises its own errors on a file that is not ONNX)
        props = set()
    if not props & set(MADE_BY_VISIONPERF):
        raise UserError(f"--out {out} exists and is not a model visionperf wrote: choose a new --out "
                        "(or delete the file)")


class GraphBuilder:
    def __init__(self, seed: int):
        if seed < 0:
            raise UserError(f"--seed must be 0 or more, got {seed}")
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.n = 0

    def name(self, kind: str) -> str:
        self.n += 1
        return f"{kind}_{self.n}"

    def const(self, value: np.ndarray, kind: str = "const") -> str:
        name = self.name(kind)
        self.inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def op(self, op_type: str, inputs: list[str], **attrs) -> str:
        out = self.name(op_type.lower())
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=out, **attrs))
        return out

    def conv(self, x: str, cin: int, cout: int, k: int, stride: int = 1, pad: int | str | None = None,
             group: int = 1, act: str | None = "relu", gain: float = 1.0) -> str:
        """Conv (+ folded BN bias) (+ activation). PAD: an int, "SAME" (TF), or None for k // 2."""
        name = self.name("conv")
        fan_in = (cin // group) * k * k
        w = self.rng.standard_normal((cout, cin // group, k, k), dtype=np.float32)
        w *= np.float32(gain * np.sqrt(2.0 / fan_in))
        b = self.rng.standard_normal(cout, dtype=np.float32) * np.float32(0.01)
        self.inits += [numpy_helper.from_array(w, name + "/W"), numpy_helper.from_array(b, name + "/B")]
        attrs = dict(kernel_shape=[k, k], strides=[stride, stride], group=group)
        if pad == "SAME":
            attrs["auto_pad"] = "SAME_UPPER"  # TensorFlow's SAME: the extra pixel goes last
        else:
            attrs["pads"] = [k // 2 if pad is None else pad] * 4
        self.nodes.append(helper.make_node("Conv", [x, name + "/W", name + "/B"], [name], name=name, **attrs))
        if act == "relu":
            return self.op("Relu", [name])
        if act == "relu6":
            return self.op("Clip", [name, self.const(np.float32(0)), self.const(np.float32(6))])
        return name

    def model(self, inputs, outputs, props: dict, extra_outputs=()) -> onnx.ModelProto:
        graph = helper.make_graph(self.nodes, "visionperf", inputs, list(outputs) + list(extra_outputs), self.inits)
        m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="visionperf")
        m.ir_version = 8
        helper.set_model_props(m, props)
        return m


def save_atomic(model: onnx.ModelProto, out: str | Path) -> Path:
    onnx.checker.check_model(model)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with replacing(out) as tmp:
        onnx.save(model, tmp)
    return out
