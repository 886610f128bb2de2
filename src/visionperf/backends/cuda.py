"""The few CUDA runtime calls a GPU device makes, over cuda-python (NVIDIA's own bindings).

Kept to one small surface (`Cuda`) so the TensorRT device can be driven, on a machine without a
GPU, by a fake of the same surface (tests/fake_gpu.py). Every call raises `CudaError` with the
call's name and CUDA's own error name. cuda-python's runtime calls release the GIL while they
run, so a driver thread waiting on an event lets the others work.
"""

from __future__ import annotations

import numpy as np

from ..errors import UserError


class CudaError(RuntimeError):
    pass


def _import_cudart():
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
    except ImportError:
        try:
            from cuda import cudart  # older cuda-python
        except ImportError:
            raise UserError("--backend tensorrt needs cuda-python and tensorrt: pip install 'visionperf[tensorrt]' "
                            "(or make install EXTRAS=tensorrt)") from None
    return cudart


class Cuda:
    """One process's CUDA runtime. Host buffers are numpy arrays; device buffers are ints."""

    def __init__(self):
        self.rt = _import_cudart()
        self._registered: set[int] = set()
        err, n = self.rt.cudaGetDeviceCount()
        if int(err) != 0 or n == 0:
            raise UserError("--backend tensorrt found no usable NVIDIA GPU (CUDA: "
                            f"{self._name(err)}): check nvidia-smi and the driver, or pick another backend")

    def _name(self, err) -> str:
        _, name = self.rt.cudaGetErrorName(err)
        return name.decode() if isinstance(name, bytes) else str(name)

    def _check(self, what: str, result):
        err, *rest = result if isinstance(result, tuple) else (result,)
        if int(err) != 0:
            raise CudaError(f"{what}: {self._name(err)}")
        return rest[0] if len(rest) == 1 else (tuple(rest) if rest else None)

    # -- devices ---------------------------------------------------------------------------
    def device_count(self) -> int:
        return self._check("cudaGetDeviceCount", self.rt.cudaGetDeviceCount())

    def device_by_pci(self, pci: str) -> int:
        """CUDA's index of the GPU at PCI address PCI (CUDA orders GPUs fastest first unless
        told otherwise; the plan names them by address)."""
        return self._check("cudaDeviceGetByPCIBusId", self.rt.cudaDeviceGetByPCIBusId(pci.encode()))

    def pci_of(self, index: int) -> str:
        """The GPU's PCI address (domain:bus:device.function), as NVML and sysfs name it."""
        raw = self._check("cudaDeviceGetPCIBusId", self.rt.cudaDeviceGetPCIBusId(32, index))
        text = raw.decode(errors="replace") if isinstance(raw, (bytes, bytearray)) else str(raw)
        return text.split("\0")[0].strip().lower()

    def device_name(self, index: int) -> str:
        p = self._check("cudaGetDeviceProperties", self.rt.cudaGetDeviceProperties(index))
        name = p.name.decode(errors="replace").rstrip("\0") if isinstance(p.name, bytes) else str(p.name)
        return f"{name} (sm_{p.major}{p.minor})"

    def set_device(self, index: int) -> None:
        self._check("cudaSetDevice", self.rt.cudaSetDevice(index))

    # -- memory ----------------------------------------------------------------------------
    def malloc(self, nbytes: int) -> int:
        return int(self._check("cudaMalloc", self.rt.cudaMalloc(max(1, nbytes))))

    def free(self, ptr: int) -> None:
        self.rt.cudaFree(ptr)

    def host_alloc(self, nbytes: int) -> np.ndarray:
        """Page-locked host memory (DMA-able: copies to and from it run asynchronously)."""
        ptr = int(self._check("cudaHostAlloc", self.rt.cudaHostAlloc(max(1, nbytes), self.rt.cudaHostAllocPortable)))
        import ctypes

        buf = (ctypes.c_uint8 * max(1, nbytes)).from_address(ptr)
        arr = np.frombuffer(buf, np.uint8, count=nbytes)
        self._hosts = getattr(self, "_hosts", [])
        self._hosts.append(ptr)
        return arr

    def register(self, ptr: int, nbytes: int) -> bool:
        """Page-lock host memory someone else allocated (the engine's staging buffer) so copies
        from it are DMA; False where the system refuses (the caller then stages in its own)."""
        if ptr in self._registered:
            return True
        err, = self.rt.cudaHostRegister(ptr, nbytes, self.rt.cudaHostRegisterPortable)
        if int(err) != 0:
            return False
        self._registered.add(ptr)
        return True

    def unregister(self, ptr: int) -> None:
        """Undo register() before that memory is freed (a later buffer may reuse the address)."""
        if ptr in self._registered:
            self._registered.discard(ptr)
            self._check("cudaHostUnregister", self.rt.cudaHostUnregister(ptr))

    # -- streams and events ----------------------------------------------------------------
    def stream(self):
        return self._check("cudaStreamCreateWithFlags", self.rt.cudaStreamCreateWithFlags(self.rt.cudaStreamNonBlocking))

    def event(self):
        return self._check("cudaEventCreateWithFlags", self.rt.cudaEventCreateWithFlags(self.rt.cudaEventDisableTiming))

    def handle(self, stream) -> int:
        """The raw cudaStream_t TensorRT's execute_async_v3 takes."""
        get = getattr(stream, "getPtr", None)
        return int(get()) if get else int(stream)

    def h2d(self, dst: int, src_ptr: int, nbytes: int, stream) -> None:
        self._check("cudaMemcpyAsync(host to device)", self.rt.cudaMemcpyAsync(
            dst, src_ptr, nbytes, self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice, stream))

    def d2h(self, dst: np.ndarray, src: int, nbytes: int, stream) -> None:
        self._check("cudaMemcpyAsync(device to host)", self.rt.cudaMemcpyAsync(
            dst.ctypes.data, src, nbytes, self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost, stream))

    def record(self, event, stream) -> None:
        self._check("cudaEventRecord", self.rt.cudaEventRecord(event, stream))

    def done(self, event) -> bool:
        err, = self.rt.cudaEventQuery(event)
        if int(err) == int(self.rt.cudaError_t.cudaErrorNotReady):
            return False
        if int(err) != 0:
            raise CudaError(f"cudaEventQuery: {self._name(err)}")
        return True

    def wait(self, event) -> None:
        self._check("cudaEventSynchronize", self.rt.cudaEventSynchronize(event))

    def close(self) -> None:
        for ptr in getattr(self, "_hosts", []):
            self.rt.cudaFreeHost(ptr)
        self._hosts = []
        for ptr in self._registered:
            self.rt.cudaHostUnregister(ptr)
        self._registered.clear()
