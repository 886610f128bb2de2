// visionperf._engine: the thin Python face of the engine (nanobind). The engine itself is
// usable without Python; this file adds only the Python device bridge, which takes the GIL
// once per batch and never per sample.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/pair.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/tuple.h>
#include <nanobind/stl/vector.h>

#include <cctype>
#include <deque>
#include <cstring>

#include "engine.h"
#include "nms.h"

namespace nb = nanobind;
using namespace nb::literals;

namespace vp {
namespace {

using Tensor = std::pair<int, std::vector<int64_t>>;  // (vp_dtype, one sample's dims)

vp_tensor to_tensor(const Tensor& t) {
  vp_tensor out{};
  out.dtype = t.first;
  if (t.second.size() > VP_MAX_DIMS) throw Error("tensor has too many dimensions");
  out.ndim = int32_t(t.second.size());
  for (size_t i = 0; i < t.second.size(); ++i) out.dims[i] = t.second[i];
  dtype_size(out.dtype);  // validates
  return out;
}

const char* dtype_name(int32_t d) {
  switch (d) {
    case VP_UINT8: return "uint8";
    case VP_INT8: return "int8";
    case VP_FLOAT16: return "float16";
    case VP_FLOAT32: return "float32";
    case VP_INT32: return "int32";
    case VP_INT64: return "int64";
  }
  return "?";
}

// A buffer's elements are of type D: the same size, and float for float, integer for integer
// (struct format characters, byte-order prefix aside).
bool same_element_type(const Py_buffer& b, int32_t d) {
  std::string f = b.format ? b.format : "B";
  while (!f.empty() && std::strchr("@=<>!", f[0])) f.erase(0, 1);
  if (f.size() != 1 || size_t(b.itemsize) != dtype_size(d)) return false;
  bool is_float = std::strchr("efd", f[0]) != nullptr;
  bool is_int = std::strchr("bBhHiIlLqQ", f[0]) != nullptr;
  bool want_float = d == VP_FLOAT16 || d == VP_FLOAT32;
  bool want_signed = d == VP_INT8 || d == VP_INT32 || d == VP_INT64;
  if (want_float) return is_float;
  return is_int && (d == VP_UINT8 ? f[0] == 'B' : (want_signed == bool(std::islower(f[0]))));
}

// One line from a Python exception: "RuntimeError: message" (what() starts with the
// traceback's first line instead).
std::string python_error_line(nb::python_error& e) {
  std::string out;
  try {
    out = nb::cast<std::string>(nb::handle(e.type()).attr("__name__"));
    std::string msg = nb::cast<std::string>(nb::str(e.value()));
    if (!msg.empty()) out += ": " + msg;
  } catch (...) {
    out = e.what();
  }
  auto nl = out.find('\n');
  return nl == std::string::npos ? out : out.substr(0, nl);
}

// A Python device (ONNX Runtime partition, a GPU runtime, a remote node). Two kinds:
//  - blocking: ADAPTER.run(memoryview, rows, qsl_idx) computes one batch on the driver's
//    thread and returns its outputs;
//  - asynchronous (the adapter has submit and collect, like a card):
//    ADAPTER.submit(memoryview, rows, qsl_idx) queues the batch and returns at once, with
//    a ticket or (ticket, ready_ns): ready_ns (CLOCK_MONOTONIC) is when to look, an estimate;
//    ADAPTER.collect(ticket, timeout_s) returns the outputs of the oldest batch, or None if it
//    is not done within timeout_s (0: poll; None: wait).
// Outputs are C-contiguous buffers of at least rows x one sample's bytes each; the memoryview
// is the engine's again once the call returns (copy what is needed). The GIL is taken once
// per call, never per sample; the device releases it while it computes or waits.
class PyDevice : public Device {
 public:
  PyDevice(DeviceInfo info, nb::object adapter) : Device(std::move(info)), adapter_(std::move(adapter)) {
    async_ = nb::hasattr(adapter_, "submit") && nb::hasattr(adapter_, "collect");
    if (async_) this->info.exact_ready = false;
  }
  ~PyDevice() override {
    nb::gil_scoped_acquire g;
    adapter_.reset();
  }
  bool blocking() const override { return !async_; }
  int submit(const void*, int, uint64_t*, int64_t*) override {
    error_ = "a Python device is given its batch's indices";
    return VP_ERROR;
  }
  int submit_indexed(const void* input, int rows, const size_t* qsl_idx, int n, uint64_t* ticket,
                     int64_t* ready_ns) override {
    if (!async_) return Device::submit_indexed(input, rows, qsl_idx, n, ticket, ready_ns);
    nb::gil_scoped_acquire g;
    try {
      nb::object r = adapter_.attr("submit")(view(input, rows), rows, indices(qsl_idx, n));
      if (nb::isinstance<nb::tuple>(r)) {
        nb::tuple t = nb::borrow<nb::tuple>(r);
        if (t.size() != 2) throw Error("submit returned a tuple of " + std::to_string(t.size()) + ", expected (ticket, ready_ns)");
        *ticket = nb::cast<uint64_t>(t[0]);
        *ready_ns = nb::cast<int64_t>(t[1]);
      } else {
        *ticket = nb::cast<uint64_t>(r);
        *ready_ns = 0;
      }
      rows_.push_back(rows);
      return VP_OK;
    } catch (nb::python_error& e) {
      error_ = python_error_line(e);
    } catch (const std::exception& e) {
      error_ = e.what();
    }
    return VP_ERROR;
  }
  int collect(uint64_t ticket, void* const* outputs, int64_t timeout_ns) override {
    if (!async_) return VP_ERROR;
    nb::gil_scoped_acquire g;
    bool done = false;  // after VP_OK or VP_ERROR the ticket is done: its rows leave the FIFO
    try {
      nb::object timeout = timeout_ns < 0 ? nb::none() : nb::cast(1e-9 * double(timeout_ns));
      nb::object outs = adapter_.attr("collect")(ticket, timeout);
      if (outs.is_none()) return VP_NOT_READY;
      done = true;
      copy_outputs(outs, next_rows(), outputs);
      return VP_OK;
    } catch (nb::python_error& e) {
      error_ = python_error_line(e);
    } catch (const std::exception& e) {
      error_ = e.what();
    }
    if (!done) next_rows();
    return VP_ERROR;
  }
  int run(const void* input, int rows, const size_t* qsl_idx, void* const* outputs) override {
    nb::gil_scoped_acquire g;
    try {
      copy_outputs(adapter_.attr("run")(view(input, rows), rows, indices(qsl_idx, rows)), rows, outputs);
      return VP_OK;
    } catch (nb::python_error& e) {
      error_ = python_error_line(e);
    } catch (const std::exception& e) {
      error_ = e.what();
    }
    return VP_ERROR;
  }
  std::string last_error() override { return error_; }

 private:
  nb::object view(const void* input, int rows) {
    size_t bytes = size_t(rows) * info.input_row_bytes();
    PyObject* mv = PyMemoryView_FromMemory(static_cast<char*>(const_cast<void*>(input)), Py_ssize_t(bytes), PyBUF_READ);
    if (!mv) throw nb::python_error();
    return nb::steal(mv);
  }
  static nb::list indices(const size_t* qsl_idx, int n) {
    nb::list idx;
    for (int i = 0; i < n; ++i) idx.append(qsl_idx[i]);
    return idx;
  }
  // The engine collects the oldest batch first, so the rows of the tickets are a FIFO.
  int next_rows() {
    if (rows_.empty()) return info.batch_size;
    int r = rows_.front();
    rows_.pop_front();
    return r;
  }

  void copy_outputs(nb::handle outs, int rows, void* const* outputs) {
    size_t k = 0;
    for (nb::handle o : outs) {
      if (k >= info.outputs.size()) throw Error("returned more outputs than the " + std::to_string(info.outputs.size()) + " expected");
      Py_buffer buf;
      if (PyObject_GetBuffer(o.ptr(), &buf, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) != 0) throw nb::python_error();
      size_t got = size_t(buf.len);
      size_t need = size_t(rows) * tensor_bytes(info.outputs[k]);
      bool same_type = same_element_type(buf, info.outputs[k].dtype);
      if (got >= need && same_type) std::memcpy(outputs[k], buf.buf, need);
      std::string format = buf.format ? buf.format : "B";
      PyBuffer_Release(&buf);
      if (!same_type)
        throw Error("output " + std::to_string(k) + " has elements of type '" + format + "', expected " +
                    dtype_name(info.outputs[k].dtype));
      if (got < need)
        throw Error("output " + std::to_string(k) + " has " + std::to_string(got) + " bytes for " + std::to_string(rows) +
                    " rows, expected " + std::to_string(need) + ": wrong shape or type");
      ++k;
    }
    if (k != info.outputs.size()) throw Error("returned " + std::to_string(k) + " outputs, expected " + std::to_string(info.outputs.size()));
  }

  nb::object adapter_;
  bool async_ = false;
  std::deque<int> rows_;  // rows of each submitted, uncollected batch, oldest first
  std::string error_;
};

// Responses made in Python beside a Python device (official graphs with NMS inside): output 0
// holds, per sample, an 8-byte size and then the response bytes.
class Prepacked : public Post {
 public:
  explicit Prepacked(size_t max_bytes) : max_(max_bytes) {}
  size_t max_response_bytes() const override { return max_; }
  bool run(const void* const* outputs, int n, const size_t*, uint8_t* resp, size_t* offset, size_t* size,
           PostScratch*, std::string* error) override {
    const auto* in = static_cast<const uint8_t*>(outputs[0]);
    for (int i = 0; i < n; ++i) {
      const uint8_t* row = in + size_t(i) * (8 + max_);
      uint64_t sz;
      std::memcpy(&sz, row, 8);
      if (sz > max_) {
        *error = "a prepacked response of " + std::to_string(sz) + " bytes exceeds " + std::to_string(max_);
        return false;
      }
      std::memcpy(resp + size_t(i) * max_, row + 8, sz);
      offset[i] = size_t(i) * max_;
      size[i] = sz;
    }
    return true;
  }

 private:
  size_t max_;
};

// ("nms", {...}): the parameters of postprocess/nms.py's NMS, anchors as float32 [A, 4].
NmsParams nms_params(const nb::tuple& spec) {
  nb::dict d = nb::cast<nb::dict>(spec[1]);
  NmsParams p;
  p.class_major = nb::cast<int>(d["class_major"]);
  p.num_anchors = nb::cast<int>(d["num_anchors"]);
  p.num_classes = nb::cast<int>(d["num_classes"]);
  p.score_dtype = nb::cast<int>(d["score_dtype"]);
  p.box_dtype = nb::cast<int>(d["box_dtype"]);
  p.score_threshold = nb::cast<double>(d["score_threshold"]);
  p.iou_threshold = nb::cast<float>(d["iou_threshold"]);
  p.max_candidates = nb::cast<int>(d["max_candidates"]);
  p.max_per_class = nb::cast<int>(d["max_per_class"]);
  p.max_per_image = nb::cast<int>(d["max_per_image"]);
  auto perm = nb::cast<std::vector<int>>(d["perm"]);
  auto inv = nb::cast<std::vector<float>>(d["inv_scales"]);
  for (int k = 0; k < 4; ++k) {
    p.perm[k] = perm.at(k);
    p.inv_scales[k] = inv.at(k);
  }
  p.clip = nb::cast<int>(d["clip"]);
  p.uint8_scale = nb::cast<double>(d["uint8_scale"]);
  p.uint8_zero_point = nb::cast<float>(d["uint8_zero_point"]);
  if (d.contains("retinanet")) {  // RetinaNet's extra parameters (nms.h)
    p.retinanet = nb::cast<int>(d["retinanet"]);
    p.level_anchors = nb::cast<std::vector<int>>(d["level_anchors"]);
    p.box_exp_clip = nb::cast<float>(d["box_exp_clip"]);
    p.image_size = nb::cast<float>(d["image_size"]);
  }
  auto a = nb::cast<nb::ndarray<const float, nb::c_contig, nb::device::cpu>>(d["anchors"]);
  p.anchors.assign(a.data(), a.data() + a.size());
  if (p.anchors.size() != size_t(p.num_anchors) * 4) throw Error("anchors must be [num_anchors, 4]");
  return p;
}

std::unique_ptr<Post> make_post(const nb::tuple& spec) {
  std::string kind = nb::cast<std::string>(spec[0]);
  if (kind == "classify") return make_classify(to_tensor(nb::cast<Tensor>(spec[1])), nb::cast<int>(spec[2]));
  if (kind == "skip") return make_skip();
  if (kind == "prepacked") return std::make_unique<Prepacked>(nb::cast<size_t>(spec[1]));
  if (kind == "nms") return make_nms(nms_params(spec));
  throw Error("unknown post-processing " + kind);
}

using Bytes = nb::ndarray<const uint8_t, nb::c_contig, nb::device::cpu>;

// NMS on one image at a time, as the engine runs it, for Python callers (tests, benchmarks,
// post-processing beside a Python device): parameters, tables and scratch made once.
class PyNms {
 public:
  explicit PyNms(const nb::tuple& spec) : p_(nms_params(spec)), post_(make_nms(p_)), scratch_(post_->scratch()) {}
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

// Set once a LoadGen test was left running after Ctrl-C (Engine::run_test): the process must
// then end with os._exit (cli.py), as LoadGen's static logger cannot be destroyed mid-test.
std::atomic<bool> g_loadgen_abandoned{false};

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
    const vp_device_api* api;
    std::shared_ptr<void> lib;
    if (kind == "null" || kind == "null-gather") {
      api = null_device_api();
      d.reads_input = kind == "null-gather";
    } else if (kind == "simulated") {
      api = simulated_device_api();
    } else if (kind.rfind("plugin:", 0) == 0) {
      Plugin p = load_plugin(kind.substr(7));
      api = p.api;
      lib = p.library;
    } else {
      throw Error("unknown native device " + kind);
    }
    std::vector<const void*> ex;
    for (auto& e : examples) {
      ex.push_back(e.data());
      examples_.push_back(e);  // kept alive: the device reads them on every batch
    }
    if (!ex.empty() && ex.size() != outputs.size()) throw Error("one example array per output");
    engine_->add_device(std::make_unique<ApiDevice>(std::move(d), api, lib, options, index, count, ex, example_count));
  }

  void add_python_device(nb::object adapter, const std::string& name, std::vector<int> cpus, int numa, int replica,
                         int batch, bool fixed_batch, const Tensor& input, const std::vector<Tensor>& outputs,
                         int in_flight, bool reads_input) {
    // in_flight > 1 only for asynchronous adapters (submit/collect); a blocking one holds one.
    DeviceInfo d = info(name, std::move(cpus), numa, replica, batch, std::max(1, in_flight), input, outputs);
    d.reads_input = reads_input;
    d.fixed_batch = fixed_batch;
    engine_->add_device(std::make_unique<PyDevice>(std::move(d), std::move(adapter)));
  }

  void load(nb::ndarray<const int64_t, nb::ndim<1>, nb::c_contig, nb::device::cpu> idx) {
    std::vector<size_t> v(idx.data(), idx.data() + idx.shape(0));
    for (size_t i : v)
      if (i >= engine_->store().total()) throw Error("sample index " + std::to_string(i) + " is outside the cache");
    nb::gil_scoped_release r;
    engine_->store().load(v.data(), v.size());
  }

  // A cluster's driver (visionperf/cluster/): HOOK(indices: int64 array, or None on unload) after each
  // of LoadGen's loads, under the GIL, once per call. Its exception is recorded by the engine.
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
  nb::bytes serve(nb::ndarray<const int64_t, nb::ndim<1>, nb::c_contig, nb::device::cpu> idx) {
    std::vector<size_t> v(idx.data(), idx.data() + idx.shape(0));
    for (size_t i : v)
      if (i >= engine_->store().total()) throw Error("sample index " + std::to_string(i) + " is outside the cache");
    std::string rows;
    {
      nb::gil_scoped_release r;
      rows = engine_->serve(v.data(), v.size());
    }
    return nb::bytes(rows.data(), rows.size());
  }

  bool run_test(const TestConfig& c) {
    PyObject *type = nullptr, *value = nullptr, *tb = nullptr;
    bool ok;
    {
      nb::gil_scoped_release r;
      ok = engine_->run_test(c, [&] {
        nb::gil_scoped_acquire g;
        if (PyErr_CheckSignals() == 0) return false;
        PyErr_Fetch(&type, &value, &tb);  // re-raised once the test has stopped
        return true;
      });
    }
    if (engine_->loadgen_abandoned()) g_loadgen_abandoned = true;
    if (type) {
      PyErr_Restore(type, value, tb);
      throw nb::python_error();
    }
    return ok;
  }

  nb::list stats() {
    nb::list out;
    for (auto& l : engine_->lanes()) {
      auto& d = l->dev->info;
      vp_device_counters c = l->dev->counters();
      c.copy_cpu_s -= l->counters_base.copy_cpu_s;  // since reset_stats, like the lane's own
      c.late_s -= l->counters_base.late_s;
      nb::dict s;
      s["name"] = d.name;
      s["cpus"] = d.cpus;
      s["batches"] = uint64_t(l->stats.batches);
      s["samples"] = uint64_t(l->stats.samples);
      s["busy_s"] = double(l->stats.busy_s);
      s["host_s"] = double(l->stats.host_s);
      s["post_s"] = 1e-9 * double(l->stats.post_ns.load());
      s["card_copy_cpu_s"] = c.copy_cpu_s;
      s["late_s"] = c.late_s;
      s["batch_size"] = d.batch_size;
      s["max_in_flight"] = d.max_in_flight;
      s["fixed_batch"] = d.fixed_batch;
      out.append(s);
    }
    return out;
  }

  // What the live display samples while a test runs (progress.py), from another thread: the
  // lanes' counters and latency histograms, relaxed loads only. It takes no lock the hot path
  // takes and never asks a device (counters() may lock in a plug-in), so reading as often
  // as it likes costs the drivers nothing.
  nb::tuple live() {
    nb::list samples, batches, busy;
    std::vector<uint64_t> hist(LiveLatency::kBins, 0);
    bool latency = engine_->live_latency_on();
    for (auto& l : engine_->lanes()) {
      samples.append(uint64_t(l->stats.samples));
      batches.append(uint64_t(l->stats.batches));
      busy.append(double(l->stats.busy_s));
      if (latency)
        for (int b = 0; b < LiveLatency::kBins; ++b) hist[size_t(b)] += l->live.counts[b].load(std::memory_order_relaxed);
    }
    nb::list bins;  // (lower s, upper s, count) of each bin that holds a sample
    for (int b = 0; b < LiveLatency::kBins; ++b)
      if (hist[size_t(b)])
        bins.append(nb::make_tuple(1e-9 * double(LiveLatency::lower_ns(b)), 1e-9 * double(LiveLatency::upper_ns(b)),
                                   hist[size_t(b)]));
    return nb::make_tuple(samples, batches, busy, bins);
  }

  std::unique_ptr<Engine> engine_;

 private:
  Bytes cache_;  // the memory map the store reads, kept alive
  std::vector<Bytes> examples_;
};

}  // namespace
}  // namespace vp

NB_MODULE(_engine, m) {
  using namespace vp;
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
  m.doc() = "visionperf's compiled engine: LoadGen SUT and QSL, drivers, gather, devices, post-processing";
  nb::exception<Error>(m, "EngineError", PyExc_RuntimeError);
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
      .def("measure_rate", [](PyEngine& e, double s) { return e.engine_->measure_rate(s); },
           nb::call_guard<nb::gil_scoped_release>())
      .def("measure_latency", [](PyEngine& e, int n, double s) { return e.engine_->measure_latency(n, s); },
           nb::call_guard<nb::gil_scoped_release>())
      .def("run_test", &PyEngine::run_test)
      .def("set_load_hook", &PyEngine::set_load_hook, "hook"_a.none(),
           "HOOK(indices, or None on unload) after each of LoadGen's loads (a cluster's driver)")
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
      .def("latency_log_start", [](PyEngine& e) { e.engine_->latency_log.start(vp::now_ns()); })
      .def("latency_minutes", [](PyEngine& e) { return e.engine_->latency_log.minutes(); })
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
