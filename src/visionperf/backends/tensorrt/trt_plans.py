"""TensorRT plans (NVIDIA's word for a serialised TensorRT engine): built from the graph,
cached on disk, loaded on a GPU.

Named so because "engine" in visionperf means its own compiled engine and "plan" alone the
placement plan. A TensorRT plan is valid only for exactly the model content, precision,
batch profile, GPU model and TensorRT version it was built for, so the cache keys on them all.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ... import jsonfile
from ...atomic import write_bytes, write_text
from ...errors import UserError
from ...jsonfile import JsonFileError
from ...locks import DirLock
from .options import cache_dir

GRAPH_VERSION = "1"  # bump when models/tensorrt_graph.py changes what it builds


def model_digest(path: Path) -> str:
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def trt_plan_key(model_digest: str, precision: str, batch: tuple[int, int, int], gpu: str, trt_version: str,
               profiles: int = 1) -> str:
    """One engine per model content, precision, batch profile (min, opt, max) and how many
    copies of it, GPU model (with its compute capability) and TensorRT version: an engine is
    only valid for exactly these."""
    text = json.dumps({"model": model_digest, "precision": precision, "batch": list(batch), "gpu": gpu,
                       "tensorrt": trt_version, "graph": GRAPH_VERSION, "profiles": profiles}, sort_keys=True)
    return hashlib.blake2b(text.encode(), digest_size=12).hexdigest()


def build_trt_plan(trt, graph_bytes: bytes, input_name: str, row_shape: tuple[int, ...], batch: int,
               workspace_mb: int, source: Path, profiles: int = 1) -> bytes:
    """A serialised engine for batches 1..BATCH, tuned for BATCH, with PROFILES copies of that
    optimisation profile: TensorRT lets execution contexts run concurrently on a dynamic-shape
    engine only if each has a profile of its own (one per batch in flight)."""
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    # TensorRT 10 needs STRONGLY_TYPED to take the graph's types as they are; 11 always does.
    strongly = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    network = builder.create_network(0 if strongly is None else 1 << int(strongly))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(graph_bytes):
        first = str(parser.get_error(0)).splitlines()[0] if parser.num_errors else "no reason given"
        raise UserError(f"TensorRT cannot parse the graph made from {source}: {first}")
    config = builder.create_builder_config()
    if workspace_mb:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
    for _ in range(profiles):
        profile = builder.create_optimization_profile()
        profile.set_shape(input_name, (1, *row_shape), (batch, *row_shape), (batch, *row_shape))
        config.add_optimization_profile(profile)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise UserError(f"TensorRT could not build an engine from {source} (batch {batch}): see its messages above")
    return bytes(plan)


class TrtPlanCache:
    """Built TensorRT engines (serialised plans) on disk: <key>.plan (written whole, then renamed) and <key>.json."""

    def __init__(self, root: Path | None = None):
        self.root = Path(root) if root else cache_dir()

    def path(self, key: str) -> Path:
        return self.root / f"{key}.plan"

    def get_or_build(self, key: str, describe: dict, build, log=print) -> bytes:
        p = self.path(key)
        if p.is_file():
            return p.read_bytes()
        self.root.mkdir(parents=True, exist_ok=True)
        busy = "{dir}: another visionperf (pid {pid}: {cmd}) is building this TensorRT engine: wait for it"
        with DirLock(self.root / f".{key}.building", busy).acquire(wait=3600.0):
            if p.is_file():  # another process built it while this one waited
                return p.read_bytes()
            log(f"building a TensorRT engine ({describe.get('precision')}, batch {describe.get('batch')}, "
                f"{describe.get('profiles', 1)} profile(s)): minutes the first time, cached after")
            t = time.time()
            plan = build()
            write_bytes(p, plan)
            write_text(self.root / f"{key}.json", json.dumps({**describe, "build_s": round(time.time() - t, 1)},
                                                             indent=2) + "\n")
        return plan

    # A batch sweep's answer, per engine family (model, precision, GPU, TensorRT).
    def remembered_batch(self, family: str) -> int | None:
        try:
            return int(jsonfile.load(self.root / "sweeps.json", "")[family]["best"])
        except (OSError, JsonFileError, ValueError, KeyError, TypeError):  # a damaged record: sweep again
            return None

    def remember_batch(self, family: str, best: int, rates: dict[int, float]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.root / "sweeps.json"
        with DirLock(self.root / ".sweeps.writing").acquire(wait=60.0):
            try:
                table = jsonfile.load(path, "")
            except (OSError, JsonFileError):
                table = {}
            table[family] = {"best": best, "samples_per_s": {str(b): round(r, 1) for b, r in rates.items()}}
            write_text(path, json.dumps(table, indent=2, sort_keys=True) + "\n")


@dataclass(frozen=True)
class Binding:
    name: str
    is_input: bool
    dtype: np.dtype
    sample_shape: tuple[int, ...]  # without the batch dimension

    @property
    def row_bytes(self) -> int:
        return int(np.prod(self.sample_shape, dtype=np.int64)) * self.dtype.itemsize


class LoadedTrtPlan:
    """A deserialised engine on the current GPU: its I/O tensors and execution contexts."""

    def __init__(self, trt, plan: bytes):
        self._runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = self._runtime.deserialize_cuda_engine(plan)
        if self.engine is None:
            raise UserError("TensorRT could not load a cached engine: delete "
                            f"{cache_dir()} (or $VISIONPERF_TENSORRT_CACHE) and run again to rebuild it")
        self.bindings = []
        for i in range(self.engine.num_io_tensors):
            name = self.engine.get_tensor_name(i)
            shape = tuple(self.engine.get_tensor_shape(name))
            self.bindings.append(Binding(name, self.engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT,
                                         np.dtype(trt.nptype(self.engine.get_tensor_dtype(name))), shape[1:]))

    @property
    def profiles(self) -> int:
        return self.engine.num_optimization_profiles

    def context(self):
        return self.engine.create_execution_context()
