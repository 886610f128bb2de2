"""What the live display costs: `visionperf run --backend null` (the harness alone, at its ceiling)
on a pseudo-terminal, with the live display and with --quiet, interleaved (ABBA), repeated;
medians and their ratio (issue 16 asks for at least 0.99).

1. Offline, batch 8, 2 devices, a target above any rate: result_samples_per_second;
2. Server far above the ceiling (the queue only grows): result_completed_samples_per_sec, what
   the engine and LoadGen complete per second; the display also keeps the latency histogram;
3. Server at a rate it sustains: p99 latency (each sample's histogram add, made visible).

4. (first) the same LoadGen tests, Offline and Server, in one process, the display switched on
   and off every half second inside each test: neighbouring windows see the same machine, so
   its drift (which moves separate tests by +-10% here) cancels out; then many short tests
   with and without the display, interleaved;
5. the display thread's own CPU time, in this process, on a real engine; and what it adds to the
   hot path (benchmarks/live_counters.cc, built against engine.h): together, a bound on its
   cost that does not depend on the machine's noise.

    python benchmarks/progress_overhead.py [--repeats 6] [--duration 3] [--offline-qps 1e7]
        [--server-qps 1e6] [--server-valid-qps 2e5] [--skip-server] [--tests 12] [--test-s 1.5]
        [--skip-runs] [--alt-tests 10] [--alt-test-s 3] [--window-s 0.5] [--json OUT]
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import pty
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import time
from pathlib import Path

from baselines import resnet50_fixture


def on_pty(cmd: list[str], cols: int = 160) -> tuple[int, str, float]:
    """CMD on a pseudo-terminal, as at a terminal (so the live display is drawn); its output is
    read and dropped as a terminal would show it. Returns (exit status, output's tail, the
    CPU seconds the process used, every thread)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, cols, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR", "COLUMNS")}
    p = subprocess.Popen(cmd, stdin=slave, stdout=slave, stderr=slave, env={**env, "TERM": "xterm-256color"})
    os.close(slave)
    tail = b""
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:
            break
        if not data:
            break
        tail = (tail + data)[-4000:]
    os.close(master)
    _, status, usage = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    return p.returncode, tail.decode("utf-8", "replace"), usage.ru_utime + usage.ru_stime


def trial(scenario: str, qps: float, duration: float, fx: dict, work: Path, live: bool):
    """One run; returns (official metric, p99 ms, the process's CPU microseconds per sample)."""
    from visionperf.results import read_result

    out = Path(tempfile.mkdtemp(dir=work, prefix="run-"))
    cmd = [sys.executable, "-m", "visionperf", "run", fx["workload"], "--scenario", scenario, "--backend", "null",
           "--devices", "2", "--batch-size", "8", "--target-qps", str(qps), "--duration", str(duration),
           "--model", fx["model"], "--dataset", fx["dataset"], "--cache", fx["cache"], "--out", str(out)]
    if not live:
        cmd.append("--quiet")
    rc, tail, cpu_s = on_pty(cmd)
    if rc != 0:
        sys.exit(f"{' '.join(cmd)} failed ({rc}):\n{tail}")
    d = out / fx["workload"] / scenario / "performance/run_1"
    res = read_result(d, scenario)
    samples = sum(s["samples"] for s in json.loads((d / "run.json").read_text())["device_stats"])
    return res.metric, res.latency_ns.get("99.00", 0) / 1e6, cpu_s / samples * 1e6


def _null_engine(devices: int = 2):
    """An engine of DEVICES null devices (the harness alone) over small rows, samples loaded."""
    import numpy as np

    from visionperf.sut import NativeDevice, SystemUnderTest, tensor

    class Post:
        def engine_spec(self):
            return ("classify", tensor(np.int64, ()), 0)

        def output_shapes(self, batch, workload):
            return [((batch,), np.int64)]

    devs = [NativeDevice("null", f"null{k}", (), 0, 8, 2, (3, 4, 4), np.dtype(np.float32)) for k in range(devices)]
    sut = SystemUnderTest(devs, np.zeros((1024, 3, 4, 4), np.float32), [()], [0] * devices, Post(), None, 8)
    return sut


def _terminal(sink):
    from rich.console import Console

    return Console(file=sink, force_terminal=True, width=160, color_system="truecolor")


def loadgen_in_process(repeats: int, seconds: float, scenario: str, qps: float, work: Path) -> dict[str, list[float]]:
    """LoadGen tests on one engine of two null devices, in this process, with the live display
    drawing on a terminal (into /dev/null) and without, interleaved ABBA: no process start-up
    between them, so tests side by side see the same machine and its drift mostly cancels out.
    The official metric of each test (Offline samples/s; Server completed samples/s)."""
    from visionperf.progress import RunDisplay, RunPlan, RunWatch
    from visionperf.results import read_result

    sut = _null_engine()
    sut.start(0.003 if scenario == "Server" else 0.0, throughput_only=scenario == "Offline")
    n = 1.1 * seconds * qps if scenario == "Offline" else seconds * qps
    plan = RunPlan(scenario, "performance", seconds, 1 if scenario == "Offline" else int(n), int(n), qps,
                   0.015 if scenario == "Server" else None, 0.99, ("null0", "null1"))
    out: dict[str, list[float]] = {"live": [], "quiet": []}
    key = f"resnet50.{scenario}"
    with open(os.devnull, "w") as sink:
        for r in range(repeats):
            for arm in (("live", "quiet") if r % 2 == 0 else ("quiet", "live")):
                d = Path(tempfile.mkdtemp(dir=work, prefix=f"{scenario}-{arm}-"))
                # every setting the test needs: LoadGen reads mlperf.conf on its first test only
                (d / "user.conf").write_text("\n".join([
                    f"{key}.target_qps = {qps}", f"{key}.min_duration = {int(seconds * 1000)}",
                    f"{key}.min_query_count = 1", f"{key}.performance_sample_count_override = 1024",
                    f"{key}.target_latency = 15"]) + "\n")
                with RunWatch(RunDisplay(_terminal(sink), quiet=arm == "quiet"), sut, plan):
                    sut.run_test(d / "user.conf", "resnet50", scenario, "performance", d, d / "audit.config",
                                 1024, 1024)
                out[arm].append(read_result(d, scenario).metric)
                shutil.rmtree(d)
    sut.stop()
    return out


def alternating(tests: int, seconds: float, window_s: float, scenario: str, qps: float, work: Path) -> list[float]:
    """The display switched on and off every WINDOW_S inside each LoadGen test (in this process,
    two null devices), and the engine's own count of completed samples read at each switch:
    pairs of neighbouring windows, one with the display and one without (their order alternates,
    so a trend in the machine's speed cancels), see the machine within a second of each other,
    where separate tests see it seconds or minutes apart. Returns each pair's ratio (with /
    without) of samples completed per second. The first windows and the last of a test are left
    out (LoadGen starting, catching up and draining)."""
    import threading

    from visionperf.progress import RunDisplay, RunPlan, RunWatch

    sut = _null_engine()
    sut.start(0.003 if scenario == "Server" else 0.0, throughput_only=scenario == "Offline")
    n = 1.1 * seconds * qps if scenario == "Offline" else seconds * qps
    plan = RunPlan(scenario, "performance", seconds, 1 if scenario == "Offline" else int(n), int(n), qps,
                   0.015 if scenario == "Server" else None, 0.99, ("null0", "null1"))
    key = f"resnet50.{scenario}"
    ratios: list[float] = []

    def completed() -> tuple[int, float]:
        return sum(sut.live()[0]), time.monotonic()

    with open(os.devnull, "w") as sink:
        for t in range(tests):
            d = Path(tempfile.mkdtemp(dir=work, prefix=f"alt-{scenario}-"))
            (d / "user.conf").write_text("\n".join([
                f"{key}.target_qps = {qps}", f"{key}.min_duration = {int(seconds * 1000)}",
                f"{key}.min_query_count = 1", f"{key}.performance_sample_count_override = 1024",
                f"{key}.target_latency = 15"]) + "\n")
            test = threading.Thread(target=sut.run_test, args=(d / "user.conf", "resnet50", scenario, "performance",
                                                               d, d / "audit.config", 1024, 1024))
            test.start()
            time.sleep(window_s)  # LoadGen starting
            windows: list[tuple[bool, float]] = []
            k = 0
            while test.is_alive():
                on = (k % 4) in ((0, 3) if t % 2 == 0 else (1, 2))  # ABBA over each two pairs
                watch = RunWatch(RunDisplay(_terminal(sink)), sut, plan) if on else None
                c0, t0 = completed()
                if watch:
                    watch.__enter__()
                test.join(window_s)
                if watch:
                    watch.__exit__(None, None, None)
                c1, t1 = completed()
                if test.is_alive():  # a window cut short by the test's end, or its drain, is left out
                    windows.append((on, (c1 - c0) / (t1 - t0)))
                k += 1
            # LoadGen generates its queries before issuing any (windows of nothing), and the first
            # windows of a Server test catch up on what was scheduled meanwhile: both left out
            windows = [w for w in windows if w[1] > 0][2:-1]
            if os.environ.get("VP_DEBUG"):
                print(scenario, [('+' if o else '-') + f'{r:,.0f}' for o, r in windows])
            for (on_a, a), (on_b, b) in zip(windows[0::2], windows[1::2]):
                if on_a != on_b and a > 0 and b > 0:
                    ratios.append(a / b if on_a else b / a)
            shutil.rmtree(d)
    sut.stop()
    return ratios


def display_cpu(seconds: float) -> tuple[float, float]:
    """The display thread's own CPU time, measured in this process: a real engine (two null
    devices, live latency on) read and drawn on a terminal console (into /dev/null) for SECONDS.
    Returns (CPU ms per second of test, CPU ms per redraw)."""
    from visionperf.progress import REFRESH_S, RunDisplay, RunPlan, RunWatch

    sut = _null_engine()
    sut.start(0.002)
    plan = RunPlan("Server", "performance", 600.0, 10**8, 10**8, 2e5, 0.015, 0.99, ("null0", "null1"))
    with open(os.devnull, "w") as sink, RunWatch(RunDisplay(_terminal(sink)), sut, plan) as w:
        time.sleep(seconds)
    sut.stop()
    return w.cpu_s / seconds * 1e3, w.cpu_s / (seconds / REFRESH_S) * 1e3


def hot_path_ns() -> dict | None:
    """benchmarks/live_counters.cc built against the engine's own header and run: nanoseconds per
    latency histogram add and per counter update (None without a C++ compiler or LoadGen's headers)."""
    root = Path(__file__).resolve().parents[1]
    loadgen = sorted((root / "build").glob("*/loadgen/mlcommons_loadgen-*"))
    cxx = shutil.which(os.environ.get("CXX", "c++"))
    if not cxx or not loadgen:
        return None
    exe = Path(tempfile.mkdtemp(prefix="vp-live-")) / "live_counters"
    subprocess.run([cxx, "-O3", "-std=c++17", "-pthread", f"-I{root / 'engine/src'}", f"-I{loadgen[0]}",
                    f"-I{root / 'src/visionperf/include'}", str(root / "benchmarks/live_counters.cc"), "-o", str(exe)],
                   check=True)
    return json.loads(subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout)


def median_ci(xs: list[float], level: float = 0.95) -> tuple[float, float]:
    """A distribution-free confidence interval for the median of XS: the order statistics the
    binomial distribution of "how many fall below the median" puts around it (no assumption of
    normal noise: this machine's is not)."""
    from math import comb

    xs, n = sorted(xs), len(xs)
    if n < 6:
        return float("nan"), float("nan")
    cdf, k = 0.0, 0
    while True:  # the largest k with P(B(n, 1/2) < k) <= (1 - level) / 2
        p = comb(n, k) / 2**n
        if cdf + p > (1 - level) / 2:
            break
        cdf += p
        k += 1
    k = max(k, 1)
    return xs[k - 1], xs[n - k]


def summary(arms: dict[str, list[float]]) -> str:
    """Medians of each arm, their ratio, and the median of the ratios of the pairs run side by
    side (each pair saw the same machine, so that one is the less sensitive to its drift), with
    its 95% interval."""
    live, quiet = statistics.median(arms["live"]), statistics.median(arms["quiet"])
    ratios = [x / y for x, y in zip(arms["live"], arms["quiet"])]
    lo, hi = median_ci(ratios)
    return (f"median live {live:,.2f}   quiet {quiet:,.2f}   live/quiet {live / quiet:.4f}   "
            f"median of paired ratios {statistics.median(ratios):.4f} (95% interval {lo:.4f}-{hi:.4f}, "
            f"{len(ratios)} pairs)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=6)
    ap.add_argument("--duration", type=float, default=3.0)
    ap.add_argument("--offline-qps", type=float, default=1e7, help="above the rate (LoadGen holds 1.1 x Q x D)")
    ap.add_argument("--server-qps", type=float, default=1e6, help="above the ceiling: the completed rate is it")
    ap.add_argument("--server-valid-qps", type=float, default=2e5, help="a rate it sustains: its p99")
    ap.add_argument("--skip-server", action="store_true")
    ap.add_argument("--skip-runs", action="store_true", help="only the in-process measures (4, 5)")
    ap.add_argument("--tests", type=int, default=12, help="in-process LoadGen tests per arm")
    ap.add_argument("--test-s", type=float, default=1.5, help="their min_duration")
    ap.add_argument("--alt-tests", type=int, default=10, help="tests with the display switched on and off inside")
    ap.add_argument("--alt-test-s", type=float, default=3.0, help="their min_duration")
    ap.add_argument("--window-s", type=float, default=0.5, help="how long the display stays on, or off")
    ap.add_argument("--json")
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="vp-progress-"))
    results: dict = {}
    for scenario, qps in (("Offline", a.offline_qps), ("Server", a.server_qps)):
        if scenario == "Server" and a.skip_server:
            continue
        ratios = alternating(a.alt_tests, a.alt_test_s, a.window_s, scenario, qps, work)
        results[f"alternating {scenario}"] = ratios
        lo, hi = median_ci(ratios)
        print(f"LoadGen {scenario} at {qps:,.0f} QPS on 2 null devices in one process, the display on and off every "
              f"{a.window_s:g} s inside {a.alt_tests} x {a.alt_test_s:g} s tests: completed samples/s with/without, "
              f"median of {len(ratios)} neighbouring pairs {statistics.median(ratios):.4f} (95% interval {lo:.4f}-"
              f"{hi:.4f})", flush=True)
    for scenario, qps in (("Offline", a.offline_qps), ("Server", a.server_qps)):
        if scenario == "Server" and a.skip_server or a.tests == 0:
            continue
        got = loadgen_in_process(a.tests, a.test_s, scenario, qps, work)
        results[f"in-process {scenario}"] = got
        print(f"LoadGen {scenario} at {qps:,.0f} QPS on 2 null devices in one process, {a.tests} x {a.test_s:g} s "
              f"tests per arm, interleaved:\n  {summary(got)}", flush=True)
    per_s, per_draw = display_cpu(10.0)
    print(f"the display thread's own CPU (engine read + drawn on a terminal, in-process, 10 s): {per_s:.2f} ms "
          f"per second ({per_s / 10:.3f}% of one core), {per_draw:.3f} ms per redraw\n", flush=True)
    results["display_cpu_ms_per_s"] = per_s
    ns = hot_path_ns()
    if ns:
        results["hot_path_ns"] = ns
        print(f"the hot path (live_counters.cc on engine.h): a latency histogram add {ns['live_add_ns']:.1f} ns per "
              f"sample ({ns['live_add_2threads_ns']:.1f} ns with two threads on one lane); a counter update "
              f"{ns['relaxed_counter_ns']:.2f} ns as Relaxed<>, {ns['plain_counter_ns']:.2f} ns as the plain field")
        # what both cost at the Server ceiling, as a share of the machine's CPUs
        rate = statistics.median(results["in-process Server"]["quiet"]) if "in-process Server" in results else 6e5
        cost = per_s / 1e3 + rate * ns["live_add_2threads_ns"] * 1e-9
        cores = len(os.sched_getaffinity(0))
        print(f"  at {rate:,.0f} samples/s the display costs {cost * 1e3:.1f} ms of CPU per second: "
              f"{cost / cores * 100:.2f}% of this machine's {cores} CPUs: with it, where the CPUs are the limit, "
              f"the throughput is at least {1 - cost / cores:.4f} of that without it\n", flush=True)
    if a.skip_runs:
        if a.json:
            Path(a.json).write_text(json.dumps(results, indent=2))
        return
    fx = resnet50_fixture(work, count=1024)
    # (run, scenario, offered QPS, the figures kept: index into trial()'s answer)
    cases = [("Offline", "Offline", a.offline_qps, {"samples/s": 0, "CPU us/sample": 2})]
    if not a.skip_server:
        cases += [(f"Server offered {a.server_qps:,.0f} QPS", "Server", a.server_qps,
                   {"completed samples/s": 0, "CPU us/sample": 2}),
                  (f"Server at {a.server_valid_qps:,.0f} QPS", "Server", a.server_valid_qps,
                   {"p99 ms": 1, "CPU us/sample": 2})]
    runs = {f"{run}: {fig}": {"live": [], "quiet": []} for run, _, _, figs in cases for fig in figs}
    print(f"visionperf run {fx['workload']} --backend null --devices 2 --batch-size 8 --duration {a.duration:g} "
          "--target-qps Q on a pseudo-terminal: the live display against --quiet", flush=True)
    for r in range(a.repeats):
        order = ("live", "quiet") if r % 2 == 0 else ("quiet", "live")  # ABBA: drift hits both alike
        for run, scenario, qps, figs in cases:
            for arm in order:
                got = trial(scenario, qps, a.duration, fx, work, arm == "live")
                for fig, k in figs.items():
                    runs[f"{run}: {fig}"][arm].append(got[k])
        print(f"repeat {r + 1}: " + "; ".join(f"{n} live {v['live'][-1]:,.2f} quiet {v['quiet'][-1]:,.2f}"
                                              for n, v in runs.items()), flush=True)
    print(f"\nmedians of {a.repeats} ({a.duration:g} s runs, interleaved)")
    for name, v in runs.items():
        print(f"  {name:45s} {summary(v)}")
    if a.json:
        Path(a.json).write_text(json.dumps({**results, "runs": runs}, indent=2))


if __name__ == "__main__":
    main()
