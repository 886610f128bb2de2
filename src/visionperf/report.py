"""`visionperf report DIR`: every run found, on one screen, and the plots that say more.

Reads only what runs leave behind (LoadGen's logs, accuracy.txt, run.json), so it works on any
results directory, including one copied from another machine.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from .atomic import replacing
from .errors import UserError
from . import jsonfile
from .results import METRIC, check_logs_complete, read_result
from .userconf import latency_bound_ms
from .workloads import WORKLOADS



@dataclass
class RunRow:
    path: Path
    workload: str
    scenario: str
    kind: str  # "performance" | "accuracy" | "TEST01" | "TEST04"
    backend: str = "?"
    devices: int | None = None
    model: str = ""  # the model file and the rows it was fed: runs that differ only there look alike otherwise
    metric: float | None = None
    unit: str = ""
    valid: bool | None = None
    latency_ns: dict = field(default_factory=dict)
    accuracy: float | None = None
    per_watt: float | None = None  # samples/s per watt of GPU board power (NVML), where measured
    damaged: list[str] = field(default_factory=list)  # what in the run cannot be read, one line each
    in_tree: bool = False  # a copy in an assembled submission tree


def _silent(what: str) -> None:
    pass


def find(root: Path, say=_silent) -> list[RunRow]:
    """Every run under ROOT (SAY hears each step, for a command's progress)."""
    rows = []
    say(f"looking for runs under {root}")
    for detail in sorted(root.rglob("mlperf_log_detail.txt")):
        d = detail.parent
        say(f"reading {d}")
        parts = d.relative_to(root).parts
        # a run still being written (or one killed mid-way) lives in a .partial-PID directory;
        # hidden entries (lock files, a submission's .closed-* staging) are not runs either
        if any(".partial-" in p or p.startswith(".") for p in parts):
            continue
        workload = next((p for p in parts if p in WORKLOADS), None)
        scenario = next((p for p in parts if p in METRIC), None)
        if not workload or not scenario:
            continue
        kind = "accuracy" if d.name == "accuracy" else next((p for p in parts if p.startswith("TEST")), "performance")
        row = RunRow(d, workload, scenario, kind, in_tree=_in_submission_tree(parts))
        _read_record(row, d / "run.json")
        if kind == "accuracy":
            m = re.search(r"(?:accuracy|mAP)=([\d.]+)%", (d / "accuracy.txt").read_text()) \
                if (d / "accuracy.txt").exists() else None
            row.accuracy = float(m.group(1)) if m else None
        else:
            try:
                check_logs_complete(d)
            except UserError:
                row.damaged.append(f"{d} holds LoadGen logs cut short (its verdict is unknown): rerun that test")
            res = read_result(d, scenario)
            row.metric, row.unit = res.metric, res.unit
            row.valid = None if row.damaged and not res.valid else res.valid
            row.latency_ns = res.latency_ns
        rows.append(row)
    # An assembled submission tree holds copies of runs (without their run.json): beside the
    # runs themselves (a campaign's out folder) they would be every run twice, the copies
    # with backend and devices unknown. Alone (report of a tree), they are what there is.
    if any(not r.in_tree for r in rows):
        rows = [r for r in rows if not r.in_tree]
    return rows


def _in_submission_tree(parts: tuple[str, ...]) -> bool:
    """Whether a run's path (its parts under the report's root) lies in a submission tree's
    DIVISION/SUBMITTER/results/ folder."""
    return any(p in ("closed", "open", "network") and k + 2 < len(parts) and parts[k + 2] == "results"
               for k, p in enumerate(parts))


def _read_record(row: RunRow, run_json: Path) -> None:
    """The run.json columns of ROW; a run.json that is there but not a visionperf record leaves
    them out and says so (a missing one is an older or foreign run, not damage)."""
    if not run_json.exists():
        return
    try:
        rec = jsonfile.load(run_json, "")
        backend, devices = rec["config"]["backend"], rec["config"]["devices"]
        per_watt = (rec.get("power") or {}).get("samples_per_s_per_watt")
        if not isinstance(backend, str) or not isinstance(devices, (int, type(None))) or \
                not isinstance(per_watt, (int, float, type(None))):
            raise TypeError
        row.backend, row.devices, row.per_watt = backend, devices, per_watt
        row.model = _model_text(rec)
    except (OSError, UserError, KeyError, TypeError, AttributeError):
        row.damaged.append(f"{run_json} is damaged (not the run.json of a visionperf run): backend and "
                           "devices unknown")


def _model_text(rec: dict) -> str:
    """"resnet50_int8 uint8": the model's file name and the dtype of the cache rows it read
    (float32, or the int8/uint8 rows of a quantised model); "" where run.json does not say."""
    model = rec.get("model") if isinstance(rec.get("model"), dict) else {}
    cache = rec.get("cache") if isinstance(rec.get("cache"), dict) else {}
    name = Path(str(model.get("path", ""))).stem
    dtype = cache.get("dtype")
    return f"{name} {dtype}" if name and isinstance(dtype, str) else name


def table(rows: list[RunRow]):
    from rich.table import Table

    t = Table(title="visionperf runs", title_justify="left")
    power = any(r.per_watt is not None for r in rows)  # the column only where some run has it
    cols = ["workload", "scenario", "run", "model", "backend", "dev", "official metric", "p50", "p90", "p99", "result",
            "accuracy (target)"] + (["samples/s/W"] if power else [])
    for col in cols:
        t.add_column(col, justify="right" if col in ("dev", "official metric", "p50", "p90", "p99", "samples/s/W")
                     else "left", overflow="fold" if col == "model" else "ellipsis",
                     no_wrap=col == "samples/s/W")  # a narrow terminal folds the model, not this header
    for r in rows:
        ms = lambda p: f"{r.latency_ns[p] / 1e6:.2f} ms" if p in r.latency_ns else ""  # noqa: E731
        metric = "" if r.metric is None else (f"{r.metric / 1e6:.3f} ms" if r.unit == "ns" else f"{r.metric:,.1f}/s")
        verdict = "" if r.valid is None else ("[green]VALID[/green]" if r.valid else "[red]INVALID[/red]")
        verdict = verdict or ("[red]damaged[/red]" if r.damaged else "")
        acc = ""
        if r.accuracy is not None:
            target = WORKLOADS[r.workload].accuracy_target
            color = "green" if r.accuracy >= target else "red"
            acc = f"[{color}]{r.accuracy:.3f}%[/{color}] ({target}%)"
        extra = [f"{r.per_watt:,.2f}" if r.per_watt is not None else ""] if power else []
        t.add_row(r.workload, r.scenario, r.kind, r.model, r.backend, str(r.devices or ""), metric,
                  ms("50.00"), ms("90.00"), ms("99.00"), verdict, acc, *extra)
    damage = [line for r in rows for line in r.damaged]
    if damage:
        from rich.text import Text

        t.caption = Text("\n".join(f"damaged: {line}" for line in damage), style="red")  # paths: no markup
        t.caption_justify = "left"
    return t


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    with replacing(path, ".png") as tmp:  # savefig picks the format from the extension
        fig.savefig(tmp)
    return path


def plots(rows: list[RunRow], out: Path, say=_silent) -> list[Path]:
    say(f"drawing the plots into {out}")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made = []
    perf = [r for r in rows if r.metric is not None and r.kind == "performance"]
    for r in perf:
        if r.scenario not in ("Server", "SingleStream") or not r.latency_ns:
            continue
        fig, ax = plt.subplots(figsize=(6.4, 4), dpi=120)
        ps = [float(p) for p in r.latency_ns]
        ax.plot(ps, [v / 1e6 for v in r.latency_ns.values()], "o-", label="latency percentile")
        # The bound the run was judged against: its own user.conf over LoadGen's mlperf.conf.
        conf = r.path / "user.conf"
        try:
            bound = latency_bound_ms(conf.read_text(), r.workload, r.scenario) if conf.is_file() else None
        except (OSError, UserError):
            bound = None
        bound = bound or WORKLOADS[r.workload].server_latency_bound_ms
        if r.scenario == "Server" and bound:
            ax.axhline(bound, color="red", linestyle="--", label=f"p99 bound {bound:g} ms")
        ax.set_xlabel("percentile")
        ax.set_ylabel("latency (ms)")
        ax.set_title(f"{r.workload} {r.scenario}, {r.backend} x {r.devices}: latency distribution")
        ax.grid(alpha=0.3)
        ax.legend()
        who = f"{r.backend}_{r.devices}" if r.devices is not None else "unknown"  # no run.json: a copied run
        made.append(_save(fig, out / f"latency_{r.workload}_{r.scenario}_{who}.png"))
        plt.close(fig)
    thr = [r for r in perf if r.unit != "ns"]
    if thr:
        fig, ax = plt.subplots(figsize=(max(6.4, 1.3 * len(thr)), 4.8), dpi=120)
        labels = [f"{r.workload} {r.scenario}\n{r.backend} x{r.devices}" + (f"\n{r.model}" if r.model else "")
                  for r in thr]
        colors = ["tab:green" if r.valid else "tab:red" for r in thr]
        ax.bar(range(len(thr)), [r.metric for r in thr], color=colors)
        for k, r in enumerate(thr):  # the figure itself: a log axis makes heights hard to read
            ax.annotate(f"{r.metric:,.0f}", (k, r.metric), ha="center", va="bottom", fontsize=7)
        ax.set_yscale("log")  # a harness-only run at 50,000/s beside CPU runs at 50/s: both visible
        ax.set_xticks(range(len(thr)), labels, fontsize=7, rotation=30, ha="right")
        ax.set_ylabel("samples per second (log scale)")
        ax.set_title("throughput per run (green VALID, red INVALID)")
        made.append(_save(fig, out / "throughput.png"))
        plt.close(fig)
    groups: dict = {}
    for r in thr:
        groups.setdefault((r.workload, r.scenario, r.backend), []).append(r)
    for (w, s, b), rs in groups.items():
        counts = sorted({r.devices for r in rs if r.devices})
        if len(counts) < 2:
            continue
        best = {n: max(r.metric for r in rs if r.devices == n) for n in counts}
        fig, ax = plt.subplots(figsize=(6.4, 4), dpi=120)
        per1 = best[counts[0]] / counts[0]
        ax.plot(counts, [per1 * n for n in counts], "--", color="grey", label="linear")
        ax.plot(counts, [best[n] for n in counts], "o-", label=s)
        ax.set_xlabel("devices")
        ax.set_ylabel("samples per second")
        ax.set_title(f"{w} {s} ({b}): scaling")
        ax.set_xticks(counts)
        ax.grid(alpha=0.3)
        ax.legend()
        made.append(_save(fig, out / f"scaling_{w}_{s}_{b}.png"))
        plt.close(fig)
    return made


# Each scenario's official metric, as a person reads it: the figure's unit, and the scale from the metric.
_SUMMARY_UNITS = {"Offline": ("samples/s", 1.0), "Server": ("samples/s", 1.0),
                  "SingleStream": ("ms (p90)", 1e-6), "MultiStream": ("ms (p99)", 1e-6)}


def benchmark_summary(rows: list[RunRow], workload: str, out: Path, title: str | None = None) -> Path | None:
    """One figure for one benchmark, readable at a glance: a panel per scenario with its official
    metric for each kind of run (performance, audits), green VALID / red INVALID, and the
    accuracy against its target in the title. None where the benchmark has no performance run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mine = [r for r in rows if r.workload == workload]
    scenarios = [s for s in _SUMMARY_UNITS if any(r.scenario == s and r.metric is not None for r in mine)]
    if not scenarios:
        return None
    fig, axes = plt.subplots(1, len(scenarios), figsize=(3.2 * len(scenarios), 3.6), dpi=120, squeeze=False)
    for ax, s in zip(axes[0], scenarios):
        order = ("performance", "TEST01", "TEST04")
        runs = sorted((r for r in mine if r.scenario == s and r.metric is not None),
                      key=lambda r: order.index(r.kind) if r.kind in order else len(order))
        unit, scale = _SUMMARY_UNITS[s]
        values = [r.metric * scale for r in runs]
        ax.bar(range(len(runs)), values, color=["tab:green" if r.valid else "tab:red" for r in runs])
        for k, v in enumerate(values):
            ax.annotate(f"{v:,.3g}" if v < 100 else f"{v:,.0f}", (k, v), ha="center", va="bottom", fontsize=8)
        ax.set_xticks(range(len(runs)), [r.kind for r in runs], fontsize=8)
        ax.set_title(s, fontsize=10)
        ax.set_ylabel(unit, fontsize=8)
        ax.ticklabel_format(axis="y", style="plain", useOffset=False)
        ax.tick_params(axis="y", labelsize=7)
        ax.margins(y=0.15)
    acc = [r for r in mine if r.kind == "accuracy" and r.accuracy is not None]
    target = WORKLOADS[workload].accuracy_target
    what = f"; accuracy {min(r.accuracy for r in acc):.3f}% (target {target:.3f}%)" if acc else ""
    first = next(r for r in mine if r.metric is not None)
    fig.suptitle(f"{title or workload}: {first.backend} x {first.devices or '?'}, {first.model}{what}\n"
                 "official metric per run (green VALID, red INVALID)", fontsize=10)
    fig.tight_layout()
    path = _save(fig, out / f"summary_{title or workload}.png")
    plt.close(fig)
    return path
