"""Reading LoadGen's own logs: the official metric, validity and why."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from . import jsonfile
from .jsonfile import JsonFileError

# The one official figure per scenario (FACTS.md section 3) and its unit.
METRIC = {
    "Offline": ("result_samples_per_second", "samples/s"),
    "Server": ("result_completed_samples_per_sec", "samples/s"),
    "SingleStream": ("early_stopping_latency_ss", "ns"),
    "MultiStream": ("early_stopping_latency_ms", "ns"),
}

PERCENTILES = ("50.00", "90.00", "95.00", "97.00", "99.00", "99.90")  # as LoadGen's detail log has them

# Detail-log keys whose False makes a run INVALID, with the reason to print.
CHECKS = {
    "result_min_duration_met": "the run was shorter than min_duration",
    "result_min_queries_met": "fewer queries than min_query_count",
    "early_stopping_met": "too few queries for early stopping to bound the latency percentile",
    "result_perf_constraints_met": "the latency percentile exceeded the bound",
}


def read_detail(path: str | Path) -> dict:
    """The `:::MLLOG {json}` lines of mlperf_log_detail.txt as key -> value (last one wins)."""
    out: dict = {}
    errors: list[str] = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if not line.startswith(":::MLLOG"):
                continue
            try:
                rec = jsonfile.parse(line[len(":::MLLOG"):], path, "")
            except JsonFileError:
                continue
            if not isinstance(rec, dict):
                continue
            key = rec.get("key")
            metadata = rec.get("metadata")
            if isinstance(metadata, dict) and metadata.get("is_error"):
                errors.append(f"{key}: {rec.get('value')}")
            out[key] = rec.get("value")
    out["_errors"] = errors
    return out


@dataclass
class PerfResult:
    scenario: str
    valid: bool
    metric_name: str
    metric: float | None
    unit: str
    reasons: list[str] = field(default_factory=list)
    latency_ns: dict = field(default_factory=dict)  # percentile -> ns
    detail: dict = field(default_factory=dict, repr=False)

    def metric_text(self) -> str:
        if self.metric is None:
            return "n/a"
        if self.unit == "ns":
            return f"{self.metric / 1e6:.3f} ms"
        return f"{self.metric:,.1f} {self.unit}"


def read_result(log_dir: str | Path, scenario: str) -> PerfResult:
    detail = read_detail(Path(log_dir) / "mlperf_log_detail.txt")
    key, unit = METRIC[scenario]
    metric = detail.get(key)
    valid = detail.get("result_validity") == "VALID"
    reasons = [why for k, why in CHECKS.items() if detail.get(k) is False]
    reasons += detail["_errors"]
    lat = {p: detail.get(f"result_{p}_percentile_latency_ns") for p in PERCENTILES}
    return PerfResult(scenario, valid, key, float(metric) if _number(metric) else None, unit,
                      reasons, {k: v for k, v in lat.items() if _number(v)}, detail)


def _number(v) -> bool:
    """A figure a damaged log could hold in the wrong type (a string, a list) left out."""
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def check_logs_complete(log_dir: str | Path, mode: str = "performance") -> None:
    """Refuse a test whose logs LoadGen could not write in full.

    LoadGen writes its logs through C++ streams and ignores a failed write, so a full disk or a
    file size limit leaves a truncated `mlperf_log_detail.txt` and a test that seems to have
    passed. What a whole log ends with is fixed (loadgen.cc, results.cc, logging.cc in LoadGen
    6.0.17): the summary with its error count line; the detail log with a whole record, after
    the `power_end` record every test logs as its queries finish and, in performance mode, the
    `num_errors` record that closes the results."""
    from .errors import UserError

    log_dir = Path(log_dir)
    fix = ("the disk is full or a file size limit (ulimit -f) was reached: free space (or raise "
           "the limit) and run again")
    summary, detail = log_dir / "mlperf_log_summary.txt", log_dir / "mlperf_log_detail.txt"
    try:
        s = summary.read_bytes()[-200:]
        d = detail.read_bytes()[-65536:]
    except OSError as e:
        raise UserError(f"LoadGen wrote no {Path(e.filename).name} in {log_dir}: {fix}") from None
    if not (s.endswith(b"encountered during test.\n") or s.endswith(b"See detailed log.\n")):
        raise UserError(f"LoadGen could not write {summary} in full: {fix}")
    last = d.rstrip(b"\n").rsplit(b"\n", 1)[-1]
    try:
        whole = d.endswith(b"\n") and isinstance(jsonfile.parse(last.partition(b":::MLLOG ")[2], detail, ""), dict)
    except JsonFileError:
        whole = False
    if not whole or b'"key": "power_end"' not in d or (mode == "performance" and b'"key": "num_errors"' not in d):
        raise UserError(f"LoadGen could not write {detail} in full: {fix}")
