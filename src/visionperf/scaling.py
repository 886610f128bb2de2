"""Scaling studies: throughput against the number of devices, like the paper's Figure 1.

Each point is a full `visionperf run` through the real LoadGen in its own process (LoadGen reads
mlperf.conf once per process). Offline points take LoadGen's own metric; Server points look for
the highest target QPS that stays VALID by bisection between half and all of the devices'
nominal capacity, and are reported beside the Offline figure of the same point
(Server/Offline ratio, the paper's measure of a low-latency harness).
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from .atomic import replacing, write_text
from .children import run_child
from .errors import UserError
from .results import read_result


@dataclass
class Point:
    devices: int
    scenario: str
    metric: float  # samples/s (Server: the highest VALID target's completed rate)
    valid: bool
    linear_pct: float  # of N x the one-device figure
    host_cpu_us_per_sample: float | None
    server_offline_pct: float | None = None
    target_qps: float | None = None
    input_path: str | None = None  # how rows reached the devices: host gather | device fetch


class _NoProgress:
    def run_started(self, what: str) -> None:
        pass

    def run_finished(self) -> None:
        pass


def runs_in_study(devices: list[int], scenario: str, steps: int) -> int:
    """How many `visionperf run`s a study makes: an Offline run per point, and for Server its
    bisection's STEPS runs too."""
    return len(devices) * (1 + (steps if scenario == "Server" else 0))


def _run(base: list[str], devices: int, scenario: str, out: Path, target_qps: float | None = None,
         progress=None) -> tuple:
    # --quiet: the child's output is captured, so a live display there would be work for nothing
    extra = ["--target-qps", f"{target_qps:.1f}"] if target_qps is not None else []
    cmd = [sys.executable, "-m", "visionperf", "run", *base, "--scenario", scenario,
           "--devices", str(devices), "--out", str(out), "--quiet", *extra]
    progress = progress or _NoProgress()
    progress.run_started(f"{devices} device(s): {scenario}" + (f" at {target_qps:,.0f} QPS" if extra else ""))
    p = run_child(cmd)  # bound to this process: it ends if `scale` is stopped
    if p.returncode != 0:
        raise UserError(f"the run for {devices} device(s) failed: {(p.stderr or p.stdout).strip().splitlines()[-1]}")
    workload = base[0]
    d = out / workload / scenario / "performance/run_1"
    res = read_result(d, scenario)
    rec = json.loads((d / "run.json").read_text())
    progress.run_finished()
    return res, rec


def study(workload: str, devices: list[int], scenario: str, out: Path, run_args: list[str],
          steps: int = 5, log=print, progress=None) -> list[Point]:
    """Every point of a study; LOG gets each result as it finishes, PROGRESS (progress.StudyProgress)
    hears each run start and end."""
    out.mkdir(parents=True, exist_ok=True)
    base = [workload, *run_args]
    points: list[Point] = []
    offline1 = server1 = None
    for n in devices:
        res, rec = _run(base, n, "Offline", out / f"d{n}" / "offline", progress=progress)
        offline = res.metric
        offline1 = offline1 or offline / n
        p = Point(n, "Offline", offline, res.valid, 100 * offline / (offline1 * n), rec.get("host_cpu_us_per_sample"),
                  input_path=rec.get("input_path"))
        if scenario == "Server":
            lo, hi, best, best_rec = 0.5 * offline, 1.02 * offline, None, None
            log(f"{n} device(s): Offline {offline:,.1f} samples/s" + ("" if res.valid else " (INVALID)")
                + f"; Server: {steps} steps of bisection between {lo:,.0f} and {hi:,.0f} QPS")
            for _ in range(steps):
                mid = (lo + hi) / 2
                sres, srec = _run(base, n, "Server", out / f"d{n}" / "server", mid, progress)
                p99 = sres.latency_ns.get("99.00")
                log(f"{n} device(s): Server at {mid:,.1f} QPS " + ("VALID" if sres.valid else "INVALID")
                    + (f", p99 {p99 / 1e6:.2f} ms" if p99 else ""))
                if sres.valid:
                    best, best_rec, lo = sres, srec, mid
                else:
                    hi = mid
            if best is None:
                log(f"{n} device(s): no VALID Server run at or above {lo:,.0f} QPS")
                p = Point(n, "Server", 0.0, False, 0.0, None, 0.0, None)
            else:
                server1 = server1 or best.metric / n
                p = Point(n, "Server", best.metric, True, 100 * best.metric / (server1 * n),
                          best_rec.get("host_cpu_us_per_sample"), 100 * best.metric / offline,
                          float(best.detail.get("effective_target_qps") or 0) or None, best_rec.get("input_path"))
        points.append(p)
        log(f"{n} device(s): {p.scenario} {p.metric:,.1f} samples/s ({p.linear_pct:.1f}% of linear)"
            + (f", Server/Offline {p.server_offline_pct:.1f}%" if p.server_offline_pct is not None else ""))
    write_text(out / "scaling.json", json.dumps({"workload": workload, "scenario": scenario, "run_args": run_args,
                                                 "points": [asdict(p) for p in points]}, indent=2) + "\n")
    plot(points, workload, scenario, out / "scaling.png")
    return points


def plot(points: list[Point], workload: str, scenario: str, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = [p.devices for p in points]
    ys = [p.metric for p in points]
    per1 = ys[0] / xs[0] if ys and xs[0] else 0
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    ax.plot(xs, [per1 * x for x in xs], "--", color="grey", label="linear (N x first point)")
    ax.plot(xs, ys, "o-", color="tab:blue", label=f"{scenario} (LoadGen)")
    for p in points:
        ax.annotate(f"{p.linear_pct:.0f}%", (p.devices, p.metric), textcoords="offset points",
                    xytext=(0, 7), ha="center", fontsize=8)
    ax.set_xlabel("devices")
    ax.set_ylabel("samples per second")
    ax.set_title(f"{workload} {scenario}: throughput against devices")
    return save_plot(fig, ax, xs, path)


def save_plot(fig, ax, xs: list[int], path: Path) -> Path:
    """A scaling plot finished as every study's is (a tick per point, grid, legend) and written
    whole to PATH (.png)."""
    import matplotlib.pyplot as plt

    ax.set_xticks(xs)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    with replacing(path, ".png") as tmp:  # savefig picks the format from the extension
        fig.savefig(tmp)
    plt.close(fig)
    return path
