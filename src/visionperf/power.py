"""Board power of the run's GPUs, from NVML, sampled from a thread of its own while LoadGen runs.

NVML's power reading is the board's own sensor (milliwatts, averaged by the driver over about
a second on recent boards), so a 10 Hz sampler sees every change that matters for an
average, at no cost to the hot path. This is not MLPerf's power measurement (which needs a
PTDaemon-driven analyser on the wall socket); it is labelled as board power wherever shown.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass


@dataclass
class PowerReading:
    devices: list[str]  # PCI addresses
    samples: int
    seconds: float
    watts_avg: float  # all boards together
    watts_max: float
    per_device_avg: list[float]

    def to_json(self, samples_per_s: float | None) -> dict:
        out = {"source": "NVML board power (not an MLPerf power measurement)", "devices": self.devices,
               "readings": self.samples, "seconds": round(self.seconds, 2), "watts_avg": round(self.watts_avg, 1),
               "watts_max": round(self.watts_max, 1), "per_device_watts_avg": [round(w, 1) for w in self.per_device_avg]}
        if samples_per_s and self.watts_avg > 0:
            out["samples_per_s_per_watt"] = round(samples_per_s / self.watts_avg, 3)
        return out


def _nvml():
    try:
        import pynvml  # nvidia-ml-py installs this module name
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
    except Exception:  # no driver, no GPU: NVMLError subclasses, one per cause
        return None
    return pynvml


class PowerSampler:
    """start() before the test, stop() after: the boards' power over the test alone.
    NVML, when given, stands in for pynvml (tests)."""

    def __init__(self, pci_addresses: list[str], interval_s: float = 0.1, nvml=None):
        self.nvml = nvml or _nvml()
        self.interval_s = interval_s
        self.pci = list(pci_addresses)
        self.handles = []
        if self.nvml is not None:
            try:
                self.handles = [self.nvml.nvmlDeviceGetHandleByPciBusId(p.encode() if isinstance(p, str) else p)
                                for p in self.pci]
            except Exception:
                self.handles = []
        self._sums = [0.0] * len(self.handles)
        self._max = 0.0
        self._n = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._t0 = self._t1 = 0.0

    @property
    def available(self) -> bool:
        return bool(self.handles)

    def _read(self) -> None:
        total = 0.0
        for k, h in enumerate(self.handles):
            w = self.nvml.nvmlDeviceGetPowerUsage(h) / 1000.0
            self._sums[k] += w
            total += w
        self._max = max(self._max, total)
        self._n += 1

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self._read()
            except Exception:  # a board that stops answering ends the sampling, not the run
                return

    def start(self) -> None:
        if not self.available:
            return
        self._t0 = time.monotonic()
        self._thread = threading.Thread(target=self._loop, name="visionperf-power", daemon=True)
        self._thread.start()

    def stop(self) -> PowerReading | None:
        if self._thread is None:
            return None
        self._stop.set()
        self._thread.join()
        self._t1 = time.monotonic()
        if not self._n:
            return None
        per = [s / self._n for s in self._sums]
        return PowerReading(self.pci, self._n, self._t1 - self._t0, sum(per), self._max, per)
