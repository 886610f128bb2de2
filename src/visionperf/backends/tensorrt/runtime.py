"""What --backend tensorrt needs once per run (the CUDA runtime, TensorRT, the graph), and the
devices it makes: one per GPU of the plan, the batch swept for in Offline when not given."""

from __future__ import annotations

from ...errors import UserError
from .device import TrtDevice
from .options import SWEEP_SIZES, TrtOptions, require_tensorrt
from .trt_plans import LoadedTrtPlan, TrtPlanCache, build_trt_plan, model_digest, trt_plan_key
from .sweep import sweep_batch


def fp16_outputs(workload, model) -> tuple[str, ...]:
    """The outputs an engine answers in float16: a detection head's scores (cut before NMS)."""
    if workload.task != "detection" or model.kind != "raw":
        return ()
    from ...workloads import DETECTION

    return (DETECTION[workload.name].raw_outputs[1],)


def score_format(workload, model):
    """The scores' format the host NMS reads from a GPU (None: float32, or no NMS on the host)."""
    from ...postprocess.nms import ScoreFormat

    return ScoreFormat("float16") if fp16_outputs(workload, model) else None


class TensorRT:
    """What --backend tensorrt needs once per run: the CUDA runtime, TensorRT, the graph."""

    def __init__(self, model, workload, options: TrtOptions, cuda=None, trt=None, trt_plan_cache=None, log=print):
        from ...models.tensorrt_graph import tensorrt_graph

        self.trt = trt or require_tensorrt()
        if cuda is None:
            from ..cuda import Cuda

            cuda = Cuda()
        self.cuda, self.model, self.workload, self.options, self.log = cuda, model, workload, options, log
        self.cache = trt_plan_cache or TrtPlanCache()
        self.graph = tensorrt_graph(model, options.precision, fp16_outputs=fp16_outputs(workload, model))
        self.graph_bytes = self.graph.SerializeToString()
        self.digest = model_digest(model.path)
        self.row_shape = tuple(workload.row_shape(workload.layout))

    @classmethod
    def preflight(cls) -> None:
        """Before a run builds anything: TensorRT and CUDA Python are there, and a GPU."""
        require_tensorrt()
        from ..cuda import Cuda

        Cuda()

    def family(self, gpu: str) -> str:
        return trt_plan_key(self.digest, self.options.precision, (0, 0, 0), gpu, self.trt.__version__)

    def load_trt_plan(self, gpu_index: int, batch: int, profiles: int = 1):
        self.cuda.set_device(gpu_index)
        gpu = self.cuda.device_name(gpu_index)
        key = trt_plan_key(self.digest, self.options.precision, (1, batch, batch), gpu, self.trt.__version__, profiles)
        describe = {"model": str(self.model.path), "model_blake2b": self.digest, "precision": self.options.precision,
                    "batch": [1, batch, batch], "profiles": profiles, "gpu": gpu, "tensorrt": self.trt.__version__}
        serialised = self.cache.get_or_build(key, describe, lambda: self._build(batch, profiles), log=self.log)
        return self._load(serialised)

    def _build(self, batch: int, profiles: int = 1) -> bytes:
        return build_trt_plan(self.trt, self.graph_bytes, self.model.input_name, self.row_shape, batch,
                          self.options.workspace_mb, self.model.path, profiles)

    def _load(self, plan: bytes):
        return LoadedTrtPlan(self.trt, plan)

    def device(self, name: str, part, gpu_index: int, batch: int, in_flight: int, output_dtypes=(),
               trt_plan_batch: int | None = None, fetch: bool = False) -> TrtDevice:
        """A device running batches of up to BATCH on an engine built for ENGINE_BATCH (default:
        BATCH; a swept batch runs on the sweep's engine, so it needs no second build)."""
        return TrtDevice(name, part, self.cuda, gpu_index, self.load_trt_plan(gpu_index, trt_plan_batch or batch, in_flight),
                         self.row_shape, self.model.input_dtype, batch, in_flight, list(self.model.outputs),
                         output_dtypes, fetch)

    def best_batch(self, part, gpu_index: int, in_flight: int, sizes=SWEEP_SIZES, seconds: float = 1.0) -> int:
        family = self.family(self.cuda.device_name(gpu_index)) + "-" + ",".join(map(str, sizes))
        best = self.cache.remembered_batch(family)
        if best is not None:
            self.log(f"batch {best}: the best size on this GPU, found by an earlier sweep")
            return best
        self.log(f"sweeping batch sizes {', '.join(map(str, sizes))} on {self.cuda.device_name(gpu_index)}:")
        best, rates = sweep_batch(lambda b: self.device("sweep", part, gpu_index, b, in_flight), sizes, seconds,
                                  log=self.log)
        self.cache.remember_batch(family, best, rates)
        self.log(f"batch {best} chosen (remembered for this model, precision, GPU and TensorRT)")
        return best


def gpu_index_of(cuda, part, k: int) -> int:
    """CUDA's index of the plan's K-th GPU, found by its PCI address where the plan has one."""
    return cuda.device_by_pci(part.pci) if part.pci else k


def make_tensorrt_devices(model, workload, plan, batch_size: int, in_flight: int, options_text: str,
                          offline: bool, log=print, output_dtypes=(), batch_given: bool = True, factory=None,
                          **factory_args) -> list[TrtDevice]:
    """One device per GPU of the plan. Offline without a --batch-size sweeps for the best one
    (remembered). FACTORY (and its arguments) stand in for TensorRT and CUDA in tests."""
    if model.kind == "nms":
        raise UserError(f"{model.path.name} has NMS inside the graph: --backend tensorrt runs models cut before NMS "
                        "(the host NMS follows), e.g. `visionperf build-model` ones")
    opts = TrtOptions.parse(options_text, "int8" if model.quantization is not None else "fp16",
                            default_sweep=offline and not batch_given)
    rt = (factory or TensorRT)(model, workload, opts, log=log, **factory_args)
    n = rt.cuda.device_count()
    if len(plan) > n:
        raise UserError(f"--devices {len(plan)}, but CUDA sees {n} GPU(s): pass --devices {n} or fewer")
    gpus = [gpu_index_of(rt.cuda, part, k) for k, part in enumerate(plan)]
    trt_plan_batch = None
    if opts.sweep and offline:
        batch_size, trt_plan_batch = rt.best_batch(plan[0], gpus[0], in_flight, opts.sizes), max(opts.sizes)
    return [rt.device(f"gpu{k}", part, gpus[k], batch_size, in_flight, output_dtypes, trt_plan_batch, opts.fetch)
            for k, part in enumerate(plan)]
