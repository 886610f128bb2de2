"""YOLO: the MLCommons reference (`yolo_loadgen.py`, Ultralytics predict one sample at a time)
against `visionperf run yolo`, side by side on this machine's CPU, repeated.

Same model, same images: the oracle's random-weight yolo11n (`make oracle` writes it) as `.pt`
for the reference, its dynamic-shape ONNX export from that `.pt` for visionperf; a COCO-safe
folder (`visionperf sample-data coco`, the safe licences kept, in the annotation file's order),
which both read in the same QSL order. Offline samples/s and SingleStream p90 (the observed
90th percentile and LoadGen's early-stopping estimate), each the median of the repeats; the
runs alternate reference / visionperf so that a change in the machine's load hits both.

The reference runs in .venv-oracle (Ultralytics, PyTorch, mlcommons-loadgen 6.0.17 from the
registry) from a scratch copy of MLCommons inference's
`vision/classification_and_detection/yolo/yolo_loadgen.py`, not from this tree. One change is
made to that copy: the line forcing a 600 s min_duration in performance mode is dropped, so the
user.conf this script writes sets a short test for both (the scenario's minimum duration is
LoadGen's `min_duration`, here --duration seconds). Its Offline target_qps is set from its own
SingleStream mean latency (it runs one sample at a time), visionperf's by its own warm-up.
The reference decodes and letterboxes inside the timed test; visionperf's preprocessing is in
its cache, untimed, as the rules allow ("sample-independent pre-processing").

    python benchmarks/yolo_reference.py --reference /tmp/yolo-ref/.../yolo_loadgen.py
        [--oracle-run .venv-oracle/run] [--duration 20] [--repeats 3] [--images 128]
        [--scenarios SingleStream,Offline] [--work DIR] [--variant l] [--min-queries N]
        [--visionperf-arg=--devices --visionperf-arg=2]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ORACLE_PYTHON = ROOT / ".venv-oracle" / "bin" / "python"
SAFE_LICENSES = {4, 5, 6, 7, 8}
MIN_DURATION_LINE = re.compile(r"^\s*settings\.min_duration_ms\s*=\s*600000\s*$", re.M)


def safe_dataset(root: Path, count: int) -> Path:
    """ROOT/val2017_safe + ROOT/annotations/instances_val2017.json: `visionperf sample-data
    coco` images under the safe licences, in the annotation file's order (made once)."""
    ann = root / "annotations" / "instances_val2017.json"
    if ann.exists():
        return root
    full = root / "full"
    subprocess.run([sys.executable, "-m", "visionperf", "sample-data", "coco", "--out", str(full),
                    "--count", str(count)], check=True, capture_output=True)
    data = json.loads((full / "annotations" / "instances_val2017.json").read_text())
    keep = [im for im in data["images"] if im.get("license") in SAFE_LICENSES]
    ids = {im["id"] for im in keep}
    (root / "val2017_safe").mkdir(parents=True, exist_ok=True)
    for im in keep:
        shutil.copyfile(full / "val2017" / im["file_name"], root / "val2017_safe" / im["file_name"])
    data["images"] = keep
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] in ids]
    ann.parent.mkdir(parents=True, exist_ok=True)
    ann.write_text(json.dumps(data))
    shutil.rmtree(full)
    return root


def reference_copy(src: Path, dest: Path) -> Path:
    """yolo_loadgen.py copied into DEST, its forced 600 s min_duration line dropped."""
    text = src.read_text()
    patched, n = MIN_DURATION_LINE.subn("        pass  # min_duration: from user.conf (benchmarks/yolo_reference.py)", text)
    if n != 1:
        sys.exit(f"{src}: expected one `settings.min_duration_ms = 600000` line, found {n}: is this "
                 "MLCommons inference's yolo_loadgen.py?")
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "yolo_loadgen.py").write_text(patched)
    return dest / "yolo_loadgen.py"


def summary_result(log_dir: Path, scenario: str) -> dict:
    """The figures of one LoadGen test from its detail log (both sides use LoadGen 6.0.17)."""
    from visionperf.results import read_result

    r = read_result(log_dir, scenario)
    out = {"valid": r.valid, "reasons": r.reasons}
    if scenario == "Offline":
        out["samples_per_s"] = r.metric
    else:
        out["p90_ms"] = r.latency_ns["90.00"] / 1e6
        out["p90_early_stopping_ms"] = r.metric / 1e6 if r.metric else None  # 0: too few queries to say
        out["mean_ms"] = r.detail.get("result_mean_latency_ns", 0) / 1e6
    return out


def run_reference(script: Path, model: Path, data: Path, scenario: str, duration: float, target_qps: float,
                  out: Path, min_queries: int | None) -> dict:
    """One performance test of the reference (yolo_loadgen.py) in .venv-oracle."""
    out.mkdir(parents=True, exist_ok=True)
    conf = out / "user.conf"
    ms = int(duration * 1000)
    conf.write_text(f"yolo.{scenario}.min_duration = {ms}\n"
                    f"yolo.Offline.target_qps = {target_qps:.3f}\n"
                    f"yolo.SingleStream.target_latency = {max(1, int(1000 / target_qps))}\n"
                    + (f"yolo.{scenario}.min_query_count = {min_queries}\n" if min_queries else ""))
    env = dict(os.environ, YOLO_OFFLINE="true", YOLO_AUTOINSTALL="false", PIP_NO_INDEX="1",
               YOLO_CONFIG_DIR=str(out / "ultralytics-config"))
    cmd = [str(ORACLE_PYTHON), str(script), "--model", str(model), "--dataset-path", str(data / "val2017_safe"),
           "--annotation-file", str(data / "annotations" / "instances_val2017.json"), "--scenario", scenario,
           "--PerformanceOnly", "--user_conf", str(conf), "--output", str(out / "logs")]
    p = subprocess.run(cmd, cwd=out, env=env, capture_output=True, text=True)
    (out / "stdout.txt").write_text(p.stdout + p.stderr)
    if not (out / "logs" / "mlperf_log_detail.txt").exists():
        sys.exit(f"the reference wrote no LoadGen log ({p.returncode}); see {out / 'stdout.txt'}")
    return summary_result(out / "logs", scenario)


def run_visionperf(model: Path, data: Path, scenario: str, duration: float, cache: Path, out: Path,
                   extra: list[str], min_queries: int | None) -> dict | str:
    """One performance test of `visionperf run yolo`; its refusal's line where it refuses."""
    if min_queries:
        conf = out.parent / f"{out.name}.user.conf"
        conf.write_text(f"yolo.{scenario}.min_query_count = {min_queries}\n")
        extra = [*extra, "--user-conf", str(conf)]
    cmd = [sys.executable, "-m", "visionperf", "run", "yolo", "--scenario", scenario, "--mode", "performance",
           "--backend", "onnxruntime", "--model", str(model), "--dataset", str(data), "--duration", str(duration),
           "--cache", str(cache), "--out", str(out), "--quiet", *extra]
    p = subprocess.run(cmd, capture_output=True, text=True)
    out.mkdir(parents=True, exist_ok=True)
    (out / "stdout.txt").write_text(p.stdout + p.stderr)
    logs = out / "yolo" / scenario / "performance" / "run_1"
    if p.returncode != 0 or not (logs / "mlperf_log_detail.txt").exists():
        lines = [ln for ln in (p.stderr or p.stdout).splitlines() if ln.strip()]
        return lines[-1] if lines else f"exit {p.returncode}"
    return summary_result(logs, scenario)


def median(rows: list[dict], key: str) -> float | None:
    vals = [r[key] for r in rows if isinstance(r, dict) and r.get(key) is not None]
    return statistics.median(vals) if vals else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reference", type=Path, required=True,
                    help="MLCommons inference's vision/classification_and_detection/yolo/yolo_loadgen.py")
    ap.add_argument("--oracle-run", type=Path, default=ROOT / ".venv-oracle" / "run",
                    help="what `make oracle` wrote: yolo11n.pt and yolo11n_dynamic.onnx (for --variant l: "
                         "oracle/ultralytics_side.py --variant l --models-only --out THERE, in .venv-oracle)")
    ap.add_argument("--variant", default="n", help="yolo11 variant whose models --oracle-run holds")
    ap.add_argument("--duration", type=float, default=20.0, help="seconds: each test's min_duration")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--images", type=int, default=128, help="sample-data coco images (about 60%% are safe)")
    ap.add_argument("--scenarios", default="SingleStream,Offline")
    ap.add_argument("--work", type=Path, default=None, help="keep every log here (default: a temporary folder)")
    ap.add_argument("--min-queries", type=int, default=None,
                    help="min_query_count for both, in each scenario (LoadGen's default 100: queries in "
                         "SingleStream, samples in Offline); lower for yolo11l")
    ap.add_argument("--visionperf-arg", action="append", default=[],
                    help="passed to `visionperf run`, one token each (repeatable): --visionperf-arg=--devices "
                         "--visionperf-arg=2")
    args = ap.parse_args()
    run_dir = args.oracle_run.resolve()  # the reference runs in its own folder
    pt, onnx = run_dir / f"yolo11{args.variant}.pt", run_dir / f"yolo11{args.variant}_dynamic.onnx"
    for f in (pt, onnx, ORACLE_PYTHON):
        if not f.exists():
            sys.exit(f"{f} is missing: run `make oracle` first")
    if not args.reference.is_file():
        sys.exit(f"{args.reference}: no such file: copy yolo_loadgen.py out of a clone of MLCommons inference")
    work = (args.work or Path(tempfile.mkdtemp(prefix="yolo-reference-"))).resolve()
    data = safe_dataset(work / "coco-safe", args.images)
    script = reference_copy(args.reference, work / "reference")
    count = len(list((data / "val2017_safe").iterdir()))
    print(f"reference: {args.reference} (sha256 {hashlib.sha256(args.reference.read_bytes()).hexdigest()[:16]}), "
          f"in {ORACLE_PYTHON.parent.parent.name}")
    print(f"model: {pt.name} (reference), {onnx.name} (visionperf); {count} COCO-safe images; "
          f"{args.duration:g} s tests, {args.repeats} repeats; {os.cpu_count()} CPUs; logs in {work}")
    print(f"visionperf run options: {' '.join(args.visionperf_arg) or '(defaults)'}; load average at start "
          f"{os.getloadavg()[0]:.1f}")

    results = {}
    # The reference's Offline target_qps: LoadGen issues target_qps x min_duration x 1.1 samples,
    # so a target below its real rate ends the test before min_duration (INVALID). Set high
    # from its SingleStream mean (one sample at a time, as its Offline runs), raised by each
    # Offline result.
    ref_rate = 10.0
    for scenario in [s.strip() for s in args.scenarios.split(",")]:
        ref, vp = [], []
        for i in range(args.repeats):
            t = time.perf_counter()
            r = run_reference(script, pt, data, scenario, args.duration, ref_rate, work / f"ref-{scenario}-{i}",
                              args.min_queries)
            ref.append(r)
            if scenario == "SingleStream" and r.get("mean_ms"):
                ref_rate = max(ref_rate if i else 0.0, 2.0 * 1000.0 / r["mean_ms"])
            if scenario == "Offline" and r.get("samples_per_s"):
                ref_rate = max(ref_rate, 1.5 * r["samples_per_s"])
            v = run_visionperf(onnx, data, scenario, args.duration, work / "cache", work / f"vp-{scenario}-{i}",
                               args.visionperf_arg, args.min_queries)
            vp.append(v)
            print(f"  {scenario} #{i + 1}: reference {fmt(r, scenario)}; visionperf {fmt(v, scenario)} "
                  f"({time.perf_counter() - t:.0f} s)", flush=True)
        results[scenario] = (ref, vp)
    (work / "results.json").write_text(json.dumps({s: {"reference": r, "visionperf": v}
                                                    for s, (r, v) in results.items()}, indent=1))

    print("\nscenario      figure                      reference   visionperf   ratio")
    for scenario, (ref, vp) in results.items():
        keys = ([("samples_per_s", "samples/s (median)", True)] if scenario == "Offline" else
                [("p90_ms", "p90 ms (median)", False), ("p90_early_stopping_ms", "p90 early-stopping ms", False)])
        for key, label, higher_better in keys:
            a, b = median(ref, key), median(vp, key)
            ratio = (b / a if higher_better else a / b) if a and b else None
            print(f"{scenario:13s} {label:27s} {num(a):>9s}   {num(b):>10s}   "
                  f"{(f'{ratio:.2f}x' if ratio else '-'):>5s}")
        bad = [f"{side} {sum(not x['valid'] for x in rows if isinstance(x, dict))}"
               for side, rows in (("reference", ref), ("visionperf", vp))]
        print(f"{'':13s} INVALID repeats (counted in the medians): {', '.join(bad)}")
    print(f"load average at the end {os.getloadavg()[0]:.1f} (other processes on these cores slow both sides)")
    refused = {v for _, vp in results.values() for v in vp if isinstance(v, str)}
    for why in refused:
        print(f"visionperf did not run: {why}")
    print("ratio: visionperf's advantage (throughput ratio, or latency reference / visionperf); "
          "target: Offline >= 3x")


def fmt(r, scenario: str) -> str:
    if isinstance(r, str):
        return "refused"
    tag = "" if r["valid"] else " INVALID"
    if scenario == "Offline":
        return f"{r['samples_per_s']:.2f} samples/s{tag}"
    return f"p90 {r['p90_ms']:.1f} ms{tag}"


def num(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


if __name__ == "__main__":
    main()
