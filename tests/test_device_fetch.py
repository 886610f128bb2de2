"""Devices that fetch their own rows (device.h ABI 2, issue 27): the suite's version 2 plug-in
(tests/plugins/fetch_device.c) through the real command and LoadGen in every scenario, its
log holding the engine to the contract (register before the first batch, rows valid until
collected, unregister before the memory goes, nothing registered at close); the version 1
plug-in beside it keeps the host gather; the simulated card's fetch; run.json's input_path."""

import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import visionperf
from test_plugin import cache, echo_labels, no_results, one_error_line, run_args  # noqa: F401 (fixtures)
from visionperf.results import read_result
from visionperf.workloads import RESNET50


def events(log):
    """{device index: [(event, a, b), ...]} from fetch_device.c's log, in order."""
    out: dict = {}
    for line in log.read_text().splitlines():
        i, what, *rest = line.split(" ", 2)
        out.setdefault(int(i), []).append((what, *(rest[0].split() if rest else [])))
    return out


def assert_contract_kept(log, devices: int) -> None:
    """Per device: opened, registered before its first batch, every batch collected before the
    region is unregistered, unregistered before close, and no breach anywhere."""
    ev = events(log)
    assert sorted(ev) == list(range(devices))
    for i, seq in ev.items():
        names = [e[0] for e in seq]
        assert "breach" not in names, [e for e in seq if e[0] == "breach"]
        assert names[0] == "open" and names[-1] == "close", names[:3] + names[-3:]
        assert "submit" in names and names.count("submit") == names.count("collect")
        held, registered = 0, False
        for what, *_ in seq:  # a batch only while registered; unregistered only with none held
            if what == "register":
                assert not registered and held == 0
                registered = True
            elif what == "unregister":
                assert registered and held == 0
                registered = False
            elif what == "submit":
                assert registered
                held += 1
            elif what == "collect":
                held -= 1
        assert not registered and held == 0


@pytest.mark.slow
@pytest.mark.parametrize("scenario", ["Offline", "Server", "SingleStream", "MultiStream"])
def test_a_fetch_device_answers_every_sample_from_its_own_rows(fetch_plugin, run_args, cache, scenario,
                                                              tmp_path):
    """Accuracy mode: each response is the label of its own row, read by the device at collect
    time from the sample buffer (so the row was still there, unchanged, until then)."""
    log = tmp_path / "fetch.log"
    extra = ["--target-qps", "500"] if scenario == "Server" else []
    visionperf("run", "resnet50", "--scenario", scenario, "--mode", "accuracy", "--backend",
               f"plugin:{fetch_plugin}", "--devices", "2", "--backend-option", f"delay_us=300;log={log}", *extra,
               *run_args, "--out", tmp_path / "out")
    d = tmp_path / f"out/resnet50/{scenario}/accuracy"
    got = {}
    for r in json.loads((d / "mlperf_log_accuracy.json").read_text()):
        assert r["qsl_idx"] not in got, "a sample was answered twice"
        got[r["qsl_idx"]] = float(np.frombuffer(bytes.fromhex(r["data"]), np.float32)[0])
    expect = echo_labels(cache[1]) - RESNET50.label_offset
    assert got == {i: float(expect[i]) for i in range(48)}
    assert_contract_kept(log, 2)
    rec = json.loads((d / "run.json").read_text())
    assert rec["input_path"] == "device fetch"
    assert [s["input_path"] for s in rec["device_stats"]] == ["device fetch"] * 2


@pytest.mark.slow
@pytest.mark.parametrize("scenario", ["Offline", "Server"])
def test_a_fetch_device_runs_performance_through_loadgen(fetch_plugin, run_args, scenario, tmp_path):
    log = tmp_path / "fetch.log"
    p = visionperf("run", "resnet50", "--scenario", scenario, "--backend", f"plugin:{fetch_plugin}",
                   "--backend-option", f"delay_us=200;log={log}", "--devices", "2", "--target-qps",
                   1500 if scenario == "Offline" else 300, "--duration", "1", *run_args, "--out", tmp_path / "out")
    d = tmp_path / f"out/resnet50/{scenario}/performance/run_1"
    res = read_result(d, scenario)
    rec = json.loads((d / "run.json").read_text())
    done = sum(s["samples"] for s in rec["device_stats"])
    assert done == (res.detail["generated_samples_per_query"] if scenario == "Offline"
                    else res.detail["result_query_count"])
    assert rec["input_path"] == "device fetch" and "submit (device fetch)" in p.stdout
    # LoadGen loads twice (warm-up's set, then the test's): registered and unregistered each time
    ev = events(log)
    assert all([e[0] for e in seq].count("register") >= 2 for seq in ev.values())
    assert_contract_kept(log, 2)


@pytest.mark.slow
def test_version_1_and_fetch_0_keep_the_host_gather(echo_plugin, fetch_plugin, run_args, cache, tmp_path):
    """The version 1 plug-in (echo_device.c, unchanged) and a version 2 device that does not
    fetch both get the gather, and answer from the right rows."""
    for name, backend, opt in [("v1", f"plugin:{echo_plugin}", "delay_us=100"),
                               ("v2-gather", f"plugin:{fetch_plugin}", f"fetch=0;log={tmp_path / 'g.log'}")]:
        visionperf("run", "resnet50", "--scenario", "Offline", "--mode", "accuracy", "--backend", backend,
                   "--backend-option", opt, "--devices", "2", *run_args, "--out", tmp_path / name)
        d = tmp_path / f"{name}/resnet50/Offline/accuracy"
        log = json.loads((d / "mlperf_log_accuracy.json").read_text())
        got = {r["qsl_idx"]: float(np.frombuffer(bytes.fromhex(r["data"]), np.float32)[0]) for r in log}
        expect = echo_labels(cache[1]) - RESNET50.label_offset
        assert got == {i: float(expect[i]) for i in range(48)}, name
        assert json.loads((d / "run.json").read_text())["input_path"] == "host gather", name
    assert "register" not in (tmp_path / "g.log").read_text()  # a gathering device registers nothing


@pytest.mark.fault
def test_a_failed_registration_fails_the_run_with_one_line(fetch_plugin, run_args, tmp_path):
    p = subprocess.run([sys.executable, "-m", "visionperf", "run", "resnet50", "--scenario", "Offline",
                        "--backend", f"plugin:{fetch_plugin}", "--backend-option", "fail_register=1",
                        "--duration", "1", *map(str, run_args), "--out", str(tmp_path / "out")],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2, (p.stdout, p.stderr)
    line = one_error_line(p)
    assert line.startswith("visionperf: error: ") and "card0: cannot register its sample rows: fetch device: " \
        "cannot pin" in line, line
    assert no_results(tmp_path / "out")


@pytest.mark.slow
def test_the_simulated_card_fetches_its_own_rows_and_fetch_0_gathers(run_args, tmp_path):
    """Same run both ways: the card fetches by default (the host only hands over addresses);
    fetch=0 puts the host gather back. Its copies are the card's either way, counted apart."""
    recs = {}
    for name, opt in [("fetch", []), ("gather", ["--backend-option", "fetch=0"])]:
        visionperf("run", "resnet50", "--scenario", "Offline", "--backend", "simulated", "--devices", "2",
                   "--card-rate", "4000", "--duration", "1", *opt, *run_args, "--out", tmp_path / name)
        recs[name] = json.loads((tmp_path / f"{name}/resnet50/Offline/performance/run_1/run.json").read_text())
    assert recs["fetch"]["input_path"] == "device fetch" and recs["gather"]["input_path"] == "host gather"
    for rec in recs.values():
        assert rec["simulated_card_copy_cpu_s"] > 0
        assert all(s["samples"] > 0 for s in rec["device_stats"])
