"""The harness alone: native devices that complete each batch at once.

`null` skips the gather (LoadGen, the engine and the completion path, nothing else);
`null-gather` keeps it, so the host copy of the workload's rows is included.
"""

from __future__ import annotations

from .base import Backend, DeviceRequest, native_devices


class Null(Backend):
    name = "null"
    real_devices = False

    def devices(self, request: DeviceRequest, log=print) -> list:
        return native_devices(self.name, "null", request, 1)
