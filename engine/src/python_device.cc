#include "python_device.h"

#include <algorithm>
#include <cctype>
#include <cstring>
#include <deque>
#include <string>
#include <vector>

namespace nb = nanobind;

namespace vp {
namespace {

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

class PythonDevice : public Device {
 public:
  PythonDevice(DeviceInfo info, nb::object adapter) : Device(std::move(info)), adapter_(std::move(adapter)) {
    async_ = nb::hasattr(adapter_, "submit") && nb::hasattr(adapter_, "collect");
    if (async_) this->info.exact_ready = false;
    // A GPU that copies its rows from the registered sample buffer itself (sut._AsyncBridge)
    if (async_ && nb::hasattr(adapter_, "submit_rows") && nb::hasattr(adapter_, "fetches_rows"))
      this->info.fetches_rows = nb::cast<bool>(adapter_.attr("fetches_rows"));
  }
  ~PythonDevice() override {
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
    return guarded([&] {
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
    });
  }
  // Device fetch: called from the loading thread (not holding the GIL), no batch in flight.
  void register_region(int region, const uint8_t* base, size_t bytes, size_t row_bytes) override {
    nb::gil_scoped_acquire g;
    int status = guarded([&] {
      adapter_.attr("register_region")(region, uintptr_t(base), bytes, row_bytes);
      return VP_OK;
    });
    if (status == VP_OK) {
      registered_.push_back(region);
      region_error_.clear();
    } else {
      region_error_ = "cannot register its sample rows: " + error_;
    }
  }
  void unregister_region(int region) override {
    auto it = std::find(registered_.begin(), registered_.end(), region);
    if (it == registered_.end()) return;
    registered_.erase(it);
    nb::gil_scoped_acquire g;
    guarded([&] {
      adapter_.attr("unregister_region")(region);
      return VP_OK;
    });
  }
  int submit_rows(int region, const void* const* rows, int n, uint64_t* ticket, int64_t* ready_ns) override {
    if (std::find(registered_.begin(), registered_.end(), region) == registered_.end()) {
      error_ = region_error_.empty() ? "its sample rows are not registered (no samples loaded)" : region_error_;
      return VP_ERROR;
    }
    nb::gil_scoped_acquire g;
    return guarded([&] {
      // the addresses as n uint64 (the engine's again on return: the adapter copies them)
      PyObject* mv = PyMemoryView_FromMemory(reinterpret_cast<char*>(const_cast<void**>(rows)),
                                             Py_ssize_t(sizeof(void*)) * n, PyBUF_READ);
      if (!mv) throw nb::python_error();
      nb::tuple t = nb::cast<nb::tuple>(adapter_.attr("submit_rows")(region, nb::steal(mv), n));
      *ticket = nb::cast<uint64_t>(t[0]);
      *ready_ns = nb::cast<int64_t>(t[1]);
      rows_.push_back(n);
      return VP_OK;
    });
  }
  int collect(uint64_t ticket, void* const* outputs, int64_t timeout_ns) override {
    if (!async_) return VP_ERROR;
    nb::gil_scoped_acquire g;
    bool done = false;  // after VP_OK or VP_ERROR the ticket is done: its rows leave the FIFO
    int status = guarded([&] {
      nb::object timeout = timeout_ns < 0 ? nb::none() : nb::cast(1e-9 * double(timeout_ns));
      nb::object outs = adapter_.attr("collect")(ticket, timeout);
      if (outs.is_none()) return VP_NOT_READY;
      done = true;
      copy_outputs(outs, next_rows(), outputs);
      return VP_OK;
    });
    if (status == VP_ERROR && !done) next_rows();
    return status;
  }
  int run(const void* input, int rows, const size_t* qsl_idx, void* const* outputs) override {
    nb::gil_scoped_acquire g;
    return guarded([&] {
      copy_outputs(adapter_.attr("run")(view(input, rows), rows, indices(qsl_idx, rows)), rows, outputs);
      return VP_OK;
    });
  }
  std::string last_error() override { return error_; }

 private:
  // F's status, or VP_ERROR with the error kept for last_error() when the Python call (or
  // checking what it returned) throws: the engine fails that batch's samples, never the process.
  template <class F>
  int guarded(F&& f) {
    try {
      return f();
    } catch (nb::python_error& e) {
      error_ = python_error_line(e);
    } catch (const std::exception& e) {
      error_ = e.what();
    }
    return VP_ERROR;
  }

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
  std::vector<int> registered_;  // device fetch: regions registered now
  std::string region_error_;     // why the last registration failed
};

}  // namespace

std::unique_ptr<Device> make_python_device(DeviceInfo info, nb::object adapter) {
  return std::make_unique<PythonDevice>(std::move(info), std::move(adapter));
}

}  // namespace vp
