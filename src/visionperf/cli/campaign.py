"""`visionperf campaign`: every run a round requires for some benchmarks, resumable, then the tree."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from ..errors import Terminated, UserError
from .options import add_max_hours, add_quiet, batch_size, device_count, duration_s, int_range, path
from .tables import console


def add_campaign_args(sub) -> None:
    s = sub.add_parser("campaign", help="plan, run (resuming) and assemble a round's whole submission in one command")
    s.add_argument("--round", default=None, help="the MLPerf Inference round (default: v6.1)")
    s.add_argument("--benchmarks", required=True, help="the round's benchmarks, comma-separated: resnet50,yolo-99")
    s.add_argument("--model", action="append", default=[], metavar="[BENCH=]FILE",
                   help="a benchmark's model (repeat per benchmark; a bare FILE is for every benchmark)")
    s.add_argument("--dataset", action="append", default=[], metavar="[BENCH=]DIR",
                   help="a benchmark's dataset (repeat per benchmark; a bare DIR is for every benchmark)")
    s.add_argument("--config", metavar="FILE",
                   help='JSON {"BENCH": {"model": FILE, "dataset": DIR}} for what --model/--dataset do not give')
    s.add_argument("--backend", default="onnxruntime", help="as `run --backend` (default onnxruntime)")
    s.add_argument("--devices", type=device_count, default=1)
    s.add_argument("--batch-size", type=batch_size)
    s.add_argument("--cache", type=path, help="preprocessed cache dir, as `run --cache` (default: per-user cache)")
    s.add_argument("--system-type", default="edge", choices=("edge", "datacenter,edge"),
                   help="the system type whose scenarios to run (default edge; datacenter,edge adds Server)")
    s.add_argument("--submitter", help="required unless --dry-run")
    s.add_argument("--system", help="the system's name in the tree; required unless --dry-run")
    s.add_argument("--system-json", help="system description fields the machine cannot tell")
    s.add_argument("--out", type=path, required=True,
                   help="OUT/runs: the runs, OUT/submission: the tree, OUT/campaign.json: the state to resume from")
    s.add_argument("--dry-run", action="store_true", help="print the plan and its estimated time; run nothing")
    s.add_argument("--allow-short", action="store_true",
                   help="a practice campaign: waive what short runs on synthetic data must break (with --duration)")
    s.add_argument("--duration", type=duration_s,
                   help="seconds of every performance run and audit (needs --allow-short: the rules need 600)")
    s.add_argument("--max-retries", type=int_range(0, 10), default=2,
                   help="reruns of a run that fails or is INVALID (Server: each one step lower), default 2")
    s.add_argument("--checker", type=path, metavar="DIR",
                   help="a checkout of mlcommons/inference (or its tools/submission): run its submission checker "
                   "on the tree at the end")
    add_max_hours(s)
    add_quiet(s, "live blocks of the runs, nor the campaign's progress lines")
    s.set_defaults(func=cmd_campaign)


def cmd_campaign(a) -> int:
    from ..campaign import CampaignOptions, run_campaign
    from ..campaign.execute import RunOptions
    from ..campaign.inputs import resolve_inputs

    benchmarks = [b.strip() for b in a.benchmarks.split(",") if b.strip()]
    if not benchmarks:
        raise UserError("--benchmarks is empty: name the round's benchmarks, e.g. --benchmarks resnet50,yolo-99")
    if len({b for b in benchmarks if b.startswith("yolo-")}) > 1:
        raise UserError("--benchmarks names yolo-95 and yolo-99: they take the same runs, so choose one "
                        "(yolo-99 where its accuracy reaches 52.866%)")
    if a.duration is not None and a.duration < 600 and not a.allow_short:
        raise UserError(f"--duration {a.duration:g} is shorter than the round's 600 s: add --allow-short for a "
                        "practice campaign, or leave --duration out")
    if not a.dry_run and not (a.submitter and a.system):
        raise UserError("--submitter and --system name the tree the campaign ends with: pass both (or --dry-run)")
    from ..rounds import DEFAULT_ROUND

    o = CampaignOptions(
        round=a.round or DEFAULT_ROUND, benchmarks=benchmarks,
        inputs=resolve_inputs(benchmarks, a.model, a.dataset, a.config),
        run=RunOptions(a.backend, a.devices, a.batch_size, a.duration, a.cache, a.max_hours),
        out=Path(a.out), system_type=a.system_type, submitter=a.submitter, system=a.system,
        system_json=a.system_json, allow_short=a.allow_short, dry_run=a.dry_run, checker=a.checker,
        max_retries=a.max_retries, quiet=a.quiet, command=sys.argv[1:])
    try:
        return run_campaign(o, console(max(120, shutil.get_terminal_size().columns)))
    except KeyboardInterrupt as e:
        code = 128 + e.signum if isinstance(e, Terminated) else 130
        print(f"visionperf: {'terminated' if isinstance(e, Terminated) else 'interrupted'}: the runs finished are "
              f"recorded in {Path(a.out) / 'campaign.json'}: rerun the same command to resume", file=sys.stderr)
        return code
