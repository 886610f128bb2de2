"""A run's options (RunConfig) and their one check (RunConfig.validate).

Every option is checked here, before any work: a run that cannot go is refused in one line
before a cache is built, a device opened or an output directory locked.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

from .. import compliance
from ..backends import get_backend
from ..backends.base import Backend
from ..errors import UserError
from ..models import check_model
from ..models.check import ModelInfo
from ..targets import DEFAULT_MAX_HOURS, offline_expected_qps
from ..userconf import Overrides, make_user_conf, read_user_conf
from ..workloads import Workload, check_scenario, get_workload, with_shape_mode
from .length import LengthSettings, check_length
from .model import uint8_model


@dataclass
class RunConfig:
    workload: str
    scenario: str
    mode: str = "performance"
    model: str = ""
    dataset: str = ""
    backend: str = "onnxruntime"
    devices: int = 1
    batch_size: int | None = None
    target_qps: float | None = None
    duration: float | None = None
    user_conf: str | None = None
    out: str = "results"
    cache: str | None = None
    batch_timeout_ms: float | None = None
    count: int | None = None  # use only the first COUNT images of the dataset
    post_threads: int | None = None  # None: one per device for detection, none for classification
    replicas: str | None = None  # device | node | one (default: device for cards, one for CPU devices)
    card_rate: float | None = None  # simulated cards: samples/s each (default: the paper's Table II)
    in_flight: int = 2  # simulated cards: batches each holds at once
    compliance: str | None = None  # "TEST01" | "TEST04": an audit run, verified after
    backend_options: str = ""  # plugin:PATH devices: "key=value;..." handed to the device
    skip_postprocess: bool = False  # measurement only: empty responses
    wait: float | None = None  # seconds to wait for another visionperf holding OUT or the cache
    latency_by_minute: bool = False  # keep p50/p99 of one-sample queries per minute in run.json (soak)
    cluster: str | None = None  # run over the nodes of a Ray cluster: auto, an address or local:N (cluster/)
    nodes: int | None = None  # with cluster: use only the first NODES nodes (default: every node)
    max_hours: float = DEFAULT_MAX_HOURS  # refuse a LoadGen test expected to take longer
    shape_mode: str = "auto"  # yolo: "square" | "rect" | "auto" (rect for a dynamic-shape model at batch 1)

    def validate(self) -> RunSpec:
        """This configuration checked, with what it names; one line for the first option that cannot be run."""
        self._check_where()
        spec = self.checked_options()
        return replace(spec, length=_check_length(spec))

    def _check_where(self) -> None:
        """What the options ask of where the run executes: this server's cores, or a cluster's nodes
        (which plan on their own cores, cluster/node.py)."""
        if self.nodes and not self.cluster:
            raise UserError("--nodes chooses nodes of a --cluster: pass --cluster ADDRESS too, or drop --nodes")
        if not self.cluster:
            get_backend(self.backend).check_device_count(self.devices)
        elif self.compliance:
            raise UserError("--compliance runs on one node: drop --cluster for the audit run")

    def checked_options(self) -> RunSpec:
        """validate() less the test's length: what a cluster node checks of the head's configuration
        (the length is the whole cluster's, judged by the head, which alone knows every node's rate)."""
        w = get_workload(self.workload)
        scenario = check_scenario(self.scenario)
        _check_scenario_options(self, w, scenario)
        model = check_model(self.model, w)
        backend = get_backend(self.backend)
        backend.preflight()
        fixed = model.fixed_batch if backend.runs_model_batch else None
        _check_batching(self, model, fixed)
        if w.preprocessing.method == "letterbox":
            w = with_shape_mode(w, _shape_mode(self, w, model, backend, fixed))
            model = uint8_model(model, self.cache)
        audit = _audit(self, w)
        return RunSpec(self, w, scenario, model, backend, fixed, read_user_conf(self.user_conf), audit)


@dataclass(frozen=True)
class RunSpec:
    """A validated RunConfig and what it names."""

    config: RunConfig
    workload: Workload
    scenario: str  # spelt as LoadGen spells it
    model: ModelInfo
    backend: Backend
    fixed_batch: int | None  # the model's batch dimension, where the backend runs it as the batch size
    base_conf: str  # the text of --user-conf ("" without one)
    audit: str | None  # the audit.config of a --compliance run
    length: LengthSettings | None = None  # LoadGen's test as the options and confs describe it, before any work

    @property
    def replicas_mode(self) -> str:
        """--replicas, or its default: a buffer per device for cards, one for CPU devices."""
        return self.config.replicas or ("device" if self.backend.is_card else "one")

    @property
    def default_batch_size(self) -> int:
        return self.config.batch_size or self.fixed_batch or self.workload.default_batch_size

    def first_notes(self) -> list[str]:
        """run.json's notes that the options alone decide."""
        if self.model.synthetic_weights:
            return [f"model {self.model.path.name} has synthetic weights: its accuracy is meaningless"]
        return []


def _check_scenario_options(cfg: RunConfig, w: Workload, scenario: str) -> None:
    if cfg.mode not in ("performance", "accuracy"):
        raise UserError(f"unknown mode {cfg.mode!r}: choose performance or accuracy")
    if scenario == "Server" and not w.server_latency_bound_ms:
        raise UserError(f"{w.name} has no Server scenario (Edge only)")
    if cfg.latency_by_minute and scenario not in ("Server", "SingleStream"):
        raise UserError(f"--latency-by-minute times one-sample queries (Server, SingleStream); {scenario} issues "
                        "many samples per query: drop the option")
    if Path(cfg.out).exists() and not Path(cfg.out).is_dir():
        raise UserError(f"--out {cfg.out} is a file: pass a directory for the results")


def _shape_mode(cfg: RunConfig, w: Workload, model: ModelInfo, backend: Backend, fixed: int | None) -> str:
    """YOLO's letterbox: the reference's own rect (per-image shapes) where the model takes any shape
    and batches are of one image, else square. Batching rect inputs would need batches of equal
    shapes (buckets): not done, since rect exists to equal the reference (batch 1) and square is
    the mode for batches."""
    dynamic = getattr(model, "input_hw", None) is None
    batch = cfg.batch_size or fixed or w.default_batch_size
    mode = cfg.shape_mode
    if mode == "auto":
        return "rect" if dynamic and batch == 1 and backend.per_sample_shapes else "square"
    if mode == "rect":
        if not dynamic:
            raise UserError(f"--shape-mode rect needs a model that takes any input shape; {model.path.name} takes "
                            f"{model.input_hw[0]}x{model.input_hw[1]} only: pass --shape-mode square, or export "
                            "the model with dynamic=True")
        if batch != 1:
            raise UserError(f"--shape-mode rect gives each image its own shape, so a batch holds one image: "
                            f"drop --batch-size {batch}, or pass --shape-mode square to batch")
        if not backend.per_sample_shapes:
            raise UserError(f"--backend {cfg.backend} runs one input shape: pass --shape-mode square")
    elif mode != "square":
        raise UserError(f"--shape-mode {mode!r}: choose auto, square or rect")
    return mode


def _check_batching(cfg: RunConfig, model: ModelInfo, fixed: int | None) -> None:
    if fixed and cfg.batch_size is not None and cfg.batch_size != fixed:
        raise UserError(f"--batch-size {cfg.batch_size}: {model.path.name} only takes batches of {fixed} "
                        f"(a fixed batch dimension): pass --batch-size {fixed}, or export the model with a "
                        "dynamic batch dimension")
    if cfg.in_flight < 1:
        raise UserError(f"--in-flight must be at least 1, got {cfg.in_flight}")
    if cfg.batch_size and cfg.batch_size < 1:  # 0 (or none) takes the model's or the workload's
        raise UserError(f"--batch-size must be at least 1, got {cfg.batch_size}")
    if cfg.post_threads is not None and cfg.post_threads < 0:
        raise UserError(f"--post-threads must be 0 or more, got {cfg.post_threads}")


def _audit(cfg: RunConfig, w: Workload) -> str | None:
    if not cfg.compliance:
        return None
    if cfg.mode != "performance":
        raise UserError("--compliance runs are performance runs: drop --mode accuracy")
    return compliance.audit_config(cfg.compliance, w)


def _card_rate_ceiling(spec: RunSpec) -> float | None:
    """Samples/s this run's devices can never exceed together, where the options say (simulated
    cards on one server: the card rate times the cards; one batch at that rate must fit its bound)."""
    cfg = spec.config
    rate = spec.backend.card_rate(spec.workload, cfg.card_rate, spec.default_batch_size, cfg.max_hours * 3600)
    return None if rate is None or cfg.cluster else rate * cfg.devices


def _check_length(spec: RunSpec) -> LengthSettings | None:
    """The test's length as far as the options and confs already tell, refused beyond --max-hours
    before any work (run.length; checked again with LoadGen's own reading before the test)."""
    cfg = spec.config
    if not (cfg.max_hours > 0 and math.isfinite(cfg.max_hours)):
        raise UserError(f"--max-hours must be a finite number above 0, got {cfg.max_hours:g}")
    rate = _card_rate_ceiling(spec)
    conf_text = make_user_conf(spec.base_conf, spec.workload.name, spec.scenario,
                               Overrides(target_qps=cfg.target_qps, duration_s=cfg.duration))
    length = LengthSettings.from_confs(conf_text, spec.workload.name, spec.scenario, cfg.mode)
    if length is not None and length.target_qps is None and spec.scenario == "Offline" and rate:
        # the warm-up will set it from the cards' ceiling alone (run.warmup.targets)
        length = replace(length, target_qps=offline_expected_qps([], rate))
    check_length(length, rate, cfg.count, cfg.max_hours)
    return length
