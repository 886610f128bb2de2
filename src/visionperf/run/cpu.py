"""Host CPU per sample, as run.json reports it for one server and for each node of a cluster.

A test's host CPU is every thread of the process during the test (LoadGen's, the engine's,
post-processing), less two costs reported separately: what simulated cards spent on the
copies that a real card's DMA engine does, and the one-off fill of the sample buffer replicas
before LoadGen's timed run (it does not grow with the run's length).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class HostCpu:
    host_s: float  # the host's own CPU seconds for the test
    card_copy_s: float  # simulated cards' copies

    def us_per_sample(self, samples: int) -> float | None:
        return round(self.host_s / samples * 1e6, 2) if samples else None


def host_cpu(cpu_s: float, device_stats: list[dict], sample_load_cpu_s: float) -> HostCpu:
    """CPU_S (the process's, over the test) less the simulated cards' copies in DEVICE_STATS and the sample load."""
    card = sum(device["card_copy_cpu_s"] for device in device_stats)
    return HostCpu(cpu_s - card - sample_load_cpu_s, card)
