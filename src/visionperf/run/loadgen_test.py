"""LoadGen's test itself: the engine runs it, the live display watches it, NVML samples the GPUs'
board power over it, and the process's CPU time is counted over it alone."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError
from ..power import PowerReading, PowerSampler
from ..progress import RunPlan, RunWatch
from ..results import check_logs_complete
from ..sut import EngineError
from .config import RunSpec
from .machine import Built
from .settings import Settings


@dataclass
class Timing:
    """The test's clocks: wall, CPU and power, taken around StartTest alone."""

    run_s: float  # StartTest to its return
    cpu_s: float  # the process's CPU time over the test, less the display's own thread
    python_cpu_s: float  # the main thread's CPU time (the only one running Python, with native devices)
    power: PowerReading | None  # GPU board power, where NVML sees the devices


@dataclass
class Measured:
    """What the test leaves beside LoadGen's logs."""

    times: Timing
    device_stats: list[dict]
    latency_by_minute: list | None  # with --latency-by-minute


def run_test(spec: RunSpec, built: Built, settings: Settings, partial: Path, total: int, display=None) -> Timing:
    """LoadGen's test on the started engine, its logs into PARTIAL.

    DISPLAY (progress.RunDisplay; None: nothing) watches the test from a thread of its own."""
    cfg, w, sut = spec.config, spec.workload, built.sut
    t_test, cpu0, py0 = time.perf_counter(), os.times(), time.thread_time()
    if cfg.latency_by_minute:
        sut.latency_log_start()
    watch = RunWatch(display, sut, RunPlan.from_settings(settings.loadgen, spec.scenario, cfg.mode,
                                                         built.devices, total))
    # GPU board power over the test alone, where the devices are GPUs NVML can see.
    gpus = [d.pci for d in built.devices if getattr(d, "pci", None)]
    sampler = PowerSampler(gpus) if gpus else None
    try:
        with watch:
            if sampler:
                sampler.start()
            try:
                # An audit.config in the working directory would silently change the run.
                sut.run_test(settings.user_conf, w.name, spec.scenario, cfg.mode, partial,
                             partial / "audit.config", total, min(w.performance_sample_count, total))
            finally:
                power = sampler.stop() if sampler else None
    except EngineError as e:
        raise UserError(str(e)) from None
    run_s, cpu1, py_cpu = time.perf_counter() - t_test, os.times(), time.thread_time() - py0
    # the display's own thread is not the harness's cost per sample
    cpu_s = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system) - watch.cpu_s
    return Timing(run_s, cpu_s, py_cpu, power)


def figures_of_test(spec: RunSpec, built: Built, partial: Path, times: Timing) -> Measured:
    """The stopped engine's figures for the test; one line if it failed, or LoadGen's logs are incomplete."""
    sut = built.sut
    if sut.error():
        raise UserError(f"the run failed: {sut.error()} (every sample it held was failed to LoadGen; "
                        "no results kept)")
    measured = Measured(times, sut.stats(), sut.latency_by_minute() if spec.config.latency_by_minute else None)
    check_logs_complete(partial, spec.config.mode)
    return measured
