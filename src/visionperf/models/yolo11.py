"""YOLO11 (n/s/m/l/x) as an ONNX graph with Ultralytics' tensor names and synthetic weights.

Layer for layer Ultralytics' yolo11.yaml at one scale (depth, width, max_channels): Conv (batch
norm folded into the conv bias, SiLU), C3k2 (C3k inner blocks where the scale or the yaml asks),
SPPF, C2PSA (multi-head attention), nearest x2 upsampling and concatenation, and the Detect head:
per level a box branch of 4 x reg_max = 64 DFL logits and a class branch with YOLO11's depthwise
convs, then the DFL expectation, distances to an xywh box around the anchor point (cell centre,
0.5 offset) times the stride, and sigmoid class scores. `output0` is [N, 84, A], A = sum over
strides 8, 16, 32 of (H/s)(W/s), exactly as an Ultralytics ONNX export has it.

The input `images` is uint8 RGB [N, 3, H, W] (a letterboxed cache's rows) followed by Cast and a
Div by 255: bit for bit Ultralytics' `img.float() / 255`. `wrap_float_input` puts the same two
nodes in front of an Ultralytics export, whose input is float32.

Weights are seeded, then normalised on a drawn probe image as the graph is built, so that each
conv's pre-activations are what a folded batch norm gives (see _BETA_STD); the first conv's
filters are edge detectors; the class bias is Ultralytics' bias_init prior
log(5 / nc / (640 / s)^2). Most scores sit far below the 0.001 threshold and a random model leaves
hundreds to a few thousand candidates per image, as a trained one does: a realistic load for NMS.
"""

from __future__ import annotations

import math
import shutil
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..atomic import replacing
from ..errors import UserError
from .graph import GraphBuilder, claim_model, save_atomic

NUM_CLASSES = 80
REG_MAX = 16  # DFL bins per box side
STRIDES = (8, 16, 32)
INPUT = "images"
OUTPUT = "output0"


@dataclass(frozen=True)
class Scale:
    """One row of yolo11.yaml's `scales`."""

    depth: float
    width: float
    max_channels: int
    c3k: bool  # Ultralytics' parse_model turns every C3k2's C3k on for m, l and x


VARIANTS = {
    "n": Scale(0.50, 0.25, 1024, False),
    "s": Scale(0.50, 0.50, 1024, False),
    "m": Scale(0.50, 1.00, 512, True),
    "l": Scale(1.00, 1.00, 512, True),
    "x": Scale(1.00, 1.50, 512, True),
}

# What the folded batch norm of a trained model gives each conv: zero-mean, unit-variance
# pre-activations per channel (measured on a probe image as the graph is built), then a random
# shift per channel (BN's beta). The shift is large on purpose: a random SiLU network with small
# shifts amplifies whatever sets one image apart from the probe, layer after layer, and a few
# images then light up every anchor; with channels spread over the SiLU's curve, differences
# shrink with depth instead and the candidates per image stay in one band.
# The head's last convs (plain, no batch norm) get these logit spreads instead. A trained head's
# 80 class logits move together (an anchor on background is low for every class), so most of
# their variance is shared: with the bias_init prior this leaves hundreds to a few thousand
# anchors above 0.001, on every level, rather than the max of 80 independent draws lifting
# nearly every stride-32 anchor over it.
_BETA_STD = 1.5
_CLS_LOGIT_STD = 2.0
_CLS_SHARED = 0.9
_BOX_LOGIT_STD = 2.0
_PROBE_IMAGES = 1  # letterboxed to 640 (or the fixed input size): one keeps building quick


def _channels(c: int, s: Scale) -> int:
    """Ultralytics' make_divisible(min(c, max_channels) * width, 8)."""
    return int(math.ceil(min(c, s.max_channels) * s.width / 8) * 8)


def _repeats(n: int, s: Scale) -> int:
    return max(round(n * s.depth), 1) if n > 1 else n


class _Yolo:
    """The graph being built: the modules of yolo11.yaml. With PROBE images it is evaluated as it
    grows (one ONNX Runtime session per conv over the nodes added since the last), so that each
    conv's weights are normalised on the activations it really sees; without, they stay He-normal
    (the graph alone: shapes, parameters and FLOPs)."""

    def __init__(self, g: GraphBuilder, pixels: str, probe: np.ndarray | None, p5_hw: tuple[int, int] | None):
        import onnxruntime as ort

        self.g = g
        self.pixels = pixels  # what the first conv reads: its filters are edge detectors
        self.p5_hw = p5_hw  # the stride-32 grid of a fixed input size, None if dynamic
        self.weights: dict[str, np.ndarray] = {}  # conv weights and biases, initializers at the end
        self.values: dict[str, np.ndarray] | None = None if probe is None else {INPUT: probe}
        self.done = 0  # g.nodes[:done] are evaluated
        self.transient: set[str] = set()  # values read once (a conv's output, inside its SiLU): freed when read
        self.so = ort.SessionOptions()
        self.so.intra_op_num_threads = 1  # one thread: the same sums, so the same weights, every build
        self.so.log_severity_level = 3
        self.so.enable_cpu_mem_arena = False  # a session per conv: an arena each would only pile up

    def _evaluate(self) -> None:
        """Evaluate the nodes added since the last call on the probe values."""
        import onnxruntime as ort

        nodes = self.g.nodes[self.done:]
        self.done = len(self.g.nodes)
        made = {o for n in nodes for o in n.output}
        consts = {i.name: i for i in self.g.inits}
        feeds, inits = {}, []
        for name in {i for n in nodes for i in n.input if i and i not in made}:
            if name in self.values:
                feeds[name] = self.values[name]
            elif name in self.weights:
                inits.append(numpy_helper.from_array(self.weights[name], name))
            else:
                inits.append(consts[name])
        inputs = [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(v.dtype), v.shape)
                  for n, v in feeds.items()]
        outs = [o for n in nodes for o in n.output]
        graph = helper.make_graph(nodes, "probe", inputs,
                                  [helper.make_empty_tensor_value_info(o) for o in outs], inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
        model.ir_version = 8
        sess = ort.InferenceSession(model.SerializeToString(), self.so, providers=["CPUExecutionProvider"])
        self.values.update(zip(outs, sess.run(outs, feeds)))
        read = {i for n in nodes for i in n.input} & self.transient
        for name in read:
            del self.values[name]
        self.transient -= read

    def _conv(self, x: str, c1: int, c2: int, k: int, s: int, group: int, std: float, bias: np.ndarray,
              shared: float = 0.0) -> str:
        """A conv whose output has, per channel on the probe images, standard deviation STD and
        mean BIAS: He-normal weights, then that affine map folded into them. SHARED in [0, 1): the
        share of each output's variance that is common to all of them."""
        g = self.g
        name = g.name("conv")
        if x == self.pixels:  # gradient filters, as a trained first layer's mostly are: flat colour gives 0
            r = np.arange(k, dtype=np.float32) - (k - 1) / 2
            a = g.rng.standard_normal((c2, c1 // group, 2, 1, 1)).astype(np.float32)
            w = a[:, :, 0] * r[None, :] + a[:, :, 1] * r[:, None]
        else:
            w = g.rng.standard_normal((c2, c1 // group, k, k), dtype=np.float32)
        if shared:
            common = g.rng.standard_normal((1, c1 // group, k, k), dtype=np.float32)
            w = np.float32(math.sqrt(1 - shared)) * w + np.float32(math.sqrt(shared)) * common
        self.weights[name + "/W"] = w * np.float32(math.sqrt(2.0 / (c1 // group * k * k)))
        self.weights[name + "/B"] = np.zeros(c2, np.float32)
        g.nodes.append(helper.make_node("Conv", [x, name + "/W", name + "/B"], [name], name=name,
                                        kernel_shape=[k, k], strides=[s, s], pads=[k // 2] * 4, group=group))
        if self.values is None:
            self.weights[name + "/B"] = np.asarray(bias, np.float32)
            return name
        self._evaluate()
        y = self.values[name].astype(np.float64)
        mean, var = y.mean((0, 2, 3)), y.var((0, 2, 3))
        # A channel the probe barely moves is not blown up: its spread counts as a tenth of the layer's.
        sd = np.sqrt(var + 0.01 * var.mean() + 1e-12)
        scale = (std / sd).astype(np.float32)
        self.weights[name + "/W"] *= scale[:, None, None, None]
        self.weights[name + "/B"] = (bias - mean * scale).astype(np.float32)
        self.values[name] = (y * scale[None, :, None, None] + self.weights[name + "/B"][None, :, None, None]
                             ).astype(np.float32)
        return name

    def conv(self, x: str, c1: int, c2: int, k: int = 1, s: int = 1, group: int = 1, act: bool = True) -> str:
        """Ultralytics' Conv: conv (k // 2 padding) + folded BN bias + SiLU (none if not ACT)."""
        beta = self.g.rng.standard_normal(c2) * _BETA_STD
        y = self._conv(x, c1, c2, k, s, group, 1.0, beta)
        if not act:
            return y
        sig = self.g.op("Sigmoid", [y])
        self.transient |= {y, sig}
        return self.g.op("Mul", [y, sig])

    def plain_conv(self, x: str, c1: int, c2: int, std: float, bias: np.ndarray, shared: float = 0.0) -> str:
        """A 1x1 nn.Conv2d with its own bias (the head's last convs), output spread STD around BIAS."""
        return self._conv(x, c1, c2, 1, 1, 1, std, bias, shared)

    def initializers(self) -> list[onnx.TensorProto]:
        return [numpy_helper.from_array(v, k) for k, v in self.weights.items()]

    def split(self, x: str, sizes: list[int], axis: int = 1) -> list[str]:
        g = self.g
        outs = [g.name("split") for _ in sizes]
        g.nodes.append(helper.make_node("Split", [x, g.const(np.array(sizes, np.int64), "sizes")], outs,
                                        name=outs[0], axis=axis))
        return outs

    def bottleneck(self, x: str, c1: int, c2: int, shortcut: bool, e: float = 0.5) -> str:
        c_ = int(c2 * e)
        y = self.conv(self.conv(x, c1, c_, 3), c_, c2, 3)
        return self.g.op("Add", [x, y]) if shortcut and c1 == c2 else y

    def c3k(self, x: str, c1: int, c2: int, n: int = 2) -> str:
        """C3k: a C3 whose n bottlenecks are 3x3 / 3x3 at full width (e = 1)."""
        c_ = int(c2 * 0.5)
        a = self.conv(x, c1, c_)
        for _ in range(n):
            a = self.bottleneck(a, c_, c_, True, e=1.0)
        b = self.conv(x, c1, c_)
        return self.conv(self.g.op("Concat", [a, b], axis=1), 2 * c_, c2)

    def c3k2(self, x: str, c1: int, c2: int, n: int, c3k: bool, e: float = 0.5) -> str:
        """C3k2: C2f's split-and-extend with bottlenecks (e 0.5) or C3k blocks inside."""
        c = int(c2 * e)
        ys = self.split(self.conv(x, c1, 2 * c), [c, c])
        for _ in range(n):
            ys.append(self.c3k(ys[-1], c, c) if c3k else self.bottleneck(ys[-1], c, c, True))
        return self.conv(self.g.op("Concat", ys, axis=1), (2 + n) * c, c2)

    def sppf(self, x: str, c1: int, c2: int, k: int = 5) -> str:
        c_ = c1 // 2
        ys = [self.conv(x, c1, c_)]
        for _ in range(3):
            ys.append(self.g.op("MaxPool", [ys[-1]], kernel_shape=[k, k], strides=[1, 1], pads=[k // 2] * 4))
        return self.conv(self.g.op("Concat", ys, axis=1), 4 * c_, c2)

    def attention(self, x: str, dim: int, heads: int) -> str:
        """Multi-head self-attention over the H*W positions, plus a depthwise 3x3 positional term."""
        g = self.g
        head_dim = dim // heads
        key_dim = int(head_dim * 0.5)
        # Back to [N, C, H, W]: constants at a fixed input size (so shape inference sees through),
        # else the input's own shape.
        shape = (g.const(np.array([0, dim, *self.p5_hw], np.int64), "shape") if self.p5_hw
                 else g.op("Shape", [x]))
        qkv = self.conv(x, dim, dim + 2 * key_dim * heads, act=False)
        qkv = g.op("Reshape", [qkv, g.const(np.array([0, heads, 2 * key_dim + head_dim, -1], np.int64), "shape")])
        q, k, v = self.split(qkv, [key_dim, key_dim, head_dim], axis=2)
        attn = g.op("MatMul", [g.op("Transpose", [q], perm=[0, 1, 3, 2]), k])
        attn = g.op("Softmax", [g.op("Mul", [attn, g.const(np.float32(key_dim ** -0.5), "scale")])], axis=-1)
        y = g.op("MatMul", [v, g.op("Transpose", [attn], perm=[0, 1, 3, 2])])
        pe = self.conv(g.op("Reshape", [v, shape]), dim, dim, 3, group=dim, act=False)
        return self.conv(g.op("Add", [g.op("Reshape", [y, shape]), pe]), dim, dim, act=False)

    def c2psa(self, x: str, c1: int, n: int) -> str:
        c = int(c1 * 0.5)
        a, b = self.split(self.conv(x, c1, 2 * c), [c, c])
        for _ in range(n):  # PSABlock: attention and a 2x feed-forward, each with its shortcut
            b = self.g.op("Add", [b, self.attention(b, c, c // 64)])
            b = self.g.op("Add", [b, self.conv(self.conv(b, c, 2 * c), 2 * c, c, act=False)])
        return self.conv(self.g.op("Concat", [a, b], axis=1), 2 * c, c1)

    def upsample(self, x: str) -> str:
        g = self.g
        return g.op("Resize", [x, "", g.const(np.array([1, 1, 2, 2], np.float32), "scales")], mode="nearest",
                    coordinate_transformation_mode="asymmetric", nearest_mode="floor")


def _network(y: _Yolo, x: str, s: Scale) -> tuple[list[str], list[int]]:
    """yolo11.yaml's backbone and neck: the P3, P4, P5 features and their channels."""
    c = lambda ch: _channels(ch, s)  # noqa: E731
    n = _repeats(2, s)
    x = y.conv(x, 3, c(64), 3, 2)  # P1/2
    x = y.conv(x, c(64), c(128), 3, 2)  # P2/4
    x = y.c3k2(x, c(128), c(256), n, s.c3k, e=0.25)
    x = y.conv(x, c(256), c(256), 3, 2)  # P3/8
    p3 = y.c3k2(x, c(256), c(512), n, s.c3k, e=0.25)
    x = y.conv(p3, c(512), c(512), 3, 2)  # P4/16
    p4 = y.c3k2(x, c(512), c(512), n, True)
    x = y.conv(p4, c(512), c(1024), 3, 2)  # P5/32
    x = y.c3k2(x, c(1024), c(1024), n, True)
    x = y.sppf(x, c(1024), c(1024))
    p5 = y.c2psa(x, c(1024), n)

    cat = lambda a, b: y.g.op("Concat", [a, b], axis=1)  # noqa: E731
    h13 = y.c3k2(cat(y.upsample(p5), p4), c(1024) + c(512), c(512), n, s.c3k)
    out3 = y.c3k2(cat(y.upsample(h13), p3), c(512) + c(512), c(256), n, s.c3k)
    x = y.conv(out3, c(256), c(256), 3, 2)
    out4 = y.c3k2(cat(x, h13), c(256) + c(512), c(512), n, s.c3k)
    x = y.conv(out4, c(512), c(512), 3, 2)
    out5 = y.c3k2(cat(x, p5), c(512) + c(1024), c(1024), n, True)
    return [out3, out4, out5], [c(256), c(512), c(1024)]


def _anchors(g: GraphBuilder, feats: list[str], fixed_hw: tuple[int, int] | None) -> tuple[str, str]:
    """Anchor points [2, A] (cell centres, in grid units) and strides [1, A], level by level in
    row-major (y, then x) order: constants for a fixed input size, computed from the feature
    shapes for a dynamic one."""
    if fixed_hw is not None:
        pts, strides = [], []
        for s in STRIDES:
            h, w = fixed_hw[0] // s, fixed_hw[1] // s
            sy, sx = np.meshgrid(np.arange(h, dtype=np.float32) + 0.5, np.arange(w, dtype=np.float32) + 0.5,
                                 indexing="ij")
            pts.append(np.stack([sx.ravel(), sy.ravel()]))
            strides.append(np.full((1, h * w), s, np.float32))
        return g.const(np.concatenate(pts, 1), "anchors"), g.const(np.concatenate(strides, 1), "strides")
    pts, strides = [], []
    zero, one = g.const(np.int64(0)), g.const(np.int64(1))
    for feat, s in zip(feats, STRIDES):
        shape = g.op("Shape", [feat])
        h, w = (g.op("Gather", [shape, g.const(np.int64(i))], axis=0) for i in (2, 3))
        hw = g.op("Concat", [g.op("Unsqueeze", [d, g.const(np.array([0], np.int64))]) for d in (h, w)], axis=0)
        half = g.const(np.float32(0.5))
        xs = g.op("Add", [g.op("Cast", [g.op("Range", [zero, w, one])], to=TensorProto.FLOAT), half])
        ys = g.op("Add", [g.op("Cast", [g.op("Range", [zero, h, one])], to=TensorProto.FLOAT), half])
        gx = g.op("Expand", [g.op("Unsqueeze", [xs, g.const(np.array([0], np.int64))]), hw])
        gy = g.op("Expand", [g.op("Unsqueeze", [ys, g.const(np.array([1], np.int64))]), hw])
        row = g.const(np.array([1, -1], np.int64), "shape")
        gx, gy = g.op("Reshape", [gx, row]), g.op("Reshape", [gy, row])
        pts.append(g.op("Concat", [gx, gy], axis=0))
        strides.append(g.op("Expand", [g.const(np.full((1, 1), s, np.float32), "stride"), g.op("Shape", [gx])]))
    return g.op("Concat", pts, axis=1), g.op("Concat", strides, axis=1)


def _detect(y: _Yolo, feats: list[str], chs: list[int], fixed_hw: tuple[int, int] | None) -> str:
    """Ultralytics' Detect head at inference: [N, 4 + nc, A] with xywh boxes in input pixels."""
    g = y.g
    c2 = max(16, chs[0] // 4, REG_MAX * 4)
    c3 = max(chs[0], min(NUM_CLASSES, 100))
    boxes, scores = [], []
    flat = g.const(np.array([0, 0, -1], np.int64), "shape")
    for x, ch, s in zip(feats, chs, STRIDES):
        b = y.conv(y.conv(x, ch, c2, 3), c2, c2, 3)
        b = y.plain_conv(b, c2, 4 * REG_MAX, _BOX_LOGIT_STD, np.ones(4 * REG_MAX))
        c = y.conv(y.conv(x, ch, ch, 3, group=ch), ch, c3)  # DWConv (groups gcd(c, c) = c), then 1x1
        c = y.conv(y.conv(c, c3, c3, 3, group=c3), c3, c3)
        prior = math.log(5 / NUM_CLASSES / (640 / s) ** 2)  # Ultralytics' bias_init
        c = y.plain_conv(c, c3, NUM_CLASSES, _CLS_LOGIT_STD, np.full(NUM_CLASSES, prior), _CLS_SHARED)
        boxes.append(g.op("Reshape", [b, flat]))
        scores.append(g.op("Reshape", [c, flat]))
    box, cls = g.op("Concat", boxes, axis=2), g.op("Concat", scores, axis=2)

    # DFL: softmax over each side's 16 bins, then the expectation as a fixed 1x1 conv (weights 0..15).
    d = g.op("Reshape", [box, g.const(np.array([0, 4, REG_MAX, -1], np.int64), "shape")])
    d = g.op("Softmax", [g.op("Transpose", [d], perm=[0, 2, 1, 3])], axis=1)
    dfl = g.const(np.arange(REG_MAX, dtype=np.float32).reshape(1, REG_MAX, 1, 1), "dfl")
    d = g.op("Conv", [d, dfl], kernel_shape=[1, 1])
    d = g.op("Reshape", [d, g.const(np.array([0, 4, -1], np.int64), "shape")])

    anchors, strides = _anchors(g, feats, fixed_hw)
    lt, rb = y.split(d, [2, 2])
    x1y1, x2y2 = g.op("Sub", [anchors, lt]), g.op("Add", [anchors, rb])
    xy = g.op("Div", [g.op("Add", [x1y1, x2y2]), g.const(np.float32(2))])
    wh = g.op("Sub", [x2y2, x1y1])
    xywh = g.op("Mul", [g.op("Concat", [xy, wh], axis=1), strides])
    g.nodes.append(helper.make_node("Concat", [xywh, g.op("Sigmoid", [cls])], [OUTPUT], name=OUTPUT, axis=1))
    return OUTPUT


def _check(variant: str, input_size: int | None, batch: int | None) -> None:
    if variant not in VARIANTS:
        raise UserError(f"no YOLO11 variant {variant!r}: choose one of {', '.join(VARIANTS)}")
    _check_shape(input_size, batch)


def _check_shape(input_size: int | None, batch: int | None) -> None:
    if input_size is not None and (input_size <= 0 or input_size % 32):
        raise UserError(f"--input-size {input_size} must be a positive multiple of 32 (YOLO11's largest stride)")
    if batch is not None and (input_size is None or batch < 1):
        raise UserError(f"--batch {batch} needs --input-size (a fixed-shape model) and must be 1 or more")


def yolo11_model(variant: str = "l", seed: int = 0, input_size: int | None = None, batch: int | None = None,
                 calibrate: bool = True) -> onnx.ModelProto:
    """YOLO11-VARIANT (n, s, m, l or x). INPUT_SIZE None: dynamic batch, height and width
    (multiples of 32: rect letterboxing); else a fixed BATCH (default 1) x 3 x INPUT_SIZE^2.
    CALIBRATE False leaves the weights unnormalised: the same graph, built without running it."""
    _check(variant, input_size, batch)
    g = GraphBuilder(seed)
    x = g.op("Div", [g.op("Cast", [INPUT], to=TensorProto.FLOAT), g.const(np.float32(255), "pixel_scale")])
    fixed_hw = (input_size, input_size) if input_size else None
    probe = _probe(seed, input_size or 640) if calibrate else None
    y = _Yolo(g, x, probe, (input_size // 32, input_size // 32) if input_size else None)
    feats, chs = _network(y, x, VARIANTS[variant])
    _detect(y, feats, chs, fixed_hw)
    g.inits = y.initializers() + g.inits
    if fixed_hw:
        b = batch or 1
        a = sum((input_size // s) ** 2 for s in STRIDES)
        in_shape, out_shape = [b, 3, input_size, input_size], [b, 4 + NUM_CLASSES, a]
    else:
        in_shape, out_shape = ["batch", 3, "height", "width"], ["batch", 4 + NUM_CLASSES, "anchors"]
    inputs = [helper.make_tensor_value_info(INPUT, TensorProto.UINT8, in_shape)]
    outputs = [helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, out_shape)]
    props = {"visionperf.model": f"yolo11{variant}", "visionperf.synthetic_weights": "true",
             "visionperf.seed": str(seed), "visionperf.yolo_variant": variant,
             "visionperf.input_shape": "dynamic" if fixed_hw is None else "x".join(map(str, in_shape))}
    return g.model(inputs, outputs, props)


def build_yolo11(out: str | Path, variant: str = "l", seed: int = 0, input_size: int | None = None,
                 batch: int | None = None) -> Path:
    """Write yolo11_model(VARIANT, SEED, INPUT_SIZE, BATCH) to OUT, atomically."""
    _check(variant, input_size, batch)
    claim_model(out)
    return save_atomic(yolo11_model(variant, seed, input_size, batch), out)


def _probe(seed: int, size: int) -> np.ndarray:
    """Drawn images letterboxed as inputs are (scaled up, grey bars), RGB uint8 NCHW: what the
    weights are normalised on."""
    from ..datasets.letterbox import letterbox
    from ..datasets.synthetic import draw_image

    rng = np.random.default_rng(seed + 1)
    rows = []
    for _ in range(_PROBE_IMAGES):
        img = draw_image(rng, int(rng.integers(size // 3, size // 2)), int(rng.integers(size // 4, size // 2)))
        rows.append(letterbox(img, size, "square")[..., ::-1].transpose(2, 0, 1))
    return np.stack(rows)


def wrap_float_input(src: str | Path, dst: str | Path) -> Path:
    """Write to DST (atomically) the model SRC with its float32 input `images` taking uint8 pixels
    instead, through Cast and Div(255) in front of the unchanged graph; outputs and metadata stay
    as they were. A model whose `images` is already uint8 is copied as it is."""
    src, dst = Path(src), Path(dst)
    try:
        model = onnx.load(str(src))
    except Exception as e:  # protobuf raises several unrelated types for a bad file
        raise UserError(f"{src} is not a readable ONNX model ({type(e).__name__}): check the file") from None
    inp = next((i for i in model.graph.input if i.name == INPUT), None)
    if inp is None:
        got = ", ".join(i.name for i in model.graph.input) or "none"
        raise UserError(f"{src} has input(s) {got}, but a YOLO export takes one named {INPUT}: "
                        "is this an Ultralytics detection export?")
    elem = inp.type.tensor_type.elem_type
    dst.parent.mkdir(parents=True, exist_ok=True)
    if elem == TensorProto.UINT8:
        if src.resolve() != dst.resolve():
            with replacing(dst) as tmp:
                shutil.copyfile(src, tmp)
        return dst
    if elem != TensorProto.FLOAT:
        raise UserError(f"{src}: input {INPUT} is {TensorProto.DataType.Name(elem).lower()}, "
                        "but only a float32 (or uint8) YOLO input can be wrapped")
    taken = {n for node in model.graph.node for n in (*node.input, *node.output)}
    taken |= {i.name for i in model.graph.initializer}
    pixels, scale, scaled = (_unused(f"visionperf/{n}", taken) for n in ("images_float", "pixel_scale", "images"))
    for node in model.graph.node:
        node.input[:] = [scaled if n == INPUT else n for n in node.input]
    props = {p.key for p in model.metadata_props}
    for key, value in (("visionperf.model", "ultralytics-export"), ("visionperf.input", "uint8, Cast + Div(255)")):
        if key not in props:
            model.metadata_props.add(key=key, value=value)
    model.graph.initializer.append(numpy_helper.from_array(np.float32(255), scale))
    front = [helper.make_node("Cast", [INPUT], [pixels], name=pixels, to=TensorProto.FLOAT),
             helper.make_node("Div", [pixels, scale], [scaled], name=scaled)]
    nodes = front + list(model.graph.node)
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    inp.type.tensor_type.elem_type = TensorProto.UINT8
    with replacing(dst) as tmp:
        onnx.save(model, tmp)
    return dst


def export_ultralytics(checkpoint: str | Path, out: str | Path, input_size: int | None = None,
                       batch: int | None = None) -> Path:
    """Export an Ultralytics checkpoint (the official yolo11l.pt) with Ultralytics' own exporter
    (ONNX opset 17, no simplification, no NMS; INPUT_SIZE None: dynamic batch, height and width,
    else fixed BATCH x 3 x INPUT_SIZE^2) and write it to OUT with its input wrapped to uint8."""
    import tempfile

    _check_shape(input_size, batch)
    try:
        from ultralytics import YOLO as Ultralytics
    except ImportError:
        raise UserError("build-model --from needs Ultralytics and PyTorch: pip install ultralytics (for CPU "
                        "PyTorch first: pip install torch --index-url https://download.pytorch.org/whl/cpu)") from None
    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise UserError(f"--from {checkpoint} does not exist: pass an Ultralytics checkpoint such as yolo11l.pt")
    claim_model(out)
    with tempfile.TemporaryDirectory(prefix="visionperf-export-") as tmp, _torchscript_onnx_export():
        pt = Path(tmp) / checkpoint.name  # the exporter writes beside its checkpoint: not beside the user's
        shutil.copyfile(checkpoint, pt)
        exported = Ultralytics(str(pt)).export(format="onnx", imgsz=input_size or 640, dynamic=input_size is None,
                                               batch=batch or 1, simplify=False, nms=False, half=False,
                                               device="cpu")
        return wrap_float_input(exported, out)


@contextmanager
def _torchscript_onnx_export():
    """torch.onnx.export defaulting to dynamo=False while the block runs: PyTorch 2.9 made the
    torch.export-based exporter the default (it needs onnxscript), and Ultralytics releases of
    the benchmark's era (8.3.214, the reference's floor) call torch.onnx.export without saying
    which, as written for the TorchScript one."""
    import inspect

    import torch

    export = torch.onnx.export
    if "dynamo" not in inspect.signature(export).parameters:
        yield
        return

    def torchscript(*args, **kwargs):
        kwargs.setdefault("dynamo", False)
        return export(*args, **kwargs)

    torch.onnx.export = torchscript
    try:
        yield
    finally:
        torch.onnx.export = export


def _unused(name: str, taken: set[str]) -> str:
    """NAME, or NAME_1, NAME_2, ... : the first not in TAKEN (the export's own tensor names)."""
    i, out = 0, name
    while out in taken:
        i += 1
        out = f"{name}_{i}"
    return out
