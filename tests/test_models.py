import numpy as np
import onnx
import onnxruntime as ort
import pytest

from visionperf.errors import UserError
from visionperf.models import build_resnet50, check_model
from visionperf.workloads import RESNET50


def conv_macs_and_params(path):
    """MACs per image of every Conv/Gemm, with shapes from ONNX shape inference."""
    m = onnx.shape_inference.infer_shapes(onnx.load(str(path)))
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in list(m.graph.value_info) + list(m.graph.output)}
    inits = {i.name: i.dims for i in m.graph.initializer}
    params = sum(int(np.prod(d)) for d in inits.values())
    macs = 0
    for n in m.graph.node:
        if n.op_type == "Conv":
            w = inits[n.input[1]]
            out = shapes[n.output[0]]
            macs += int(np.prod(out[1:])) * int(np.prod(w[1:]))
        elif n.op_type == "Gemm":
            w = inits[n.input[1]]
            macs += int(np.prod(w))
    return macs, params


def test_full_resnet50_is_architecture_faithful(tmp_path):
    path = build_resnet50(tmp_path / "r50.onnx")
    macs, params = conv_macs_and_params(path)
    assert 25.4e6 < params < 25.7e6  # ResNet50-v1.5 with 1001 classes: 25.6 M
    assert 4.05e9 < macs < 4.15e9  # 4.1 GMAC per 224x224 image (v1.5 stride placement)
    m = onnx.load(str(path))
    convs = [n for n in m.graph.node if n.op_type == "Conv"]
    assert len(convs) == 53  # stem + 16 bottlenecks x 3 + 4 projection shortcuts
    info = check_model(path, RESNET50)
    assert info.input_name == "input_tensor:0" and info.output_name == "ArgMax:0"
    assert info.fixed_batch is None and info.synthetic_weights


def test_built_model_runs_with_official_outputs(slim_model, imagenet_dir):
    from visionperf.datasets import open_dataset, preprocess_one
    ds = open_dataset(RESNET50, imagenet_dir, count=12)
    x = np.stack([preprocess_one(RESNET50, ds.path(i), "NCHW") for i in range(len(ds))])
    s = ort.InferenceSession(str(slim_model), providers=["CPUExecutionProvider"])
    argmax, softmax = s.run(["ArgMax:0", "softmax_tensor:0"], {"input_tensor:0": x})
    assert argmax.dtype == np.int64 and argmax.shape == (12,)
    assert softmax.shape == (12, 1001)
    np.testing.assert_allclose(softmax.sum(1), 1, rtol=1e-5)
    np.testing.assert_array_equal(argmax, softmax.argmax(1))
    assert len(set(argmax.tolist())) > 1, "predictions should depend on the input"


def test_builds_are_deterministic(tmp_path):
    a = build_resnet50(tmp_path / "a.onnx", width=0.125).read_bytes()
    b = build_resnet50(tmp_path / "b.onnx", width=0.125).read_bytes()
    assert a == b


def _graph_with(tmp_path, in_name="input_tensor:0", shape=("N", 3, 224, 224), out_name="ArgMax:0"):
    from onnx import TensorProto, helper
    node = helper.make_node("ArgMax", [in_name], [out_name], axis=1, keepdims=0)
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info(in_name, TensorProto.FLOAT, list(shape))],
                          [helper.make_tensor_value_info(out_name, TensorProto.INT64, None)])
    p = tmp_path / "m.onnx"
    onnx.save(helper.make_model(g), p)
    return p


def test_model_checks_give_one_clear_line(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        check_model(tmp_path / "missing.onnx", RESNET50)
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x00\x01garbage" * 100)
    with pytest.raises(UserError, match="not a readable ONNX model"):
        check_model(junk, RESNET50)
    with pytest.raises(UserError, match="needs one input named input_tensor:0"):
        check_model(_graph_with(tmp_path, in_name="images"), RESNET50)
    with pytest.raises(UserError, match=r"has shape \[None, 3, 299, 299\]"):
        check_model(_graph_with(tmp_path, shape=("N", 3, 299, 299)), RESNET50)
    with pytest.raises(UserError, match="reads ArgMax:0 or softmax_tensor:0"):
        check_model(_graph_with(tmp_path, out_name="logits"), RESNET50)
    info = check_model(_graph_with(tmp_path, shape=(1, 3, 224, 224)), RESNET50)
    assert info.fixed_batch == 1 and not info.synthetic_weights
