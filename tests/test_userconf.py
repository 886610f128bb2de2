import subprocess
import sys

import pytest

from visionperf.errors import UserError
from visionperf.userconf import (Overrides, conf_has, latency_bound, latency_bound_ms, loadgen_mlperf_conf,
                                 make_user_conf, parse_conf, read_user_conf)


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


def test_conf_is_parsed_with_loadgens_own_traps(tmp_path):
    # 'key=value' without spaces is one token: LoadGen ignores the line, so we refuse it.
    assert parse_conf("resnet50.Server.target_latency=100\n") == {}
    p = tmp_path / "user.conf"
    for bad, message in [("resnet50.Server.target_latency=100\n", "spaces around '='"),
                         ("resnet50.Server.target_latency = 100 # loose\n", "spaces around '='"),
                         ("#note text here\n", "expected 'key = value'"),
                         ("resnet50.Server.target_latency = ms\n", "needs a number after '='")]:
        p.write_text(bad)
        with pytest.raises(UserError, match=message):
            read_user_conf(p)
    assert parse_conf("# note\n*.Server.target_qps = 5\n*.Server.target_qps = 6\n") == {"*.Server.target_qps": "6"}


@pytest.mark.parametrize("conf, model, ms, source", [
    ("", "resnet50", 15, "mlperf.conf"),  # resnet50.Server.target_latency
    ("", "retinanet", 100, "mlperf.conf"),
    ("", "ssd-resnet34", 10, "mlperf.conf"),  # retired: only *.Server.target_latency = 10 applies
    ("*.*.target_latency = 100\n", "resnet50", 100, "user.conf"),  # any user.conf key beats mlperf.conf
    ("resnet50.*.target_latency = 50\nssd-resnet34.Server.target_latency = 100\n", "resnet50", 50, "user.conf"),
    ("ssd-resnet34.Server.target_latency = 100.7\n", "ssd-resnet34", 100, "user.conf"),  # whole ms
    ("resnet50.Offline.target_latency = 40\n", "resnet50", 15, "mlperf.conf"),  # another scenario's key
])
def test_latency_bound_is_the_one_loadgen_applies(tmp_path, conf, model, ms, source):
    b = latency_bound(conf, model, "Server")
    assert (b.ms, b.source) == (ms, source)
    assert latency_bound_ms(conf, model, "Offline") is None
    # LoadGen itself, in a fresh process (it reads its mlperf.conf on the first FromConfig only).
    path = tmp_path / "user.conf"
    path.write_text(conf)
    code = (f"import mlperf_loadgen as lg\ns = lg.TestSettings()\n"
            f"assert s.FromConfig({str(path)!r}, {model!r}, 'Server') == 0\nprint(s.server_target_latency_ns)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert int(out) == ms * 1_000_000


def test_the_mlperf_conf_read_is_loadgens_own():
    text = loadgen_mlperf_conf()
    assert text and "resnet50.Server.target_latency = 15" in text
    assert parse_conf(text, "mlperf.conf")["*.Server.target_latency"] == "10"
