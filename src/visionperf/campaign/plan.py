"""The runs a round requires for some benchmarks on one system type, in an order the round's
checker can follow (a scenario's performance and accuracy runs before its audits, which compare
against them), and how long each is expected to take."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import UserError
from ..rounds import Round
from ..targets import OFFICIAL_MIN_DURATION_S

# What a run costs beyond LoadGen's test: a fresh process, the engine built, the cache mapped, the
# warm-up (about 2 s of 0.5 s windows) and the record. Measured on the practice campaign (null
# backend, 2 shared cores): 2 to 6 s a run, 3.5 s on average.
RUN_OVERHEAD_S = 4.0


@dataclass(frozen=True)
class PlannedRun:
    """One `visionperf run` of the campaign."""

    benchmark: str  # the round's name: resnet50, yolo-99
    workload: str  # the visionperf workload it runs
    scenario: str
    mode: str  # performance | accuracy
    compliance: str | None = None  # TEST01 | TEST04 (a performance-mode audit)

    @property
    def name(self) -> str:
        """How the run is shown and keyed in the state file: `resnet50 Offline TEST01`."""
        return f"{self.benchmark} {self.scenario} {self.compliance or self.mode}"

    @property
    def is_performance(self) -> bool:
        """The scenario's own performance run (not an audit)."""
        return self.mode == "performance" and not self.compliance


def plan_runs(rnd: Round, benchmarks: list[str], system_type: str) -> list[PlannedRun]:
    """Every run ROUND requires of BENCHMARKS on SYSTEM_TYPE: per benchmark, per required
    scenario (the round's order, Offline before Server, whose bisection starts from Offline's
    rate), its performance run, its accuracy run, then each compliance test."""
    if system_type not in rnd.system_types:
        raise UserError(f"--system-type {system_type} is not one of round {rnd.version}'s: "
                        f"{', '.join(rnd.system_types)}")
    runs = []
    for name in benchmarks:
        if name not in rnd.benchmarks:
            why = rnd.not_in_round.get(name, f"the round's benchmarks are {', '.join(rnd.benchmarks)}")
            raise UserError(f"--benchmarks: {name} is not a round {rnd.version} benchmark: {why}")
        b = rnd.benchmarks[name]
        for scenario in b.required_scenarios[system_type]:
            runs.append(PlannedRun(name, b.workload, scenario, "performance"))
            runs.append(PlannedRun(name, b.workload, scenario, "accuracy"))
            runs += [PlannedRun(name, b.workload, scenario, "performance", t) for t in b.compliance_tests]
    return runs


def estimate_s(run: PlannedRun, duration_s: float | None, dataset_size: int, rate: float) -> float:
    """Seconds RUN is expected to take: LoadGen's min_duration (--duration, else the round's
    600 s) for a performance run or an audit, the dataset at RATE samples/s for an accuracy run
    (TEST01 also logs about a tenth of its responses, which costs little), plus RUN_OVERHEAD_S."""
    if run.mode == "accuracy":
        return RUN_OVERHEAD_S + dataset_size / max(rate, 1e-9)
    return RUN_OVERHEAD_S + (duration_s if duration_s is not None else OFFICIAL_MIN_DURATION_S)
