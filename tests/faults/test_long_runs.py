"""Issue 23, item 2: a run whose settings imply a LoadGen test that cannot end in reasonable time is
refused before it starts, in one line giving the time it would take and the option to change (exit
2, nothing half-written, no survivor, bounded time)."""

import pytest

from hostile import refused
from injection import half_written

from visionperf.run.length import LOADGEN_DEFAULTS, LengthSettings, estimate

pytestmark = pytest.mark.fault  # `make faults` runs every test so marked


def _run(imagenet_dir, slim_model, tmp_path, *args, within_s: float = 120) -> str:
    out = tmp_path / "runs"
    line = refused("run", "resnet50", "--model", slim_model, "--dataset", imagenet_dir, "--cache", tmp_path / "cache",
                   "--out", out, *args, within_s=within_s)
    assert not half_written(tmp_path)
    return line


def _conf(tmp_path, line: str):
    conf = tmp_path / "user.conf"
    conf.write_text(f"# mine\n{line}\n")
    return conf


def test_server_at_a_tiny_target_qps_is_refused_before_any_work(imagenet_dir, slim_model, tmp_path):
    # mlperf.conf sets no Server min_query_count: LoadGen's default of 100 queries at 0.001/s
    err = _run(imagenet_dir, slim_model, tmp_path, "--scenario", "Server", "--target-qps", "0.001",
               "--duration", "1", within_s=30)
    assert "27.8 hours" in err and "100 queries at target_qps 0.001" in err, err
    assert "--target-qps" in err and "--max-hours 28" in err, err
    assert not (tmp_path / "cache").exists() and not (tmp_path / "runs").exists()


def test_max_hours_is_the_limit(imagenet_dir, slim_model, tmp_path):
    err = _run(imagenet_dir, slim_model, tmp_path, "--scenario", "Server", "--target-qps", "0.2",
               "--duration", "1", "--max-hours", "0.1", within_s=30)
    assert "8 minutes" in err and "more than --max-hours 0.1" in err and "--max-hours 0.14" in err, err


def test_user_conf_target_qps_tiny(imagenet_dir, slim_model, tmp_path):
    conf = _conf(tmp_path, "resnet50.Server.target_qps = 0.0001")
    err = _run(imagenet_dir, slim_model, tmp_path, "--scenario", "Server", "--user-conf", conf, within_s=30)
    assert "12 days" in err and "target_qps 0.0001" in err and "--max-hours" in err, err
    assert not (tmp_path / "cache").exists()


@pytest.mark.parametrize("key", ["resnet50.SingleStream.target_latency", "*.*.target_latency"])
def test_user_conf_stream_latency_zero(key, imagenet_dir, slim_model, tmp_path):
    # an expected latency of 0 is an infinite target: LoadGen would generate queries without end
    conf = _conf(tmp_path, f"{key} = 0")
    err = _run(imagenet_dir, slim_model, tmp_path, "--scenario", "SingleStream", "--backend", "null",
               "--user-conf", conf, within_s=30)
    assert f"{conf}:2: {key} = 0: pass a finite number above 0" in err, err


def test_user_conf_huge_samples_per_query_on_cards(imagenet_dir, slim_model, tmp_path):
    # simulated cards: their rate is known from the options, so the refusal comes before any work
    conf = _conf(tmp_path, "resnet50.MultiStream.samples_per_query = 1000000000")
    err = _run(imagenet_dir, slim_model, tmp_path, "--scenario", "MultiStream", "--backend", "simulated",
               "--user-conf", conf, within_s=30)
    assert "662 queries of 1,000,000,000 samples" in err and "samples_per_query" in err, err
    assert not (tmp_path / "cache").exists()


def test_user_conf_huge_samples_per_query_at_the_warm_up_rate(imagenet_dir, slim_model, tmp_path):
    # no rate before the warm-up: LoadGen's own reading of the settings is checked before its test
    conf = _conf(tmp_path, "resnet50.MultiStream.samples_per_query = 1000000000")
    err = _run(imagenet_dir, slim_model, tmp_path, "--scenario", "MultiStream", "--backend", "null",
               "--user-conf", conf)
    assert "662 queries of 1,000,000,000 samples" in err and "--max-hours" in err, err
    assert not list((tmp_path / "runs").rglob("mlperf_log_*"))


def test_accuracy_mode_covers_the_whole_dataset(imagenet_dir, slim_model, tmp_path):
    err = _run(imagenet_dir, slim_model, tmp_path, "--scenario", "Server", "--mode", "accuracy", "--backend", "null",
               "--target-qps", "0.001")
    assert "accuracy mode: 48 samples at target_qps 0.001" in err and "13.3 hours" in err, err


def test_card_rate_so_slow_a_batch_never_ends(imagenet_dir, slim_model, tmp_path):
    err = _run(imagenet_dir, slim_model, tmp_path, "--scenario", "Offline", "--backend", "simulated",
               "--card-rate", "1e-9", within_s=30)
    assert "--card-rate 1e-09" in err and "years" in err and "pass --card-rate 0.134 or more" in err, err
    assert not (tmp_path / "cache").exists()


def test_scale_passes_max_hours_to_its_runs(imagenet_dir, slim_model, tmp_path):
    err = refused("scale", "resnet50", "--devices", "1", "--duration", "10", "--max-hours", "0.001",
                  "--model", slim_model, "--dataset", imagenet_dir, "--cache", tmp_path / "cache",
                  "--out", tmp_path / "study", within_s=60)
    assert "would take about 10 s" in err and "more than --max-hours 0.001" in err, err
    assert not half_written(tmp_path)


def _length(scenario: str, **kw) -> LengthSettings:
    base = dict(mode="performance", min_duration_s=600.0, max_duration_s=0.0, min_query_count=100,
                max_query_count=0, target_qps=None, samples_per_query=1, accuracy_samples=0)
    return LengthSettings(scenario, **{**base, **kw})


def test_estimates():
    assert estimate(_length("Server", target_qps=0.001), None, None).seconds == pytest.approx(100_000)
    assert estimate(_length("Server", target_qps=1000.0), None, None).seconds == pytest.approx(600)
    # Offline: one query of max(min_query_count, 1.1 x min_duration x target_qps) samples
    assert estimate(_length("Offline", target_qps=100.0), 50.0, None).seconds == pytest.approx(66_000 / 50)
    assert estimate(_length("MultiStream", samples_per_query=8, min_query_count=662), 8.0, None).seconds \
        == pytest.approx(662)
    capped = estimate(_length("Server", target_qps=0.001, max_duration_s=60.0), None, None)
    assert capped.seconds == 60 and "max_duration" in capped.why
    assert estimate(_length("SingleStream", mode="accuracy"), None, None) is None
    assert estimate(_length("SingleStream", mode="accuracy"), 10.0, 5000).seconds == pytest.approx(500)


def test_loadgen_defaults_are_loadgens():
    import mlperf_loadgen as lg

    ts = lg.TestSettings()
    assert LOADGEN_DEFAULTS == {k: getattr(ts, k) for k in LOADGEN_DEFAULTS}
