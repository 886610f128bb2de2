import pytest

from visionperf.errors import UserError
from visionperf.workloads import RESNET50, check_scenario, get_workload


def test_resnet50_spec_matches_the_rules():
    w = get_workload("resnet50")
    assert w is RESNET50
    assert w.input_size == 224 and w.row_shape("NCHW") == (3, 224, 224)
    assert w.row_shape("NHWC") == (224, 224, 3)
    assert w.performance_sample_count == 1024
    assert w.server_latency_bound_ms == 15.0
    assert w.accuracy_target == pytest.approx(75.6954)
    assert w.default_batch_size == 8
    assert w.input_names[0] == "input_tensor:0"
    assert w.output_names == ("ArgMax:0", "softmax_tensor:0")
    assert w.num_classes == 1001 and w.label_offset == 1
    pre = w.preprocessing
    assert pre.interpolation == "INTER_AREA" and pre.resize_short_side == 256
    assert pre.mean == (123.68, 116.78, 103.94) and pre.std is None


def test_unknown_names_are_user_errors():
    with pytest.raises(UserError, match="unknown workload 'resnet51'"):
        get_workload("resnet51")
    with pytest.raises(UserError, match="unknown scenario"):
        check_scenario("Batch")
    assert check_scenario("offline") == "Offline"
