"""MLPerf compliance tests TEST01 and TEST04, from the published rules (FACTS.md section 4).

A compliance run is a performance run with an `audit.config` that LoadGen reads (we pass its
path to StartTest, and the detail log records that it was found). It lands in
`OUT/<benchmark>/<Scenario>/<TEST>/performance/run_1/`, and is then verified against the
submission runs beside it (`.../performance/run_1` and `.../accuracy`), writing
`verify_accuracy.txt` (TEST01) and `verify_performance.txt` with `TEST PASS` or `TEST FAIL` and why.

TEST01: the SUT must not answer differently when it is being measured: a sample of responses
logged during a performance run must equal the accuracy run's responses for the same samples
(or, where they differ, give the same accuracy within 1%: verify_accuracy.txt then says TEST FAIL
as the round's verify_accuracy.py does, and accuracy/baseline_accuracy.txt and
compliance_accuracy.txt carry the two accuracies the round's checker compares); and its
performance must be within 10% of the submission run. TEST04: the same sample issued over and
over must not be faster than unique samples by more than 10% (no caching of results).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from .accuracy import read_accuracy_log
from .atomic import write_text
from .errors import UserError
from .results import read_result
from .workloads import Workload

TESTS = ("TEST01", "TEST04")
TEST01_SEED = 720381539243781796
TEST01_DELTA_PERCENT = 1.0  # the checker's bound where responses differ (0.1 for a 99.9 benchmark; none here)
BASELINE_FILES = ("baseline_accuracy.txt", "compliance_accuracy.txt")  # TEST01/accuracy, where responses differ
SAMPLING_TARGET = {"resnet50": 4096, "ssd-mobilenet": 1024, "ssd-resnet34": 256, "yolo": 64}


def audit_config(test: str, workload: Workload) -> str:
    if test == "TEST01":
        return ("# TEST01: log a sample of responses during a performance run\n"
                "*.*.mode = 2\n"
                f"*.*.accuracy_log_rng_seed = {TEST01_SEED}\n"
                f"*.*.accuracy_log_sampling_target = {SAMPLING_TARGET[workload.name]}\n")
    if test == "TEST04":  # the rounds ask it of ResNet50 and the SSDs, not RetinaNet nor YOLO (harmless there)
        return ("# TEST04: issue the same sample repeatedly; must not be faster than unique samples\n"
                "*.*.mode = 2\n"
                "*.*.performance_issue_unique = 0\n"
                "*.*.performance_issue_same = 1\n"
                "*.*.performance_issue_same_index = 3\n")
    raise UserError(f"unknown compliance test {test!r}: choose {' or '.join(TESTS)}")


def _write(path: Path, lines: list[str], passed: bool) -> bool:
    write_text(path, "\n".join(lines + ["TEST PASS" if passed else "TEST FAIL"]) + "\n")
    return passed


def verify_performance(test: str, scenario: str, run_dir: Path, ref_dir: Path, out: Path) -> bool:
    path = out / "verify_performance.txt"
    if not (ref_dir / "mlperf_log_detail.txt").exists():
        return _write(path, [f"no submission performance run in {ref_dir}: run it first"], False)
    ref, got = read_result(ref_dir, scenario), read_result(run_dir, scenario)
    if ref.metric is None or got.metric is None:
        return _write(path, ["a metric is missing from the logs"], False)
    if not ref.metric or not got.metric:  # LoadGen's early-stopping estimate of a run too short for it
        return _write(path, [f"reference {ref.metric_name} = {ref.metric}", f"{test} {got.metric_name} = {got.metric}",
                             "nothing to compare: a run too short for early stopping reports 0"], False)
    latency = ref.unit == "ns"
    faster = ref.metric / got.metric if latency else got.metric / ref.metric  # > 1: compliance run faster
    lines = [f"reference {ref.metric_name} = {ref.metric}", f"{test} {got.metric_name} = {got.metric}",
             f"{test} is {faster:.4f}x the reference speed"]
    if test == "TEST04":
        ok = faster <= 1.10
        lines.append("repeated samples are at most 10% faster: no caching" if ok else
                     "repeated samples are more than 10% faster than unique ones: results may be cached")
    else:
        ok = 0.90 <= faster <= 1.10
        lines.append("within 10% of the submission run" if ok else "differs from the submission run by more than 10%")
    if not got.valid:
        ok = False
        lines.append(f"the {test} run is INVALID: {'; '.join(got.reasons)}")
    return _write(path, lines, ok)


def verify_accuracy(run_dir: Path, acc_dir: Path, out: Path, workload: Workload, dataset) -> bool:
    """TEST01: sampled performance-mode responses against the accuracy run's."""
    path = out / "verify_accuracy.txt"
    acc_log = acc_dir / "mlperf_log_accuracy.json"
    if not acc_log.exists():
        return _write(path, [f"no accuracy run in {acc_dir}: run with --mode accuracy first"], False)
    sampled = read_accuracy_log(run_dir / "mlperf_log_accuracy.json")
    reference = {int(r["qsl_idx"]): r["data"] for r in read_accuracy_log(acc_log)}
    (out / "accuracy").mkdir(exist_ok=True)
    shutil.copyfile(run_dir / "mlperf_log_accuracy.json", out / "accuracy/mlperf_log_accuracy.json")
    if not sampled:
        return _write(path, ["the performance run logged no responses: was audit.config read?"], False)
    for name in BASELINE_FILES:  # a previous run's, whose responses differed
        (out / "accuracy" / name).unlink(missing_ok=True)
    differ = [r for r in sampled if reference.get(int(r["qsl_idx"])) != r["data"]]
    lines = [f"{len(sampled)} responses sampled in performance mode, {len(differ)} differ from accuracy mode"]
    if not differ:
        return _write(path, lines + ["accuracy check pass: True"], True)
    # Some differ (non-deterministic kernels, other batch shapes): the round's byte-for-byte check
    # fails, and the accuracy over the sampled ids must agree instead, as its checker computes it.
    ids = sorted({int(r["qsl_idx"]) for r in sampled})
    perf = _accuracy_of({int(r["qsl_idx"]): r["data"] for r in sampled}, ids, workload, dataset, out)
    ref = _accuracy_of(reference, ids, workload, dataset, out)
    for name, acc in zip(BASELINE_FILES, (ref, perf)):
        write_text(out / "accuracy" / name, acc.text().splitlines()[0] + "\n")
    delta = accuracy_delta_percent(ref.percent, perf.percent)
    ok = delta is not None and delta <= TEST01_DELTA_PERCENT
    apart = "cannot be compared (one is 0)" if delta is None else f"are {delta:.3f}% apart"
    _write(path, lines + [
        f"accuracy over them: accuracy mode {ref.percent:.3f} (accuracy/{BASELINE_FILES[0]}), performance mode "
        f"{perf.percent:.3f} (accuracy/{BASELINE_FILES[1]}); they {apart}, at most {TEST01_DELTA_PERCENT:g}% allowed",
        f"accuracy check pass: {ok} (not byte-identical: the round's checker compares the two accuracies instead)"],
        False)
    return ok


def accuracy_delta_percent(baseline: float, compliance: float) -> float | None:
    """How far apart two accuracies are as the round's checker measures it, |1 - baseline /
    compliance| x 100; None where either is 0 (the checker then fails the test)."""
    if baseline == 0 or compliance == 0:
        return None
    return abs(1 - baseline / compliance) * 100


def _accuracy_of(data_by_idx: dict, ids: list[int], workload: Workload, dataset, out: Path):
    from .accuracy import coco_map, top1
    from .workloads import coco_label_map

    tmp = out / "accuracy/.subset.json"
    tmp.write_text(json.dumps([{"seq_id": k, "qsl_idx": i, "data": data_by_idx.get(i, "")} for k, i in enumerate(ids)]))
    try:
        if workload.task == "classification":
            return top1(tmp, dataset.labels)
        return coco_map(tmp, dataset, coco_label_map(workload))
    finally:
        tmp.unlink()
