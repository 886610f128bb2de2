"""The commands that turn finished runs into results to show: report, submission and accuracy."""

from __future__ import annotations

from pathlib import Path

from .. import jsonfile
from ..errors import UserError
from ..jsonfile import JsonFileError
from .options import add_quiet, path
from .tables import console


def add_report_args(sub) -> None:
    s = sub.add_parser("report", help="a table of every run under DIR, and PNG plots")
    s.add_argument("dir")
    s.add_argument("--plots", type=path, help="where to write the PNGs (default: DIR)")
    add_quiet(s, "word of what it is doing when a step takes more than a second")
    s.set_defaults(func=cmd_report)


def cmd_report(a) -> int:
    import shutil

    from .. import report
    from ..progress import Activity

    root = Path(a.dir)
    if not root.is_dir():
        raise UserError(f"{root} is not a directory: pass the --out directory of your runs")
    con = console(max(150, shutil.get_terminal_size().columns))
    with Activity(con, quiet=a.quiet) as say:
        rows = report.find(root, say)
        if not rows:
            raise UserError(f"no runs found under {root}")
        con.print(report.table(rows))
        out = Path(a.plots or root)
        out.mkdir(parents=True, exist_ok=True)
        for p in report.plots(rows, out, say):
            con.print(f"wrote {p}")
    return 0


def add_submission_args(sub) -> None:
    s = sub.add_parser("submission", help="assemble a closed-division submission tree from runs")
    s.add_argument("--submitter", required=True)
    s.add_argument("--system", required=True)
    s.add_argument("--runs", required=True, help="the --out directory of your runs")
    s.add_argument("--out", type=path, required=True)
    s.add_argument("--system-json", help="system description fields the machine cannot tell")
    s.add_argument("--allow-short", action="store_true",
                   help="practice mode: waive only what a short run on synthetic data must break (duration, "
                   "sample and query counts, early stopping, accuracy coverage and target, synthetic data or "
                   "weights, simulated devices), listing every waived rule in the tree")
    s.add_argument("--round", help="the MLPerf Inference round whose layout and rules to follow (default: v6.1, "
                   "the round of the LoadGen visionperf runs)")
    s.add_argument("--yolo-benchmark", metavar="NAME",
                   help="the benchmark the yolo runs are submitted as, whose mAP target their accuracy must reach: "
                   "yolo-99 (default, 52.866%%) or yolo-95 (50.73%%)")
    add_quiet(s, "word of what it is doing when a step takes more than a second")
    s.set_defaults(func=cmd_submission)


def cmd_submission(a) -> int:
    from ..rounds import DEFAULT_ROUND, benchmarks_of
    from ..submission import assemble
    from ..systems import load_user_json

    user = load_user_json(a.system_json)
    if a.round is None:
        print(f"round {DEFAULT_ROUND}: the round whose seeds the LoadGen visionperf runs (6.0.17) carries "
              "(--round to choose)")
    from ..progress import Activity

    with Activity(console(), quiet=a.quiet) as say:
        final, waived, rnd = assemble(Path(a.runs), Path(a.out), a.submitter, a.system, user, a.allow_short,
                                      a.round, a.system_json, say=say,
                                      chosen={"yolo": a.yolo_benchmark} if a.yolo_benchmark else None)
    for w in waived:
        print(f"waived (--allow-short): {w}")
    if a.yolo_benchmark is None:
        yolo = [d.name for d in (final / "results" / a.system).iterdir() if d.name in benchmarks_of(rnd, "yolo")]
        if yolo:
            print(f"the yolo runs went in as {yolo[0]} (--yolo-benchmark to choose)")
    print(f"wrote {final} (round {rnd.version})" + (" (practice tree: NOT a valid submission; the waived rules are "
                                                    "listed in its documentation/README.md)" if waived else ""))
    return 0


def add_accuracy_args(sub) -> None:
    s = sub.add_parser("accuracy", help="accuracy from any mlperf_log_accuracy.json")
    s.add_argument("workload")
    s.add_argument("--log", required=True)
    s.add_argument("--dataset", required=True)
    s.add_argument("--out", type=path, help="accuracy.txt path (default: beside the log)")
    s.set_defaults(func=cmd_accuracy)


def _run_record(log: str, n_labels: int) -> dict:
    """The run.json a visionperf run leaves beside its log ({} where there is none): it says whether
    the weights were synthetic and which bad images its cache left out (qsl_idx counts only the rest)."""
    record = {}
    run_json = Path(log).with_name("run.json")
    if run_json.exists():
        try:
            record = jsonfile.load(run_json, "")
        except JsonFileError:
            record = None
        cache = record.get("cache", {}) if isinstance(record, dict) else None
        skipped = cache.get("skipped_dataset_indices") or [] if isinstance(cache, dict) else None
        if not isinstance(record, dict) or not isinstance(skipped, list) or not all(
                isinstance(i, int) and 0 <= i < n_labels for i in skipped):
            raise UserError(f"{run_json} (beside the log) is not the run.json of a visionperf run: it tells "
                            "which images the run left out, so restore it, or move the log elsewhere")
    return record


def cmd_accuracy(a) -> int:
    from ..accuracy import top1
    from ..atomic import write_text as write_text_atomic
    from ..datasets import open_dataset
    from ..workloads import get_workload

    import numpy as np

    w = get_workload(a.workload)
    dataset = open_dataset(w, a.dataset)
    labels = dataset.labels
    record = _run_record(a.log, len(labels))
    skipped = record.get("cache", {}).get("skipped_dataset_indices") or []
    if w.task == "classification":
        if skipped:
            labels = np.delete(labels, skipped)
        acc = top1(a.log, labels)
    else:
        from ..accuracy import coco_map
        from ..workloads import coco_label_map

        if skipped:
            raise UserError(f"the run behind {a.log} left bad images out; compute its mAP with the "
                            "dataset it ran on (remove the bad images from the annotation file)")
        acc = coco_map(a.log, dataset, coco_label_map(w))
    out = Path(a.out) if a.out else Path(a.log).with_name("accuracy.txt")
    write_text_atomic(out, acc.text())
    print(acc.text().splitlines()[0])
    if isinstance(record.get("model"), dict) and record["model"].get("synthetic_weights"):
        print("note: the model that wrote this log has synthetic weights: accuracy is meaningless")
    if skipped:
        print(f"note: {len(skipped)} bad image(s) were left out of that run")
    if dataset.synthetic:
        print(f"note: {dataset.root} is a synthetic dataset (random labels)")
    print(f"wrote {out}")
    return 0
