"""A vendor's card: a shared library built against include/visionperf/device.h (`plugin:PATH`).

The engine loads and drives it natively (engine/src/devices.cc); the library is planned like
the paper's cards, one driver thread per card on the card's local cores.
"""

from __future__ import annotations

from pathlib import Path

from .base import Backend, DeviceRequest, native_devices


class Plugin(Backend):
    is_card = True
    host_cpu_only = False

    def __init__(self, name: str):
        super().__init__(name)
        self.path = name.split(":", 1)[1]

    def software(self) -> str:
        return f"device plug-in {Path(self.path).name}"

    def devices(self, request: DeviceRequest, log=print) -> list:
        return native_devices(self.name, "card", request, request.in_flight, request.options)
