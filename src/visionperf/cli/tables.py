"""What the commands print beyond a line: the console, a run's summary table, a scaling study's table."""

from __future__ import annotations


def console(width: int | None = None):
    from rich.console import Console

    return Console(highlight=False, soft_wrap=True, width=width)


def print_report(con, r) -> None:
    """One run's summary: result, accuracy, per-device work, compliance, power, where the logs are."""
    from rich.table import Table

    c = r.config
    t = Table(title=f"{c.workload} {c.scenario} {c.mode}", show_header=False, title_justify="left")
    t.add_column(style="bold")
    t.add_column()
    t.add_row("backend", f"{c.backend} x {len(r.plan)} device(s), batch {r.batch_size}"
              + (f", timeout {r.batch_timeout_ms:.3f} ms" if c.scenario == "Server" else ""))
    t.add_row("plan", "; ".join(f"dev{p.index}: cpus {','.join(map(str, p.cpus))}" for p in r.plan))
    if r.result is not None:
        res = r.result
        t.add_row(res.metric_name, res.metric_text())
        verdict = "[green]VALID[/green]" if res.valid else "[red]INVALID[/red]"
        if res.reasons:
            verdict += ": " + "; ".join(res.reasons)
        t.add_row("result", verdict)
        if res.latency_ns:
            t.add_row("latency", ", ".join(f"p{float(k):g} {v / 1e6:.2f} ms" for k, v in res.latency_ns.items()
                                           if k in ("50.00", "90.00", "99.00")))
    if r.accuracy is not None:
        from ..workloads import get_workload

        w = get_workload(c.workload)
        a = r.accuracy
        mark = "meets" if a.percent >= w.accuracy_target else "below"
        what = (f"top-1 {a.percent:.3f}% ({a.good}/{a.total})" if w.task == "classification"
                else f"mAP {a.percent:.3f}% ({a.detections} detections on {a.images} images)")
        t.add_row("accuracy", f"{what}, {mark} target {w.accuracy_target}%")
    run_s = r.run_s or 1.0
    for s in r.device_stats:
        per = 1e6 / max(1, s["samples"])
        t.add_row(s["name"], f"{s['samples']:,} samples in {s['batches']:,} batches, device busy "
                  f"{s['busy_s'] / run_s * 100:.0f}%, "
                  + ("submit (device fetch)" if s.get("input_path") == "device fetch" else "gather and submit")
                  + f" {s['host_s'] * per:.1f} us/sample"
                  + (f", post-processing busy {s['post_s'] / run_s * 100:.1f}% of the run "
                     f"({s['post_s'] * per:.1f} us/sample)" if s["post_s"] else ""))
    for check, ok in r.compliance.items():
        t.add_row(f"{c.compliance} {check}", "[green]TEST PASS[/green]" if ok else "[red]TEST FAIL[/red]"
                  + f" (see {r.log_dir.parent.parent / ('verify_' + check + '.txt')})")
    if r.power:
        per_watt = r.power.get("samples_per_s_per_watt")
        t.add_row("board power", f"{r.power['watts_avg']:,.1f} W average, {r.power['watts_max']:,.1f} W peak (NVML)"
                  + (f", {per_watt:,.2f} samples/s per watt" if per_watt else ""))
    t.add_row("logs", str(r.log_dir))
    con.print(t)
    for n in r.notes:
        con.print(f"[yellow]note:[/yellow] {n}")


def print_scaling(con, points, w, scenario: str, backend: str) -> None:
    """A one-server study's points, and what its last point's host CPU cost means for 16 cards."""
    from rich.table import Table

    from ..backends.simulated import card_rate_for

    t = Table(title=f"{w.name} {scenario} scaling ({backend})", title_justify="left")
    for col in ("devices", "samples/s", "% of linear", "host CPU us/sample", "Server/Offline"):
        t.add_column(col, justify="right")
    for p in points:
        t.add_row(str(p.devices), f"{p.metric:,.1f}", f"{p.linear_pct:.1f}%",
                  f"{p.host_cpu_us_per_sample:.1f}" if p.host_cpu_us_per_sample else "n/a",
                  f"{p.server_offline_pct:.1f}%" if p.server_offline_pct is not None else "")
    con.print(t)
    last = points[-1]
    if last.host_cpu_us_per_sample:
        rate, _ = card_rate_for(w, None)
        cores = 16 * rate * last.host_cpu_us_per_sample / 1e6
        path = f" ({last.input_path})" if last.input_path else ""
        con.print(f"host CPU {last.host_cpu_us_per_sample:.1f} us/sample{path} at {last.devices} device(s): 16 cards at "
                  f"the paper's {rate:,.0f} samples/s each would need about {cores:.1f} cores for the harness")
