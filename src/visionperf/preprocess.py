"""Offline preprocessing into a cache (cache.py says what a cache is): build, resume, publish.

The build works in chunks through a process pool. Workers write their rows straight into a
preallocated `build/data.npy.partial` (no pixels cross a pipe) and mark each chunk done only
after its rows are flushed, so an interrupted build keeps every finished chunk and a rerun does
only the rest. The array is renamed into place and the manifest written last: a directory
without a manifest is never mistaken for a finished cache.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path

import numpy as np

from . import jsonfile
from .atomic import write_text
from .cache import (
    Cache,
    Quantization,
    data_fingerprint,
    default_chunk,
    expected_manifest,
    locate_cache,
    open_cache,
)
from .children import die_with
from .datasets import ImageNetVal, preprocess_sample
from .errors import UserError
from .jsonfile import JsonFileError
from .locks import LOCK_NAME, Busy, DirLock
from .workloads import Workload

_worker_out: np.ndarray | None = None
_worker_geometry: np.ndarray | None = None

GEOMETRY = "geometry.npy"  # letterboxed caches: int32 [count, 4] = (h0, w0, input h, input w) per row


def _worker_init(partial: str, parent: int | None = None) -> None:
    global _worker_out, _worker_geometry
    if parent is not None:
        die_with(parent)
    import cv2

    cv2.setNumThreads(1)  # one process per core; OpenCV's own threads would oversubscribe
    _worker_out = np.load(partial, mmap_mode="r+")
    geometry = Path(partial).with_name(GEOMETRY + ".partial")
    _worker_geometry = np.load(geometry, mmap_mode="r+") if geometry.exists() else None


def _store_row(out: np.ndarray, i: int, row: np.ndarray) -> None:
    """Row I of the cache. A rect (per-image shape) row is smaller than the cache's row, which is
    sized for the largest: it sits at the start, contiguous, the rest zero."""
    if row.shape == out.shape[1:]:
        out[i] = row
        return
    flat = out[i].reshape(-1)
    flat[: row.size] = row.reshape(-1)
    flat[row.size:] = 0


def _preprocess_chunk(job: tuple) -> tuple[int, int, list]:
    """Preprocess one chunk into the shared partial array; returns (chunk, images, bad)."""
    chunk, start, workload, root, files, layout, quant, skip_bad = job
    q = Quantization(**quant) if quant else None
    out = _worker_out
    bad = []
    for k, name in enumerate(files):
        try:
            row, geometry = preprocess_sample(workload, Path(root) / name, layout)
        except UserError as e:
            if not skip_bad:
                raise
            bad.append([start + k, name, str(e)])
            out[start + k] = 0
            continue
        _store_row(out, start + k, q.apply(row) if q else row)
        if geometry is not None:
            _worker_geometry[start + k] = geometry
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
    partial = build / "data.npy.partial"
    _start_or_resume(path, build, partial, manifest, chunk, log)
    fresh, elapsed = _preprocess_chunks(build, partial, workload, dataset, manifest, chunk, workers, skip_bad, log)
    np.load(partial, mmap_mode="r+").flush()
    bad = []
    for p in sorted((build / "done").glob("chunk-*.json")):
        bad += jsonfile.load(p, f"delete {build} and rerun")["bad"]
    return _publish(path, build, partial, manifest, bad, fresh, elapsed, log)


def _start_or_resume(path: Path, build: Path, partial: Path, manifest: dict, chunk: int, log) -> None:
    """Resume the unfinished build in BUILD when its plan is this one, restart it when only its
    inputs changed, refuse it when its settings differ; else start one."""
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
            if (path / GEOMETRY).exists():
                os.replace(path / GEOMETRY, build / (GEOMETRY + ".partial"))
        else:
            restart = "found no array in"
    if restart or not (build / "build.json").exists():
        if restart:
            log(f"restarting the build from scratch: {restart} the unfinished build in {build}")
        if build.exists():
            shutil.rmtree(build)
        (build / "done").mkdir(parents=True)
        np.lib.format.open_memmap(partial, mode="w+", dtype=np.dtype(manifest["dtype"]),
                                  shape=tuple(manifest["shape"]))
        _reserve(partial)
        if manifest.get("geometry"):
            np.lib.format.open_memmap(build / (GEOMETRY + ".partial"), mode="w+", dtype=np.int32,
                                      shape=(manifest["count"], 4))
        write_text(build / "build.json", json.dumps(plan, sort_keys=True))


def _preprocess_chunks(build: Path, partial: Path, workload: Workload, dataset: ImageNetVal, manifest: dict,
                       chunk: int, workers: int | None, skip_bad: bool, log) -> tuple[int, float]:
    """Every chunk not yet done, through the process pool, each marked done as it finishes;
    returns (images preprocessed now, seconds)."""
    done_dir = build / "done"
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
    jobs = [(c, starts[c], workload, str(dataset.root), dataset.files[starts[c]: starts[c] + chunk],
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
    return fresh, time.perf_counter() - t0


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
    geometry = build / (GEOMETRY + ".partial")
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
        if geometry.exists():
            kept = build / (GEOMETRY + ".compact")
            with open(kept, "wb") as f:  # a file object: np.save would add .npy to a name
                np.save(f, np.load(geometry)[keep])
            os.replace(kept, geometry)
        os.replace(compact, final)
        report = path / "skipped.txt"
        write_text(report, "".join(f"{name}\t{why}\n" for _, name, why in bad))
        log(f"skipped {len(bad)} bad image(s), listed in {report}")
    else:
        os.replace(partial, final)
    if geometry.exists():
        os.replace(geometry, path / GEOMETRY)
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
    ours = {"build", LOCK_NAME} | ({"data.npy", "skipped.txt", GEOMETRY} if (path / "build/build.json").exists() else set())
    return sorted(p.name for p in path.iterdir() if p.name not in ours and not p.name.startswith(".manifest.json.tmp-"))
