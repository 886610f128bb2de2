"""Where a run executes: a Machine gives the run its cache, devices and engine, and its own
figures for run.json. One server (LocalMachine) is the default; a cluster of nodes
(visionperf.cluster) implements the same interface, so the run steps never know which they
drive, and a cluster node builds its engine with the same build_engine as one server.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Protocol

from ..cache import Cache
from ..errors import UserError
from ..placement import Partition, card_plan, cpu_partitions, describe_plan, replica_plan
from ..postprocess import make_postprocess
from ..preprocess import ensure_cache
from ..sut import EngineError, SystemUnderTest
from ..topology import read_topology
from .config import RunSpec


@dataclass
class Built:
    """What a machine built for a run: its plan, devices and engine."""

    plan: list[Partition]
    devices: list
    batch_size: int
    sut: SystemUnderTest


class Machine(Protocol):
    """One server, or many nodes seen as one: what a run asks of where it executes."""

    round_trip_s: float  # a batch's hop there and back before its devices see it (0 on one server)

    def prepare_cache(self, spec: RunSpec, dataset, log) -> Cache:
        """The run's preprocessed cache (its rows, manifest and skipped images)."""

    def build(self, spec: RunSpec, cache: Cache, notes: list[str], log) -> Built:
        """The run's devices and the engine over them, not started; NOTES gains what a reader of run.json needs."""

    def where(self, spec: RunSpec, built: Built) -> str:
        """The devices, for the line that starts the test ("... on WHERE <batch size>")."""

    def record(self, run_s: float) -> dict:
        """run.json's fields of this machine's own (none on one server)."""

    def describe(self, record: dict) -> list[str]:
        """Lines for the log from what record returned."""


OpenMachine = Callable[[Callable], AbstractContextManager[Machine]]  # log -> the machine, closed on the way out


class LocalMachine:
    """This server: the cache on its disk, its own plan of devices, one engine."""

    round_trip_s = 0.0

    @classmethod
    @contextmanager
    def open(cls, log=print) -> Iterator[LocalMachine]:
        yield cls()

    def prepare_cache(self, spec: RunSpec, dataset, log=print) -> Cache:
        w, model = spec.workload, spec.model
        return ensure_cache(w, dataset, spec.config.cache, dtype=model.input_dtype, layout=w.layout,
                            quantization=model.quantization, log=log, lock_wait=spec.config.wait)

    def build(self, spec: RunSpec, cache: Cache, notes: list[str], log=print) -> Built:
        return build_engine(spec, cache, notes, log)

    def where(self, spec: RunSpec, built: Built) -> str:
        return f"{len(built.devices)} {spec.config.backend} device(s), batch"

    def record(self, run_s: float) -> dict:
        return {}

    def describe(self, record: dict) -> list[str]:
        return []


def build_engine(spec: RunSpec, cache: Cache, notes: list[str], log=print) -> Built:
    """Plan this machine's devices for SPEC and build its engine over CACHE's rows (and, for
    letterboxed rows, their geometry: what YOLO's post-processing and rect inputs need)."""
    cfg, w, backend = spec.config, spec.workload, spec.backend
    topology = read_topology()
    plan = card_plan(topology, cfg.devices, backend.accelerators(topology)) if backend.is_card \
        else cpu_partitions(topology, cfg.devices)
    replicas = replica_plan(topology, plan, spec.replicas_mode)
    postprocess = make_postprocess(w, spec.model, skip=cfg.skip_postprocess,
                                   score_format=backend.score_format(w, spec.model), geometry=cache.geometry)
    if cfg.skip_postprocess:
        notes.append("post-processing skipped (empty responses): for measuring its cost only")
    batch_size = spec.default_batch_size
    devices = backend.make_devices(spec.model, w, plan, batch_size, postprocess.output_shapes(batch_size, w),
                                   card_rate=cfg.card_rate, in_flight=cfg.in_flight,
                                   latency=spec.scenario != "Offline", options=cfg.backend_options, log=log,
                                   batch_given=cfg.batch_size is not None, geometry=cache.geometry)
    batch_size = max(d.batch_size for d in devices)  # a GPU's batch sweep may have chosen it
    log("plan:\n" + describe_plan(plan, replicas))
    post_threads = cfg.post_threads if cfg.post_threads is not None else (
        len(devices) if w.task == "detection" else 0)
    try:
        sut = SystemUnderTest(devices, cache.data, replicas.fill_cpus, replicas.of_device, postprocess, w, batch_size,
                              post_threads=post_threads)
    except EngineError as e:
        raise UserError(str(e)) from None
    return Built(plan, devices, batch_size, sut)
