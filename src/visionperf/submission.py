"""Runs -> a closed-division submission tree for one round, checked against that round's rules
(rounds.py) before anything is written.

    closed/<submitter>/
        systems/<system>.json                      every field of the round (systems.py)
        src/visionperf/README.md                   the code: where it is, which version
        documentation/calibration.md               how the int8 model was calibrated (or that none was)
        results/<system>/<benchmark>/<Scenario>/         resnet50, yolo-99 or yolo-95 (--yolo-benchmark)
            README.md  user.conf  measurements.json
            performance/run_1/mlperf_log_{summary,detail}.txt
            accuracy/{mlperf_log_summary.txt, mlperf_log_detail.txt, accuracy.txt,
                      mlperf_log_accuracy.json (truncated as the round's tool does)}
            TEST01/{verify_accuracy.txt, verify_performance.txt, accuracy/, performance/run_1/}
                   (accuracy/ adds {baseline,compliance}_accuracy.txt where the responses differ)
            TEST04/{verify_performance.txt, performance/run_1/}       where the benchmark takes TEST04

Every rule the round's checker applies to the runs is checked, for every benchmark and
scenario, and all problems are reported in one message. `--allow-short` waives only the rules
a short practice run on synthetic data must break (duration, sample and query counts, early
stopping, accuracy coverage, synthetic data or weights, simulated devices), and lists them in
the tree's README files. The tree is built under a temporary name and renamed into place.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from .accuracy import file_sha256
from . import jsonfile
from .atomic import replace_dir
from .backends import get_backend
from .errors import UserError
from .jsonfile import JsonFileError
from .results import read_detail
from .rounds import Round, benchmark_for, get_round, system_type_for
from .workloads import SCENARIOS, WORKLOADS

# LoadGen's INVALID reasons a short run produces by construction (results.CHECKS keys).
SHORT_RUN_FAILURES = ("result_min_duration_met", "result_min_queries_met", "early_stopping_met")


@dataclass
class Found:
    """One benchmark/scenario's runs in a results directory (`visionperf run --out`)."""

    workload: str
    scenario: str
    benchmark: str = ""  # the round's name its runs go in as (check_runs sets it): resnet50, yolo-99
    performance: Path | None = None
    accuracy: Path | None = None
    compliance: dict = field(default_factory=dict)  # test -> directory (OUT/<w>/<s>/TESTxx)


@dataclass(frozen=True)
class Problem:
    where: str  # "resnet50 Offline", "resnet50", "system"
    text: str
    waivable: bool  # a short practice run must break it: --allow-short waives it

    def __str__(self) -> str:
        return f"{self.where}: {self.text}"


def find_runs(runs: Path) -> list[Found]:
    found = []
    for w in sorted(WORKLOADS):
        for sdir in sorted((runs / w).glob("*")) if (runs / w).is_dir() else []:
            if sdir.name not in SCENARIOS:
                continue
            f = Found(w, sdir.name)
            if (sdir / "performance/run_1/mlperf_log_detail.txt").exists():
                f.performance = sdir / "performance/run_1"
            if (sdir / "accuracy/mlperf_log_accuracy.json").exists():
                f.accuracy = sdir / "accuracy"
            for test in ("TEST01", "TEST04"):
                if (sdir / test / "performance/run_1/mlperf_log_detail.txt").exists():
                    f.compliance[test] = sdir / test
            if f.performance or f.accuracy:
                found.append(f)
    if not found:
        raise UserError(f"no runs found under {runs}: pass the --out directory of `visionperf run`")
    return found


def _run_json(d: Path) -> dict:
    try:
        rec = jsonfile.load(d / "run.json", "restore it or rerun that benchmark")
    except (OSError, JsonFileError):
        return {}
    if not isinstance(rec, dict):
        raise UserError(f"{d / 'run.json'} is not a JSON object (a visionperf run record): "
                        "restore it or rerun that benchmark")
    return rec


def check_performance(rnd: Round, bench: str, scenario: str, run_dir: Path,
                      what: str = "performance run") -> list[Problem]:
    """The round's checks on one performance detail log (also applied to TEST01/TEST04's), under
    benchmark BENCH's rules."""
    b = rnd.benchmarks[bench]
    where = f"{bench} {scenario}"
    d = read_detail(run_dir / "mlperf_log_detail.txt")
    out = []
    if d.get("result_validity") != "VALID":
        from .results import CHECKS

        failed = [k for k in CHECKS if d.get(k) is False]
        short = bool(failed) and all(k in SHORT_RUN_FAILURES for k in failed)
        why = "; ".join(CHECKS[k] for k in failed) or "see its summary"
        out.append(Problem(where, f"the {what} is INVALID ({why})", short))
    if d["_errors"]:
        out.append(Problem(where, f"the {what}'s LoadGen log has errors: {'; '.join(d['_errors'][:3])}", False))
    ms = d.get("effective_min_duration_ms") or 0
    if ms < rnd.min_duration_ms:
        out.append(Problem(where, f"the {what}'s min_duration is {ms / 1000:g} s; the rules need "
                                  f"{rnd.min_duration_ms / 1000:g} s", True))
    psc = d.get("effective_performance_sample_count") or 0
    if psc < b.min_performance_sample_count:
        out.append(Problem(where, f"the {what}'s performance sample count is {psc}; the rules need at least "
                                  f"{b.min_performance_sample_count} (a dataset of at least that many images)", True))
    for k, v in rnd.seeds.items():
        if d.get(f"effective_{k}") != v:
            out.append(Problem(where, f"the {what} used {k} {d.get(f'effective_{k}')}, not the round's {v} "
                                      f"(LoadGen {rnd.loadgen}'s mlperf.conf; do not override seeds)", False))
    if scenario == "Offline":
        spq = d.get("effective_samples_per_query") or 0
        if spq < b.offline_min_samples_per_query:
            out.append(Problem(where, f"the {what} issued {spq} samples in its query; the rules need at least "
                                      f"{b.offline_min_samples_per_query} (a longer run, or a higher --target-qps)",
                               True))
    if scenario == "Server" and b.server_latency_ns:
        lat = d.get("effective_target_latency_ns") or 0
        if lat > b.server_latency_ns:
            out.append(Problem(where, f"the {what}'s latency bound is {lat / 1e6:g} ms; the round allows at most "
                                      f"{b.server_latency_ns / 1e6:g} ms (remove target_latency from user.conf)", False))
    rec = _run_json(run_dir)
    backend = (rec.get("config") or {}).get("backend", "")
    if backend and not _real_devices(backend):
        out.append(Problem(where, f"the {what} ran on the {backend} backend, not on real devices", True))
    return out


def _real_devices(backend: str) -> bool:
    """Whether a run.json's backend measured real devices (an unknown name is left to the checker)."""
    try:
        return get_backend(backend).real_devices
    except UserError:
        return True


METRIC_PATTERN = {"acc": r"^accuracy=([\d.]+)%", "mAP": r"^mAP=([\d.]+)%"}  # as accuracy.txt writes them


def check_accuracy(rnd: Round, bench: str, scenario: str, acc_dir: Path) -> list[Problem]:
    """The round's checks on one accuracy run, against benchmark BENCH's size and target."""
    b = rnd.benchmarks[bench]
    where = f"{bench} {scenario}"
    out = []
    d = read_detail(acc_dir / "mlperf_log_detail.txt") if (acc_dir / "mlperf_log_detail.txt").exists() else None
    if d is None:
        return [Problem(where, "the accuracy run has no mlperf_log_detail.txt: rerun it", False)]
    if d["_errors"]:
        out.append(Problem(where, f"the accuracy run's LoadGen log has errors: {'; '.join(d['_errors'][:3])}", False))
    rec = _run_json(acc_dir)
    synthetic_weights = bool((rec.get("model") or {}).get("synthetic_weights"))
    synthetic_data = bool((rec.get("dataset") or {}).get("synthetic"))
    if synthetic_weights:
        out.append(Problem(where, "the model has synthetic weights (built by build-model): bring the official one",
                           True))
    if synthetic_data:
        out.append(Problem(where, "the dataset is synthetic (made by sample-data): run on the real one", True))
    count = d.get("effective_accuracy_sample_count") or d.get("qsl_reported_total_count") or 0
    if count != b.dataset_size:
        out.append(Problem(where, f"the accuracy run covers {count} samples; the rules need the whole dataset, "
                                  f"{b.dataset_size}", True))
    text = (acc_dir / "accuracy.txt").read_text() if (acc_dir / "accuracy.txt").exists() else ""
    m = re.search(METRIC_PATTERN[b.accuracy_metric], text, re.M)
    if not m:
        out.append(Problem(where, "the accuracy run has no accuracy.txt the checker can read: run "
                                  "`visionperf accuracy` on its log", False))
    elif float(m.group(1)) < b.accuracy_target:
        out.append(Problem(where, f"accuracy {m.group(1)}% is below the round's target {b.accuracy_target:.4f}%"
                                  + _lower_tier(rnd, bench, float(m.group(1))),
                           synthetic_weights or synthetic_data))
    return out


def _lower_tier(rnd: Round, bench: str, value: float) -> str:
    """Where the same runs reach another of the workload's benchmarks (yolo-95 for yolo-99), how to
    submit them as that one; else nothing."""
    w = rnd.benchmarks[bench].workload
    for name, b in rnd.benchmarks.items():
        if name != bench and b.workload == w and value >= b.accuracy_target:
            return f"; it reaches {name}'s {b.accuracy_target:.4f}%: submit the runs as {name} (--{w}-benchmark {name})"
    return ""


def check_compliance(rnd: Round, f: Found) -> list[Problem]:
    where = f"{f.benchmark} {f.scenario}"
    out = []
    for test in rnd.benchmarks[f.benchmark].compliance_tests:
        d = f.compliance.get(test)
        if d is None:
            out.append(Problem(where, f"no {test} run: `visionperf run {f.workload} --scenario {f.scenario} "
                                      f"--compliance {test}` (after the performance and accuracy runs)", False))
            continue
        for name in [n for n in rnd.compliance_files[test] if n.startswith("verify_")]:
            p = d / name
            if name == "verify_accuracy.txt" and _test01_accuracies_agree(rnd, f.benchmark, d / "accuracy"):
                continue
            if not p.exists() or "TEST PASS" not in p.read_text():
                # Comparing the throughput of runs shorter than the rules' minimum measures noise:
                # a practice tree may waive that, never a failed accuracy comparison.
                short = name == "verify_performance.txt" and any(
                    (read_detail(r / "mlperf_log_detail.txt").get("effective_min_duration_ms") or 0) < rnd.min_duration_ms
                    for r in (d / "performance/run_1", f.performance) if r is not None)
                out.append(Problem(where, f"{test} {name.removeprefix('verify_').removesuffix('.txt')} check did "
                                          f"not pass (see {p})", short))
        out += check_performance(rnd, f.benchmark, f.scenario, d / "performance/run_1", f"{test} run")
    return out


def _test01_accuracies_agree(rnd: Round, bench: str, acc_dir: Path) -> bool:
    """TEST01's other way to pass, where the responses are not byte-identical: the accuracies of
    accuracy mode and performance mode over the sampled ids (baseline_accuracy.txt,
    compliance_accuracy.txt) within the benchmark's bound, as the round's checker computes it."""
    from .compliance import accuracy_delta_percent

    b = rnd.benchmarks[bench]
    values = []
    for name in rnd.compliance_delta_files:
        p = acc_dir / name
        m = re.search(METRIC_PATTERN[b.accuracy_metric], p.read_text(), re.M) if p.exists() else None
        if not m:
            return False
        values.append(float(m.group(1)))
    delta = accuracy_delta_percent(*values)
    return delta is not None and delta <= b.test01_delta_percent


def _silent(what: str) -> None:
    pass


def check_runs(rnd: Round, found: list[Found], say=_silent,
               chosen: dict[str, str] | None = None) -> tuple[str, list[Problem]]:
    """(system_type, every problem) for the runs found, under the round's rules (SAY: each
    step as it starts, for a command's progress). Each run's benchmark is set: CHOSEN names it
    (workload -> benchmark) where the round has the workload under several names."""
    problems: list[Problem] = []
    present: dict[str, set[str]] = {}
    for f in found:
        f.benchmark = benchmark_for(rnd, f.workload, chosen) or ""
        if not f.benchmark:
            problems.append(Problem(f.workload, rnd.not_in_round.get(f.workload, f"not in round {rnd.version}"),
                                    False))
            continue
        allowed = dict.fromkeys(s for sc in rnd.benchmarks[f.benchmark].required_scenarios.values() for s in sc)
        if f.scenario not in allowed:
            problems.append(Problem(f"{f.benchmark} {f.scenario}", f"round {rnd.version} has no {f.scenario} "
                                    f"scenario for {f.benchmark} ({', '.join(allowed)} only): move "
                                    f"{f.workload}/{f.scenario} out of the runs directory", False))
            f.benchmark = ""
            continue
        present.setdefault(f.benchmark, set()).add(f.scenario)
    system_type = system_type_for(rnd, present) if present else rnd.system_types[0]
    for w, scenarios in sorted(present.items()):
        required = rnd.benchmarks[w].required_scenarios[system_type]
        missing = [s for s in required if s not in scenarios]
        if missing:
            problems.append(Problem(w, f"a {system_type} system must submit {', '.join(required)}; missing "
                                       f"{', '.join(missing)}", False))
    for f in found:
        if not f.benchmark:
            continue
        where = f"{f.benchmark} {f.scenario}"
        say(f"checking the {where} runs against round {rnd.version}'s rules")
        if f.performance is None:
            problems.append(Problem(where, "no performance run", False))
        else:
            problems += check_performance(rnd, f.benchmark, f.scenario, f.performance)
        if f.accuracy is None:
            problems.append(Problem(where, f"no accuracy run: `visionperf run {f.workload} --scenario {f.scenario} "
                                           "--mode accuracy`", False))
        else:
            problems += check_accuracy(rnd, f.benchmark, f.scenario, f.accuracy)
        problems += check_compliance(rnd, f)
    # one line per distinct problem (TEST01's and the run's own short-duration notes are alike)
    seen, unique = set(), []
    for p in problems:
        if str(p) not in seen:
            seen.add(str(p))
            unique.append(p)
    return system_type, unique


def truncate_accuracy_log(src: Path, dst: Path, keep: int = 4096) -> None:
    """What MLCommons' truncate_accuracy_log.py leaves of a log: the whole log if it is under
    KEEP bytes, else its first KEEP and last KEEP bytes with "\\n\\n...\\n\\n" between (no
    longer valid JSON; the sha256 of the whole log goes into accuracy.txt as `hash=`)."""
    data = src.read_bytes()
    dst.write_bytes(data if len(data) < keep else data[:keep] + b"\n\n...\n\n" + data[-keep:])


def _with_hash(text: str, full_log: Path) -> str:
    """accuracy.txt as the round's truncation tool leaves an accuracy script's output: the text,
    then `\\nhash=<sha256>\\n`, the only hash line (`visionperf accuracy` writes its own, dropped)."""
    text = "".join(ln for ln in text.splitlines(keepends=True) if not ln.startswith("hash="))
    return text + f"\nhash={file_sha256(full_log)}\n"


def _measurements(f: Found) -> dict:
    rec = _run_json(f.performance or f.accuracy)
    model = rec.get("model", {})
    q = (rec.get("cache") or {}).get("quantization")
    return {
        "input_data_types": (rec.get("cache") or {}).get("dtype", "float32"),
        "retraining": "No",
        "starting_weights_filename": Path(model.get("path", "")).name or "unknown",
        "weight_data_types": "int8" if q else "fp32",
        "weight_transformations": "static post-training quantisation (ONNX Runtime QDQ, per-channel int8 weights)"
        if q else "none",
    }


# What a submitter or system name may hold: it becomes a directory name in the tree, read by
# the round's checker, by shells and by every tool a reviewer points at it.
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*", re.ASCII)


def check_name(value: str, option: str) -> str:
    """A name from the user that becomes one path component (closed/<submitter>/..., <system>.json):
    refused unless it is a single safe component, so it can never point outside --out nor hold
    what a shell or a terminal would read as more than a name."""
    if not SAFE_NAME.fullmatch(value) or ".." in value:
        raise UserError(f"{option} {value!r} is not a usable name: it becomes a directory name, so use only "
                        "letters, digits, '.', '_' and '-', starting with a letter or digit (no spaces, "
                        "'/', '..', control or shell characters)")
    return value


# System fields that count something: the checker reads them as numbers, so a JSON number is
# as good as its text. Every other field is text.
COUNT_FIELDS = ("number_of_nodes", "host_processors_per_node", "host_processor_core_count",
                "accelerators_per_node", "host_network_card_count")
JSON_TYPE_NAMES = {dict: "an object", list: "a list", bool: "true/false", int: "a number", float: "a number",
                   type(None): "null"}


def check_system_types(user: dict, rnd: Round, src: str) -> None:
    """The --system-json fields the round knows hold what its checker expects: text, or for a
    count a whole number (its text too)."""
    for key in rnd.system_fields:
        if key not in user or isinstance(user[key], str):
            continue
        v = user[key]
        if key in COUNT_FIELDS and isinstance(v, int) and not isinstance(v, bool):
            continue
        want = "a whole number or text" if key in COUNT_FIELDS else "text (a JSON string)"
        raise UserError(f"{src}: {key} is {JSON_TYPE_NAMES.get(type(v), type(v).__name__)} ({json.dumps(v)[:40]}), "
                        f"but the submission checker expects {want}: e.g. \"{key}\": \"...\"")


def assemble(runs: Path, out: Path, submitter: str, system: str, user_system: dict,
             allow_short: bool = False, round_version: str | None = None, user_file: str | None = None,
             sysfs_root: str = "/", say=_silent,
             chosen: dict[str, str] | None = None) -> tuple[Path, list[Problem], Round]:
    """Check everything, then write the tree. Returns (tree, waived problems, round). SAY hears
    each step as it starts (progress.Activity shows the ones that take a while). CHOSEN: the
    benchmark a workload's runs go in as, where the round has several ({"yolo": "yolo-95"})."""
    from .rounds import DEFAULT_ROUND
    from .systems import describe_system, machine_facts

    rnd = get_round(round_version or DEFAULT_ROUND)
    check_name(submitter, "--submitter")
    check_name(system, "--system")
    check_system_types(user_system, rnd, user_file or "--system-json")
    for w in chosen or {}:
        benchmark_for(rnd, w, chosen)  # a name the round does not have is refused before any work
    say(f"looking for runs under {runs}")
    found = find_runs(runs)
    system_type, problems = check_runs(rnd, found, say, chosen)
    backends = {(_run_json(f.performance or f.accuracy).get("config") or {}).get("backend", "") for f in found}
    blocking = [p for p in problems if not (allow_short and p.waivable)]
    say("describing this system")
    try:
        desc = describe_system(rnd, submitter, system, system_type, user_system, machine_facts(backends, sysfs_root),
                               user_file)
    except UserError as e:
        blocking.append(Problem("system", str(e), False))
    if blocking:
        short = sum(p.waivable for p in blocking)
        raise UserError(
            f"cannot assemble a round {rnd.version} submission from {runs}: {len(blocking)} problem(s)"
            + (f" ({short} of them waivable with --allow-short for a practice tree)" if short and not allow_short else "")
            + ":\n" + "\n".join(f"  - {p}" for p in blocking))
    waived = problems if allow_short else []
    final = out / "closed" / submitter
    tmp = out / f".closed-{submitter}.partial-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        _write_tree(tmp, rnd, found, submitter, system, desc, waived, say)
        final.parent.mkdir(parents=True, exist_ok=True)
        replace_dir(tmp, final)  # a previous tree is kept until this one is in place
    except BaseException:  # a tree is published whole or not at all
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final, waived, rnd


def _write_tree(tmp: Path, rnd: Round, found: list[Found], submitter: str, system: str, desc: dict,
                waived: list[Problem], say=_silent) -> None:
    from . import __version__

    (tmp / "systems").mkdir(parents=True)
    (tmp / "systems" / f"{system}.json").write_text(json.dumps(desc, indent=2) + "\n")
    (tmp / "src/visionperf").mkdir(parents=True)
    (tmp / "src/visionperf/README.md").write_text(
        f"# visionperf {__version__}\n\nThe harness that produced these results: the visionperf Python package and "
        "its compiled engine (engine/), with MLCommons LoadGen 6.0.17 built from its pinned source release.\n"
        "Install with `make install` from its repository; each result's README.md gives the command it ran.\n")
    (tmp / "documentation").mkdir()
    (tmp / "documentation/calibration.md").write_text(_calibration(found))
    if waived:
        (tmp / "documentation/README.md").write_text(_practice_readme(rnd, waived))
    for f in found:
        say(f"writing the {f.benchmark} {f.scenario} results (accuracy logs hashed and truncated)")
        base = tmp / "results" / system / f.benchmark / f.scenario
        dst = base / "performance/run_1"
        dst.mkdir(parents=True)
        for name in rnd.performance_files:
            shutil.copyfile(f.performance / name, dst / name)
        shutil.copyfile(f.performance / "user.conf", base / "user.conf")
        dst = base / "accuracy"
        dst.mkdir(parents=True)
        for name in rnd.accuracy_files:  # LoadGen's logs as they are; the other two made below
            if name not in ("accuracy.txt", "mlperf_log_accuracy.json"):
                shutil.copyfile(f.accuracy / name, dst / name)
        full = f.accuracy / "mlperf_log_accuracy.json"
        (dst / "accuracy.txt").write_text(_with_hash((f.accuracy / "accuracy.txt").read_text(), full))
        truncate_accuracy_log(full, dst / "mlperf_log_accuracy.json", rnd.truncate_keep_bytes)
        m = _measurements(f)
        assert sorted(m) == sorted(rnd.measurements_fields), "measurements.json out of step with the round"
        (base / "measurements.json").write_text(json.dumps(m, indent=2) + "\n")
        (base / "README.md").write_text(_readme(rnd, f, system, waived))
        for test, d in f.compliance.items():
            if test not in rnd.benchmarks[f.benchmark].compliance_tests:
                continue
            cdst = base / test
            (cdst / "performance/run_1").mkdir(parents=True)
            for name in rnd.performance_files:
                shutil.copyfile(d / "performance/run_1" / name, cdst / "performance/run_1" / name)
            for name in [n for n in rnd.compliance_files[test] if n.startswith("verify_")]:
                shutil.copyfile(d / name, cdst / name)
            if "accuracy" in rnd.compliance_files[test]:
                (cdst / "accuracy").mkdir()
                verify = d / "verify_accuracy.txt"
                if "TEST PASS" not in verify.read_text() and _test01_accuracies_agree(rnd, f.benchmark,
                                                                                     d / "accuracy"):
                    for name in rnd.compliance_delta_files:  # the checker reads them where responses differ
                        shutil.copyfile(d / "accuracy" / name, cdst / "accuracy" / name)
                full = d / "accuracy/mlperf_log_accuracy.json"
                (cdst / "accuracy/accuracy.txt").write_text(_with_hash("", full))
                truncate_accuracy_log(full, cdst / "accuracy/mlperf_log_accuracy.json", rnd.truncate_keep_bytes)


def _calibration(found: list[Found]) -> str:
    lines = ["# Calibration", ""]
    for f in found:
        rec = _run_json(f.performance or f.accuracy)
        q = (rec.get("cache") or {}).get("quantization")
        model = Path((rec.get("model") or {}).get("path", "?")).name
        lines.append(f"- {f.benchmark} {f.scenario} ({model}): " + (
            f"int8 by ONNX Runtime static quantisation (QDQ, MinMax, per-channel weights), input {q}; calibrated "
            "on the MLPerf calibration list (`visionperf quantize --calibration-list`)" if q else
            "float32, no calibration"))
    return "\n".join(lines) + "\n"


def _readme(rnd: Round, f: Found, system: str, waived: list[Problem]) -> str:
    rec = _run_json(f.performance or f.accuracy)
    cfg = rec.get("config", {})
    lines = [f"# {f.benchmark} {f.scenario} on {system}", "",
             "Run with visionperf through the MLCommons LoadGen:", "", "```",
             f"visionperf run {f.workload} --scenario {f.scenario} --backend {cfg.get('backend')} "
             f"--devices {cfg.get('devices')} --model MODEL --dataset DATASET --out OUT",
             f"visionperf run {f.workload} --scenario {f.scenario} --mode accuracy ...",
             *[f"visionperf run {f.workload} --scenario {f.scenario} --compliance {t} ..." for t in f.compliance
               if t in rnd.benchmarks[f.benchmark].compliance_tests],
             "```", ""]
    mine = [p for p in waived if p.where in (f"{f.benchmark} {f.scenario}", f.benchmark)]
    if mine:
        lines += ["**Practice tree, NOT a valid submission: these rules were waived (--allow-short):**", ""]
        lines += [f"- {p.text}" for p in mine] + [""]
    return "\n".join(lines)


def _practice_readme(rnd: Round, waived: list[Problem]) -> str:
    lines = [f"# NOT A VALID SUBMISSION: a practice tree for round {rnd.version}", "",
             f"The round's rules, as visionperf applies them, were read from {rnd.source}.", "",
             "Assembled by `visionperf submission --allow-short`, which waived these rules:", ""]
    return "\n".join(lines + [f"- {p}" for p in waived]) + "\n"
