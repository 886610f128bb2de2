"""The offline-preprocessed store: one memory-mappable array per dataset plus a manifest.

Preprocessing (decode, resize, crop, normalise, quantise) is allowed offline by the MLPerf rules
and is far too slow to do at run time, so `run` reads rows from here. A finished cache is a
directory holding

    manifest.json   workload, shape, dtype, layout, quantisation, preprocessing settings and
                    their hash, source hash, skipped images
    data.npy        the rows in dataset order (np.load(..., mmap_mode="r"))

The build works in chunks through a process pool. Workers write their rows straight into a
preallocated `build/data.npy.partial` (no pixels cross a pipe) and mark each chunk done only
after its rows are flushed, so an interrupted build keeps every finished chunk and a rerun does
only the rest. The array is renamed into place and the manifest written last: a directory
without a manifest is never mistaken for a finished cache. A cache whose manifest does not
match the run (other workload, dtype, layout, quantisation, sources or settings) is refused,
never silently used.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import shutil
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import jsonfile
from .atomic import write_text
from .children import die_with
from .datasets import ImageNetVal, preprocess_one
from .errors import UserError
from .jsonfile import JsonFileError
from .locks import LOCK_NAME, Busy, DirLock
from .workloads import Workload, get_workload

FORMAT_VERSION = 2
MAX_PIXEL = np.float32(255)  # the largest magnitude a preprocessed value has (raw pixels)
MAX_CHUNK = 64  # images per work unit on big datasets


def default_chunk(count: int) -> int:
    """Small datasets get small chunks so every worker stays busy to the end. Depends on the
    count only, so a resumed build cuts the same chunks."""
    return int(min(MAX_CHUNK, max(4, count // 64)))
DTYPES = ("float32", "int8", "uint8")
LAYOUTS = ("NCHW", "NHWC")


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


def _hash(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


# -- quantisation ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Quantization:
    """Affine quantisation of the model input: q = saturate(round_half_even(x / scale) + zero_point)."""

    scale: float
    zero_point: int
    dtype: str  # "uint8" | "int8"

    def __post_init__(self) -> None:
        # x / scale in float32, as QuantizeLinear divides: a scale that is not a normal float32, or
        # so small that a pixel's value divided by it is infinite, saturates every row.
        scale = np.float32(self.scale) if isinstance(self.scale, (int, float)) else np.float32("nan")
        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
            ok = np.isfinite(scale) and scale >= np.finfo(np.float32).tiny and np.isfinite(MAX_PIXEL / scale)
        if not ok:
            raise UserError(f"input scale {self.scale!r} (--scale, or the model's) is not a positive, normal, "
                            "finite float32 that a pixel value can be divided by: pass the model's input "
                            "scale (or --model INT8_MODEL)")

    def to_json(self) -> dict:
        return {"scale": self.scale, "zero_point": self.zero_point, "dtype": self.dtype}

    def apply(self, x: np.ndarray) -> np.ndarray:
        """What ONNX QuantizeLinear computes, bit for bit: float32 division, ties to even."""
        info = np.iinfo(self.dtype)
        q = np.rint(x.astype(np.float32) / np.float32(self.scale)) + self.zero_point
        return np.clip(q, info.min, info.max).astype(self.dtype)


def expected_manifest(workload: Workload, dataset: ImageNetVal, dtype: str, layout: str,
                      quantization: Quantization | None = None) -> dict:
    if dtype not in DTYPES:
        raise UserError(f"unknown dtype {dtype!r}: choose one of {', '.join(DTYPES)}")
    if layout not in LAYOUTS:
        raise UserError(f"unknown layout {layout!r}: choose NCHW or NHWC")
    raw_pixels = dtype == workload.input_dtype  # e.g. SSD-MobileNet's uint8 input: no quantisation
    if raw_pixels:
        quantization = None
    elif dtype != "float32" and (quantization is None or quantization.dtype != dtype):
        raise UserError(f"a {dtype} cache needs the model's input scale and zero point: "
                        "pass --model INT8_MODEL (or --scale and --zero-point)")
    pre = workload.preprocessing.settings()
    return {
        "format": FORMAT_VERSION,
        "workload": workload.name,
        "count": len(dataset),
        "shape": [len(dataset), *workload.row_shape(layout)],
        "dtype": dtype,
        "layout": layout,
        "quantization": quantization.to_json() if quantization and dtype != "float32" else None,
        "preprocessing": pre,
        "preprocessing_hash": _hash(pre),
        "source_hash": source_hash(dataset),
        "source_root": str(dataset.root),
        "synthetic_dataset": dataset.synthetic,
        "skipped": [],
    }


# The manifest fields that identify a cache: they name its directory and must match the run.
_KEYED = ("format", "workload", "count", "dtype", "layout", "quantization", "preprocessing_hash", "source_hash")


def _settings_key(manifest: dict) -> str:
    return _hash({k: manifest[k] for k in _KEYED})[:16]


@dataclass
class Cache:
    path: Path
    manifest: dict
    data: np.ndarray  # read-only memmap, rows of the images kept, in dataset order
    dataset_index: np.ndarray  # row -> index in the dataset's list (skipped images left out)

    @property
    def workload(self) -> Workload:
        return get_workload(self.manifest["workload"])

    @property
    def skipped(self) -> list:
        return self.manifest.get("skipped", [])

    def describe(self) -> str:
        m = self.manifest
        q = m.get("quantization")
        quant = f", scale {q['scale']:.6g}, zero point {q['zero_point']}" if q else ""
        return f"{self.path} ({m['dtype']} {m['layout']}{quant}, {len(self.data)} rows)"


def _mismatches(found: dict, wanted: dict) -> list[str]:
    return [k for k in _KEYED if found.get(k) != wanted.get(k)]


def _explain(found: dict, wanted: dict, keys: list[str]) -> str:
    names = {"source_hash": "source images differ", "preprocessing_hash": "preprocessing settings differ"}
    return ", ".join(names.get(k) or f"{k}: cache has {found.get(k)!r}, run needs {wanted.get(k)!r}" for k in keys)


FINGERPRINT_BLOCKS, FINGERPRINT_BLOCK = 64, 4096


def data_fingerprint(path: Path) -> str:
    """blake2b of a data file's size and 64 evenly spaced 4 KiB blocks (the first and the last
    included): read in microseconds at every run, where hashing a 7.5 GB cache would take
    seconds. It catches a file cut short, replaced, or overwritten in a region as large as the
    spacing of its blocks (size / 64); not a single flipped bit between them."""
    size = path.stat().st_size
    h = hashlib.blake2b(str(size).encode(), digest_size=16)
    with open(path, "rb") as f:
        for k in range(FINGERPRINT_BLOCKS):
            f.seek(max(0, (size - FINGERPRINT_BLOCK) * k // (FINGERPRINT_BLOCKS - 1)))
            h.update(f.read(FINGERPRINT_BLOCK))
    return h.hexdigest()


def open_cache(path: Path, wanted: dict | None = None) -> Cache:
    manifest_path = path / "manifest.json"
    try:
        manifest = jsonfile.load(manifest_path, f"delete {path} and rerun to rebuild it")
    except OSError as e:
        raise UserError(f"{manifest_path} is unreadable ({e}): delete {path} and rerun to rebuild it") from None
    if not isinstance(manifest, dict):
        raise UserError(f"{manifest_path} is not a JSON object (a visionperf cache manifest): "
                        f"delete {path} and rerun to rebuild it")
    if wanted is not None:
        bad = _mismatches(manifest, wanted)
        if bad:
            raise UserError(f"cache {path} does not match this run ({_explain(manifest, wanted, bad)}): "
                            "point --cache elsewhere or delete it to rebuild")
    try:
        data = np.load(path / "data.npy", mmap_mode="r")
    except (OSError, ValueError) as e:
        raise UserError(f"{path / 'data.npy'} is unreadable ({e}): delete {path} and rerun") from None
    try:
        skipped = {int(i) for i, _, _ in manifest.get("skipped", [])}
        count = manifest["count"]
        if not isinstance(count, int) or count != len(data) + len(skipped):
            raise UserError(f"{path / 'data.npy'} does not match its manifest: delete {path} and rerun")
        keep = np.setdiff1d(np.arange(count, dtype=np.intp), np.fromiter(skipped, np.intp, len(skipped)))
        shape = [len(keep), *manifest["shape"][1:]]
        dtype_ok = str(data.dtype) == manifest["dtype"]
    except (KeyError, TypeError, ValueError) as e:
        raise UserError(f"{manifest_path} is not a complete visionperf cache manifest (bad or missing "
                        f"field {e}): delete {path} and rerun to rebuild it") from None
    if list(data.shape) != shape or not dtype_ok:
        raise UserError(f"{path / 'data.npy'} does not match its manifest: delete {path} and rerun")
    if not len(keep):
        raise UserError(f"cache {path} holds no rows (every image was left out as bad): delete it, "
                        "fix the dataset and rerun")
    stored = manifest.get("data_fingerprint")
    if stored is not None and stored != data_fingerprint(path / "data.npy"):
        raise UserError(f"{path / 'data.npy'} was changed after the cache was built (its fingerprint differs "
                        f"from {manifest_path}): delete {path} and rerun to rebuild it")
    return Cache(path, manifest, data, keep)


# -- the build ---------------------------------------------------------------------------------

_worker_out: np.ndarray | None = None


def _worker_init(partial: str, parent: int | None = None) -> None:
    global _worker_out
    if parent is not None:
        die_with(parent)
    import cv2

    cv2.setNumThreads(1)  # one process per core; OpenCV's own threads would oversubscribe
    _worker_out = np.load(partial, mmap_mode="r+")


def _preprocess_chunk(job: tuple) -> tuple[int, int, list]:
    """Preprocess one chunk into the shared partial array; returns (chunk, images, bad)."""
    chunk, start, workload_name, root, files, layout, quant, skip_bad = job
    workload = get_workload(workload_name)
    q = Quantization(**quant) if quant else None
    out = _worker_out
    bad = []
    for k, name in enumerate(files):
        try:
            row = preprocess_one(workload, Path(root) / name, layout)
        except UserError as e:
            if not skip_bad:
                raise
            bad.append([start + k, name, str(e)])
            out[start + k] = 0
            continue
        out[start + k] = q.apply(row) if q else row
    # No msync here: rows written to a shared file mapping are in the page cache the moment
    # they are stored, so they outlive this process if it is killed, and an msync per chunk
    # would make the pool wait on the disk (it halved throughput). The parent flushes once.
    return chunk, len(files), bad


def _progress():
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from . import progress

    return Progress(TextColumn("preprocessing {task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[rate]}"), TimeRemainingColumn(), transient=False,
                    disable=progress.quiet())


def build_cache(path: Path, workload: Workload, dataset: ImageNetVal, manifest: dict,
                workers: int | None = None, chunk: int | None = None, skip_bad: bool = False,
                log=print, lock_wait: float | None = None, refuse_foreign: bool = False) -> Cache:
    """Preprocess every image of DATASET into PATH (resuming a build left there), then publish.

    PATH is locked for the build (locks.DirLock): a second builder, or a run that finds the
    cache being built, is refused with the builder's pid (or waits up to LOCK_WAIT seconds).
    REFUSE_FOREIGN (`preprocess --out`, a directory the user named): a directory holding anything
    a build does not make is refused, judged under the lock, so that a build publishing at that
    moment is never mistaken for someone else's files."""
    lock = DirLock(path, busy="cache {dir} is being built by another visionperf (pid {pid}: {cmd}): "
                              "wait for it to finish and rerun")
    try:
        lock.acquire(lock_wait)
    except Busy:
        raise
    except OSError as e:
        raise UserError(f"cannot write the cache {path}: {e.strerror}") from None
    try:
        if (path / "manifest.json").exists():  # another builder finished it while we waited
            cache = open_cache(path, manifest)
            log(f"cache: using {cache.describe()}")
            return cache
        if refuse_foreign and _foreign(path):
            raise UserError(f"{path} exists and is not a visionperf cache (it holds {', '.join(_foreign(path)[:3])}): "
                            "choose an empty or new --out")
        return _build_cache(path, workload, dataset, manifest, workers, chunk, skip_bad, log)
    finally:
        lock.release()


# Plan fields that describe the inputs rather than the settings: a change there restarts an
# unfinished build instead of refusing it.
_INPUTS = frozenset({"source_hash", "count", "shape"})


def _plan_changes(old, plan: dict) -> set[str]:
    """The manifest fields (and "chunk") in which plan OLD differs from PLAN; empty when OLD is
    unreadable or of another form."""
    if not isinstance(old, dict) or not isinstance(old.get("manifest"), dict):
        return set()
    a, b = old["manifest"], plan["manifest"]
    changed = {k for k in a.keys() | b.keys() if a.get(k) != b.get(k)}
    if old.get("chunk") != plan["chunk"]:
        changed.add("chunk")
    return changed


def _build_cache(path: Path, workload: Workload, dataset: ImageNetVal, manifest: dict,
                 workers: int | None, chunk: int | None, skip_bad: bool, log) -> Cache:
    chunk = chunk or default_chunk(len(dataset))
    build = path / "build"
    done_dir = build / "done"
    partial = build / "data.npy.partial"
    plan = {"manifest": {k: v for k, v in manifest.items() if k != "skipped"}, "chunk": chunk}
    restart = None
    if (build / "build.json").exists():
        try:
            old = jsonfile.load(build / "build.json", "")
        except JsonFileError:
            old = None
        if old != plan:
            changed = _plan_changes(old, plan)
            if changed and not changed <= _INPUTS:
                raise UserError(f"{build} holds an unfinished build with other settings "
                                f"({', '.join(sorted(changed))}): delete it (or pass another --out) "
                                "to start this one")
            # Same settings, other inputs (an image fixed as the error said, images added), or
            # an unreadable plan: nothing in it can be trusted to match, so start over.
            restart = ("the source images changed since" if changed else "could not read the plan of")
    if not restart and (build / "build.json").exists() and not partial.exists():
        if (path / "data.npy").exists():
            # killed while publishing: the array was renamed into place, the manifest not written
            os.replace(path / "data.npy", partial)
        else:
            restart = "found no array in"
    if restart or not (build / "build.json").exists():
        if restart:
            log(f"restarting the build from scratch: {restart} the unfinished build in {build}")
        if build.exists():
            shutil.rmtree(build)
        done_dir.mkdir(parents=True)
        np.lib.format.open_memmap(partial, mode="w+", dtype=np.dtype(manifest["dtype"]),
                                  shape=tuple(manifest["shape"]))
        _reserve(partial)
        write_text(build / "build.json", json.dumps(plan, sort_keys=True))

    n = len(dataset)
    starts = list(range(0, n, chunk))
    finished = set()
    for p in done_dir.glob("chunk-*.json"):
        try:
            if not jsonfile.load(p, "")["bad"]:
                finished.add(int(p.stem.split("-")[1]))
        except (OSError, JsonFileError, ValueError, KeyError, TypeError):
            pass  # unreadable: do the chunk again
    # A chunk that skipped bad images (--skip-bad) is done again: they may have been fixed since
    # (a fix of the same size leaves the source hash as it was).
    todo = [c for c in range(len(starts)) if c not in finished]
    quant = manifest["quantization"]
    jobs = [(c, starts[c], workload.name, str(dataset.root), dataset.files[starts[c]: starts[c] + chunk],
             manifest["layout"], quant, skip_bad) for c in todo]
    done_images = sum(min(chunk, n - starts[c]) for c in finished)
    if finished:
        log(f"resuming: {len(finished)} of {len(starts)} chunks already done")
    workers = max(1, min(workers or os.cpu_count() or 1, len(jobs) or 1))
    t0 = time.perf_counter()
    fresh = 0
    if jobs:
        # spawn, not fork: this process has threads (the progress bar's, ONNX Runtime's), and a
        # child forked while one of them holds a lock can hang forever (a forked child would
        # also keep the cache's lock). Not forkserver either: the workers' parent would be the
        # forkserver, which outlives a main process killed by SIGKILL, and so would they. With
        # spawn each worker is this process's child and dies with it (children.die_with); the
        # resource tracker then sees its last writer close and exits too.
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_worker_init,
                                 initargs=(str(partial), os.getpid())) as pool, _progress() as progress:
            task = progress.add_task(workload.name, total=n, completed=done_images, rate="")
            pending = {pool.submit(_preprocess_chunk, j) for j in jobs}
            try:
                while pending:
                    finished_now, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for fut in finished_now:
                        c, count, bad = fut.result()  # a worker's UserError surfaces here
                        marker = done_dir / f"chunk-{c:06d}.json"
                        write_text(marker, json.dumps({"bad": bad}))
                        fresh += count
                        rate = fresh / (time.perf_counter() - t0)
                        progress.update(task, advance=count, rate=f"{rate:,.0f} img/s")
            except BaseException:
                for fut in pending:
                    fut.cancel()
                raise
    elapsed = time.perf_counter() - t0
    np.load(partial, mmap_mode="r+").flush()
    bad = []
    for p in sorted(done_dir.glob("chunk-*.json")):
        bad += jsonfile.load(p, f"delete {build} and rerun")["bad"]
    return _publish(path, build, partial, manifest, bad, fresh, elapsed, log)


def _reserve(path: Path) -> None:
    """Allocate PATH's blocks now. A sparse array on a disk that fills up kills whichever process
    first writes an unallocated page (SIGBUS: a worker's death, a broken pool); reserved here,
    a full disk is an OSError naming the file, before any work."""
    import errno

    fd = os.open(path, os.O_RDWR)
    try:
        os.posix_fallocate(fd, 0, os.fstat(fd).st_size)
    except OSError as e:
        if e.errno in (errno.EOPNOTSUPP, errno.EINVAL):
            return  # a file system that cannot reserve: the array stays sparse
        path.unlink(missing_ok=True)
        raise OSError(e.errno, e.strerror, str(path)) from None
    finally:
        os.close(fd)


def _publish(path: Path, build: Path, partial: Path, manifest: dict, bad: list, fresh: int,
             elapsed: float, log) -> Cache:
    final = path / "data.npy"
    if len(bad) >= manifest["count"]:
        shutil.rmtree(build, ignore_errors=True)  # every chunk is redone next time anyway
        raise UserError(f"every one of the {manifest['count']} images is bad (the first: {bad[0][2]}): "
                        "a cache without rows is not published; check --dataset")
    if bad:
        # Skipped images are left out of the array, never kept as zero rows.
        keep = np.setdiff1d(np.arange(manifest["count"]), [b[0] for b in bad])
        src = np.load(partial, mmap_mode="r")
        compact = build / "data.npy.compact"
        out = np.lib.format.open_memmap(compact, mode="w+", dtype=src.dtype, shape=(len(keep), *src.shape[1:]))
        _reserve(compact)
        for s in range(0, len(keep), 256):
            out[s : s + 256] = src[keep[s : s + 256]]
        out.flush()
        del out, src
        os.replace(compact, final)
        report = path / "skipped.txt"
        write_text(report, "".join(f"{name}\t{why}\n" for _, name, why in bad))
        log(f"skipped {len(bad)} bad image(s), listed in {report}")
    else:
        os.replace(partial, final)
    manifest = dict(manifest, skipped=bad, data_fingerprint=data_fingerprint(final))
    write_text(path / "manifest.json", json.dumps(manifest, indent=2) + "\n")  # the cache's commit mark
    shutil.rmtree(build, ignore_errors=True)
    cache = open_cache(path)
    size = (path / "data.npy").stat().st_size
    f32 = int(np.prod(manifest["shape"][1:])) * 4 * len(cache.data)
    speed = f", {fresh / elapsed:,.0f} images/s" if fresh and elapsed > 0 else ""
    log(f"cache ready: {cache.describe()}: {size / 1e9:.3f} GB on disk, {size / f32:.2f}x the "
        f"float32 size ({f32 / 1e9:.3f} GB){speed}")
    return cache


def is_cache(path: Path) -> bool:
    """PATH is a cache, finished or being built (a build locks it first, then plans in build/):
    never a root to make another cache inside."""
    return any((path / name).exists() for name in ("manifest.json", "build", LOCK_NAME))


def locate_cache(cache_arg: str | Path | None, wanted: dict) -> Path:
    """Where the cache for WANTED (expected_manifest) is, or would be built: CACHE_ARG itself
    when it is a cache (is_cache), else its own directory under CACHE_ARG, a root
    (default: the per-user cache). A cluster node finds its cache the same way (cluster/node.py)."""
    given = Path(cache_arg) if cache_arg else default_cache_root()
    if is_cache(given):
        return given
    return given / f"{wanted['workload']}-{wanted['dtype']}-{wanted['layout'].lower()}-{_settings_key(wanted)}"


def ensure_cache(workload: Workload, dataset: ImageNetVal, cache_arg: str | Path | None,
                 dtype: str = "float32", layout: str = "NCHW", quantization: Quantization | None = None,
                 log=print, **build_options) -> Cache:
    """The cache for this run: reuse a matching one, refuse a mismatched one, else build it.

    CACHE_ARG is either a cache directory (it holds manifest.json) or a root under which each
    distinct (workload, dtype, layout, quantisation, sources, settings) gets its own directory.
    """
    wanted = expected_manifest(workload, dataset, dtype, layout, quantization)
    path = locate_cache(cache_arg, wanted)
    if (path / "manifest.json").exists():
        cache = open_cache(path, wanted)
        log(f"cache: using {cache.describe()}")
        return cache
    log(f"cache: preprocessing {len(dataset)} images into {path}")
    return build_cache(path, workload, dataset, wanted, log=log, **build_options)


def preprocess_to(out: Path, workload: Workload, dataset: ImageNetVal, dtype: str, layout: str,
                  quantization: Quantization | None, log=print, **build_options) -> Cache:
    """`visionperf preprocess`: build (or resume, or confirm) the cache at exactly OUT."""
    wanted = expected_manifest(workload, dataset, dtype, layout, quantization)
    if (out / "manifest.json").exists():
        cache = open_cache(out, wanted)
        log(f"cache already complete: {cache.describe()}")
        return cache
    made = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        return build_cache(out, workload, dataset, wanted, log=log, refuse_foreign=True, **build_options)
    except BaseException:
        if made:
            try:
                out.rmdir()  # only if the build kept nothing in it
            except OSError:
                pass
        raise


def _foreign(path: Path) -> list[str]:
    """What in PATH a build did not make: its work (build/) and lock, and, only beside a build's
    plan, a publish under way (data.npy renamed in, skipped.txt, the manifest's temporary file)."""
    ours = {"build", LOCK_NAME} | ({"data.npy", "skipped.txt"} if (path / "build/build.json").exists() else set())
    return sorted(p.name for p in path.iterdir() if p.name not in ours and not p.name.startswith(".manifest.json.tmp-"))
