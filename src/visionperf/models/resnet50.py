"""ResNet50-v1.5 as an ONNX graph with the official MLPerf tensor names and synthetic weights.

Layer for layer the torchvision/MLPerf ResNet50-v1.5 (stride 2 in the 3x3 conv of each
down-sampling bottleneck, the "v1.5" change), with batch norm folded into conv biases as an
inference graph has it: 25.6 M parameters, 4.1 GMAC per image. The weights are deterministic
(seeded) He-normal, so throughput is the real model's and accuracy is meaningless; the file's
metadata says so (`visionperf.synthetic_weights = true`) and every accuracy report repeats it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

from .graph import GraphBuilder, claim_model, save_atomic

STAGES = ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2))  # (width, blocks, first stride)
EXPANSION = 4


def _bottleneck(g: GraphBuilder, x: str, cin: int, width: int, stride: int) -> tuple[str, int]:
    cout = width * EXPANSION
    y = g.conv(x, cin, width, 1)
    y = g.conv(y, width, width, 3, stride)  # v1.5: the stride sits on the 3x3 conv
    y = g.conv(y, width, cout, 1, act=None, gain=0.2)  # small last conv keeps activations bounded without BN
    short = x if (stride == 1 and cin == cout) else g.conv(x, cin, cout, 1, stride, act=None)
    return g.op("Relu", [g.op("Add", [y, short])]), cout


def build_resnet50(out: str | Path, seed: int = 0, width: float = 1.0, num_classes: int = 1001) -> Path:
    """Write the model to OUT (atomically). WIDTH < 1 thins every layer (a test-sized variant)."""
    g = GraphBuilder(seed)
    claim_model(out)
    ch = lambda c: max(8, int(round(c * width)))  # noqa: E731
    # Inputs are mean-subtracted pixels (std ~60), not unit-scaled: the stem absorbs that, as the
    # folded batch norm of the trained model does.
    x = g.conv("input_tensor:0", 3, ch(64), 7, 2, gain=1.0 / 60)
    x = g.op("MaxPool", [x], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    cin = ch(64)
    for w, blocks, stride in STAGES:
        for b in range(blocks):
            x, cin = _bottleneck(g, x, cin, ch(w), stride if b == 0 else 1)
    x = g.op("GlobalAveragePool", [x])
    feats = g.op("Flatten", [x], axis=1)
    g.nodes.append(helper.make_node("Gemm", [feats, "fc/W", "fc/B"], ["logits"], name="fc", transB=1))
    g.nodes.append(helper.make_node("Softmax", ["logits"], ["softmax_tensor:0"], name="softmax", axis=1))
    g.nodes.append(helper.make_node("ArgMax", ["softmax_tensor:0"], ["ArgMax:0"], name="argmax", axis=1, keepdims=0))
    inputs = [helper.make_tensor_value_info("input_tensor:0", TensorProto.FLOAT, ["N", 3, 224, 224])]
    outputs = [helper.make_tensor_value_info("ArgMax:0", TensorProto.INT64, ["N"]),
               helper.make_tensor_value_info("softmax_tensor:0", TensorProto.FLOAT, ["N", num_classes])]
    props = {"visionperf.model": "resnet50", "visionperf.synthetic_weights": "true",
             "visionperf.seed": str(seed), "visionperf.width": str(width)}

    fc_w = g.rng.standard_normal((num_classes, cin), dtype=np.float32) * np.float32(np.sqrt(1.0 / cin))
    base = list(g.inits)

    def make(w, b, extra=()):
        g.inits = base + [onnx.numpy_helper.from_array(w, "fc/W"), onnx.numpy_helper.from_array(b, "fc/B")]
        return g.model(inputs, outputs, props, extra)

    # Untrained post-ReLU features share one large common direction, so every image would get
    # the same class. Standardising the features (folded into the classifier, as a trained
    # model's statistics would be) makes predictions depend on the image, which lets tests
    # check that each response carries its own sample's prediction.
    probe = make(fc_w, np.zeros(num_classes, np.float32),
                 [helper.make_tensor_value_info(feats, TensorProto.FLOAT, ["N", cin])])
    f = _features(probe, feats, seed)
    mu, sd = f.mean(0), np.maximum(f.std(0), 1e-6)
    fc_w = (fc_w / sd).astype(np.float32)
    return save_atomic(make(fc_w, (-(fc_w @ mu)).astype(np.float32)), out)


def _features(model: onnx.ModelProto, name: str, seed: int, count: int = 16) -> np.ndarray:
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
    return sess.run([name], {"input_tensor:0": x})[0].astype(np.float64)
