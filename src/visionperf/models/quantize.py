"""Static int8 quantisation (ONNX Runtime, QDQ) and the input surgery the paper relies on.

Settings measured on this machine (FACTS.md section 6): per-channel int8 weights with uint8
activations; int8 activations ran about 4x slower here. The first QuantizeLinear (float input
-> uint8) is then removed so the model takes the uint8 tensor straight from the preprocessed
cache: the cache is 4x smaller and so is every host-to-device copy. The input's scale and zero
point stay in the graph, on the DequantizeLinear that now reads the input, which is where
`check_model` and the cache read them from.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import onnx
from google.protobuf.message import DecodeError

from ..atomic import replacing
from ..datasets import ImageNetVal, preprocess_one
from ..errors import UserError
from ..workloads import Workload
from .graph import claim_model


def read_calibration_list(path: str | Path, dataset: ImageNetVal) -> list[int]:
    """MLPerf calibration list: one image file name per line; returns dataset indices."""
    path = Path(path)
    try:
        names = [ln.split()[0] for ln in path.read_text().splitlines() if ln.strip()]
    except OSError as e:
        raise UserError(f"cannot read calibration list {path}: {e.strerror}") from None
    where = {name: i for i, name in enumerate(dataset.files)}
    missing = [n for n in names if n not in where]
    if missing:
        raise UserError(f"{path} names {missing[0]}, which {dataset.root / 'val_map.txt'} does not list "
                        f"({len(missing)} such): use the calibration list of this dataset")
    if not names:
        raise UserError(f"{path} is empty: list one calibration image file name per line")
    return [where[n] for n in names]


class _Reader:
    """ONNX Runtime CalibrationDataReader over preprocessed calibration images."""

    def __init__(self, workload: Workload, dataset: ImageNetVal, indices: list[int], input_name: str):
        self.items = iter(indices)
        self.w, self.ds, self.name = workload, dataset, input_name

    def get_next(self):
        i = next(self.items, None)
        if i is None:
            return None
        return {self.name: preprocess_one(self.w, self.ds.path(i), self.w.layout)[None]}


def remove_input_quantize(model: onnx.ModelProto, input_name: str) -> onnx.ModelProto:
    """Drop the QuantizeLinear that reads the float input; the input becomes its quantised type."""
    ql = [n for n in model.graph.node if n.op_type == "QuantizeLinear" and n.input[0] == input_name]
    others = [n for n in model.graph.node if input_name in n.input and n not in ql]
    if len(ql) != 1 or others:
        raise UserError("the quantised graph does not start with one QuantizeLinear on its input: "
                        "cannot feed it quantised data")
    q = ql[0]
    inits = {i.name: i for i in model.graph.initializer}
    zp = inits.get(q.input[2]) if len(q.input) > 2 else None
    elem = zp.data_type if zp is not None else onnx.TensorProto.UINT8
    for n in model.graph.node:
        for k, name in enumerate(n.input):
            if name == q.output[0]:
                n.input[k] = input_name
    model.graph.node.remove(q)
    inp = next(i for i in model.graph.input if i.name == input_name)
    inp.type.tensor_type.elem_type = elem
    return model


def quantize(fp32: str | Path, out: str | Path, workload: Workload, dataset: ImageNetVal,
             calibration: list[int], log=print, symmetric: bool = False) -> Path:
    """SYMMETRIC: int8 activations with zero points of 0 (and symmetric weights), the only int8
    TensorRT runs (models/tensorrt_graph.py); the default (uint8 activations) is the faster
    one for ONNX Runtime on CPU."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    from .check import check_model

    claim_model(out)
    info = check_model(fp32, workload)
    if info.quantization is not None:
        raise UserError(f"{fp32} is already quantised: pass the float32 model")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    # The intermediate model goes beside OUT (on the disk the user chose), and is removed after.
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.") as tmp:
        qdq = Path(tmp) / "qdq.onnx"
        log(f"calibrating on {len(calibration)} images (MinMax), quantising weights per channel")
        try:
            quantize_static(
                str(fp32), str(qdq), _Reader(workload, dataset, calibration, info.input_name),
                quant_format=QuantFormat.QDQ, per_channel=True,
                activation_type=QuantType.QInt8 if symmetric else QuantType.QUInt8,
                weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax,
                # TensorRT quantises int8 only: biases stay float (it folds them into its int8 layers)
                extra_options={"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False}
                if symmetric else {},
            )
            qdq_model = onnx.load(str(qdq))
        except DecodeError:
            # ONNX Runtime writes its intermediate models from C++ and ignores a failed write, so a
            # full disk shows up only as a model cut short when it is read back.
            raise UserError(f"the quantised model could not be written in full beside {out}: the disk is full or "
                            "a file size limit (ulimit -f) was reached: free space and run again") from None
        model = remove_input_quantize(qdq_model, info.input_name)
    src = {p.key: p.value for p in onnx.load(str(fp32), load_external_data=False).metadata_props}
    acts = "symmetric int8 activations (zero points 0)" if symmetric else "uint8 activations"
    props = {**src, "visionperf.quantization": f"static QDQ, per-channel int8 weights, {acts}, "
             "input QuantizeLinear removed", "visionperf.calibration_images": str(len(calibration))}
    onnx.helper.set_model_props(model, props)
    with replacing(out) as tmp_out:
        onnx.save(model, tmp_out)
    return out


def default_calibration(dataset: ImageNetVal, count: int = 100) -> list[int]:
    """Without a list: an evenly spread subset (said so by the caller)."""
    n = len(dataset)
    return sorted(set(np.linspace(0, n - 1, min(count, n)).astype(int).tolist()))
