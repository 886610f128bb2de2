"""One run of the campaign as today's `visionperf run`, in a process of its own (LoadGen reads
mlperf.conf once per process, and a crash there must not end the campaign), and its outcome
judged by the round's own checks (the ones `submission` applies)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from ..rounds import Round
from ..submission import Found, check_accuracy, check_compliance, check_performance
from ..userconf import conf_value, parse_conf
from ..workloads import SCENARIOS
from .inputs import BenchInputs
from .plan import PlannedRun
from .state import FAILED, INVALID, REFUSED, SHORT, VALID

STOP_GRACE_S = 120.0  # an interrupted run's own cleanup; then it is killed


@dataclass(frozen=True)
class RunOptions:
    """What every run of a campaign shares."""

    backend: str
    devices: int
    batch_size: int | None
    duration: float | None
    cache: str | None
    max_hours: float | None = None


@dataclass
class Outcome:
    status: str
    why: str = ""
    fix: str = ""
    exit_code: int = 0
    seconds: float = 0.0


def result_path(runs: Path, run: PlannedRun) -> Path:
    """The directory RUN's results take under RUNS (`run --out`), moved aside as a whole when redone."""
    base = runs / run.workload / run.scenario
    return base / (run.compliance or run.mode)


def run_argv(run: PlannedRun, inputs: BenchInputs, opts: RunOptions, out: Path, target_qps: float | None,
             quiet: bool, duration: float | None = None) -> list[str]:
    """The `visionperf run` command line of RUN (DURATION: a probe's own, instead of the campaign's)."""
    argv = [sys.executable, "-m", "visionperf", "run", run.workload, "--scenario", run.scenario,
            "--mode", run.mode, "--model", inputs.model, "--dataset", inputs.dataset,
            "--backend", opts.backend, "--devices", str(opts.devices), "--out", str(out)]
    if opts.batch_size:
        argv += ["--batch-size", str(opts.batch_size)]
    if opts.cache:
        argv += ["--cache", opts.cache]
    if opts.max_hours:
        argv += ["--max-hours", f"{opts.max_hours:g}"]
    d = duration if duration is not None else opts.duration
    if d is not None and run.mode == "performance":
        argv += ["--duration", f"{d:g}"]
    if target_qps is not None and run.mode == "performance":
        argv += ["--target-qps", f"{target_qps:.6g}"]
    if run.compliance:
        argv += ["--compliance", run.compliance]
    if quiet:
        argv.append("--quiet")
    return argv


def execute(argv: list[str], log_file: Path | None, echo: bool) -> tuple[int, str]:
    """(exit status, the last lines of its stderr): ARGV run to its end. ECHO: its output
    goes to this terminal as it comes (its live block included); else into LOG_FILE alone.
    Interrupted (Ctrl-C, SIGTERM), the child is stopped the same way and waited for, so that it
    removes its partial results, and the interrupt goes on up."""
    if log_file:
        log_file.parent.mkdir(parents=True, exist_ok=True)
    log = open(log_file, "w", encoding="utf-8") if log_file else None
    tail: deque[str] = deque(maxlen=20)
    try:
        child = subprocess.Popen(argv, stdout=None if echo else (log or subprocess.DEVNULL),
                                 stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, errors="replace")

        def pump() -> None:
            for line in child.stderr:
                tail.append(line.rstrip("\n"))
                if log:
                    log.write(line)
                    log.flush()
                if echo:
                    sys.stderr.write(line)

        reader = threading.Thread(target=pump, name="visionperf-run-stderr", daemon=True)
        reader.start()
        try:
            rc = child.wait()
        except KeyboardInterrupt as e:
            _stop(child, getattr(e, "signum", signal.SIGINT))
            raise
        reader.join(5)
        return rc, "\n".join(tail)
    finally:
        if log:
            log.close()


def _stop(child: subprocess.Popen, signum: int) -> None:
    """CHILD stopped as this process was, then killed if its cleanup hangs. A terminal's Ctrl-C
    reached it already (the foreground process group), and a second SIGINT would cut its cleanup
    short; a SIGINT from elsewhere or a SIGTERM is passed on (a second SIGTERM it ignores)."""
    if not (signum == signal.SIGINT and _in_foreground()):
        child.send_signal(signum)
    try:
        child.wait(STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()


def _in_foreground() -> bool:
    """Whether this process group is its terminal's foreground group (where Ctrl-C goes)."""
    try:
        return os.tcgetpgrp(sys.stdin.fileno()) == os.getpgrp()
    except (OSError, ValueError):
        return False


def judge(rnd: Round, run: PlannedRun, runs: Path, allow_short: bool) -> Outcome:
    """RUN's outcome from what it left under RUNS, by the round's checks on it: VALID (none
    fail), SHORT (only what --allow-short waives), INVALID (LoadGen judged it so: a rerun, or a
    lower target, may pass), REFUSED (a rule a rerun with the same inputs cannot meet)."""
    scenario_dir = runs / run.workload / run.scenario
    if run.compliance:
        d = scenario_dir / run.compliance
        if not (d / "performance/run_1/mlperf_log_detail.txt").exists():
            return Outcome(FAILED, f"{run.compliance} left no performance log", "rerun the same command")
        perf = scenario_dir / "performance/run_1"
        found = Found(run.workload, run.scenario, run.benchmark, perf if perf.exists() else None,
                      compliance={run.compliance: d})
        others = [t for t in rnd.benchmarks[run.benchmark].compliance_tests if t != run.compliance]
        problems = [p for p in check_compliance(rnd, found) if not any(p.text.startswith(f"no {t} run") for t in others)]
    elif run.mode == "accuracy":
        d = scenario_dir / "accuracy"
        if not (d / "mlperf_log_accuracy.json").exists():
            return Outcome(FAILED, "the accuracy run left no log", "rerun the same command")
        problems = check_accuracy(rnd, run.benchmark, run.scenario, d)
    else:
        d = scenario_dir / "performance/run_1"
        if not (d / "mlperf_log_detail.txt").exists():
            return Outcome(FAILED, "the performance run left no log", "rerun the same command")
        problems = check_performance(rnd, run.benchmark, run.scenario, d)
    blocking = [p for p in problems if not (allow_short and p.waivable)]
    if not problems:
        return Outcome(VALID)
    if not blocking:
        # the waived rules are listed in the tree's README; one line here keeps the table readable
        return Outcome(SHORT, f"practice: {len(problems)} rule(s) waived by --allow-short",
                       "for a submission: the real model and dataset, without --allow-short and --duration")
    why = "; ".join(p.text for p in blocking)
    if any("is INVALID" in p.text for p in blocking):
        fix = ("its target is stepped down and it is run again, up to --max-retries; rerun the same command "
               "for more tries" if run.scenario == "Server" else
               "rerun the same command (only this run and what depends on it are redone)")
        return Outcome(INVALID, why, fix)
    waivable = all(p.waivable for p in blocking)
    fix = ("pass --allow-short for a practice tree, or run on the real model and dataset at full length"
           if waivable else "fix what it says, then rerun the same command (runs already VALID are kept)")
    return Outcome(REFUSED, why, fix)


def target_of(result: Path, workload: str, scenario: str) -> float | None:
    """The target a performance run ran with, read back from the user.conf it kept: Offline and
    Server's target_qps, the streams' expected latency as queries/s."""
    conf = result / "user.conf"
    if scenario not in SCENARIOS or not conf.exists():
        return None
    kv = parse_conf(conf.read_text(encoding="utf-8", errors="replace"), str(conf))
    if scenario in ("Offline", "Server"):
        found = conf_value(kv, workload, scenario, "target_qps")
        return float(found[0]) if found else None
    found = conf_value(kv, workload, scenario, "target_latency")
    return 1000.0 / float(found[0]) if found and float(found[0]) > 0 else None


def measured_rate(result: Path) -> float | None:
    """Samples/s an Offline performance run measured (LoadGen's result), None if absent."""
    from ..results import read_result

    try:
        return read_result(result, "Offline").metric
    except OSError:
        return None

