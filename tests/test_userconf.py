import subprocess
import sys

import pytest

from visionperf.errors import UserError
from visionperf.userconf import Overrides, conf_has, make_user_conf, read_user_conf


def test_overrides_are_written_into_the_conf():
    text = make_user_conf("", "resnet50", "Offline", Overrides(target_qps=123.4, duration_s=10))
    assert "resnet50.Offline.target_qps = 123.4" in text
    assert "resnet50.Offline.min_duration = 10000" in text
    assert "resnet50.Offline.min_query_count = 1" in text
    ss = make_user_conf("*.*.foo = 1\n", "resnet50", "SingleStream", Overrides(target_qps=200))
    assert ss.startswith("*.*.foo = 1") and "resnet50.SingleStream.target_latency = 5" in ss
    assert conf_has("*.Server.target_qps = 5\n", "resnet50", "Server", "target_qps")
    assert not conf_has("ssd.Server.target_qps = 5\n", "resnet50", "Server", "target_qps")


def test_bad_user_conf_names_the_line(tmp_path):
    p = tmp_path / "user.conf"
    p.write_text("resnet50.Offline.target_qps = 10\nthis is wrong\n")
    with pytest.raises(UserError, match=r"user.conf:2: expected"):
        read_user_conf(p)


def test_loadgen_reads_mlperf_conf_then_our_user_conf(tmp_path):
    """In a fresh process: the official values come from the wheel's mlperf.conf."""
    conf = tmp_path / "user.conf"
    conf.write_text(make_user_conf("", "resnet50", "Server", Overrides(target_qps=777, duration_s=3)))
    code = f"""
from visionperf.userconf import test_settings
s = test_settings({str(conf)!r}, "resnet50", "Server", "performance")
print(s.server_target_qps, s.min_duration_ms, s.server_target_latency_ns, s.performance_sample_count_override)
try:
    test_settings({str(conf)!r}, "resnet50", "Server", "performance")
except RuntimeError as e:
    print("second call refused")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split("\n")[0].split() == ["777.0", "3000", "15000000", "1024"]
    assert "second call refused" in out
