"""Issue 13: `visionperf submission --round v6.1` against the round's rules written out as data
(visionperf.rounds): a practice tree for ResNet50 (edge: SingleStream, MultiStream, Offline,
each with TEST01 and TEST04) has exactly the round's layout, file lists and system fields; and
the refusal names every rule a run breaks, each rule tested on its own."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import pytest

from conftest import visionperf
from visionperf.rounds import V6_1, get_round, system_type_for
from visionperf.submission import truncate_accuracy_log
from visionperf.errors import UserError

from conftest import EDGE, SYSTEM


def submit(runs: Path, out: Path, *extra, system_json: Path | None = None, check=True):
    args = ["submission", "--submitter", "Acme", "--system", "box", "--runs", runs, "--out", out]
    if system_json is not None:
        args += ["--system-json", system_json]
    return visionperf(*args, *extra, check=check)


def detail_records(path: Path) -> list[dict]:
    return [json.loads(line[len(":::MLLOG "):]) for line in path.read_text().splitlines() if line.startswith(":::MLLOG")]


def set_detail(path: Path, key: str, value) -> None:
    """Rewrite one key of a LoadGen detail log (a run that broke a rule, made to order)."""
    lines = []
    for line in path.read_text().splitlines():
        if line.startswith(":::MLLOG "):
            rec = json.loads(line[len(":::MLLOG "):])
            if rec["key"] == key:
                rec["value"] = value
                line = ":::MLLOG " + json.dumps(rec)
        lines.append(line)
    path.write_text("\n".join(lines) + "\n")


# ---- the practice tree against the round's layout --------------------------------------------

def test_a_practice_tree_has_exactly_the_rounds_layout(practice_runs, tmp_path):
    p = submit(practice_runs / "runs", tmp_path, "--allow-short", system_json=practice_runs / "system.json")
    assert "round v6.1" in p.stdout and "NOT a valid submission" in p.stdout
    root = tmp_path / "closed/Acme"
    assert sorted(x.name for x in root.iterdir()) == sorted(V6_1.submitter_dirs)
    assert (root / "src/visionperf/README.md").read_text().strip()
    assert (root / "documentation/calibration.md").read_text().strip()
    # the system description: every field of the round, the meaningful ones filled, edge for ResNet50
    desc = json.loads((root / "systems/box.json").read_text())
    assert sorted(desc) == sorted(V6_1.system_fields)
    assert all(str(desc[k]).strip() and desc[k] != 0 for k in V6_1.system_meaningful)
    assert desc["system_type"] == "edge" and desc["division"] == "closed" and desc["submitter"] == "Acme"
    assert desc["accelerators_per_node"] == "0" and desc["cooling"] == "air"
    assert int(desc["number_of_nodes"]) * int(desc["accelerators_per_node"]) == 0  # the checker multiplies them
    bench = root / "results/box/resnet50"
    assert sorted(x.name for x in bench.iterdir()) == sorted(EDGE)
    for s in EDGE:
        d = bench / s
        assert sorted(x.name for x in d.iterdir()) == sorted(
            [*V6_1.scenario_files, "performance", "accuracy", *V6_1.benchmarks["resnet50"].compliance_tests])
        assert sorted(x.name for x in (d / "performance").iterdir()) == ["run_1"]
        assert sorted(x.name for x in (d / "performance/run_1").iterdir()) == sorted(V6_1.performance_files)
        assert sorted(x.name for x in (d / "accuracy").iterdir()) == sorted(V6_1.accuracy_files)
        for t, files in V6_1.compliance_files.items():
            assert sorted(x.name for x in (d / t).iterdir()) == sorted(files)
            assert sorted(x.name for x in (d / t / "performance/run_1").iterdir()) == sorted(V6_1.performance_files)
            assert "TEST PASS" in (d / t / "verify_accuracy.txt").read_text() if t == "TEST01" else True
        assert sorted(x.name for x in (d / "TEST01/accuracy").iterdir()) == sorted(V6_1.compliance_accuracy_files)
        m = json.loads((d / "measurements.json").read_text())
        assert sorted(m) == sorted(V6_1.measurements_fields) and all(str(v).strip() for v in m.values())
        assert (d / "user.conf").read_text().strip() and "Practice tree" in (d / "README.md").read_text()
        # accuracy.txt: the run's line, then the hash of the whole log, as the round's tool appends it
        full = practice_runs / "runs/resnet50" / s / "accuracy/mlperf_log_accuracy.json"
        acc = (d / "accuracy/accuracy.txt").read_text()
        assert re.match(r"^accuracy=[\d.]+%, good=\d+, total=\d+\n", acc)
        assert acc.endswith(f"\nhash={hashlib.sha256(full.read_bytes()).hexdigest()}\n")
        assert (d / "accuracy/mlperf_log_accuracy.json").stat().st_size <= V6_1.max_accuracy_log_bytes
        t01 = (d / "TEST01/accuracy/accuracy.txt").read_text()
        assert re.fullmatch(r"\nhash=[0-9a-f]{64}\n", t01)
        # what LoadGen logged is what the round checks
        rec = {r["key"]: r["value"] for r in detail_records(d / "performance/run_1/mlperf_log_detail.txt")}
        assert all(rec[f"effective_{k}"] == v for k, v in V6_1.seeds.items())
    # nothing the old checker refuses anywhere in the tree: hidden names, empty folders, spaces
    for x in root.rglob("*"):
        assert not x.name.startswith(".") and " " not in x.name, x
        assert not x.is_dir() or any(x.iterdir()), f"empty folder {x}"
    readme = (root / "documentation/README.md").read_text()
    assert "NOT A VALID SUBMISSION" in readme and "600 s" in readme and "synthetic weights" in readme


def test_the_truncation_is_the_rounds_tools(tmp_path):
    """truncate_accuracy_log.py: under 4096 bytes kept; else the first and last 4096 bytes with
    "\\n\\n...\\n\\n" between (no longer JSON: the hash in accuracy.txt stands for the whole)."""
    big = tmp_path / "big.json"
    big.write_text(json.dumps([{"seq_id": i, "qsl_idx": i, "data": "AB" * 20} for i in range(2000)]))
    cut = tmp_path / "cut.json"
    truncate_accuracy_log(big, cut)
    data = big.read_bytes()
    assert cut.read_bytes() == data[:4096] + b"\n\n...\n\n" + data[-4096:] and cut.stat().st_size == 8199
    small = tmp_path / "small.json"
    small.write_text(json.dumps([{"seq_id": 0, "qsl_idx": 0, "data": "0A000000"}]))
    truncate_accuracy_log(small, cut)
    assert cut.read_bytes() == small.read_bytes()
    # one record larger than the whole budget (SSD-ResNet34's, say) still leaves both ends
    huge = tmp_path / "huge.json"
    huge.write_text(json.dumps([{"seq_id": 0, "qsl_idx": 0, "data": "AB" * 20000}]))
    truncate_accuracy_log(huge, cut)
    assert cut.stat().st_size == 8199 and cut.read_bytes().startswith(b'[{"seq_id": 0')


# ---- the refusal: every rule, all at once ----------------------------------------------------

def copy_runs(practice_runs: Path, tmp_path: Path) -> Path:
    runs = tmp_path / "runs"
    shutil.copytree(practice_runs / "runs", runs)
    return runs


def refused(p) -> list[str]:
    assert p.returncode == 2, (p.stdout, p.stderr)
    lines = p.stderr.strip().splitlines()
    assert lines[0].startswith("visionperf: error: cannot assemble a round v6.1 submission"), p.stderr
    assert "Traceback" not in p.stderr
    return [ln.strip()[2:] for ln in lines[1:]]


def test_without_allow_short_every_problem_is_listed_at_once(practice_runs, tmp_path):
    p = submit(practice_runs / "runs", tmp_path, system_json=practice_runs / "system.json", check=False)
    problems = refused(p)
    for s in EDGE:  # every scenario, every kind of rule, in one message
        mine = [x for x in problems if x.startswith(f"resnet50 {s}:")]
        assert any("600 s" in x for x in mine) and any("performance sample count" in x for x in mine)
        assert any("synthetic weights" in x for x in mine) and any("synthetic (made by sample-data)" in x for x in mine)
        assert any("covers 48 samples" in x and "50000" in x for x in mine)
        assert any("below the round's target" in x for x in mine)
        assert any("null backend" in x for x in mine)
    assert any(x.startswith("resnet50 Offline:") and "24576" in x for x in problems)
    assert "waivable with --allow-short" in p.stderr
    assert not (tmp_path / "closed").exists() and not list(tmp_path.glob(".closed-*"))


# Each rule the practice runs keep, broken on its own: (edit, text in the one problem it adds).
RULES = {
    "seed": (lambda r: set_detail(r / "resnet50/Offline/performance/run_1/mlperf_log_detail.txt",
                                  "effective_qsl_rng_seed", 1), "used qsl_rng_seed 1, not the round's"),
    "missing-scenario": (lambda r: shutil.rmtree(r / "resnet50/MultiStream"),
                         "a edge system must submit SingleStream, MultiStream, Offline; missing MultiStream"),
    "missing-test04": (lambda r: shutil.rmtree(r / "resnet50/SingleStream/TEST04"), "no TEST04 run"),
    "test01-accuracy-fail": (lambda r: (r / "resnet50/Offline/TEST01/verify_accuracy.txt").write_text("TEST FAIL\n"),
                             "TEST01 accuracy check did not pass"),
    "loadgen-error": (lambda r: open(r / "resnet50/Offline/performance/run_1/mlperf_log_detail.txt", "a").write(
        ':::MLLOG {"key": "error_runtime", "value": "boom", "time_ms": 1.0, "namespace": "mlperf::logging", '
        '"event_type": "POINT_IN_TIME", "metadata": {"is_error": true, "is_warning": false, "file": "x", '
        '"line_no": 1, "pid": 1, "tid": 1}}\n'), "LoadGen log has errors: error_runtime: boom"),
    "no-accuracy-run": (lambda r: shutil.rmtree(r / "resnet50/SingleStream/accuracy"), "no accuracy run"),
    "system-field": (None, "needs a value for 1 field(s) this machine cannot tell: cooling"),
}


@pytest.mark.parametrize("rule", list(RULES))
def test_each_rule_that_allow_short_does_not_waive_is_refused(rule, practice_runs, tmp_path):
    runs = copy_runs(practice_runs, tmp_path)
    edit, text = RULES[rule]
    system = practice_runs / "system.json"
    if edit is not None:
        edit(runs)
    else:
        system = tmp_path / "sys.json"
        system.write_text(json.dumps({"host_memory_configuration": "x"}))
    problems = refused(submit(runs, tmp_path / "out", "--allow-short", system_json=system, check=False))
    assert [x for x in problems if text in x], problems
    assert len(problems) == 1, problems  # --allow-short waived the rest
    assert not (tmp_path / "out/closed").exists()


def test_a_server_run_makes_the_system_datacenter_edge_and_its_bound_is_checked(practice_runs, slim_model,
                                                                                   imagenet_dir, tmp_path):
    runs = copy_runs(practice_runs, tmp_path)
    common = ["--backend", "null", "--model", slim_model, "--dataset", imagenet_dir, "--cache",
              practice_runs / "cache", "--out", runs, "--scenario", "Server", "--target-qps", "2000"]
    visionperf("run", "resnet50", "--duration", "0.3", *common)
    visionperf("run", "resnet50", "--mode", "accuracy", *common)
    set_detail(runs / "resnet50/Server/performance/run_1/mlperf_log_detail.txt", "effective_target_latency_ns",
               20_000_000)
    problems = refused(submit(runs, tmp_path / "out", "--allow-short", system_json=practice_runs / "system.json",
                              check=False))
    assert any("resnet50 Server:" in x and "latency bound is 20 ms; the round allows at most 15 ms" in x
               for x in problems), problems
    assert any("resnet50 Server:" in x and "no TEST01 run" in x for x in problems)
    assert system_type_for(V6_1, {"resnet50": {"Offline", "Server"}}) == "datacenter,edge"
    assert system_type_for(V6_1, {"resnet50": {"Offline"}}) == "edge"


@pytest.mark.parametrize("workload", ["ssd-mobilenet", "ssd-resnet34", "retinanet"])
def test_benchmarks_the_round_does_not_have_are_refused_and_say_why(workload, practice_runs, tmp_path):
    runs = copy_runs(practice_runs, tmp_path)
    shutil.copytree(runs / "resnet50/Offline", runs / workload / "Offline")
    problems = refused(submit(runs, tmp_path / "out", "--allow-short", system_json=practice_runs / "system.json",
                              check=False))
    assert problems == [f"{workload}: {V6_1.not_in_round[workload]}"]
    assert "still work for studies" in problems[0]


def test_rounds_that_are_not_implemented_are_refused_with_the_reason(practice_runs, tmp_path):
    p = submit(practice_runs / "runs", tmp_path, "--round", "v6.0", system_json=practice_runs / "system.json",
               check=False)
    assert p.returncode == 2 and p.stderr.count("\n") == 1
    assert "--round v6.0 is not implemented" in p.stderr and "seeds" in p.stderr and "--round v6.1" in p.stderr
    with pytest.raises(UserError, match="not a round this visionperf knows"):
        get_round("v9.9")


def test_unknown_system_fields_and_fields_the_submission_decides_are_refused(practice_runs, tmp_path):
    for fields, text in (({"is_network": "false", "cooling": "air"}, "does not know: is_network"),
                         ({"system_type": "datacenter", "cooling": "air"}, "sets system_type")):
        sysjson = tmp_path / "sys.json"
        sysjson.write_text(json.dumps({**SYSTEM, **fields}))
        problems = refused(submit(practice_runs / "runs", tmp_path / "out", "--allow-short", system_json=sysjson,
                                  check=False))
        assert any(text in x for x in problems), problems
