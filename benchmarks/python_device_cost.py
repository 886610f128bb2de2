"""What driving a device from Python costs the host, per batch: the path --backend tensorrt
(and a cluster's remote nodes) take, against a native card on the same engine.

    python benchmarks/python_device_cost.py [--repeats 5] [--batches 20000]

Each device does no work: it answers every batch at once, so the figure is the engine's cost
plus, for the Python device, one GIL-taking submit and one collect per batch (sut._AsyncBridge
-> the device's own Python). Measured side by side in one process, batch 1 (the cost per batch
is what matters: a GPU at 94,620 samples/s with batches of 256 runs 370 batches/s), devices 1
and 2 (two driver threads contending for the GIL), medians of REPEATS.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from visionperf.sut import NativeDevice, SystemUnderTest, tensor

ROW = (8,)


class InstantAsync:
    """An asynchronous Python device whose batches are done the moment they are submitted."""

    fixed_batch = False
    reads_input = True
    numa_node = None

    class Ticket:
        __slots__ = ("ready_ns", "rows")

        def __init__(self, rows):
            self.ready_ns = time.monotonic_ns()
            self.rows = rows

    def __init__(self, name, cpus):
        self.name, self.cpus, self.batch_size, self.max_in_flight = name, tuple(cpus), 1, 2
        self.input_shape, self.input_dtype = ROW, np.dtype(np.uint8)
        self.out = np.zeros((1,), np.int64)

    def submit(self, batch, indices):
        return self.Ticket(len(batch))

    def collect(self, ticket, timeout_s):
        return [self.out[: ticket.rows]]

    def close(self):
        pass


class Label:
    def engine_spec(self):
        return ("classify", tensor(np.int64, ()), 0)

    def output_shapes(self, batch, workload):
        return [((batch,), np.int64)]


def batches_per_s(kind: str, devices: int, batches: int) -> float:
    data = np.zeros((1024, *ROW), np.uint8)
    if kind == "python":
        devs = [InstantAsync(f"py{k}", [k]) for k in range(devices)]
    else:  # the engine's null device: completes at once, no gather (the engine alone)
        devs = [NativeDevice("null", f"null{k}", (k,), 0, 1, 1, ROW, np.dtype(np.uint8)) for k in range(devices)]
    sut = SystemUnderTest(devs, data, [()], [0] * devices, Label(), None, 1)
    sut.start(0.0, throughput_only=True)
    sut.load(list(range(1024)))
    sut.record_responses()
    t = time.perf_counter()
    sut.issue(list(range(batches)), [i % 1024 for i in range(batches)])
    sut.wait_responses(batches, 120)
    rate = batches / (time.perf_counter() - t)
    sut.stop()
    return rate


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--batches", type=int, default=20000)
    a = ap.parse_args()
    for devices in (1, 2):
        res = {"python": [], "native": []}
        for _ in range(a.repeats):  # interleaved: the machine's noise hits both alike
            for kind in res:
                res[kind].append(batches_per_s(kind, devices, a.batches))
        py, nat = statistics.median(res["python"]), statistics.median(res["native"])
        print(f"devices {devices}: Python async device {py:,.0f} batches/s ({1e6 / py:.1f} us/batch), "
              f"native null {nat:,.0f} batches/s; python/native {py / nat:.3f}")


if __name__ == "__main__":
    main()
