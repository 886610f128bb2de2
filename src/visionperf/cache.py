"""The offline-preprocessed store: one memory-mappable array per dataset plus a manifest.

Preprocessing (decode, resize, crop, normalise) is allowed offline by the MLPerf rules and is
far too slow to do at run time, so `run` reads rows from here. A cache is a directory:

    manifest.json   workload, shape, dtype, layout, preprocessing settings, source hash
    data.npy        the rows, in dataset order (np.load(..., mmap_mode="r"))

`data.npy` is written under a temporary name and renamed, and the manifest is written last,
so a directory without a manifest is never mistaken for a finished cache. A cache whose
manifest does not match the run (other workload, dtype, layout, sources or settings) is
refused, never silently used.
"""

from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .datasets import ImageNetVal, preprocess_one
from .errors import UserError
from .workloads import Workload, get_workload

FORMAT_VERSION = 1
CHUNK = 64  # images per work unit handed to a worker process


def default_cache_root() -> Path:
    if os.environ.get("VISIONPERF_CACHE"):
        return Path(os.environ["VISIONPERF_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "visionperf"


def source_hash(dataset: ImageNetVal) -> str:
    """Names, labels and sizes of the source images: a changed dataset gives a new hash."""
    h = hashlib.sha256()
    for name, label in zip(dataset.files, dataset.labels.tolist()):
        size = dataset.root.joinpath(name).stat().st_size
        h.update(f"{name}\t{label}\t{size}\n".encode())
    return h.hexdigest()


def expected_manifest(workload: Workload, dataset: ImageNetVal, dtype: str, layout: str) -> dict:
    return {
        "format": FORMAT_VERSION,
        "workload": workload.name,
        "count": len(dataset),
        "shape": [len(dataset), *workload.row_shape(layout)],
        "dtype": dtype,
        "layout": layout,
        "quantization": None,  # float32 rows; int8 caches record scale and zero point here
        "preprocessing": workload.preprocessing.settings(),
        "source_hash": source_hash(dataset),
        "synthetic_dataset": dataset.synthetic,
    }


def _settings_key(manifest: dict) -> str:
    keyed = {k: manifest[k] for k in ("workload", "dtype", "layout", "preprocessing", "source_hash", "format")}
    return hashlib.sha256(json.dumps(keyed, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class Cache:
    path: Path
    manifest: dict
    data: np.ndarray  # read-only memmap, shape manifest["shape"]

    @property
    def workload(self) -> Workload:
        return get_workload(self.manifest["workload"])


def _mismatches(found: dict, wanted: dict) -> list[str]:
    keys = ("format", "workload", "shape", "dtype", "layout", "quantization", "preprocessing", "source_hash")
    return [k for k in keys if found.get(k) != wanted.get(k)]


def open_cache(path: Path, wanted: dict | None = None) -> Cache:
    manifest_path = path / "manifest.json"
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, ValueError) as e:
        raise UserError(f"{manifest_path} is unreadable ({e}): delete {path} and rerun to rebuild it") from None
    if wanted is not None:
        bad = _mismatches(manifest, wanted)
        if bad:
            detail = ", ".join(f"{k}: cache has {manifest.get(k)!r}, run needs {wanted.get(k)!r}"
                               if k != "source_hash" else "source images differ" for k in bad)
            raise UserError(
                f"cache {path} does not match this run ({detail}): point --cache elsewhere "
                "or delete it to rebuild"
            )
    try:
        data = np.load(path / "data.npy", mmap_mode="r")
    except (OSError, ValueError) as e:
        raise UserError(f"{path / 'data.npy'} is unreadable ({e}): delete {path} and rerun") from None
    if list(data.shape) != manifest["shape"] or str(data.dtype) != manifest["dtype"]:
        raise UserError(f"{path / 'data.npy'} does not match its manifest: delete {path} and rerun")
    return Cache(path, manifest, data)


def _preprocess_chunk(args: tuple) -> tuple[int, np.ndarray]:
    workload_name, root, files, start, layout, dtype = args
    workload = get_workload(workload_name)
    rows = np.stack([preprocess_one(workload, Path(root) / f, layout) for f in files])
    return start, rows.astype(dtype, copy=False)


def build_cache(path: Path, workload: Workload, dataset: ImageNetVal, dtype: str, layout: str,
                manifest: dict, workers: int | None = None) -> Cache:
    """Preprocess every image of DATASET into PATH, using a process pool, then publish it."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    path.mkdir(parents=True, exist_ok=True)
    partial = path / "data.npy.partial"
    out = np.lib.format.open_memmap(partial, mode="w+", dtype=np.dtype(dtype), shape=tuple(manifest["shape"]))
    jobs = [
        (workload.name, str(dataset.root), dataset.files[s : s + CHUNK], s, layout, dtype)
        for s in range(0, len(dataset), CHUNK)
    ]
    workers = workers or os.cpu_count() or 1
    columns = (TextColumn("preprocessing {task.description}"), BarColumn(),
               TextColumn("{task.completed}/{task.total} images"), TimeRemainingColumn())
    with Progress(*columns, transient=True) as progress:
        task = progress.add_task(workload.name, total=len(dataset))
        if workers == 1 or len(jobs) == 1:
            results = map(_preprocess_chunk, jobs)
            for start, rows in results:
                out[start : start + len(rows)] = rows
                progress.advance(task, len(rows))
        else:
            with ProcessPoolExecutor(max_workers=workers) as pool:
                for start, rows in pool.map(_preprocess_chunk, jobs):
                    out[start : start + len(rows)] = rows
                    progress.advance(task, len(rows))
    out.flush()
    del out
    os.replace(partial, path / "data.npy")
    tmp = path / "manifest.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    os.replace(tmp, path / "manifest.json")
    return open_cache(path, manifest)


def ensure_cache(workload: Workload, dataset: ImageNetVal, cache_arg: str | Path | None,
                 dtype: str = "float32", layout: str = "NCHW", log=print) -> Cache:
    """The cache for this run: reuse a matching one, refuse a mismatched one, else build it.

    CACHE_ARG is either a cache directory (it holds manifest.json) or a root under which each
    distinct (workload, dtype, layout, sources, settings) gets its own subdirectory.
    """
    wanted = expected_manifest(workload, dataset, dtype, layout)
    given = Path(cache_arg) if cache_arg else default_cache_root()
    if (given / "manifest.json").exists():
        return open_cache(given, wanted)
    path = given / f"{workload.name}-{dtype}-{layout.lower()}-{_settings_key(wanted)}"
    if (path / "manifest.json").exists():
        cache = open_cache(path, wanted)
        log(f"cache: reusing {path}")
        return cache
    log(f"cache: preprocessing {len(dataset)} images into {path}")
    return build_cache(path, workload, dataset, dtype, layout, wanted)
