"""What each benchmark of a campaign runs on (its model file and dataset), from `--model
[BENCH=]FILE` / `--dataset [BENCH=]DIR` or a `--config` JSON file, and the fingerprints that
tell a resumed campaign whether they changed."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from .. import jsonfile
from ..accuracy import file_sha256
from ..errors import UserError
from ..jsonfile import JsonFileError


@dataclass(frozen=True)
class BenchInputs:
    model: str
    dataset: str


def parse_pairs(values: list[str], option: str, benchmarks: list[str]) -> dict[str, str]:
    """`[BENCH=]VALUE` options as benchmark -> value; a bare VALUE is for every benchmark."""
    out: dict[str, str] = {}
    for v in values or []:
        bench, sep, value = v.partition("=")
        if sep and bench in benchmarks:
            out[bench] = value
        elif sep and "/" not in bench and not os.path.exists(v):
            raise UserError(f"{option} {v}: {bench} is not one of --benchmarks ({', '.join(benchmarks)}): "
                            f"write {option} BENCH=PATH with one of them")
        else:
            out.update({b: v for b in benchmarks})
    return out


def resolve_inputs(benchmarks: list[str], models: list[str], datasets: list[str],
                   config: str | None) -> dict[str, BenchInputs]:
    """Each benchmark's model and dataset: the options, else the --config file's
    {"BENCH": {"model": FILE, "dataset": DIR}}; refused naming what is missing."""
    from_file: dict = {}
    if config:
        try:
            from_file = jsonfile.load(config, "fix the file")
        except JsonFileError as e:
            raise UserError(str(e)) from None
        except OSError as e:
            raise UserError(f"cannot read --config {config}: {e.strerror}") from None
        if not isinstance(from_file, dict) or not all(isinstance(v, dict) for v in from_file.values()):
            raise UserError(f'{config}: expected {{"BENCH": {{"model": FILE, "dataset": DIR}}, ...}}')
    model = parse_pairs(models, "--model", benchmarks)
    dataset = parse_pairs(datasets, "--dataset", benchmarks)
    out = {}
    for b in benchmarks:
        m = model.get(b) or from_file.get(b, {}).get("model")
        d = dataset.get(b) or from_file.get(b, {}).get("dataset")
        missing = [o for o, v in (("--model", m), ("--dataset", d)) if not v]
        if missing:
            raise UserError(f"{b} has no {' or '.join(missing)}: pass {missing[0]} {b}=PATH "
                            f"(or a --config file with {b}'s model and dataset)")
        out[b] = BenchInputs(str(Path(m).resolve()), str(Path(d).resolve()))
    return out


def model_sha256(path: str) -> str:
    try:
        return file_sha256(path)
    except OSError as e:
        raise UserError(f"cannot read --model {path}: {e.strerror}: check the path") from None


def dataset_fingerprint(root: str) -> str:
    """sha256 over every file under ROOT (relative name, size, modification time): a dataset
    whose images or lists changed gives another value. Stat only, no reading."""
    h = hashlib.sha256(str(Path(root).resolve()).encode())
    if not os.path.isdir(root):
        raise UserError(f"--dataset {root} is not a directory: check the path")
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for f in sorted(filenames):
            p = os.path.join(dirpath, f)
            try:
                st = os.stat(p)
            except OSError:
                continue
            h.update(f"{os.path.relpath(p, root)}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
    return h.hexdigest()
