"""Runs -> a closed-division submission tree (FACTS.md section 4), checked before it is written.

    closed/<submitter>/systems/<system>.json
    closed/<submitter>/results/<system>/<benchmark>/<scenario>/
        performance/run_1/mlperf_log_{summary,detail}.txt
        accuracy/{mlperf_log_summary.txt, mlperf_log_detail.txt, accuracy.txt,
                  mlperf_log_accuracy.json (truncated to at most 10 KiB)}
        measurements.json  user.conf  README.md
    closed/<submitter>/compliance/<system>/<benchmark>/<scenario>/TEST01|TEST04/...

The tree is built in a temporary directory and renamed into place, so a refused or failed
assembly leaves nothing that looks like a submission.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from .accuracy import file_sha256
from .errors import UserError
from .results import read_detail
from .workloads import WORKLOADS, get_workload

MAX_ACCURACY_LOG = 10 * 1024  # bytes: what the submission keeps of mlperf_log_accuracy.json
MIN_DURATION_MS = 600_000
# Seeds of the current mlperf.conf: a run with other seeds is not comparable.
OFFICIAL_SEEDS = {"qsl_rng_seed": 2085463073848966840, "sample_index_rng_seed": 2747215439041700203,
                  "schedule_rng_seed": 16159082839903944936}

SYSTEM_FIELDS = (
    "submitter", "division", "system_type", "status", "system_name", "number_of_nodes",
    "host_processor_model_name", "host_processors_per_node", "host_processor_core_count",
    "host_processor_frequency", "host_processor_caches", "host_processor_interconnect",
    "host_memory_capacity", "host_storage_type", "host_storage_capacity", "host_networking",
    "host_networking_topology", "host_memory_configuration", "accelerators_per_node",
    "accelerator_model_name", "accelerator_frequency", "accelerator_host_interconnect",
    "accelerator_interconnect", "accelerator_interconnect_topology", "accelerator_memory_capacity",
    "accelerator_memory_configuration", "accelerator_on-chip_memories", "cooling", "hw_notes",
    "framework", "operating_system", "other_software_stack", "sw_notes",
)
# Fields that must not be empty (the checker refuses the system description otherwise).
REQUIRED = ("submitter", "division", "system_type", "status", "system_name", "number_of_nodes",
            "host_processor_model_name", "host_processors_per_node", "host_processor_core_count",
            "host_memory_capacity", "host_storage_type", "host_storage_capacity",
            "accelerators_per_node", "accelerator_model_name", "framework", "operating_system")


def machine_facts(sysfs_root: str = "/") -> dict:
    """What this machine can tell about itself."""
    from .topology import read_topology

    t = read_topology(sysfs_root)
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))
        mem = f"{kb / 1024 ** 2:.0f} GB"
    except (OSError, AttributeError):
        pass
    import onnxruntime

    accs = t.accelerators
    return {
        "number_of_nodes": "1",
        "host_processor_model_name": model,
        "host_processors_per_node": str(len(t.sockets)),
        "host_processor_core_count": str(len(t.cores) // max(1, len(t.sockets))),
        "host_memory_capacity": mem,
        "accelerators_per_node": str(len(accs)),
        "accelerator_model_name": accs[0].name if accs else "N/A (CPU)",
        "operating_system": f"{platform.system()} {platform.release()}",
        "framework": f"visionperf, ONNX Runtime {onnxruntime.__version__}",
    }


def system_description(submitter: str, system: str, user: dict, facts: dict) -> dict:
    desc = {k: "" for k in SYSTEM_FIELDS}
    desc.update({"submitter": submitter, "system_name": system, "division": "closed",
                 "status": "available", "system_type": "datacenter"})
    desc.update({k: v for k, v in facts.items() if v})
    desc.update({k: v for k, v in user.items() if k in SYSTEM_FIELDS})
    unknown = sorted(set(user) - set(SYSTEM_FIELDS))
    if unknown:
        raise UserError(f"the system JSON has unknown field(s) {', '.join(unknown)}: check the names")
    for k in REQUIRED:
        if str(desc.get(k, "")).strip() == "":
            raise UserError(f"system field {k!r} is empty: add it to the JSON given with --system-json")
    return desc


@dataclass
class Found:
    """One benchmark/scenario's runs in a results directory."""

    workload: str
    scenario: str
    performance: Path | None = None
    accuracy: Path | None = None
    compliance: dict = field(default_factory=dict)  # test -> directory


def find_runs(runs: Path) -> list[Found]:
    found = []
    for w in sorted(WORKLOADS):
        for sdir in sorted((runs / w).glob("*")) if (runs / w).is_dir() else []:
            f = Found(w, sdir.name)
            if (sdir / "performance/run_1/mlperf_log_detail.txt").exists():
                f.performance = sdir / "performance/run_1"
            if (sdir / "accuracy/mlperf_log_accuracy.json").exists():
                f.accuracy = sdir / "accuracy"
            for test in ("TEST01", "TEST04"):
                if (sdir / test).is_dir():
                    f.compliance[test] = sdir / test
            if f.performance or f.accuracy:
                found.append(f)
    if not found:
        raise UserError(f"no runs found under {runs}: pass the --out directory of `visionperf run`")
    return found


def check_run(f: Found) -> list[str]:
    """Why this benchmark/scenario may not be submitted (empty: it may)."""
    w = get_workload(f.workload)
    why = []
    if f.performance is None:
        why.append("no performance run")
    else:
        d = read_detail(f.performance / "mlperf_log_detail.txt")
        if d.get("result_validity") != "VALID":
            why.append("the performance run is INVALID")
        if (d.get("effective_min_duration_ms") or 0) < MIN_DURATION_MS:
            why.append(f"shorter than the rules' 600 s (min_duration {d.get('effective_min_duration_ms')} ms)")
        if (d.get("effective_performance_sample_count") or 0) < w.performance_sample_count:
            why.append(f"performance sample count {d.get('effective_performance_sample_count')} is below "
                       f"{w.performance_sample_count}")
        for k, v in OFFICIAL_SEEDS.items():
            if d.get(f"effective_{k}") != v:
                why.append(f"non-default {k}")
    if f.accuracy is None:
        why.append("no accuracy run")
    else:
        text = (f.accuracy / "accuracy.txt").read_text() if (f.accuracy / "accuracy.txt").exists() else ""
        m = re.search(r"(?:accuracy|mAP)=([\d.]+)%", text)
        if not m:
            why.append("no accuracy.txt")
        elif float(m.group(1)) < w.accuracy_target:
            why.append(f"accuracy {m.group(1)}% is below the target {w.accuracy_target}%")
        rec = _run_json(f.accuracy)
        if rec.get("model", {}).get("synthetic_weights"):
            why.append("the model has synthetic weights")
    return why


def _run_json(d: Path) -> dict:
    try:
        rec = json.loads((d / "run.json").read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(rec, dict):
        raise UserError(f"{d / 'run.json'} is not a JSON object (a visionperf run record): "
                        "restore it or rerun that benchmark")
    return rec


def truncate_accuracy_log(src: Path, dst: Path, limit: int = MAX_ACCURACY_LOG) -> None:
    """Keep the log whole if it fits; else its first and last records, as valid JSON.

    MLCommons' truncation keeps the first and last 4 KiB as text (not valid JSON any more);
    this keeps the same two ends but cuts at record boundaries, so the result still parses. The
    hash of the full log goes into accuracy.txt either way.
    """
    if src.stat().st_size <= limit:
        shutil.copyfile(src, dst)
        return
    records = json.loads(src.read_text())
    head, tail = [], []
    budget = limit - 64
    i, j = 0, len(records) - 1
    while i <= j:
        for side in (0, 1):
            if i > j:
                break
            rec = records[i] if side == 0 else records[j]
            cost = len(json.dumps(rec)) + 3
            if cost > budget:
                i = j + 1
                break
            budget -= cost
            if side == 0:
                head.append(rec)
                i += 1
            else:
                tail.insert(0, rec)
                j -= 1
    text = "[\n" + ",\n".join(json.dumps(r) for r in head + tail) + "\n]\n"
    dst.write_text(text)


def _measurements(f: Found) -> dict:
    rec = _run_json(f.performance or f.accuracy)
    model = rec.get("model", {})
    q = (rec.get("cache") or {}).get("quantization")
    return {
        "input_data_types": (rec.get("cache") or {}).get("dtype", "float32"),
        "retraining": "No",
        "starting_weights_filename": Path(model.get("path", "")).name,
        "weight_data_types": "int8" if q else "fp32",
        "weight_transformations": "static post-training quantisation (ONNX Runtime QDQ)" if q else "none",
    }


def check_name(value: str, option: str) -> str:
    """A name from the user that becomes one path component (closed/<submitter>/..., <system>.json):
    refused unless it is a single safe component, so it can never point outside --out."""
    bad = (not value or value in (".", "..") or any(c in value for c in "/\\\0") or value.startswith("-")
           or value != value.strip())
    if bad:
        raise UserError(f"{option} {value!r} is not a usable name: it becomes a directory name, so use "
                        "letters, digits, '.', '_' or '-' (no '/', '\\', '..', and not starting with '-')")
    return value


def assemble(runs: Path, out: Path, submitter: str, system: str, user_system: dict,
             allow_short: bool = False, log=print) -> tuple[Path, list[str]]:
    check_name(submitter, "--submitter")
    check_name(system, "--system")
    found = find_runs(runs)
    waived: list[str] = []
    for f in found:
        why = check_run(f)
        if why and not allow_short:
            raise UserError(f"{f.workload} {f.scenario} cannot be submitted: {'; '.join(why)} "
                            "(--allow-short assembles a practice tree anyway)")
        waived += [f"{f.workload} {f.scenario}: {w}" for w in why]
    desc = system_description(submitter, system, user_system, machine_facts())
    final = out / "closed" / submitter
    tmp = out / f".closed-{submitter}.partial-{os.getpid()}"
    try:
        if tmp.exists():
            shutil.rmtree(tmp)
        (tmp / "systems").mkdir(parents=True)
        (tmp / "systems" / f"{system}.json").write_text(json.dumps(desc, indent=2) + "\n")
        for f in found:
            base = tmp / "results" / system / f.workload / f.scenario
            if f.performance:
                dst = base / "performance/run_1"
                dst.mkdir(parents=True)
                for name in ("mlperf_log_summary.txt", "mlperf_log_detail.txt"):
                    shutil.copyfile(f.performance / name, dst / name)
                shutil.copyfile(f.performance / "user.conf", base / "user.conf")
            if f.accuracy:
                dst = base / "accuracy"
                dst.mkdir(parents=True)
                for name in ("mlperf_log_summary.txt", "mlperf_log_detail.txt"):
                    shutil.copyfile(f.accuracy / name, dst / name)
                full = f.accuracy / "mlperf_log_accuracy.json"
                first = (f.accuracy / "accuracy.txt").read_text().splitlines()[0]
                (dst / "accuracy.txt").write_text(f"{first}\nhash={file_sha256(full)}\n")
                truncate_accuracy_log(full, dst / "mlperf_log_accuracy.json")
            (base / "measurements.json").write_text(json.dumps(_measurements(f), indent=2) + "\n")
            (base / "README.md").write_text(_readme(f, system, waived))
            for test, d in f.compliance.items():
                cdst = tmp / "compliance" / system / f.workload / f.scenario / test
                shutil.copytree(d, cdst, ignore=shutil.ignore_patterns("mlperf_log_trace.json", "run.json"))
                acc = cdst / "accuracy/mlperf_log_accuracy.json"
                if acc.exists():
                    full = d / "accuracy/mlperf_log_accuracy.json"
                    truncate_accuracy_log(full, acc)
        (tmp / "README.md").write_text(_top_readme(submitter, system, found, waived))
    except BaseException:  # a tree is published whole or not at all
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if final.exists():
        shutil.rmtree(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, final)
    return final, waived


def _readme(f: Found, system: str, waived: list[str]) -> str:
    rec = _run_json(f.performance or f.accuracy)
    cfg = rec.get("config", {})
    lines = [f"# {f.workload} {f.scenario} on {system}", "",
             "Run with visionperf, through the MLCommons LoadGen:", "", "```",
             f"visionperf run {f.workload} --scenario {f.scenario} --backend {cfg.get('backend')} "
             f"--devices {cfg.get('devices')} --model MODEL --dataset DATASET --out OUT",
             "```", ""]
    mine = [w for w in waived if w.startswith(f"{f.workload} {f.scenario}:")]
    if mine:
        lines += ["**Practice tree: these rules were waived (--allow-short):**", ""] + [f"- {w}" for w in mine] + [""]
    return "\n".join(lines)


def _top_readme(submitter: str, system: str, found: list[Found], waived: list[str]) -> str:
    lines = [f"# {submitter}: {system}", "", "Assembled by `visionperf submission`.", "",
             "| benchmark | scenario | performance | accuracy | compliance |", "| --- | --- | --- | --- | --- |"]
    for f in found:
        lines.append(f"| {f.workload} | {f.scenario} | {'yes' if f.performance else 'no'} | "
                     f"{'yes' if f.accuracy else 'no'} | {', '.join(f.compliance) or '-'} |")
    if waived:
        lines += ["", "## NOT A VALID SUBMISSION: rules waived with --allow-short", ""] + [f"- {w}" for w in waived]
    return "\n".join(lines) + "\n"
