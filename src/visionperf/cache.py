"""The offline-preprocessed store: one memory-mappable array per dataset plus a manifest.

Preprocessing (decode, resize, crop, normalise, quantise) is allowed offline by the MLPerf rules
and is far too slow to do at run time, so `run` reads rows from here. A finished cache is a
directory holding

    manifest.json   workload, shape, dtype, layout, quantisation, preprocessing settings and
                    their hash, source hash, skipped images
    data.npy        the rows in dataset order (np.load(..., mmap_mode="r"))

A cache whose manifest does not match the run (other workload, dtype, layout, quantisation,
sources or settings) is refused, never silently used. How a cache is built is preprocess.py.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import jsonfile
from .datasets import ImageNetVal
from .errors import UserError
from .locks import LOCK_NAME
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
    _check_letterbox(workload, dtype)
    raw_pixels = dtype == workload.input_dtype  # e.g. SSD-MobileNet's uint8 input: no quantisation
    if raw_pixels:
        quantization = None
    elif dtype != "float32" and (quantization is None or quantization.dtype != dtype):
        raise UserError(f"a {dtype} cache needs the model's input scale and zero point: "
                        "pass --model INT8_MODEL (or --scale and --zero-point)")
    pre = workload.preprocessing.settings()
    # Letterboxed rows: the shape mode, and geometry.npy beside data.npy (each row's decoded and
    # input sizes). A rect row holds its (3, h, w) pixels at the start of a row sized for 640 x 640.
    shape_mode = {"shape_mode": pre["shape_mode"], "geometry": True} if "shape_mode" in pre else {}
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
        **shape_mode,
    }


def _check_letterbox(workload: Workload, dtype: str) -> None:
    """A letterboxed (YOLO) cache holds uint8 pixels, the / 255 in the model."""
    pre = workload.preprocessing
    if pre.method != "letterbox":
        return
    if dtype != workload.input_dtype:
        raise UserError(f"{workload.name}: its cache holds the letterboxed {workload.input_dtype} pixels "
                        f"(the / 255 belongs to the model), not {dtype}: pass --dtype {workload.input_dtype}")


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
    geometry: np.ndarray | None = None  # letterboxed: int32 [rows, 4] = (h0, w0, input h, input w)

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
    geometry = None
    if manifest.get("geometry"):
        try:
            geometry = np.load(path / "geometry.npy")
        except (OSError, ValueError) as e:
            raise UserError(f"{path / 'geometry.npy'} is unreadable ({e}): delete {path} and rerun") from None
        if geometry.shape != (len(keep), 4) or geometry.dtype != np.int32:
            raise UserError(f"{path / 'geometry.npy'} does not match its manifest: delete {path} and rerun")
    stored = manifest.get("data_fingerprint")
    if stored is not None and stored != data_fingerprint(path / "data.npy"):
        raise UserError(f"{path / 'data.npy'} was changed after the cache was built (its fingerprint differs "
                        f"from {manifest_path}): delete {path} and rerun to rebuild it")
    return Cache(path, manifest, data, keep, geometry)


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
