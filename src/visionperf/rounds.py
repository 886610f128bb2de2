"""A submission round's rules, as data: what the MLCommons submission checker of that round
applies to a closed-division tree (benchmarks, required scenarios per system type, accuracy
targets, run rules, seeds, system description fields, file lists per folder).

The rules were read from the checker itself: mlcommons/inference at commit b66003e1
(2026-08-20), `tools/submission/submission_checker/` (constants.py, checks/*.py, the modular
checker the round calls mandatory), `submission_checker_old.py` (stricter file lists; a tree
should pass both), `truncate_accuracy_log.py` and `compliance/TEST01|TEST04`. A round is
implemented only where a run made with this visionperf's LoadGen can pass it: its seeds are
the ones compiled into LoadGen 6.0.17's mlperf.conf, which are v6.1's (v6.0 had others).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import UserError


@dataclass(frozen=True)
class RoundBenchmark:
    """One benchmark in a round, keyed by its name in the round's results tree (`resnet50`,
    `yolo-99`): the runs of one visionperf workload, held to that benchmark's rules."""

    workload: str  # the visionperf workload (and LoadGen model name) whose runs it takes
    accuracy_metric: str  # "acc" | "mAP": the checker's pattern for accuracy.txt
    accuracy_target: float  # percent; every matching line of accuracy.txt must reach it
    dataset_size: int  # an accuracy run must cover exactly this many samples
    min_performance_sample_count: int
    offline_min_samples_per_query: int  # closed division: an Offline query must issue at least this many
    required_scenarios: dict[str, tuple[str, ...]]  # system_type -> scenarios it must have
    compliance_tests: tuple[str, ...]
    server_latency_ns: int | None = None  # effective_target_latency_ns may not exceed it
    # TEST01 where the responses are not byte-identical: |1 - baseline / compliance| x 100 at most
    test01_delta_percent: float = 1.0


@dataclass(frozen=True)
class Round:
    version: str
    loadgen: str  # the LoadGen release whose embedded mlperf.conf carries this round's seeds
    source: str  # where these rules were read
    seeds: dict[str, int]  # effective_<key> in every performance detail log
    min_duration_ms: int
    max_accuracy_log_bytes: int  # accuracy/mlperf_log_accuracy.json in the tree
    truncate_keep_bytes: int  # truncation keeps this much of each end
    benchmarks: dict[str, RoundBenchmark]
    # A workload the round has under several names (accuracy tiers): the one its runs go in as
    # unless the user chooses (`--<workload>-benchmark`).
    default_benchmark: dict[str, str]
    not_in_round: dict[str, str]  # visionperf benchmark -> why it cannot be submitted in this round
    system_types: tuple[str, ...]  # allowed values of system_type
    system_fields: tuple[str, ...]  # every key the system description must have
    system_meaningful: tuple[str, ...]  # keys whose value must be non-empty (and not 0)
    measurements_fields: tuple[str, ...]  # measurements.json keys, each non-empty
    # Exact file lists (the old checker compares them; the new one requires them).
    performance_files: tuple[str, ...] = ("mlperf_log_summary.txt", "mlperf_log_detail.txt")
    accuracy_files: tuple[str, ...] = ("mlperf_log_summary.txt", "mlperf_log_detail.txt", "accuracy.txt",
                                       "mlperf_log_accuracy.json")
    scenario_files: tuple[str, ...] = ("README.md", "user.conf", "measurements.json")
    compliance_files: dict[str, tuple[str, ...]] = field(default_factory=dict)  # test -> files in TESTxx/
    compliance_accuracy_files: tuple[str, ...] = ("mlperf_log_accuracy.json", "accuracy.txt")  # TEST01/accuracy
    # ... and these two beside them where the responses are not byte-identical (verify_accuracy: TEST FAIL)
    compliance_delta_files: tuple[str, ...] = ("baseline_accuracy.txt", "compliance_accuracy.txt")
    submitter_dirs: tuple[str, ...] = ("systems", "src", "documentation", "results")


_EDGE = ("SingleStream", "MultiStream", "Offline")
_DATACENTER_EDGE = ("SingleStream", "MultiStream", "Offline", "Server")

V6_1 = Round(
    version="v6.1",
    loadgen="6.0.17",
    source="mlcommons/inference b66003e10e2db4b8c36a448b0545ec90fcc6e9e9, tools/submission/submission_checker "
           "(MODEL_CONFIG['v6.1'])",
    seeds={"qsl_rng_seed": 2085463073848966840, "sample_index_rng_seed": 2747215439041700203,
           "schedule_rng_seed": 16159082839903944936},
    min_duration_ms=600_000,
    max_accuracy_log_bytes=10 * 1024,
    truncate_keep_bytes=4096,
    benchmarks={
        # From v6.0 on, ResNet50 is an edge benchmark: no datacenter-only scenario list.
        "resnet50": RoundBenchmark(
            # the checker's name for it: "resnet"
            workload="resnet50", accuracy_metric="acc", accuracy_target=76.46 * 0.99, dataset_size=50_000,
            min_performance_sample_count=1024, offline_min_samples_per_query=24_576,
            required_scenarios={"edge": _EDGE, "datacenter,edge": _DATACENTER_EDGE},
            compliance_tests=("TEST01", "TEST04"), server_latency_ns=15_000_000),
        # YOLO11l on COCO safe (1,525 images), one set of runs, two accuracy tiers of 53.4 mAP.
        # Edge scenarios only, also on a datacenter,edge system; TEST01 only (models_TEST01).
        **{name: RoundBenchmark(
            workload="yolo", accuracy_metric="mAP", accuracy_target=53.4 * tier, dataset_size=1525,
            min_performance_sample_count=64, offline_min_samples_per_query=1525,
            required_scenarios={"edge": _EDGE, "datacenter,edge": _EDGE},
            compliance_tests=("TEST01",)) for name, tier in (("yolo-95", 0.95), ("yolo-99", 0.99))},
    },
    # The higher tier: the reference reaches 53.103 on COCO safe, above yolo-99's 52.866.
    default_benchmark={"yolo": "yolo-99"},
    not_in_round={
        "retinanet": "RetinaNet is not in round v6.1 (the checker's v6.1 model list dropped it; its last round, "
                     "v6.0, needs seeds LoadGen 6.0.17 does not carry): its runs still work for studies",
        "ssd-mobilenet": "SSD-MobileNet is retired from MLPerf Inference (last in v2.0; no current checker knows "
                         "it): its runs still work for studies",
        "ssd-resnet34": "SSD-ResNet34 is retired from MLPerf Inference (replaced by RetinaNet from v2.1; no current "
                        "checker knows it): its runs still work for studies",
    },
    system_types=("edge", "datacenter,edge"),  # the only ones with a ResNet50 and a YOLO scenario list
    system_fields=(
        "division", "submitter", "status", "system_name", "number_of_nodes", "host_processor_model_name",
        "host_processors_per_node", "host_processor_core_count", "host_memory_capacity", "host_storage_capacity",
        "host_storage_type", "accelerators_per_node", "accelerator_model_name", "accelerator_memory_capacity",
        "framework", "operating_system", "system_type", "other_software_stack", "host_processor_frequency",
        "host_processor_caches", "host_memory_configuration", "host_processor_interconnect", "host_networking",
        "host_networking_topology", "accelerator_frequency", "accelerator_host_interconnect",
        "accelerator_interconnect", "accelerator_interconnect_topology", "accelerator_memory_configuration",
        "accelerator_on-chip_memories", "cooling", "hw_notes", "sw_notes", "host_network_card_count",
        "system_type_detail",
    ),
    system_meaningful=(
        "division", "submitter", "system_type", "status", "system_name", "number_of_nodes",
        "host_processor_model_name", "host_processors_per_node", "host_processor_core_count",
        "host_memory_capacity", "host_memory_configuration", "host_storage_capacity", "host_storage_type",
        "host_networking", "host_network_card_count", "host_networking_topology", "accelerators_per_node",
        "accelerator_model_name", "accelerator_memory_capacity", "accelerator_host_interconnect",
        "accelerator_memory_configuration", "accelerator_interconnect", "cooling", "framework",
        "operating_system", "other_software_stack",
    ),
    measurements_fields=("input_data_types", "retraining", "starting_weights_filename", "weight_data_types",
                         "weight_transformations"),
    compliance_files={
        "TEST01": ("verify_accuracy.txt", "verify_performance.txt", "accuracy", "performance"),
        "TEST04": ("verify_performance.txt", "performance"),
    },
)

ROUNDS = {V6_1.version: V6_1}
DEFAULT_ROUND = V6_1.version  # the round whose seeds the LoadGen visionperf builds carries

# Rounds we know of but cannot serve, and why (one line for the user).
UNSERVED = {
    "v6.0": "its seeds (qsl 2465351861681999779, ...) are not the ones LoadGen 6.0.17 runs with, so no run "
            "made here can pass its checker",
    "v5.1": "its seeds and layout (compliance/ tree, code/ folder) are an older LoadGen's",
    "v5.0": "its seeds and layout (compliance/ tree, code/ folder) are an older LoadGen's",
}


def get_round(version: str) -> Round:
    if version in ROUNDS:
        return ROUNDS[version]
    why = UNSERVED.get(version, "it is not a round this visionperf knows")
    raise UserError(f"--round {version} is not implemented: {why}; use --round {DEFAULT_ROUND} (the round of the "
                    f"LoadGen {V6_1.loadgen} visionperf runs)")


def benchmarks_of(rnd: Round, workload: str) -> tuple[str, ...]:
    """The round's benchmarks that take WORKLOAD's runs, in the round's order (none: not in it)."""
    return tuple(name for name, b in rnd.benchmarks.items() if b.workload == workload)


def benchmark_for(rnd: Round, workload: str, chosen: dict[str, str] | None = None) -> str | None:
    """The benchmark WORKLOAD's runs go in as: the user's choice (CHOSEN: workload -> name), else
    the round's default for it, else its only one; None where the round does not have it."""
    names = benchmarks_of(rnd, workload)
    if not names:
        return None
    name = (chosen or {}).get(workload) or rnd.default_benchmark.get(workload) or names[0]
    if name not in names:
        raise UserError(f"--{workload}-benchmark {name} is not a round {rnd.version} benchmark for {workload} runs: "
                        f"choose {' or '.join(names)}")
    return name


def system_type_for(rnd: Round, scenarios_by_benchmark: dict[str, set[str]]) -> str:
    """The system type the benchmarks and scenarios present call for: the smallest type (edge
    before datacenter,edge) whose scenario list covers every scenario present, for every benchmark."""
    for t in rnd.system_types:
        if all(set(sc) <= set(rnd.benchmarks[b].required_scenarios.get(t, ())) for b, sc in scenarios_by_benchmark.items()):
            return t
    return rnd.system_types[-1]
