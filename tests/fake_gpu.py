"""A GPU for machines without one: the CUDA surface backends/cuda.py gives, and TensorRT
engines that run the very graph TensorRT would build (models/tensorrt_graph.py) on ONNX
Runtime. Streams are worker threads executing their queued copies, launches and event records
in order, so the device's asynchrony (submit returns, collect waits on an event, buffers reused
per slot) is exercised for real; only the arithmetic runs on the CPU.
"""

from __future__ import annotations

import ctypes
import itertools
import queue
import threading
import time
import types
from typing import ClassVar

import numpy as np
import onnx
import onnxruntime as ort

from visionperf.backends.tensorrt import TensorRT
from visionperf.backends.tensorrt.trt_plans import Binding

_ONNX = {1: np.float32, 2: np.uint8, 3: np.int8, 6: np.int32, 7: np.int64, 10: np.float16}


class FakeStream:
    def __init__(self, handle: int):
        self.handle = handle
        self.q: queue.Queue = queue.Queue()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while True:
            op = self.q.get()
            if op is None:
                return
            op()

    def __int__(self):
        return self.handle


class FakeCuda:
    """backends.cuda.Cuda's surface. REGISTER: whether page-locking foreign memory works."""

    def __init__(self, gpus=("0000:17:00.0",), name="Fake H200 (sm_90)", register=True):
        self.gpus = list(gpus)
        self.name = name
        self.allow_register = register
        self.mem: dict[int, np.ndarray] = {}
        self.ptrs = itertools.count(0x1000, 0x1000)
        self.registered: list[tuple[int, int]] = []
        self.streams: dict[int, FakeStream] = {}
        self.current = None
        self.h2d_bytes = 0
        self.h2d_copies = 0
        self.register_calls = self.unregistered = 0  # device fetch: each load's buffer, then undone

    def device_count(self):
        return len(self.gpus)

    def device_by_pci(self, pci):
        return self.gpus.index(pci)

    def device_name(self, index):
        return self.name

    def pci_of(self, index):
        return self.gpus[index]

    def set_device(self, index):
        assert 0 <= index < len(self.gpus)
        self.current = index

    def malloc(self, nbytes):
        p = next(self.ptrs)
        self.mem[p] = np.zeros(max(1, nbytes), np.uint8)
        return p

    def free(self, ptr):
        self.mem.pop(ptr, None)

    def host_alloc(self, nbytes):
        return np.zeros(nbytes, np.uint8)

    def register(self, ptr, nbytes):
        if self.allow_register:
            self.registered.append((ptr, nbytes))
            self.register_calls += 1
        return self.allow_register

    def unregister(self, ptr):
        assert any(p == ptr for p, _ in self.registered), "unregister of memory never registered"
        self.registered = [(p, n) for p, n in self.registered if p != ptr]
        self.unregistered += 1

    def stream(self):
        s = FakeStream(len(self.streams) + 1)
        self.streams[s.handle] = s
        return s

    def event(self):
        e = threading.Event()
        e.set()  # a CUDA event never recorded counts as done
        return e

    def handle(self, stream):
        return int(stream)

    def h2d(self, dst, src_ptr, nbytes, stream):
        self.h2d_bytes += nbytes
        self.h2d_copies += 1
        stream.q.put(lambda: ctypes.memmove(self.mem[dst].ctypes.data, src_ptr, nbytes))

    def d2h(self, dst, src, nbytes, stream):
        def op():
            dst[:nbytes] = self.mem[src][:nbytes]
        stream.q.put(op)

    def record(self, event, stream):
        event.clear()
        stream.q.put(event.set)

    def done(self, event):
        return event.is_set()

    def wait(self, event):
        event.wait()

    def close(self):
        for s in self.streams.values():
            s.q.put(None)


class FakeEngine:
    """A 'TensorRT engine': the graph on ONNX Runtime, with a cost model for the GPU's time
    (PER_BATCH_S + PER_SAMPLE_S x rows, or COST(rows) seconds)."""

    def __init__(self, graph_bytes: bytes, cuda: FakeCuda, batch: int, per_batch_s=0.0, per_sample_s=0.0, cost=None,
                 compute=True):
        self.cuda, self.batch, self.compute = cuda, batch, compute
        self.n_profiles = 1
        self.profiles_taken: set[int] = set()
        self.cost = cost or (lambda rows: per_batch_s + per_sample_s * rows)
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        so.log_severity_level = 3
        self.session = ort.InferenceSession(graph_bytes, so, providers=["CPUExecutionProvider"])
        g = onnx.load_from_string(graph_bytes)
        inits = {i.name for i in g.graph.initializer}
        (inp,) = [i for i in g.graph.input if i.name not in inits]
        dims = [d.dim_value for d in inp.type.tensor_type.shape.dim][1:]
        in_dtype = np.dtype(_ONNX[inp.type.tensor_type.elem_type])
        probe = self.session.run(None, {inp.name: np.zeros((1, *dims), in_dtype)})
        self.bindings = [Binding(inp.name, True, in_dtype, tuple(dims))]
        for o, v in zip(self.session.get_outputs(), probe):
            self.bindings.append(Binding(o.name, False, v.dtype, tuple(v.shape[1:])))
        self.launches = []

    @property
    def profiles(self):
        return self.n_profiles

    def context(self):
        return FakeContext(self)


class FakeContext:
    def __init__(self, engine: FakeEngine):
        self.engine = engine
        # as TensorRT: a new context takes profile 0 if no other context has it, else none yet
        self.profile = None if 0 in engine.profiles_taken else 0
        if self.profile == 0:
            engine.profiles_taken.add(0)
        self.addr: dict[str, int] = {}
        self.shape = None

    def set_optimization_profile_async(self, index, stream):
        """As TensorRT: contexts running at once need profiles of their own."""
        assert 0 <= index < self.engine.n_profiles, "no such optimisation profile"
        assert index == self.profile or index not in self.engine.profiles_taken, "profile taken by another context"
        self.engine.profiles_taken.discard(self.profile)
        self.engine.profiles_taken.add(index)
        self.profile = index
        return True

    def set_tensor_address(self, name, ptr):
        self.addr[name] = ptr

    def set_input_shape(self, name, shape):
        assert self.profile is not None, "a context without an optimisation profile"
        assert shape[0] <= self.engine.batch, "a batch larger than the engine's profile"
        self.shape = tuple(shape)

    def execute_async_v3(self, handle):
        e, shape, addr = self.engine, self.shape, dict(self.addr)
        inp = e.bindings[0]
        rows = shape[0]
        e.launches.append(rows)

        def op():
            t = time.perf_counter()
            if not e.compute:  # the cost model alone (batch sweeps)
                time.sleep(max(0.0, e.cost(rows)))
                return
            mem = e.cuda.mem
            x = mem[addr[inp.name]][: rows * inp.row_bytes].view(inp.dtype).reshape(rows, *inp.sample_shape)
            outs = e.session.run([b.name for b in e.bindings[1:]], {inp.name: x})
            for b, v in zip(e.bindings[1:], outs):
                raw = np.ascontiguousarray(v).reshape(-1).view(np.uint8)
                mem[addr[b.name]][: raw.size] = raw
            rest = e.cost(rows) - (time.perf_counter() - t)
            if rest > 0:
                time.sleep(rest)
        e.cuda.streams[handle].q.put(op)
        return True


class FakeTensorRT(TensorRT):
    """TensorRT on the fakes: 'building' records the batch and keeps the graph."""

    builds: ClassVar[list[int]] = []  # every engine 'built', across instances

    def __init__(self, model, workload, options, cuda=None, trt_plan_cache=None, log=print, **cost):
        self.fake_cost = cost
        super().__init__(model, workload, options, cuda=cuda or FakeCuda(),
                         trt=types.SimpleNamespace(__version__="fake-11.4"), trt_plan_cache=trt_plan_cache, log=log)

    @classmethod
    def preflight(cls):
        pass

    def _build(self, batch, profiles=1):
        FakeTensorRT.builds.append(batch)
        return batch.to_bytes(4, "little") + profiles.to_bytes(4, "little") + self.graph_bytes

    def _load(self, plan):
        e = FakeEngine(plan[8:], self.cuda, int.from_bytes(plan[:4], "little"), **self.fake_cost)
        e.n_profiles = int.from_bytes(plan[4:8], "little")
        return e


class FakeNvml(types.ModuleType):
    """pynvml's few calls power.py makes: every board draws 300 W + 10 W x its index."""

    def __init__(self, gpus):
        super().__init__("pynvml")
        self.gpus = list(gpus)

    def nvmlInit(self):
        pass

    def nvmlDeviceGetHandleByPciBusId(self, pci):
        return self.gpus.index(pci.decode() if isinstance(pci, bytes) else pci)

    def nvmlDeviceGetPowerUsage(self, handle):
        return 300_000 + 10_000 * handle


def main(argv: list[str]) -> int:
    """`python tests/fake_gpu.py [--gpus N] [--no-register] [--stats FILE] visionperf-args...`:
    the visionperf command with --backend tensorrt on fake GPUs, in a process of its own
    (LoadGen takes one test configuration per process)."""
    import json
    import sys

    from visionperf import cli
    from visionperf.backends.tensorrt import TensorRTBackend

    gpus, register, stats = 1, True, None
    while argv and argv[0].startswith("--") and argv[0] in ("--gpus", "--no-register", "--stats"):
        flag = argv.pop(0)
        if flag == "--gpus":
            gpus = int(argv.pop(0))
        elif flag == "--no-register":
            register = False
        else:
            stats = argv.pop(0)
    cuda = FakeCuda(gpus=tuple(f"0000:{0x17 + k:02x}:00.0" for k in range(gpus)), register=register)

    class OnFakes(FakeTensorRT):
        def __init__(self, *args, **kw):
            super().__init__(*args, cuda=cuda, **kw)

    TensorRTBackend.runtime = OnFakes
    sys.modules["pynvml"] = FakeNvml(cuda.gpus)
    try:
        code = cli.main(argv)
    finally:
        if stats:
            with open(stats, "w") as f:
                json.dump({"registered": len(cuda.registered), "h2d_bytes": cuda.h2d_bytes,
                           "h2d_copies": cuda.h2d_copies, "register_calls": cuda.register_calls,
                           "unregistered": cuda.unregistered}, f)
    sys.stdout.flush()
    return code


if __name__ == "__main__":
    import sys

    sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))
    sys.exit(main(sys.argv[1:]))
