"""What every backend answers once per run, before and while its devices are made.

A backend is an object, not a name compared as a string: the harness, the CLI and the cluster
ask it whether its devices are planned like cards, what it must check before anything is
built, which accelerators it runs on, the score format its detection heads come back in, and
how it makes one device per placement-plan entry. Adding a backend is one module with a
subclass of `Backend` plus one line in `backends/__init__.py`'s registry.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import UserError


@dataclass(frozen=True)
class DeviceRequest:
    """What a run asks of every device a backend makes (one per placement-plan entry)."""

    model: object  # models.ModelInfo
    workload: object  # workloads.Workload
    plan: list  # placement.Partition, one per device
    batch_size: int
    output_shapes: list | None = None  # [(shape, dtype)] the post-processing reads
    card_rate: float | None = None  # simulated cards: samples/s each
    in_flight: int = 2  # cards and GPUs: batches each holds at once
    latency: bool = False  # a latency scenario (Server, SingleStream, MultiStream), not Offline
    options: str = ""  # --backend-options: "key=value;..."
    batch_given: bool = True  # --batch-size was given (a GPU sweeps for one when not)
    geometry: object = None  # letterboxed caches: int32 [rows, 4] (h0, w0, input h, input w) per cache row


class Backend:
    """The defaults: a backend whose devices are the host's CPU cores and need no checks."""

    name: str = ""
    is_card: bool = False  # devices fed by host cores, planned like the paper's cards (Table IV)
    runs_model_batch: bool = False  # runs a model's fixed batch dimension as the batch size
    devices_per_core: int | None = None  # at most this many devices per physical core (None: any number)
    devices_noun: str = ""  # what its devices are called in messages (default: "<name> devices")
    real_devices: bool = True  # False: a stand-in (simulated card, null): not a submittable result
    host_cpu_only: bool = True  # no accelerator: the system description says 0 accelerators
    per_sample_shapes: bool = False  # runs each batch at its own input shape (YOLO's rect letterbox)

    def __init__(self, name: str | None = None):
        if name:
            self.name = name  # the name the user gave (run.json keeps it): a plug-in's path, null's kind

    def preflight(self) -> None:
        """What the backend needs installed, checked before a run builds a cache: one line if not."""

    def accelerators(self, topology):
        """The accelerators a card backend's plan is made of (None: any the topology has)."""
        return None

    def score_format(self, workload, model):
        """The format of the raw detection scores its devices return (None: float32)."""
        return None

    def software(self) -> str | None:
        """This backend's part of the system description's framework field (None: nothing)."""
        return None

    def check_device_count(self, counts: int | list[int], where: str = "this machine") -> None:
        """Refuse device counts WHERE cannot hold (devices_per_core), before anything is read or written."""
        per = self.devices_per_core
        if per is None:
            return
        from ..topology import read_topology

        counts = [counts] if isinstance(counts, int) else list(counts)
        cores = len(read_topology().cores)
        most = per * cores
        if max(counts) <= most:
            return
        given = ",".join(map(str, counts))
        share = (f"each {self.name} device needs one" if per == 1 else
                 f"at most {per} {self.devices_noun or self.name + ' devices'} share one")
        fix = f"--devices {most} or fewer" if len(counts) == 1 else f"counts up to {most}"
        raise UserError(f"--devices {given}: {where} has {cores} physical core(s) and {share}: pass {fix}")

    def card_rate(self, workload, card_rate: float | None, batch_size: int, max_s: float) -> float | None:
        """Each device's samples/s where the options set it (a stand-in card), checked; None: unknown."""
        return None

    def card_memory_bytes(self, in_flight: int, batch_size: int, row_bytes: int) -> int:
        """Host memory each device keeps of its own (a simulated card's copies of its input batches)."""
        return 0

    def examples_bytes(self, workload, sample_bytes: int) -> int:
        """Host memory of the output examples the devices return (a simulated card's realistic outputs)."""
        return 0

    def make_devices(self, model, workload, plan, batch_size: int, output_shapes=None, *, log=print,
                     **options) -> list:
        """One device per entry of PLAN (OPTIONS: the other fields of DeviceRequest)."""
        return self.devices(DeviceRequest(model, workload, plan, batch_size, output_shapes, **options), log)

    def devices(self, request: DeviceRequest, log=print) -> list:
        """What each backend implements: one device per entry of REQUEST.plan."""
        raise NotImplementedError


def native_devices(kind: str, prefix: str, request: DeviceRequest, in_flight: int, options: str = "",
                   examples=(), peak_rate: float | None = None) -> list:
    """Devices the compiled engine runs itself (null, simulated cards, C plug-ins), one per
    plan entry, named PREFIX0, PREFIX1, ..."""
    from ..sut import NativeDevice

    w = request.workload
    return [NativeDevice(kind, f"{prefix}{i}", tuple(part.cpus), part.numa_node, request.batch_size, in_flight,
                         w.row_shape(w.layout), np.dtype(request.model.input_dtype), options, list(examples),
                         peak_rate)
            for i, part in enumerate(request.plan)]
