"""RetinaNet (MLPerf's ResNeXt50-32x4d FPN, 800x800, 264 classes) as an ONNX graph cut before NMS.

Layer for layer the MLCommons training model (torchvision's retinanet with a resnext50_32x4d
backbone): `images` float32 [N,3,800,800] (RGB in [0, 1]) is normalised inside the graph with
the ImageNet mean/std, as GeneralizedRCNNTransform does (its resize to 800x800 is the identity
at this size, so it is left out); ResNeXt50-32x4d (bottlenecks 3/4/6/3, 32 groups of 4 channels
per 64 planes, the stride on the 3x3, batch norm folded) gives C3, C4, C5; the FPN (256
channels, lateral 1x1, nearest x2 top-down, 3x3 outputs) gives P3..P5, P6 a 3x3 stride-2 conv
on P5 and P7 one on relu(P6); the heads (4 x conv3x3 + ReLU, then a 3x3 conv to 9 x 264 class
logits or 9 x 4 box offsets) share their weights across levels. Each level's head output
(N, 9 K, H, W) becomes rows (N, H W 9, K) in (y, x, anchor) order, and the levels are
concatenated: `cls_logits` [N,120087,264] and `bbox_regression` [N,120087,4], the order of
postprocess/retinanet.py's anchors. Weights are synthetic (seeded); the class bias is the
focal-loss prior -log(99), so the logits sit below the 0.05 threshold as a trained head's mostly do.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from onnx import TensorProto, helper, numpy_helper

from .graph import GraphBuilder, claim_model, save_atomic

STAGES = ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2))  # (planes, blocks, stride): layer1..4
GROUPS, GROUP_WIDTH = 32, 4
FPN = 256
ANCHORS = 9
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
PRIOR = 0.01


def _bottleneck(g: GraphBuilder, x: str, cin: int, width: int, groups: int, cout: int, stride: int) -> str:
    y = g.conv(x, cin, width, 1, pad=0)
    y = g.conv(y, width, width, 3, stride, 1, group=groups)
    y = g.conv(y, width, cout, 1, pad=0, act=None, gain=0.3)
    short = x if (stride == 1 and cin == cout) else g.conv(x, cin, cout, 1, stride, 0, act=None)
    return g.op("Relu", [g.op("Add", [y, short])])


class SharedConv:
    """One conv's weights, applied to every level (the heads share theirs across P3..P7)."""

    def __init__(self, g: GraphBuilder, cin: int, cout: int, gain: float = 1.0, bias: float | None = None):
        self.g = g
        self.name = g.name("head_conv")
        w = g.rng.standard_normal((cout, cin, 3, 3), dtype=np.float32) * np.float32(gain * np.sqrt(2.0 / (cin * 9)))
        b = np.full(cout, bias, np.float32) if bias is not None else g.rng.standard_normal(cout, dtype=np.float32) * 0.01
        g.inits += [numpy_helper.from_array(w, self.name + "/W"), numpy_helper.from_array(b.astype(np.float32),
                                                                                         self.name + "/B")]

    def __call__(self, x: str, relu: bool = True) -> str:
        out = self.g.name(self.name)
        self.g.nodes.append(helper.make_node("Conv", [x, self.name + "/W", self.name + "/B"], [out], name=out,
                                             kernel_shape=[3, 3], strides=[1, 1], pads=[1, 1, 1, 1]))
        return self.g.op("Relu", [out]) if relu else out


def head_rows(g: GraphBuilder, x: str, per: int) -> str:
    """(N, A*PER, H, W) -> (N, H*W*A, PER): torchvision's view (N, A, PER, H, W) and permute
    (N, H, W, A, PER), with H and W kept flat (row-major: y, then x)."""
    v = g.op("Reshape", [x, g.const(np.array([0, ANCHORS, per, -1], np.int64), "shape")])
    t = g.op("Transpose", [v], perm=[0, 3, 1, 2])
    return g.op("Reshape", [t, g.const(np.array([0, -1, per], np.int64), "shape")])


def build_retinanet(out: str | Path, seed: int = 0, width: float = 1.0, num_classes: int = 264) -> Path:
    g = GraphBuilder(seed)
    claim_model(out)
    ch = lambda c: max(8, int(round(c * width)))  # noqa: E731
    mean = g.const(np.asarray(IMAGENET_MEAN, np.float32).reshape(1, 3, 1, 1), "mean")
    std = g.const(np.asarray(IMAGENET_STD, np.float32).reshape(1, 3, 1, 1), "std")
    x = g.op("Div", [g.op("Sub", ["images", mean]), std])
    x = g.conv(x, 3, ch(64), 7, 2, 3)
    x = g.op("MaxPool", [x], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    cin, feats = ch(64), []
    for planes, blocks, stride in STAGES:
        groups = max(1, int(round(GROUPS * width)))  # 32 groups of 4 channels per 64 planes at full width
        bw = groups * GROUP_WIDTH * planes // 64
        for b in range(blocks):
            x = _bottleneck(g, x, cin, bw, groups, ch(planes * 4), stride if b == 0 else 1)
            cin = ch(planes * 4)
        feats.append((x, cin))
    c3, c4, c5 = feats[1:]
    f = ch(FPN)
    inner = [g.conv(c, n, f, 1, pad=0, act=None) for c, n in (c3, c4, c5)]
    top = inner[2]
    lat = [None, None, top]
    for k in (1, 0):  # top-down: nearest x2 (25 -> 50 -> 100), added to the lateral
        up = g.op("Resize", [top, "", g.const(np.array([1, 1, 2, 2], np.float32), "scales")], mode="nearest",
                  coordinate_transformation_mode="asymmetric", nearest_mode="floor")  # F.interpolate nearest
        top = lat[k] = g.op("Add", [inner[k], up])
    p3, p4, p5 = (g.conv(t, f, f, 3, act=None) for t in lat)
    p6 = g.conv(p5, f, f, 3, 2, 1, act=None)  # LastLevelP6P7 on P5 (in == out channels)
    p7 = g.conv(g.op("Relu", [p6]), f, f, 3, 2, 1, act=None)
    cls_tower = [SharedConv(g, f, f) for _ in range(4)]
    cls_out = SharedConv(g, f, ANCHORS * num_classes, gain=0.3, bias=-float(np.log((1 - PRIOR) / PRIOR)))
    box_tower = [SharedConv(g, f, f) for _ in range(4)]
    box_out = SharedConv(g, f, ANCHORS * 4, gain=0.1)
    logits, boxes = [], []
    for p in (p3, p4, p5, p6, p7):
        c, b = p, p
        for conv in cls_tower:
            c = conv(c)
        for conv in box_tower:
            b = conv(b)
        logits.append(head_rows(g, cls_out(c, relu=False), num_classes))
        boxes.append(head_rows(g, box_out(b, relu=False), 4))
    g.nodes.append(helper.make_node("Concat", logits, ["cls_logits"], axis=1, name="cls_logits"))
    g.nodes.append(helper.make_node("Concat", boxes, ["bbox_regression"], axis=1, name="bbox_regression"))
    m = g.model([helper.make_tensor_value_info("images", TensorProto.FLOAT, ["N", 3, 800, 800])],
                [helper.make_tensor_value_info("cls_logits", TensorProto.FLOAT, ["N", 120087, num_classes]),
                 helper.make_tensor_value_info("bbox_regression", TensorProto.FLOAT, ["N", 120087, 4])],
                {"visionperf.model": "retinanet", "visionperf.synthetic_weights": "true",
                 "visionperf.seed": str(seed), "visionperf.width": str(width),
                 "visionperf.nms": "cut (host NMS)"})
    return save_atomic(m, out)
