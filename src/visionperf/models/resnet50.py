"""ResNet50-v1.5 as an ONNX graph with the official MLPerf tensor names and synthetic weights.

Layer for layer the torchvision/MLPerf ResNet50-v1.5 (stride 2 in the 3x3 conv of each
down-sampling bottleneck, the "v1.5" change), with batch norm folded into conv biases as an
inference graph has it: 25.6 M parameters, 4.1 GMAC per image. The weights are deterministic
(seeded) He-normal, so throughput is the real model's and accuracy is meaningless; the file's
metadata says so (`visionperf.synthetic_weights = true`) and every accuracy report repeats it.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

STAGES = ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2))  # (width, blocks, first stride)
EXPANSION = 4


class _Graph:
    def __init__(self, rng: np.random.Generator):
        self.rng = rng
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.n = 0

    def _name(self, kind: str) -> str:
        self.n += 1
        return f"{kind}_{self.n}"

    def conv(self, x: str, cin: int, cout: int, k: int, stride: int = 1, gain: float = 1.0,
             relu: bool = True) -> str:
        name = self._name("conv")
        std = gain * np.sqrt(2.0 / (cin * k * k))
        w = (self.rng.standard_normal((cout, cin, k, k), dtype=np.float32) * np.float32(std))
        b = (self.rng.standard_normal(cout, dtype=np.float32) * np.float32(0.01))
        self.inits += [numpy_helper.from_array(w, name + "/W"), numpy_helper.from_array(b, name + "/B")]
        pad = k // 2
        self.nodes.append(helper.make_node(
            "Conv", [x, name + "/W", name + "/B"], [name], name=name,
            kernel_shape=[k, k], strides=[stride, stride], pads=[pad] * 4))
        return self.relu(name) if relu else name

    def relu(self, x: str) -> str:
        y = self._name("relu")
        self.nodes.append(helper.make_node("Relu", [x], [y], name=y))
        return y

    def bottleneck(self, x: str, cin: int, width: int, stride: int) -> tuple[str, int]:
        cout = width * EXPANSION
        y = self.conv(x, cin, width, 1)
        y = self.conv(y, width, width, 3, stride)  # v1.5: the stride sits on the 3x3 conv
        y = self.conv(y, width, cout, 1, gain=0.2, relu=False)  # small last conv keeps activations bounded without BN
        short = x if (stride == 1 and cin == cout) else self.conv(x, cin, cout, 1, stride, relu=False)
        s = self._name("add")
        self.nodes.append(helper.make_node("Add", [y, short], [s], name=s))
        return self.relu(s), cout


def build_resnet50(out: str | Path, seed: int = 0, width: float = 1.0, num_classes: int = 1001) -> Path:
    """Write the model to OUT (atomically). WIDTH < 1 thins every layer (a test-sized variant)."""
    rng = np.random.default_rng(seed)
    g = _Graph(rng)
    ch = lambda c: max(8, int(round(c * width)))  # noqa: E731
    # Inputs are mean-subtracted pixels (std ~60), not unit-scaled: the stem absorbs that, as the
    # folded batch norm of the trained model does.
    x = g.conv("input_tensor:0", 3, ch(64), 7, 2, gain=1.0 / 60)
    pool = "maxpool"
    g.nodes.append(helper.make_node("MaxPool", [x], [pool], name=pool, kernel_shape=[3, 3],
                                    strides=[2, 2], pads=[1, 1, 1, 1]))
    x, cin = pool, ch(64)
    for w, blocks, stride in STAGES:
        for b in range(blocks):
            x, cin = g.bottleneck(x, cin, ch(w), stride if b == 0 else 1)
    g.nodes += [
        helper.make_node("GlobalAveragePool", [x], ["avgpool"], name="avgpool"),
        helper.make_node("Flatten", ["avgpool"], ["flatten"], name="flatten", axis=1),
        helper.make_node("Gemm", ["flatten", "fc/W", "fc/B"], ["logits"], name="fc", transB=1),
        helper.make_node("Softmax", ["logits"], ["softmax_tensor:0"], name="softmax", axis=1),
        helper.make_node("ArgMax", ["softmax_tensor:0"], ["ArgMax:0"], name="argmax", axis=1, keepdims=0),
    ]
    fc_w = rng.standard_normal((num_classes, cin), dtype=np.float32) * np.float32(np.sqrt(1.0 / cin))
    fc_b = np.zeros(num_classes, np.float32)
    inputs = [helper.make_tensor_value_info("input_tensor:0", TensorProto.FLOAT, ["N", 3, 224, 224])]
    outputs = [helper.make_tensor_value_info("ArgMax:0", TensorProto.INT64, ["N"]),
               helper.make_tensor_value_info("softmax_tensor:0", TensorProto.FLOAT, ["N", num_classes])]

    def make(fc_w, fc_b, extra_outputs=()):
        graph = helper.make_graph(
            g.nodes, "resnet50_v1.5", inputs, outputs + list(extra_outputs),
            g.inits + [numpy_helper.from_array(fc_w, "fc/W"), numpy_helper.from_array(fc_b, "fc/B")])
        return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)],
                                 producer_name="visionperf")

    # Untrained post-ReLU features share one large common direction, so every image would get
    # the same class. Standardising the features (folded into the classifier, as a trained
    # model's statistics would be) makes predictions depend on the image, which lets tests
    # check that each response carries its own sample's prediction.
    probe = make(fc_w, fc_b, [helper.make_tensor_value_info("flatten", TensorProto.FLOAT, ["N", cin])])
    feats = _features(probe, seed)
    mu, sd = feats.mean(0), np.maximum(feats.std(0), 1e-6)
    fc_w = (fc_w / sd).astype(np.float32)
    fc_b = (-(fc_w @ mu)).astype(np.float32)
    model = make(fc_w, fc_b)
    model.ir_version = 8
    helper.set_model_props(model, {
        "visionperf.model": "resnet50",
        "visionperf.synthetic_weights": "true",
        "visionperf.seed": str(seed),
        "visionperf.width": str(width),
    })
    onnx.checker.check_model(model)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    onnx.save(model, tmp)
    os.replace(tmp, out)
    return out


def _features(model: onnx.ModelProto, seed: int, count: int = 16) -> np.ndarray:
    """Pooled features of COUNT generated images (one thread: deterministic)."""
    import onnxruntime as ort

    from ..datasets.imagenet import preprocess_bgr
    from ..datasets.synthetic import draw_image
    from ..workloads import RESNET50

    rng = np.random.default_rng(seed + 1)
    x = np.stack([preprocess_bgr(draw_image(rng, int(rng.integers(240, 480)), int(rng.integers(240, 480))),
                                 RESNET50) for _ in range(count)])
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.log_severity_level = 3
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    return sess.run(["flatten"], {"input_tensor:0": x})[0].astype(np.float64)
