"""SSD-MobileNet-v1 (300x300) and SSD-ResNet34 (1200x1200) as ONNX graphs cut before NMS.

Like the paper (section II-F), the graphs end at the raw heads, and NMS runs on the host:
SSD-MobileNet: `image_tensor:0` uint8 [N,300,300,3] -> `raw_boxes` [N,1917,4] (box-major, TF
(ty,tx,th,tw) encodings) and `raw_scores` [N,1917,91] (sigmoid).
SSD-ResNet34: `image` float32 [N,3,1200,1200] -> `locs` [N,4,15130] and `confs` [N,81,15130]
(class-major, softmax over classes), as the MLPerf PyTorch model's heads view them.
Weights are synthetic (seeded); batch norm is folded into conv biases.

SSD-MobileNet-v1 is TF's `ssd_mobilenet_v1_coco` layer for layer (SAME padding, ReLU6, 1x1 box
predictors). For SSD-ResNet34 the MLPerf 1200 model is a ResNet34 trunk to conv4 with the
conv4 stride removed (150x150x256 at 1200 input), then extra blocks down to the 50/25/13/7/3/3
maps its heads read; how the first 150 -> 50 step is strided is our reading of the reference
(one 3x3 stride-3 conv), which lands within a few percent of its published 433 GFLOPs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from onnx import TensorProto, helper

from .graph import GraphBuilder, claim_model, save_atomic

MOBILENET_BODY = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
                  (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1))
MOBILENET_EXTRAS = ((256, 512), (128, 256), (128, 256), (64, 128))  # (1x1, 3x3/2) channels
MOBILENET_ANCHORS = (3, 6, 6, 6, 6, 6)
R34_ANCHORS = (4, 6, 6, 6, 4, 4)


def _props(name: str, seed: int, width: float) -> dict:
    return {"visionperf.model": name, "visionperf.synthetic_weights": "true",
            "visionperf.seed": str(seed), "visionperf.width": str(width), "visionperf.nms": "cut (host NMS)"}


def _flatten_head(g: GraphBuilder, x: str, per: int, box_major: bool) -> str:
    if box_major:  # TF: NHWC order, then [N, H*W*a, per]
        return g.op("Reshape", [g.op("Transpose", [x], perm=[0, 2, 3, 1]),
                                g.const(np.array([0, -1, per], np.int64), "shape")])
    # PyTorch reference: view(N, per, -1)
    return g.op("Reshape", [x, g.const(np.array([0, per, -1], np.int64), "shape")])


def build_ssd_mobilenet(out: str | Path, seed: int = 0, width: float = 1.0, num_classes: int = 91) -> Path:
    g = GraphBuilder(seed)
    claim_model(out)
    ch = lambda c: max(8, int(round(c * width)))  # noqa: E731
    x = g.op("Cast", ["image_tensor:0"], to=TensorProto.FLOAT)
    x = g.op("Sub", [g.op("Mul", [x, g.const(np.float32(2 / 255))]), g.const(np.float32(1))])
    x = g.op("Transpose", [x], perm=[0, 3, 1, 2])
    x = g.conv(x, 3, ch(32), 3, 2, "SAME", act="relu6")
    cin, feats = ch(32), []
    for i, (c, s) in enumerate(MOBILENET_BODY):
        x = g.conv(x, cin, cin, 3, s, "SAME", group=cin, act="relu6")  # depthwise
        x = g.conv(x, cin, ch(c), 1, act="relu6")  # pointwise
        cin = ch(c)
        if i in (10, 12):  # conv_pw_11 (19x19) and conv_pw_13 (10x10)
            feats.append((x, cin))
    for mid, c in MOBILENET_EXTRAS:
        x = g.conv(x, cin, ch(mid), 1, act="relu6")
        x = g.conv(x, ch(mid), ch(c), 3, 2, "SAME", act="relu6")
        cin = ch(c)
        feats.append((x, cin))
    boxes, scores = [], []
    for (f, c), a in zip(feats, MOBILENET_ANCHORS):
        boxes.append(_flatten_head(g, g.conv(f, c, a * 4, 1, act=None, gain=0.3), 4, True))
        # The class head's bias favours "nothing here", as a trained one does: most sigmoid
        # scores fall below the 0.3 threshold and NMS sees a realistic number of candidates.
        logits = g.conv(f, c, a * num_classes, 1, act=None, gain=0.5)
        logits = g.op("Sub", [logits, g.const(np.float32(1.5))])
        scores.append(_flatten_head(g, logits, num_classes, True))
    g.nodes.append(helper.make_node("Concat", boxes, ["raw_boxes"], axis=1, name="raw_boxes"))
    g.nodes.append(helper.make_node("Concat", scores, ["logits_all"], axis=1, name="logits_all"))
    g.nodes.append(helper.make_node("Sigmoid", ["logits_all"], ["raw_scores"], name="raw_scores"))
    m = g.model([helper.make_tensor_value_info("image_tensor:0", TensorProto.UINT8, ["N", 300, 300, 3])],
                [helper.make_tensor_value_info("raw_boxes", TensorProto.FLOAT, ["N", 1917, 4]),
                 helper.make_tensor_value_info("raw_scores", TensorProto.FLOAT, ["N", 1917, num_classes])],
                _props("ssd-mobilenet", seed, width))
    return save_atomic(m, out)


def _basic_block(g: GraphBuilder, x: str, cin: int, cout: int, stride: int) -> str:
    y = g.conv(x, cin, cout, 3, stride)
    y = g.conv(y, cout, cout, 3, act=None, gain=0.3)
    short = x if (stride == 1 and cin == cout) else g.conv(x, cin, cout, 1, stride, 0, act=None)
    return g.op("Relu", [g.op("Add", [y, short])])


def build_ssd_resnet34(out: str | Path, seed: int = 0, width: float = 1.0, num_classes: int = 81) -> Path:
    g = GraphBuilder(seed)
    claim_model(out)
    ch = lambda c: max(8, int(round(c * width)))  # noqa: E731
    x = g.conv("image", 3, ch(64), 7, 2, 3)
    x = g.op("MaxPool", [x], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    cin = ch(64)
    for c, blocks, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 1)):  # conv4 stride removed
        for b in range(blocks):
            x = _basic_block(g, x, cin, ch(c), stride if b == 0 else 1)
            cin = ch(c)
    extras = ((256, 256, 3, 1), (256, 512, 2, 1), (256, 512, 2, 1), (128, 256, 2, 1), (128, 256, 2, 0),
              (128, 256, 1, 1))  # (1x1 ch, 3x3 ch, stride, pad): 150 -> 50, 25, 13, 7, 3, 3
    feats = []
    for mid, c, s, p in extras:
        x = g.conv(x, cin, ch(mid), 1)
        x = g.conv(x, ch(mid), ch(c), 3, s, p)
        cin = ch(c)
        feats.append((x, cin))
    locs, confs = [], []
    for (f, c), a in zip(feats, R34_ANCHORS):
        locs.append(_flatten_head(g, g.conv(f, c, a * 4, 3, act=None, gain=0.3), 4, False))
        confs.append(_flatten_head(g, g.conv(f, c, a * num_classes, 3, act=None), num_classes, False))
    g.nodes.append(helper.make_node("Concat", locs, ["locs"], axis=2, name="locs"))
    g.nodes.append(helper.make_node("Concat", confs, ["conf_logits"], axis=2, name="conf_logits"))
    g.nodes.append(helper.make_node("Softmax", ["conf_logits"], ["confs"], axis=1, name="confs"))
    m = g.model([helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 3, 1200, 1200])],
                [helper.make_tensor_value_info("locs", TensorProto.FLOAT, ["N", 4, 15130]),
                 helper.make_tensor_value_info("confs", TensorProto.FLOAT, ["N", num_classes, 15130])],
                _props("ssd-resnet34", seed, width))
    return save_atomic(m, out)
