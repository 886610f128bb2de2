"""One benchmark run, as named steps: the options checked (config), the samples and their cache
(samples), the machine's devices and engine (machine), the warm-up and the targets (warmup),
LoadGen's settings and the batch timeout (settings), the test's expected length (length) and
memory (memory), the output directory (outdir), LoadGen's test (loadgen_test) and what the run
leaves (record).

LoadGen owns time (it issues queries and writes the logs), the QSL (`SampleStore`) owns samples,
the SUT owns compute; this package only wires them together and files the results in the
submission layout. Where the run executes is a Machine: this server by default, or what the
caller opens (the CLI opens a cluster of nodes for --cluster).
"""

from __future__ import annotations

import time

from .config import RunConfig, RunSpec
from .loadgen_test import figures_of_test, run_test
from .machine import Built, LocalMachine, Machine, OpenMachine, build_engine
from .outdir import final_dir, fresh_partial, publish, result_dir, results_claimed
from .record import RunReport, report_run, verify_audit, write_record
from .samples import prepare_samples
from .settings import check_test, start_for_test, write_settings
from .warmup import rate_ceiling, targets, warm_up

__all__ = ["Built", "LocalMachine", "Machine", "OpenMachine", "RunConfig", "RunReport", "RunSpec", "build_engine",
           "result_dir", "run"]


def run(cfg: RunConfig, log=print, display=None, machine: OpenMachine = LocalMachine.open) -> RunReport:
    """One run on the machine MACHINE opens (after the options are checked and the output
    directory is locked); a run that fails or is interrupted anywhere leaves no partial results."""
    spec = cfg.validate()
    with results_claimed(spec), machine(log) as opened:
        return _run_on(spec, opened, log, display)


def _run_on(spec: RunSpec, machine: Machine, log, display) -> RunReport:
    started = time.time()
    notes = spec.first_notes()
    samples = prepare_samples(spec, machine, notes, log)
    built = machine.build(spec, samples.cache, notes, log)
    built.sut.start(throughput_only=spec.scenario == "Offline")
    try:
        warm = warm_up(spec, built, samples.total, machine.round_trip_s)
        overrides = targets(spec, warm, built.devices, samples.total, notes)
        partial = fresh_partial(spec)
        settings = write_settings(spec, partial, overrides, notes)
        memory = check_test(spec, settings, rate_ceiling(built.devices) or warm.rate, samples.total)
        timeout_text = start_for_test(spec, built, settings, warm.batch_time_s, notes)
        log(f"running {spec.workload.name} {spec.scenario} {spec.config.mode} on {machine.where(spec, built)} "
            f"{built.batch_size}" + timeout_text)
        timing = run_test(spec, built, settings, partial, samples.total, display)
    finally:
        built.sut.stop()
    measured = figures_of_test(spec, built, partial, timing)
    final = final_dir(spec)
    report = report_run(spec, built, measured, samples, partial, final, notes, started)
    report.memory_estimate_bytes = memory.total
    write_record(report, spec, samples, built, measured, machine, partial, log)
    publish(partial, final, log)
    report.compliance = verify_audit(spec, final, samples.dataset)
    return report
