// visionperf._engine: the engine bound to Python (nanobind). Conversions only: the engine
// itself is usable without Python, and the one Python device bridge is python_device.h.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/array.h>
#include <nanobind/stl/pair.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/tuple.h>
#include <nanobind/stl/vector.h>

#include <atomic>

#include "engine.h"
#include "latency.h"
#include "nms.h"
#include "python_device.h"
#include "yolo_post.h"

namespace nb = nanobind;
using namespace nb::literals;

namespace vp {
namespace {

using Tensor = std::pair<int, std::vector<int64_t>>;  // (vp_dtype, one sample's dims)
using Bytes = nb::ndarray<const uint8_t, nb::c_contig, nb::device::cpu>;
using Indices = nb::ndarray<const int64_t, nb::ndim<1>, nb::c_contig, nb::device::cpu>;

vp_tensor to_tensor(const Tensor& t) {
  vp_tensor out{};
  out.dtype = t.first;
  if (t.second.size() > VP_MAX_DIMS) throw Error("tensor has too many dimensions");
  out.ndim = int32_t(t.second.size());
  for (size_t i = 0; i < t.second.size(); ++i) out.dims[i] = t.second[i];
  dtype_size(out.dtype);  // validates
  return out;
}

// The parameters of ("nms", PARAMS): an NmsParams, or a mapping of its fields (a copy
// edited in Python: {**params, "score_threshold": ...}).
NmsParams nms_params(nb::handle params) {
  if (nb::isinstance<NmsParams>(params)) return nb::cast<NmsParams>(params);
  nb::object p = nb::type<NmsParams>()();
  for (auto [key, value] : nb::cast<nb::dict>(params)) nb::setattr(p, key, value);
  return nb::cast<NmsParams>(p);
}

// ("classify", output tensor, label offset) | ("skip",) | ("prepacked", max bytes) | ("nms", params)
// | ("yolo", YoloParams)
std::unique_ptr<Post> make_post(const nb::tuple& spec) {
  std::string kind = nb::cast<std::string>(spec[0]);
  if (kind == "classify") return make_classify(to_tensor(nb::cast<Tensor>(spec[1])), nb::cast<int>(spec[2]));
  if (kind == "skip") return make_skip();
  if (kind == "prepacked") return make_prepacked(nb::cast<size_t>(spec[1]));
  if (kind == "nms") return make_nms(nms_params(spec[1]));
  if (kind == "yolo") return make_yolo(nb::cast<YoloParams>(spec[1]));
  throw Error("unknown post-processing " + kind);
}

std::vector<size_t> cache_indices(const Indices& idx, const SampleStore& store) {
  std::vector<size_t> v(idx.data(), idx.data() + idx.shape(0));
  for (size_t i : v)
    if (i >= store.total()) throw Error("sample index " + std::to_string(i) + " is outside the cache");
  return v;
}

// NMS on one image at a time, as the engine runs it, for Python callers (tests, benchmarks,
// post-processing beside a Python device): parameters, tables and scratch made once.
class PyNms {
 public:
  explicit PyNms(const nb::tuple& spec) : p_(nms_params(spec[1])), post_(make_nms(p_)), scratch_(post_->scratch()) {}
  int run(nb::ndarray<nb::c_contig, nb::device::cpu> boxes, nb::ndarray<nb::c_contig, nb::device::cpu> scores,
          float qsl_idx, nb::ndarray<float, nb::c_contig, nb::device::cpu> out, int repeats) {
    if (boxes.nbytes() != size_t(p_.num_anchors) * 4 * dtype_size(p_.box_dtype) ||
        scores.nbytes() != size_t(p_.num_anchors) * size_t(p_.num_classes) * dtype_size(p_.score_dtype))
      throw Error("boxes/scores do not match the NMS parameters");
    if (out.size() < size_t(p_.max_per_image) * 7) throw Error("out must hold max_per_image x 7 floats");
    int n = 0;
    nb::gil_scoped_release r;
    for (int k = 0; k < std::max(1, repeats); ++k)
      n = nms_image(p_, boxes.data(), scores.data(), qsl_idx, out.data(), scratch_.get());
    return n;
  }
  int max_per_image() const { return p_.max_per_image; }

 private:
  NmsParams p_;
  std::unique_ptr<Post> post_;
  std::unique_ptr<PostScratch> scratch_;
};

// YOLO post-processing as the engine runs it, for Python callers (tests, benchmarks, DetectYolo):
// parameters, tables and scratch made once.
class PyYolo {
 public:
  explicit PyYolo(const YoloParams& p) : p_(p), post_(make_yolo(p_)), scratch_(post_->scratch()) {}
  // One image: HEAD [4 + C, A] or [A, 4 + C] (A of its input), or a whole output row.
  int run(nb::ndarray<nb::c_contig, nb::device::cpu> head, size_t qsl_idx,
          nb::ndarray<float, nb::c_contig, nb::device::cpu> out, int repeats) {
    check_dtype(head.dtype());
    if (qsl_idx >= p_.geometry.size() / 4) throw Error("qsl_idx " + std::to_string(qsl_idx) + " has no geometry");
    const int32_t* g = &p_.geometry[qsl_idx * 4];
    const size_t A = size_t(yolo_anchors(p_.strides, g[2], g[3])), ch = size_t(4 + p_.num_classes);
    if (head.ndim() == 2) {
      const size_t r = p_.channels_first ? ch : A, c = p_.channels_first ? A : ch;
      if (head.shape(0) != r || head.shape(1) != c)
        throw Error("head must be [" + std::to_string(r) + ", " + std::to_string(c) + "] for this sample and layout");
    } else if (head.size() < A * ch) {
      throw Error("head holds fewer than (4 + C) x A values for this sample");
    }
    if (out.size() < size_t(p_.max_per_image) * 7) throw Error("out must hold max_per_image x 7 floats");
    int n = 0;
    nb::gil_scoped_release r;
    for (int k = 0; k < std::max(1, repeats); ++k) n = yolo_image(p_, head.data(), qsl_idx, out.data(), scratch_.get());
    return n;
  }
  // A batch as the engine's post threads run it (Post::run): ROWS [n, (4 + C) x max_anchors]
  // output rows, each sample's head at its start; returns (responses, offsets, sizes) in bytes.
  nb::tuple run_batch(nb::ndarray<nb::c_contig, nb::device::cpu> rows, Indices qsl_idx) {
    check_dtype(rows.dtype());
    const size_t n = qsl_idx.shape(0), row_bytes = size_t(4 + p_.num_classes) * size_t(p_.max_anchors) * dtype_size(p_.dtype);
    if (rows.nbytes() != n * row_bytes) throw Error("rows must be [n, (4 + C) x max_anchors] for n indices");
    const size_t max_bytes = post_->max_response_bytes();
    auto* resp = new std::vector<uint8_t>(std::max<size_t>(n * max_bytes, 1));
    nb::capsule owner(resp, [](void* p) noexcept { delete static_cast<std::vector<uint8_t>*>(p); });
    auto* offsets = new std::vector<int64_t>(n), *sizes = new std::vector<int64_t>(n);
    nb::capsule o_owner(offsets, [](void* p) noexcept { delete static_cast<std::vector<int64_t>*>(p); });
    nb::capsule s_owner(sizes, [](void* p) noexcept { delete static_cast<std::vector<int64_t>*>(p); });
    std::vector<size_t> idx(qsl_idx.data(), qsl_idx.data() + n), off(n), sz(n);
    std::string error;
    bool ok;
    {
      nb::gil_scoped_release r;
      const void* out0 = rows.data();
      ok = post_->run(&out0, int(n), idx.data(), resp->data(), off.data(), sz.data(), scratch_.get(), &error);
    }
    if (!ok) throw Error(error);
    for (size_t i = 0; i < n; ++i) {
      (*offsets)[i] = int64_t(off[i]);
      (*sizes)[i] = int64_t(sz[i]);
    }
    return nb::make_tuple(nb::ndarray<nb::numpy, uint8_t, nb::ndim<1>>(resp->data(), {resp->size()}, owner),
                          nb::ndarray<nb::numpy, int64_t, nb::ndim<1>>(offsets->data(), {n}, o_owner),
                          nb::ndarray<nb::numpy, int64_t, nb::ndim<1>>(sizes->data(), {n}, s_owner));
  }
  int max_per_image() const { return p_.max_per_image; }

 private:
  void check_dtype(nb::dlpack::dtype dt) const {
    const bool f16 = p_.dtype == VP_FLOAT16;
    if (dt.code != uint8_t(nb::dlpack::dtype_code::Float) || dt.bits != (f16 ? 16 : 32))
      throw Error(std::string("the head must be ") + (f16 ? "float16" : "float32") + " as the parameters say");
  }
  YoloParams p_;
  std::unique_ptr<Post> post_;
  std::unique_ptr<PostScratch> scratch_;
};

// Set once an interrupted LoadGen test or warm-up left a thread running (Engine::
// loadgen_abandoned): the process must then end with os._exit (cli.py), as LoadGen's static
// logger cannot be destroyed mid-test, nor the engine while its drivers run.
std::atomic<bool> g_loadgen_abandoned{false};

// Python's signal handlers, run from an engine call that released the GIL and polls this
// (Engine::run_test, the warm-up): a handler's exception (KeyboardInterrupt, or the CLI's
// Terminated) is kept and re-raised once the engine has stopped waiting.
class SignalPoll {
 public:
  std::function<bool()> interrupted() {
    return [this] {
      nb::gil_scoped_acquire g;
      if (PyErr_CheckSignals() == 0) return false;
      PyErr_Fetch(&type_, &value_, &tb_);
      return true;
    };
  }
  void reraise() {
    if (!type_) return;
    PyErr_Restore(type_, value_, tb_);
    type_ = value_ = tb_ = nullptr;
    throw nb::python_error();
  }

 private:
  PyObject *type_ = nullptr, *value_ = nullptr, *tb_ = nullptr;
};

class PyEngine {
 public:
  PyEngine(Bytes cache, size_t row_bytes, std::vector<std::vector<int>> fill_cpus, int batch_size, nb::tuple post)
      : cache_(cache) {
    if (row_bytes == 0 || cache.nbytes() % row_bytes) throw Error("cache size is not a whole number of rows");
    auto store = std::make_unique<SampleStore>(cache.data(), cache.nbytes() / row_bytes, row_bytes, std::move(fill_cpus));
    engine_ = std::make_unique<Engine>(std::move(store), make_post(post), batch_size);
  }
  ~PyEngine() {
    {
      nb::gil_scoped_release r;
      engine_->stop();
    }
    if (engine_->loadgen_abandoned()) {  // LoadGen's thread still holds it: never freed (engine.h)
      engine_.release();
      new Bytes(cache_);
      return;
    }
    engine_.reset();  // Python devices drop their objects with the GIL held
  }

  DeviceInfo info(const std::string& name, std::vector<int> cpus, int numa, int replica, int batch, int in_flight,
                  const Tensor& input, const std::vector<Tensor>& outputs) {
    DeviceInfo d;
    d.name = name;
    d.cpus = std::move(cpus);
    d.numa_node = numa;
    if (replica < 0 || size_t(replica) >= engine_->store().replicas()) throw Error("no sample buffer replica " + std::to_string(replica));
    d.replica = replica;
    if (batch < 1) throw Error("batch size must be at least 1");
    if (in_flight < 1) throw Error("batches in flight must be at least 1");
    d.batch_size = batch;
    d.max_in_flight = in_flight;
    d.input = to_tensor(input);
    if (tensor_bytes(d.input) != engine_->store().row_bytes())
      throw Error(name + ": its input row is " + std::to_string(tensor_bytes(d.input)) + " bytes, the cache's " +
                  std::to_string(engine_->store().row_bytes()));
    for (auto& o : outputs) d.outputs.push_back(to_tensor(o));
    return d;
  }

  void add_device(const std::string& kind, const std::string& name, std::vector<int> cpus, int numa, int replica,
                  int batch, int in_flight, const Tensor& input, const std::vector<Tensor>& outputs,
                  const std::string& options, std::vector<Bytes> examples, int example_count, int index, int count) {
    DeviceInfo d = info(name, std::move(cpus), numa, replica, batch, in_flight, input, outputs);
    NativeKind native = native_kind(kind);
    d.reads_input = native.reads_input;
    std::vector<const void*> ex;
    for (auto& e : examples) {
      ex.push_back(e.data());
      examples_.push_back(e);  // kept alive: the device reads them on every batch
    }
    if (!ex.empty() && ex.size() != outputs.size()) throw Error("one example array per output");
    engine_->add_device(std::make_unique<ApiDevice>(std::move(d), native.api, native.library, options, index, count,
                                                    ex, example_count));
  }

  void add_python_device(nb::object adapter, const std::string& name, std::vector<int> cpus, int numa, int replica,
                         int batch, bool fixed_batch, const Tensor& input, const std::vector<Tensor>& outputs,
                         int in_flight, bool reads_input) {
    // in_flight > 1 only for asynchronous adapters (submit/collect); a blocking one holds one.
    DeviceInfo d = info(name, std::move(cpus), numa, replica, batch, std::max(1, in_flight), input, outputs);
    d.reads_input = reads_input;
    d.fixed_batch = fixed_batch;
    engine_->add_device(make_python_device(std::move(d), std::move(adapter)));
  }

  void load(Indices idx) {
    std::vector<size_t> v = cache_indices(idx, engine_->store());
    nb::gil_scoped_release r;
    engine_->store().load(v.data(), v.size());
  }

  // A cluster's head (visionperf/cluster/): HOOK(indices: int64 array, or None on unload)
  // after each of LoadGen's loads, under the GIL, once per call.
  void set_load_hook(nb::object hook) {
    if (hook.is_none()) {
      engine_->set_load_hook(nullptr);
      return;
    }
    auto fn = std::make_shared<nb::object>(std::move(hook));  // dropped with the GIL held (~PyEngine)
    engine_->set_load_hook([fn](const size_t* idx, size_t n) {
      nb::gil_scoped_acquire g;
      try {
        if (!idx) {
          (*fn)(nb::none());
          return;
        }
        auto* v = new std::vector<int64_t>(idx, idx + n);
        nb::capsule owner(v, [](void* p) noexcept { delete static_cast<std::vector<int64_t>*>(p); });
        (*fn)(nb::ndarray<nb::numpy, int64_t, nb::ndim<1>>(v->data(), {n}, owner));
      } catch (nb::python_error& e) {  // its message is meant for the user: no type name before it
        std::string msg = nb::cast<std::string>(nb::str(e.value()));
        throw Error(msg.substr(0, msg.find('\n')));
      }
    });
  }

  // A cluster node (visionperf/cluster/node.py): one forwarded batch, GIL released while it runs.
  nb::bytes serve(Indices idx) {
    std::vector<size_t> v = cache_indices(idx, engine_->store());
    std::string rows;
    {
      nb::gil_scoped_release r;
      rows = engine_->serve(v.data(), v.size());
    }
    return nb::bytes(rows.data(), rows.size());
  }

  bool run_test(const TestConfig& c) {
    SignalPoll signals;
    bool ok;
    {
      nb::gil_scoped_release r;
      ok = engine_->run_test(c, signals.interrupted());
    }
    after_interruptible(signals);
    return ok;
  }

  std::vector<std::pair<int64_t, int>> measure_rate(double seconds) {
    SignalPoll signals;
    std::vector<std::pair<int64_t, int>> events;
    {
      nb::gil_scoped_release r;
      engine_->measure_rate(seconds, signals.interrupted(), &events);
    }
    after_interruptible(signals);
    return events;
  }

  std::vector<double> measure_latency(int samples, double seconds) {
    SignalPoll signals;
    std::vector<double> times;
    {
      nb::gil_scoped_release r;
      engine_->measure_latency(samples, seconds, signals.interrupted(), &times);
    }
    after_interruptible(signals);
    return times;
  }

  // After an interruptible call: the process must end with _exit if it left a thread running.
  void after_interruptible(SignalPoll& signals) {
    if (engine_->loadgen_abandoned()) g_loadgen_abandoned = true;
    signals.reraise();
  }

  nb::list stats() {
    nb::list out;
    for (const DeviceStats& d : engine_->stats()) {
      nb::dict s;
      s["name"] = d.name;
      s["cpus"] = d.cpus;
      s["batches"] = d.batches;
      s["samples"] = d.samples;
      s["busy_s"] = d.busy_s;
      s["host_s"] = d.host_s;
      s["post_s"] = d.post_s;
      s["card_copy_cpu_s"] = d.card_copy_cpu_s;
      s["late_s"] = d.late_s;
      s["batch_size"] = d.batch_size;
      s["max_in_flight"] = d.max_in_flight;
      s["fixed_batch"] = d.fixed_batch;
      s["input_path"] = d.device_fetch ? "device fetch" : "host gather";
      out.append(s);
    }
    return out;
  }

  nb::tuple live() {
    LiveView v = engine_->live();
    nb::list bins;  // (lower s, upper s, count) of each bin that holds a sample
    for (const LiveView::Bin& b : v.latency) bins.append(nb::make_tuple(b.lower_s, b.upper_s, b.count));
    return nb::make_tuple(nb::cast(v.samples), nb::cast(v.batches), nb::cast(v.busy_s), bins);
  }

  std::unique_ptr<Engine> engine_;

 private:
  Bytes cache_;  // the memory map the store reads, kept alive
  std::vector<Bytes> examples_;
};

// NmsParams's fields, also readable by name (params["anchors"]) and spread into a dict
// ({**params, ...}), as the mapping the parameters once were.
constexpr const char* kNmsFields[] = {
    "class_major", "num_anchors", "num_classes", "score_dtype", "box_dtype", "score_threshold", "iou_threshold",
    "max_candidates", "max_per_class", "max_per_image", "perm", "inv_scales", "clip", "uint8_scale",
    "uint8_zero_point", "anchors", "retinanet", "level_anchors", "box_exp_clip", "image_size"};

void bind_nms(nb::module_& m) {
  nb::class_<NmsParams>(m, "NmsParams", "The parameters of decode + NMS (engine/src/nms.h)")
      .def(nb::init<>())
      .def_rw("class_major", &NmsParams::class_major)
      .def_rw("num_anchors", &NmsParams::num_anchors)
      .def_rw("num_classes", &NmsParams::num_classes)
      .def_rw("score_dtype", &NmsParams::score_dtype)
      .def_rw("box_dtype", &NmsParams::box_dtype)
      .def_rw("score_threshold", &NmsParams::score_threshold)
      .def_rw("iou_threshold", &NmsParams::iou_threshold)
      .def_rw("max_candidates", &NmsParams::max_candidates)
      .def_rw("max_per_class", &NmsParams::max_per_class)
      .def_rw("max_per_image", &NmsParams::max_per_image)
      .def_rw("perm", &NmsParams::perm)
      .def_rw("inv_scales", &NmsParams::inv_scales)
      .def_rw("clip", &NmsParams::clip)
      .def_rw("uint8_scale", &NmsParams::uint8_scale)
      .def_rw("uint8_zero_point", &NmsParams::uint8_zero_point)
      .def_rw("retinanet", &NmsParams::retinanet)
      .def_rw("level_anchors", &NmsParams::level_anchors)
      .def_rw("box_exp_clip", &NmsParams::box_exp_clip)
      .def_rw("image_size", &NmsParams::image_size)
      .def_prop_rw(
          "anchors",  // [A, 4] float32 (cy, cx, h, w): a view of the parameters' own copy
          [](NmsParams& p) {
            return nb::ndarray<nb::numpy, float, nb::ndim<2>>(p.anchors.data(), {p.anchors.size() / 4, 4}, nb::handle());
          },
          [](NmsParams& p, nb::ndarray<const float, nb::c_contig, nb::device::cpu> a) {
            p.anchors.assign(a.data(), a.data() + a.size());
          },
          nb::for_getter(nb::rv_policy::reference_internal))
      .def("keys", [](nb::handle) {
        nb::list out;
        for (const char* f : kNmsFields) out.append(f);
        return out;
      })
      .def("__getitem__", [](nb::handle self, const std::string& key) { return nb::getattr(self, key.c_str()); });
  // NMS on one image, as the engine runs it (tests hold it against the NumPy reference).
  nb::class_<PyNms>(m, "Nms")
      .def(nb::init<nb::tuple>(), "spec"_a)
      .def("__call__", &PyNms::run, "boxes"_a, "scores"_a, "qsl_idx"_a, "out"_a, "repeats"_a = 1,
           "Writes up to max_per_image rows [qsl_idx, ymin, xmin, ymax, xmax, score, class] into OUT; "
           "returns how many. REPEATS > 1 reruns the kernel (benchmarks).")
      .def_prop_ro("max_per_image", &PyNms::max_per_image);
  m.def("nms_image",
        [](nb::tuple spec, nb::ndarray<nb::c_contig, nb::device::cpu> boxes,
           nb::ndarray<nb::c_contig, nb::device::cpu> scores, float qsl_idx, int repeats) {
          PyNms k(spec);
          std::vector<float> out(size_t(k.max_per_image()) * 7);
          int n = k.run(boxes, scores, qsl_idx,
                        nb::ndarray<float, nb::c_contig, nb::device::cpu>(out.data(), {out.size()}), repeats);
          out.resize(size_t(n) * 7);
          return out;
        },
        "spec"_a, "boxes"_a, "scores"_a, "qsl_idx"_a = 0.0f, "repeats"_a = 1);
}

void bind_yolo(nb::module_& m) {
  nb::class_<YoloParams>(m, "YoloParams", "The parameters of YOLO post-processing (engine/src/yolo_post.h)")
      .def(nb::init<>())
      .def_rw("num_classes", &YoloParams::num_classes)
      .def_rw("channels_first", &YoloParams::channels_first)
      .def_rw("dtype", &YoloParams::dtype)
      .def_rw("max_anchors", &YoloParams::max_anchors)
      .def_rw("score_threshold", &YoloParams::score_threshold)
      .def_rw("iou_threshold", &YoloParams::iou_threshold)
      .def_rw("class_offset", &YoloParams::class_offset)
      .def_rw("max_candidates", &YoloParams::max_candidates)
      .def_rw("max_per_image", &YoloParams::max_per_image)
      .def_rw("strides", &YoloParams::strides)
      .def_rw("class_ids", &YoloParams::class_ids)
      .def_prop_rw(
          "geometry",  // [N, 4] int32 (h0, w0, in_h, in_w): a view of the parameters' own copy
          [](YoloParams& p) {
            return nb::ndarray<nb::numpy, int32_t, nb::ndim<2>>(p.geometry.data(), {p.geometry.size() / 4, 4},
                                                                nb::handle());
          },
          [](YoloParams& p, nb::ndarray<const int32_t, nb::ndim<2>, nb::shape<-1, 4>, nb::c_contig, nb::device::cpu> g) {
            p.geometry.assign(g.data(), g.data() + g.size());
          },
          nb::for_getter(nb::rv_policy::reference_internal));
  nb::class_<PyYolo>(m, "YoloNms")
      .def(nb::init<const YoloParams&>(), "params"_a)
      .def("__call__", &PyYolo::run, "head"_a, "qsl_idx"_a, "out"_a, "repeats"_a = 1,
           "Writes up to max_per_image rows [qsl_idx, y1/h0, x1/w0, y2/h0, x2/w0, score, class id] into OUT; "
           "returns how many. REPEATS > 1 reruns the kernel (benchmarks).")
      .def("run_batch", &PyYolo::run_batch, "rows"_a, "qsl_idx"_a,
           "A batch of output rows through Post::run, as the engine's post threads: (responses, offsets, sizes).")
      .def_prop_ro("max_per_image", &PyYolo::max_per_image);
  m.def("yolo_anchors", &yolo_anchors, "strides"_a, "in_h"_a, "in_w"_a);
}

}  // namespace
}  // namespace vp

NB_MODULE(_engine, m) {
  using namespace vp;
  m.doc() = "visionperf's compiled engine: LoadGen SUT and QSL, drivers, gather, devices, post-processing";
  nb::exception<Error>(m, "EngineError", PyExc_RuntimeError);
  bind_nms(m);
  bind_yolo(m);
  m.def("loadgen_abandoned", [] { return g_loadgen_abandoned.load(); },
        "True once an interrupted LoadGen test was left running: end the process with os._exit.");
  m.attr("DEVICE_ABI_VERSION") = VP_DEVICE_ABI_VERSION;
  m.attr("DTYPES") = nb::make_tuple(nb::make_tuple("uint8", int(VP_UINT8)), nb::make_tuple("int8", int(VP_INT8)),
                                    nb::make_tuple("float16", int(VP_FLOAT16)), nb::make_tuple("float32", int(VP_FLOAT32)),
                                    nb::make_tuple("int32", int(VP_INT32)), nb::make_tuple("int64", int(VP_INT64)));
  nb::class_<TestConfig>(m, "TestConfig")
      .def(nb::init<>())
      .def_rw("user_conf", &TestConfig::user_conf)
      .def_rw("model", &TestConfig::model)
      .def_rw("scenario", &TestConfig::scenario)
      .def_rw("mode", &TestConfig::mode)
      .def_rw("outdir", &TestConfig::outdir)
      .def_rw("audit_config", &TestConfig::audit_config)
      .def_rw("total", &TestConfig::total)
      .def_rw("performance_count", &TestConfig::performance_count);
  nb::class_<PyEngine>(m, "Engine")
      .def(nb::init<Bytes, size_t, std::vector<std::vector<int>>, int, nb::tuple>(), "cache"_a, "row_bytes"_a,
           "fill_cpus"_a, "batch_size"_a, "post"_a)
      .def("add_device", &PyEngine::add_device, "kind"_a, "name"_a, "cpus"_a, "numa"_a, "replica"_a, "batch_size"_a,
           "in_flight"_a, "input"_a, "outputs"_a, "options"_a = "", "examples"_a = std::vector<Bytes>(),
           "example_count"_a = 0, "index"_a = 0, "count"_a = 1)
      .def("add_python_device", &PyEngine::add_python_device, "adapter"_a, "name"_a, "cpus"_a, "numa"_a, "replica"_a,
           "batch_size"_a, "fixed_batch"_a, "input"_a, "outputs"_a,
           "in_flight"_a = 1, "reads_input"_a = true)
      .def("configure",
           [](PyEngine& e, double timeout_s, bool throughput_only, int post_threads, double watchdog_s) {
             e.engine_->set_batch_timeout(timeout_s);
             e.engine_->set_throughput_only(throughput_only);
             e.engine_->set_post_threads(post_threads);
             e.engine_->set_watchdog(watchdog_s);  // 0: the default floor (engine.h)
           },
           "batch_timeout_s"_a, "throughput_only"_a, "post_threads"_a, "watchdog_s"_a = 0.0)
      .def("start", [](PyEngine& e) { e.engine_->start(); })
      .def("stop", [](PyEngine& e) { e.engine_->stop(); }, nb::call_guard<nb::gil_scoped_release>())
      .def("load", &PyEngine::load)
      .def("unload", [](PyEngine& e) { e.engine_->store().unload(); }, nb::call_guard<nb::gil_scoped_release>())
      .def("measure_rate", &PyEngine::measure_rate)
      .def("measure_latency", &PyEngine::measure_latency)
      .def("run_test", &PyEngine::run_test)
      .def("set_load_hook", &PyEngine::set_load_hook, "hook"_a.none(),
           "HOOK(indices, or None on unload) after each of LoadGen's loads (a cluster's head)")
      .def("serve", &PyEngine::serve, "indices"_a,
           "one forwarded batch (a cluster node): rows of [8-byte size | max_response_bytes] in order")
      .def_prop_ro("max_response_bytes", [](PyEngine& e) { return e.engine_->max_response_bytes(); })
      .def("record_responses", [](PyEngine& e) { e.engine_->record_responses(); })
      .def("issue",
           [](PyEngine& e, const std::vector<uint64_t>& ids, const std::vector<size_t>& idx) {
             if (ids.size() != idx.size()) throw Error("one index per id");
             std::vector<mlperf::QuerySample> q(ids.size());
             for (size_t k = 0; k < q.size(); ++k) q[k] = {mlperf::ResponseId(ids[k]), idx[k]};
             e.engine_->issue_direct(std::move(q));
           },
           "ids"_a, "indices"_a)
      .def("wait_responses",
           [](PyEngine& e, size_t count, double timeout_s) {
             std::vector<std::pair<uint64_t, std::string>> r;
             {
               nb::gil_scoped_release g;
               r = e.engine_->wait_responses(count, timeout_s);
             }
             nb::list out;
             for (auto& [id, bytes] : r) out.append(nb::make_tuple(id, nb::bytes(bytes.data(), bytes.size())));
             return out;
           },
           "count"_a, "timeout_s"_a)
      .def("abort", [](PyEngine& e) { e.engine_->abort(); })
      .def("error", [](PyEngine& e) { return e.engine_->error(); })
      .def("latency_log_start", [](PyEngine& e) { e.engine_->latency_log_start(); })
      .def("latency_minutes", [](PyEngine& e) { return e.engine_->latency_minutes(); })
      .def_static("latency_bin_upper_s", &vp::LatencyLog::bin_upper_s)
      .def_prop_ro_static("latency_bins", [](nb::handle) { return vp::LatencyLog::kBins; })
      .def("stats", &PyEngine::stats)
      .def("live", &PyEngine::live,
           "(samples, batches, busy_s) per device and [(lower_s, upper_s, count)] of one-sample query "
           "latencies since live_latency(True), read without a lock (the live display)")
      .def("live_latency", [](PyEngine& e, bool on) { e.engine_->live_latency(on); }, "on"_a)
      .def("reset_stats", [](PyEngine& e) { e.engine_->reset_stats(); })
      .def_prop_ro("capacity", [](PyEngine& e) { return e.engine_->capacity(); })
      .def_prop_rw("load_cpu_s", [](PyEngine& e) { return e.engine_->store().load_cpu_s; },
                   [](PyEngine& e, double v) { e.engine_->store().load_cpu_s = v; })
      .def_prop_ro("loaded", [](PyEngine& e) { return e.engine_->store().loaded().size(); });
}
