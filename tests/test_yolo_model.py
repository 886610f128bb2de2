"""YOLO11 as ONNX (issue 24, item 4): the architecture's size against Ultralytics' own figures, the
head's decoding against a NumPy reading of Ultralytics' Detect, the uint8 wrapper of an export,
and what check_model accepts and refuses. yolo11l is built as a graph only, never run."""

import importlib.util
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from conftest import visionperf
from visionperf.cli import main
from visionperf.errors import UserError
from visionperf.models import build_yolo11, check_model, wrap_float_input
from visionperf.models.yolo11 import yolo11_model
from visionperf.workloads import YOLO

STRIDES = (8, 16, 32)

# Ultralytics' own figures (8.3.214): `YOLO("yolo11{n,l}.yaml").fuse()` prints "YOLO11l summary (fused):
# 190 layers, 25,340,992 parameters, ..., 86.9 GFLOPs" (conv + BN fused, as the ONNX graph has it), and
# the docs table (docs/en/macros/yolo-det-perf.md) says 2.6 M / 6.5 and 25.3 M / 86.9. Its GFLOPs leave
# out the attention's matrix products, which are counted here (0.1 GFLOPs at 640).
FUSED_PARAMS = {"n": 2_616_248, "l": 25_340_992}
GFLOPS = {"n": 6.5e9, "l": 86.9e9}
ORACLE_OUT = Path(__file__).parent.parent / os.environ.get("ORACLE_OUT", ".venv-oracle/run")


def session(path_or_model) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    so.log_severity_level = 3
    src = path_or_model.SerializeToString() if isinstance(path_or_model, onnx.ModelProto) else str(path_or_model)
    return ort.InferenceSession(src, so, providers=["CPUExecutionProvider"])


def anchors_of(h: int, w: int) -> int:
    return sum((h // s) * (w // s) for s in STRIDES)


def size_of(model: onnx.ModelProto) -> tuple[int, int]:
    """(parameters, MACs per image) from the initializers and shape inference: every Conv and
    MatMul (the attention's)."""
    inits = {i.name: i for i in model.graph.initializer}
    m = onnx.shape_inference.infer_shapes(model)
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in list(m.graph.value_info) + list(m.graph.output)}
    params = macs = 0
    for n in m.graph.node:
        if n.op_type == "Conv":
            w = list(inits[n.input[1]].dims)
            params += int(np.prod(w)) + (w[0] if len(n.input) > 2 else 0)
            out = shapes[n.output[0]]
            if all(out):  # the DFL's (4 x 16 MACs an anchor side) has no static shape: negligible
                macs += int(np.prod(out[1:])) * int(np.prod(w[1:]))
        elif n.op_type == "MatMul":
            a, b = shapes[n.input[0]], shapes[n.input[1]]
            macs += int(np.prod(a[1:])) * b[-1]
    return params, macs


@pytest.mark.parametrize("variant", ["n", "l"])
def test_size_matches_ultralytics(variant):
    params, macs = size_of(yolo11_model(variant, input_size=640, calibrate=False))
    assert params == FUSED_PARAMS[variant]  # layer for layer: exactly Ultralytics' count
    assert abs(2 * macs / GFLOPS[variant] - 1) < 0.01, 2 * macs


@pytest.fixture(scope="module")
def yolo11n(tmp_path_factory):
    return build_yolo11(tmp_path_factory.mktemp("yolo") / "yolo11n.onnx", "n")


def test_dynamic_model_runs_rect_shapes(yolo11n):
    s = session(yolo11n)
    rng = np.random.default_rng(0)
    for n, h, w in ((1, 96, 128), (2, 128, 96), (1, 64, 64)):
        x = rng.integers(0, 256, (n, 3, h, w), dtype=np.uint8)
        (out,) = s.run(["output0"], {"images": x})
        assert out.dtype == np.float32 and out.shape == (n, 84, anchors_of(h, w))
        assert np.isfinite(out).all() and ((out[:, 4:] >= 0) & (out[:, 4:] <= 1)).all()
        assert (out[:, 2:4] >= 0).all()  # widths and heights: sums of two expectations over 0..15


def test_scores_mostly_small_with_candidates_left(yolo11n):
    from visionperf.datasets.letterbox import letterbox
    from visionperf.datasets.synthetic import draw_image

    rng = np.random.default_rng(5)
    x = np.stack([letterbox(draw_image(rng, 300, 420), 640, "rect")[..., ::-1].transpose(2, 0, 1)])
    (out,) = session(yolo11n).run(["output0"], {"images": x})
    best = out[0, 4:].max(0)
    assert np.median(best) < 0.001 and 50 < (best > 0.001).sum() < 5000


@pytest.mark.parametrize("fixed", [True, False])
def test_head_decodes_as_ultralytics_detect(tmp_path, yolo11n, fixed):
    """output0 against the DFL expectation, dist2bbox (xywh) and the stride-scaled anchor grid
    (cell centres, x then y) recomputed in NumPy from the head's raw box and class logits: a
    fixed 96x96 model (constant anchors) and the dynamic one at 96x128 (anchors from the shapes)."""
    h, w = (96, 96) if fixed else (96, 128)
    m = onnx.load(str(build_yolo11(tmp_path / "m.onnx", "n", input_size=96, batch=2) if fixed else yolo11n))
    box, cls = [n.output[0] for n in m.graph.node if n.op_type == "Concat" and n.attribute[0].i == 2]
    m.graph.output.extend([helper.make_empty_tensor_value_info(box), helper.make_empty_tensor_value_info(cls)])
    x = np.random.default_rng(1).integers(0, 256, (2, 3, h, w), dtype=np.uint8)
    out, raw_box, raw_cls = session(m).run(["output0", box, cls], {"images": x})
    assert raw_box.shape == (2, 64, anchors_of(h, w)) and raw_cls.shape == (2, 80, anchors_of(h, w))

    logits = raw_box.reshape(2, 4, 16, -1).astype(np.float64)
    p = np.exp(logits - logits.max(2, keepdims=True))
    dist = (p / p.sum(2, keepdims=True) * np.arange(16)[None, None, :, None]).sum(2)
    grid, stride = [], []
    for s in STRIDES:
        ys, xs = np.meshgrid(np.arange(h // s) + 0.5, np.arange(w // s) + 0.5, indexing="ij")
        grid.append(np.stack([xs.ravel(), ys.ravel()]))
        stride.append(np.full(xs.size, s))
    grid, stride = np.concatenate(grid, 1), np.concatenate(stride)
    x1y1, x2y2 = grid - dist[:, :2], grid + dist[:, 2:]
    xywh = np.concatenate([(x1y1 + x2y2) / 2, x2y2 - x1y1], 1) * stride
    np.testing.assert_allclose(out[:, :4], xywh, rtol=1e-5, atol=1e-3)
    sigmoid = 0.5 * (1 + np.tanh(raw_cls.astype(np.float64) / 2))
    np.testing.assert_allclose(out[:, 4:], sigmoid, rtol=1e-5, atol=1e-6)


def test_builds_are_deterministic_and_fixed_equals_dynamic(tmp_path, yolo11n):
    a = build_yolo11(tmp_path / "a.onnx", "n", input_size=640)
    b = build_yolo11(tmp_path / "b.onnx", "n", input_size=640)
    assert a.read_bytes() == b.read_bytes()
    x = np.random.default_rng(2).integers(0, 256, (1, 3, 640, 640), dtype=np.uint8)
    fixed, dynamic = (session(p).run(["output0"], {"images": x})[0] for p in (a, yolo11n))
    np.testing.assert_array_equal(fixed, dynamic)  # the same seed gives the same weights
    props = {p.key: p.value for p in onnx.load(str(a)).metadata_props}
    assert props["visionperf.synthetic_weights"] == "true" and props["visionperf.yolo_variant"] == "n"


def float_export(model: onnx.ModelProto) -> onnx.ModelProto:
    """MODEL as an Ultralytics export has it: float32 `images` already / 255 (our Cast and Div
    cut off), metadata of its own."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    cast, div = m.graph.node[0], m.graph.node[1]
    assert cast.op_type == "Cast" and div.op_type == "Div"
    for n in m.graph.node[2:]:
        n.input[:] = ["images" if i == div.output[0] else i for i in n.input]
    del m.graph.node[:2]
    m.graph.input[0].type.tensor_type.elem_type = TensorProto.FLOAT
    del m.metadata_props[:]
    helper.set_model_props(m, {"author": "Ultralytics", "stride": "32", "imgsz": "[640, 640]"})
    return m


def test_wrap_float_input_is_bit_identical(tmp_path):
    export = float_export(yolo11_model("n", input_size=64, batch=2))
    src = tmp_path / "export.onnx"
    onnx.save(export, str(src))
    dst = wrap_float_input(src, tmp_path / "wrapped.onnx")
    wrapped = onnx.load(str(dst))
    assert wrapped.graph.input[0].type.tensor_type.elem_type == TensorProto.UINT8
    assert [o.SerializeToString() for o in wrapped.graph.output] == [o.SerializeToString() for o in export.graph.output]
    assert [n.op_type for n in wrapped.graph.node[:2]] == ["Cast", "Div"]
    assert {"author": "Ultralytics", "stride": "32", "imgsz": "[640, 640]"}.items() <= {
        p.key: p.value for p in wrapped.metadata_props}.items()

    u = np.random.default_rng(3).integers(0, 256, (2, 3, 64, 64), dtype=np.uint8)
    (want,) = session(src).run(["output0"], {"images": u.astype(np.float32) / np.float32(255)})
    (got,) = session(dst).run(["output0"], {"images": u})
    np.testing.assert_array_equal(got, want)

    again = wrap_float_input(dst, tmp_path / "again.onnx")  # already uint8: copied as it is
    assert again.read_bytes() == dst.read_bytes()


def test_check_model_accepts_ours_and_exports(tmp_path, yolo11n):
    info = check_model(yolo11n, YOLO)
    assert (info.input_name, info.input_dtype, info.output_name, info.kind) == ("images", "uint8", "output0", "raw")
    assert info.input_hw is None and info.fixed_batch is None and info.head_layout == "NCA"
    assert info.synthetic_weights and not info.float_pixels

    fixed = yolo11_model("n", input_size=640, batch=4, calibrate=False)
    onnx.save(fixed, str(tmp_path / "fixed.onnx"))
    info = check_model(tmp_path / "fixed.onnx", YOLO)
    assert info.input_hw == (640, 640) and info.fixed_batch == 4

    export = float_export(fixed)
    onnx.save(export, str(tmp_path / "export.onnx"))
    info = check_model(tmp_path / "export.onnx", YOLO)
    assert info.float_pixels and info.input_dtype == "float32" and not info.synthetic_weights
    info = check_model(wrap_float_input(tmp_path / "export.onnx", tmp_path / "wrapped.onnx"), YOLO)
    assert not info.float_pixels and info.input_dtype == "uint8"

    out = export.graph.output[0].type.tensor_type.shape.dim
    out[1].dim_value, out[2].dim_value = 8400, 84
    onnx.save(export, str(tmp_path / "nac.onnx"))
    assert check_model(tmp_path / "nac.onnx", YOLO).head_layout == "NAC"

    # Ultralytics' exporter with simplify=False declares output0 [batch, Concatoutput0_dim_1, anchors]:
    # the layout then comes from shape inference.
    for i, d in enumerate(out):
        d.dim_param = ("batch", "Concatoutput0_dim_1", "anchors")[i]
    onnx.save(export, str(tmp_path / "symbolic.onnx"))
    assert check_model(tmp_path / "symbolic.onnx", YOLO).head_layout == "NCA"


def edited(model: onnx.ModelProto, edit) -> onnx.ModelProto:
    m = onnx.ModelProto()
    m.CopyFrom(model)
    edit(m)
    return m


def set_dim(value_info, i: int, v: int) -> None:
    value_info.type.tensor_type.shape.dim[i].dim_value = v


@pytest.mark.parametrize("edit, said", [
    (lambda m: setattr(m.graph.input[0], "name", "input"), "has input(s) input, but yolo needs one input named images"),
    (lambda m: set_dim(m.graph.input[0], 2, 320), "needs [N, 3, 640, 640] or [N, 3, H, W] with dynamic H and W"),
    (lambda m: m.graph.input[0].type.tensor_type.shape.dim.pop(), "needs [N, 3, 640, 640]"),
    (lambda m: setattr(m.graph.input[0].type.tensor_type, "elem_type", TensorProto.INT8),
     "is int8, but yolo takes uint8 pixels (or float32 / 255, an Ultralytics export)"),
    (lambda m: setattr(m.graph.output[0], "name", "detections"), "has outputs detections, but yolo reads output0"),
    (lambda m: set_dim(m.graph.output[0], 1, 85), "needs [N, 84, A] or [N, A, 84] with A = 8400 at 640x640"),
    (lambda m: set_dim(m.graph.output[0], 2, 6300), "needs [N, 84, A] or [N, A, 84] with A = 8400 at 640x640"),
])
def test_check_model_refuses_in_one_line(tmp_path, edit, said):
    path = tmp_path / "bad.onnx"
    onnx.save(edited(yolo11_model("n", input_size=640, calibrate=False), edit), str(path))
    with pytest.raises(UserError) as e:
        check_model(path, YOLO)
    assert said in str(e.value) and "\n" not in str(e.value)


def test_build_model_command(tmp_path, capsys):
    p = visionperf("build-model", "yolo11n", "--out", tmp_path / "n.onnx", "--input-size", "64", "--batch", "2")
    assert "YOLO11n architecture (fixed 2x3x64x64" in p.stdout
    assert check_model(tmp_path / "n.onnx", replace(YOLO, input_size=64)).input_hw == (64, 64)
    for args, said in [
        (("yolo11q",), "no builder for 'yolo11q'"),
        (("yolo11n", "--input-size", "100"), "--input-size 100 must be a positive multiple of 32"),
        (("yolo11n", "--batch", "2"), "--batch 2 needs --input-size"),
        (("yolo11n", "--width", "0.5"), "--width is not for YOLO"),
        (("resnet50", "--dynamic"), "are for YOLO models, not resnet50"),
    ]:
        assert main(["build-model", *args, "--out", str(tmp_path / "x.onnx")]) == 2
        err = capsys.readouterr().err
        assert said in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "x.onnx").exists()


@pytest.mark.skipif(importlib.util.find_spec("ultralytics") is not None,
                    reason="Ultralytics is installed: the refusal is for environments without it")
def test_from_checkpoint_needs_ultralytics(tmp_path, capsys):
    (tmp_path / "yolo11l.pt").write_bytes(b"not a checkpoint")
    assert main(["build-model", "yolo11l", "--from", str(tmp_path / "yolo11l.pt"), "--out",
                 str(tmp_path / "m.onnx")]) == 2
    err = capsys.readouterr().err
    assert "needs Ultralytics and PyTorch: pip install ultralytics" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "m.onnx").exists()


@pytest.mark.skipif(not (ORACLE_OUT / "yolo11n_dynamic.onnx").is_file(),
                    reason="no Ultralytics exports here: `make oracle` writes them")
@pytest.mark.parametrize("name, shape", [("yolo11n_640", (1, 3, 640, 640)), ("yolo11n_dynamic", (2, 3, 448, 640))])
def test_ultralytics_exports_are_used_unchanged(tmp_path, name, shape):
    src = ORACLE_OUT / f"{name}.onnx"
    info = check_model(src, YOLO)
    assert info.float_pixels and info.head_layout == "NCA" and info.input_hw == ((640, 640) if "640" in name else None)
    assert size_of(onnx.load(str(ORACLE_OUT / "yolo11n_640.onnx")))[0] == FUSED_PARAMS["n"]
    dst = wrap_float_input(src, tmp_path / "u8.onnx")
    assert not check_model(dst, YOLO).float_pixels
    u = np.random.default_rng(4).integers(0, 256, shape, dtype=np.uint8)
    (want,) = session(src).run(["output0"], {"images": u.astype(np.float32) / np.float32(255)})
    (got,) = session(dst).run(["output0"], {"images": u})
    np.testing.assert_array_equal(got, want)
