"""A round's whole submission in one command: plan every run the round requires of some
benchmarks on one system type, run each as `visionperf run` in a process of its own (skipping
what a previous attempt left VALID under the same inputs), find Server's target by bisection,
then assemble and check the tree with `submission` (and MLCommons' checker, if given).

    plan.py      the runs a round requires, in order, and their expected times
    inputs.py    each benchmark's model and dataset, and their fingerprints
    state.py     OUT/campaign.json (whole or not at all) and the run key that resume compares
    execute.py   one run as a child process, and its outcome by the round's checks
    targets.py   Server's bisection and step-down
    view.py      progress, the plan and the final table
    checker.py   the official checker's verdict

OUT/runs holds the runs (`run --out`), OUT/submission the tree, OUT/logs each run's output off
a terminal, OUT/probes Server's bisection runs, OUT/replaced results whose inputs changed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from .. import __version__
from ..errors import UserError
from ..locks import DirLock
from ..progress import fmt_duration
from ..rounds import Round, get_round
from .execute import (Outcome, RunOptions, execute, judge, measured_rate, result_path, run_argv, target_of)
from .inputs import BenchInputs, dataset_fingerprint, model_sha256
from .plan import RUN_OVERHEAD_S, PlannedRun, estimate_s, plan_runs
from .state import (DONE_STATUSES, FAILED, INTERRUPTED, INVALID, REFUSED, RunRecord, State, load_state,
                    move_aside, run_key)
from .targets import PROBE_S, Probe, bisect_server, step_down
from .view import CampaignView, outcome_table, plan_table

__all__ = ["CampaignOptions", "run_campaign"]

# Samples/s an accuracy run is estimated at before the campaign has measured an Offline rate.
GUESSED_RATE = {"null": 20_000.0, "null-gather": 10_000.0}
GUESSED_RATE_PER_DEVICE = 50.0
SERVER_PROBES_EXPECTED = 4  # the bisection's probes, on average (at most targets.PROBES)
CHECKER_LINES = 30  # the official checker's errors shown (all are in its own output)  # other backends: ONNX Runtime's ResNet50 on a few CPU cores


@dataclass
class CampaignOptions:
    round: str
    benchmarks: list[str]
    inputs: dict[str, BenchInputs]
    run: RunOptions
    out: Path
    system_type: str = "edge"
    submitter: str | None = None
    system: str | None = None
    system_json: str | None = None
    allow_short: bool = False
    dry_run: bool = False
    checker: str | None = None
    max_retries: int = 2
    quiet: bool = False
    command: list[str] = field(default_factory=list)


def _loadgen_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("mlcommons_loadgen")
    except PackageNotFoundError:
        return "unknown"


def _dataset_size(workload: str, root: str) -> int:
    from ..datasets import open_dataset
    from ..workloads import get_workload

    return len(open_dataset(get_workload(workload), root).labels)


def _cache_identity(result: Path) -> dict:
    """The cache a finished run read ({"path", "fingerprint"} from its run.json), {} if unknown."""
    import json

    from ..cache import data_fingerprint

    # accuracy/run.json, performance/run_1/run.json, TEST0x/performance/run_1/run.json
    for rec_path in (result / "run.json", result / "run_1/run.json", result / "performance/run_1/run.json"):
        if rec_path.exists():
            try:
                path = Path(json.loads(rec_path.read_text())["cache"]["path"])
                return {"path": str(path), "fingerprint": data_fingerprint(path / "data.npy")}
            except (OSError, ValueError, KeyError, TypeError):
                return {}
    return {}


class Campaign:
    """One campaign's run: the plan, the state, and the runs in order."""

    def __init__(self, o: CampaignOptions, console):
        self.o, self.console = o, console
        self.rnd: Round = get_round(o.round)
        self.plan = plan_runs(self.rnd, o.benchmarks, o.system_type)
        self.runs_dir = o.out / "runs"
        self.state: State | None = None
        self.keys: dict[str, str] = {}
        self.kept: set[str] = set()
        self.view: CampaignView | None = None

    # ---- the plan and its estimate --------------------------------------------------------------
    def rate(self, bench: str) -> tuple[float, str]:
        """(samples/s an accuracy run of BENCH is estimated at, how that was estimated)."""
        if self.state and self.state.rates.get(bench):
            return self.state.rates[bench], "the Offline rate this campaign measured"
        b = self.o.run.backend
        if b in GUESSED_RATE:
            return GUESSED_RATE[b], f"a guess for the {b} backend"
        return GUESSED_RATE_PER_DEVICE * self.o.run.devices, \
            f"a guess of {GUESSED_RATE_PER_DEVICE:g}/s per device until an Offline run measures it"

    def estimates(self) -> tuple[dict[str, float], list[str]]:
        est, how = {}, []
        for bench in self.o.benchmarks:
            size = _dataset_size(self.rnd.benchmarks[bench].workload, self.o.inputs[bench].dataset)
            rate, why = self.rate(bench)
            how.append(f"{bench}: accuracy runs cover {size:,} images at {rate:,.0f}/s ({why})")
            for r in (r for r in self.plan if r.benchmark == bench):
                est[r.name] = estimate_s(r, self.o.run.duration, size, rate)
                if r.scenario == "Server" and r.is_performance:
                    probe_s = min(PROBE_S, self.o.run.duration or PROBE_S)
                    est[r.name] += SERVER_PROBES_EXPECTED * (probe_s + RUN_OVERHEAD_S)
        return est, how

    def settings_text(self, r: PlannedRun) -> str:
        o = self.o.run
        parts = [f"{o.backend} x{o.devices}"] + ([f"batch {o.batch_size}"] if o.batch_size else [])
        if r.mode == "performance":
            parts.append(f"min_duration {o.duration:g} s" if o.duration is not None else "min_duration 600 s")
            if r.compliance:
                parts.append("target: the performance run's")
            elif r.scenario == "Server":
                parts.append("target: bisection, then stepped down if INVALID")
            else:
                parts.append("target: from run's warm-up")
        else:
            parts.append("the whole dataset")
        return ", ".join(parts)

    def resume_status(self, r: PlannedRun) -> str:
        """What the campaign would do with R now: keep its result, or run it (and why)."""
        rec = self.state.runs.get(r.name)
        if rec is None:
            return "run"
        if rec.key != self.key(r):
            return "run: inputs changed"
        return "kept" if self.reusable(r) else f"run again: {rec.status}"

    def dry_run(self) -> int:
        self.state = load_state(self.o.out)
        if self.state.runs:
            self.compute_keys()
        est, how = self.estimates()
        todo = {r.name: self.resume_status(r) for r in self.plan} if self.state.runs else None
        if todo:
            for r in (r for r in self.plan if r.compliance and todo[r.name] == "kept"):
                if any(todo[f"{r.benchmark} {r.scenario} {m}"] != "kept" for m in ("performance", "accuracy")):
                    todo[r.name] = "run again: after its scenario's runs"
            est = {n: (0.0 if todo[n] == "kept" else s) for n, s in est.items()}
        self.console.print(plan_table(self.plan, {r.name: self.settings_text(r) for r in self.plan}, est, todo))
        total = sum(est.values())
        self.console.print(f"{len(self.plan)} runs, about {fmt_duration(total)} in all (each performance run and "
                           f"audit its min_duration plus {RUN_OVERHEAD_S:g} s to start; Server adds about "
                           f"{SERVER_PROBES_EXPECTED} short probes)")
        for line in how:
            self.console.print(f"  {line}")
        if self.o.run.duration is not None:
            self.console.print("  a run also lasts until LoadGen's minimum query count (MultiStream: 662 queries of "
                               "8 samples): on a slow device, longer than --duration")
        self.console.print("nothing was run (--dry-run)")
        return 0

    # ---- keys -----------------------------------------------------------------------------------
    def compute_keys(self) -> None:
        versions = {"visionperf": __version__, "loadgen": _loadgen_version()}
        fp = {}
        for b in self.o.benchmarks:
            inp = self.o.inputs[b]
            fp[b] = {"model": inp.model, "model_sha256": model_sha256(inp.model), "dataset": inp.dataset,
                     "dataset_fingerprint": dataset_fingerprint(inp.dataset)}
        o = self.o.run
        for r in self.plan:
            parts = {"run": r.name, "workload": r.workload, "backend": o.backend, "devices": o.devices,
                     "batch_size": o.batch_size, "duration": o.duration if r.mode == "performance" else None,
                     "cache": o.cache, **fp[r.benchmark], **versions}
            self.keys[r.name] = run_key(parts)

    def key(self, r: PlannedRun) -> str:
        """R's key: its inputs' (compute_keys); an audit's also holds its scenario's performance
        and accuracy runs' keys and when they finished, so that an audit of a result since redone
        (even under the same inputs) is redone too."""
        if not r.compliance:
            return self.keys[r.name]
        against = []
        for m in ("performance", "accuracy"):
            rec = self.state.runs.get(f"{r.benchmark} {r.scenario} {m}")
            against.append([rec.key, rec.finished] if rec else None)
        return run_key({"inputs": self.keys[r.name], "against": against})

    # ---- the runs -------------------------------------------------------------------------------
    def reusable(self, r: PlannedRun) -> bool:
        """Whether R's previous result stands: same key, done, still on disk, its cache unchanged,
        and still judged done (an --allow-short practice result is not, without it)."""
        rec = self.state.runs.get(r.name)
        result = result_path(self.runs_dir, r)
        if rec is None or rec.key != self.key(r) or rec.status not in DONE_STATUSES or not result.exists():
            return False
        if rec.cache and _cache_identity(result) != rec.cache:
            return False
        return judge(self.rnd, r, self.runs_dir, self.o.allow_short).status == rec.status

    def set_aside_stale(self, r: PlannedRun) -> None:
        """A result under R's directory that this campaign did not record under R's key is moved
        aside before R runs: never silently kept, never lost."""
        rec = self.state.runs.get(r.name)
        if rec is not None and rec.key == self.key(r):
            return  # the same inputs: the new attempt replaces it
        moved = move_aside(result_path(self.runs_dir, r), self.o.out)
        if moved:
            self.view.say(f"{r.name}: its inputs changed (or it was not run by this campaign): the old result "
                          f"moved to {moved}")

    def attempt(self, r: PlannedRun, target: float | None, label: str = "") -> tuple[Outcome, RunRecord]:
        """R run once (at TARGET where given), judged and recorded in the state."""
        o = self.o
        logs = o.out / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        argv = run_argv(r, o.inputs[r.benchmark], o.run, self.runs_dir, target, quiet=o.quiet or not self.view.live)
        prev = self.state.runs.get(r.name)
        attempts = (prev.attempts if prev and prev.key == self.key(r) else 0) + 1
        self.state.runs[r.name] = RunRecord(self.key(r), INTERRUPTED, "interrupted", "rerun the same command",
                                            target, 0.0, attempts)
        self.view.run_started(r, label)
        started = time.monotonic()
        rc, err_tail = execute(argv, logs / (r.name.replace(" ", "_") + ".log"), echo=self.view.live and not o.quiet)
        seconds = time.monotonic() - started
        if rc != 0:
            last = next((ln for ln in reversed(err_tail.splitlines()) if ln.strip()), f"exit status {rc}")
            outcome = Outcome(FAILED, last.removeprefix("visionperf: error: "),
                              f"see {logs / (r.name.replace(' ', '_') + '.log')}; fix it and rerun the same command",
                              rc, seconds)
        else:
            outcome = judge(self.rnd, r, self.runs_dir, o.allow_short)
        result = result_path(self.runs_dir, r)
        if r.is_performance and rc == 0:
            target = target_of(result / "run_1", r.workload, r.scenario) or target
        rec = RunRecord(self.key(r), outcome.status, outcome.why, outcome.fix, target, round(seconds, 3),
                        attempts, _cache_identity(result) if rc == 0 else {},
                        time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        self.state.runs[r.name] = rec
        if r.is_performance and r.scenario == "Offline" and rc == 0:
            rate = measured_rate(result / "run_1")
            if rate:
                self.state.rates[r.benchmark] = rate
        self.state.save()
        self.view.run_finished(r, rec)
        return outcome, rec

    def audit_target(self, r: PlannedRun) -> float | None:
        perf = self.state.runs.get(f"{r.benchmark} {r.scenario} performance")
        return perf.target_qps if perf else None

    def run_one(self, r: PlannedRun) -> None:
        if self.reusable(r):
            self.kept.add(r.name)
            self.view.run_finished(r, self.state.runs[r.name], skipped=True)
            return
        if r.compliance:
            needed = [self.state.runs.get(f"{r.benchmark} {r.scenario} {m}") for m in ("performance", "accuracy")]
            if not all(n and n.status in DONE_STATUSES for n in needed):
                self.state.runs[r.name] = RunRecord(self.key(r), REFUSED, "its scenario's performance or "
                                                    "accuracy run is not done", "fix those, then rerun the same command")
                self.state.save()
                self.view.run_finished(r, self.state.runs[r.name])
                return
        self.set_aside_stale(r)
        if r.scenario == "Server" and r.is_performance:
            self.run_server(r)
            return
        target = self.audit_target(r) if r.compliance else None
        for n in range(self.o.max_retries + 1):
            outcome, _ = self.attempt(r, target, f" (retry {n})" if n else "")
            if outcome.status not in (INVALID, FAILED):
                return

    def run_server(self, r: PlannedRun) -> None:
        """Server's performance run: its target by bisection (once per key, kept in the state),
        the full run, and one step lower per INVALID full run, up to --max-retries."""
        key = f"{r.benchmark} Server"
        chosen = self.state.server.get(key, {})
        if chosen.get("key") == self.key(r) and chosen.get("target_qps"):
            target = chosen["target_qps"]
            self.view.say(f"{r.name}: target_qps {target:,.1f} from this campaign's earlier bisection")
        else:
            target, probes = self.bisect(r)
            self.state.server[key] = {"key": self.key(r), "target_qps": target,
                                      "probes": [vars(p) for p in probes]}
            self.state.save()
        for n in range(self.o.max_retries + 1):
            outcome, _ = self.attempt(r, target, f" at target_qps {target:,.1f}" + (f" (retry {n})" if n else ""))
            if outcome.status != INVALID:
                break
            target = step_down(target)
            self.state.server[key]["target_qps"] = target
            self.state.server[key].setdefault("stepped_down", []).append(target)
            self.state.save()

    def probe_run(self, r: PlannedRun, out: Path, target: float | None, duration: float) -> Path | None:
        argv = run_argv(r, self.o.inputs[r.benchmark], self.o.run, out, target, quiet=True, duration=duration)
        rc, _ = execute(argv, self.o.out / "logs" / f"{r.benchmark}_{r.scenario}_probe.log", echo=False)
        return result_path(out, r) / "run_1" if rc == 0 else None

    def bisect(self, r: PlannedRun) -> tuple[float, list[Probe]]:
        from ..results import read_detail

        probes_dir = self.o.out / "probes" / r.benchmark
        duration = min(PROBE_S, self.o.run.duration or PROBE_S)
        ceiling = self.state.rates.get(r.benchmark)
        if not ceiling:
            offline = PlannedRun(r.benchmark, r.workload, "Offline", "performance")
            self.view.say(f"{r.name}: measuring an Offline rate first ({duration:g} s) to bound the bisection")
            d = self.probe_run(offline, probes_dir, None, duration)
            ceiling = (measured_rate(d) if d else None) or 1.0

        def probe(q: float) -> Probe:
            self.view.say(f"{r.name}: probe at target_qps {q:,.1f} ({duration:g} s)")
            d = self.probe_run(r, probes_dir, q, duration)
            if d is None:
                return Probe(q, False, "the probe failed (see its log)")
            detail = read_detail(d / "mlperf_log_detail.txt")
            ok = detail.get("result_perf_constraints_met") is True and not detail["_errors"]
            p99 = detail.get("result_99.00_percentile_latency_ns")
            return Probe(q, ok, "" if ok else f"p99 {p99 / 1e6:.3g} ms over the bound" if p99 else "latency bound missed")

        target, probes = bisect_server(probe, ceiling)
        self.view.say(f"{r.name}: target_qps {target:,.1f} chosen from {len(probes)} probes under the Offline "
                      f"rate {ceiling:,.1f}/s")
        return target, probes

    # ---- the whole ------------------------------------------------------------------------------
    def run(self) -> int:
        o = self.o
        if o.checker:  # a wrong --checker refused now, not after hours of runs
            from .checker import checker_command

            checker_command(Path(o.checker), o.out / "submission", self.rnd.version, o.submitter or "")
        if o.dry_run:
            return self.dry_run()
        lock = DirLock(o.out, busy="{dir} is in use by another visionperf campaign (pid {pid}: {cmd}): wait for "
                                   "it to finish, or pass another --out").acquire()
        try:
            return self._run_locked()
        finally:
            lock.release()

    def _run_locked(self) -> int:
        o = self.o
        self.state = load_state(o.out)
        self.state.command, self.state.plan = o.command, [r.name for r in self.plan]
        self.compute_keys()
        est, _ = self.estimates()
        with CampaignView(self.console, est, o.quiet) as self.view:
            try:
                for r in self.plan:
                    self.run_one(r)
            except KeyboardInterrupt:
                self.state.save()  # the run under way is recorded INTERRUPTED: redone on resume
                raise
        self.console.print(outcome_table(self.plan, self.state.runs, self.kept))
        self.summarise()
        complete = self.assemble()
        if o.checker and (o.out / "submission").is_dir():
            passed = self.check()
            # a practice tree must fail the official checker (its short runs): shown, not counted
            complete = complete and (passed or o.allow_short)
        return 0 if complete else 1

    def summarise(self) -> None:
        """One figure per benchmark (OUT/summary_<benchmark>.png), beside the outcome table."""
        from .. import report

        rows = report.find(self.runs_dir)
        for b in self.o.benchmarks:
            path = report.benchmark_summary(rows, self.rnd.benchmarks[b].workload, self.o.out, title=b)
            if path:
                self.console.print(f"wrote {path}")

    def assemble(self) -> bool:
        """The tree from OUT/runs into OUT/submission (`submission`'s own assembly and checks)."""
        from ..submission import assemble
        from ..systems import load_user_json

        o = self.o
        chosen = {"yolo": b for b in o.benchmarks if self.rnd.benchmarks[b].workload == "yolo"}
        try:
            final, waived, _ = assemble(self.runs_dir, o.out / "submission", o.submitter, o.system,
                                        load_user_json(o.system_json), o.allow_short, o.round, o.system_json,
                                        chosen=chosen or None)
        except UserError as e:
            self.console.print(f"[red]no tree was written[/red]: {e}", markup=True, highlight=False)
            return False
        note = f" (a practice tree: {len(waived)} rule(s) waived, listed in its documentation/README.md)" \
            if waived else ""
        self.console.print(f"wrote {final}{note}", highlight=False)
        return all(rec.status in DONE_STATUSES for n, rec in self.state.runs.items() if n in self.state.plan)

    def check(self) -> bool:
        from .checker import run_checker

        v = run_checker(Path(self.o.checker), self.o.out / "submission", self.rnd.version, self.o.submitter)
        self.console.print(f"official checker ({' '.join(v.command[1:4])}): {'PASSED' if v.passed else 'FAILED'}",
                           highlight=False, markup=False)
        for line in v.errors[:CHECKER_LINES]:
            self.console.print(f"  {line}", highlight=False, markup=False)
        if len(v.errors) > CHECKER_LINES:
            self.console.print(f"  ... and {len(v.errors) - CHECKER_LINES} more", highlight=False, markup=False)
        if not v.passed and self.o.allow_short:
            self.console.print("  (a practice tree fails it by construction: its short runs on synthetic data)",
                               highlight=False, markup=False)
        if v.summary:
            self.console.print(f"  {v.summary}", highlight=False, markup=False)
        return v.passed


def run_campaign(o: CampaignOptions, console) -> int:
    """The campaign O describes, start to end (or --dry-run's plan); 0 if the tree is complete."""
    return Campaign(o, console).run()
