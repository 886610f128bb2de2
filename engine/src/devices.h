// Devices as the engine drives them: every device speaks the plug-in ABI of
// visionperf/device.h (native null and simulated devices, and plug-ins loaded from a shared
// library), or is a Python object behind the bridge in python_device.h.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "common.h"

namespace vp {

struct DeviceInfo {
  std::string name;
  std::vector<int> cpus;  // host CPUs its driver thread is pinned to (empty: unpinned)
  int numa_node = -1;
  int replica = 0;        // the sample buffer replica it reads
  int batch_size = 1;
  int max_in_flight = 1;
  bool fixed_batch = false;
  bool reads_input = true;  // false for `null`: the gather is skipped
  // Fetches its own rows (device.h ABI 2): given the replica's row addresses, never a gather.
  bool fetches_rows = false;
  // submit()'s ready time is exact (a simulated card) or an estimate (a GPU, a remote node):
  // an estimate is only when to look; the batch is done when collect() says so.
  bool exact_ready = true;
  vp_tensor input{};
  std::vector<vp_tensor> outputs;
  size_t input_row_bytes() const { return tensor_bytes(input); }
};

class Device {
 public:
  explicit Device(DeviceInfo info) : info(std::move(info)) {}
  virtual ~Device() = default;
  DeviceInfo info;
  // A blocking device computes on the driver's own thread (run); others are asynchronous.
  virtual bool blocking() const { return false; }
  virtual int submit(const void* input, int rows, uint64_t* ticket, int64_t* ready_ns) = 0;
  // submit() with the batch's N cache indices (a device that loads samples itself, e.g. a
  // remote node, reads these instead of INPUT). The engine calls this one.
  virtual int submit_indexed(const void* input, int rows, const size_t* qsl_idx, int n, uint64_t* ticket,
                             int64_t* ready_ns) {
    (void)qsl_idx;
    (void)n;
    return submit(input, rows, ticket, ready_ns);
  }
  virtual int collect(uint64_t ticket, void* const* outputs, int64_t timeout_ns) = 0;
  // Fetch devices (info.fetches_rows), device.h's contract: the replica REGION is registered
  // after each load and unregistered before its memory is freed; a batch is its row addresses.
  // A failed registration is kept: every submit_rows then fails with its message.
  virtual void register_region(int region, const uint8_t* base, size_t bytes, size_t row_bytes) {
    (void)region, (void)base, (void)bytes, (void)row_bytes;
  }
  virtual void unregister_region(int region) { (void)region; }
  virtual int submit_rows(int region, const void* const* rows, int n, uint64_t* ticket, int64_t* ready_ns) {
    (void)region, (void)rows, (void)n, (void)ticket, (void)ready_ns;
    return VP_ERROR;
  }
  // Blocking devices: one batch, input to outputs.
  virtual int run(const void* input, int rows, const size_t* qsl_idx, void* const* outputs);
  virtual std::string last_error() = 0;
  virtual vp_device_counters counters() { return {}; }
};

// A device behind the C ABI: native or loaded from a plug-in.
class ApiDevice : public Device {
 public:
  // Opens the device; throws Error with the device's own message on failure.
  ApiDevice(DeviceInfo info, const vp_device_api* api, std::shared_ptr<void> library,
            const std::string& options, int index, int count, const std::vector<const void*>& examples,
            int example_count);
  ~ApiDevice() override;
  int submit(const void* input, int rows, uint64_t* ticket, int64_t* ready_ns) override;
  int collect(uint64_t ticket, void* const* outputs, int64_t timeout_ns) override;
  std::string last_error() override;
  vp_device_counters counters() override;
  void register_region(int region, const uint8_t* base, size_t bytes, size_t row_bytes) override;
  void unregister_region(int region) override;
  int submit_rows(int region, const void* const* rows, int n, uint64_t* ticket, int64_t* ready_ns) override;

 private:
  const vp_device_api* api_;
  std::shared_ptr<void> library_;  // dlclose only after the device is closed
  void* handle_ = nullptr;
  std::vector<int> registered_;     // regions registered now
  std::string region_error_;        // why the last registration failed (empty: it did not)
  bool refused_ = false;            // submit_rows refused (unregistered): last_error is region_error_
};

// The device tables built into the engine.
const vp_device_api* null_device_api();
const vp_device_api* simulated_device_api();

// Load a plug-in: one line naming PATH on any failure (missing, not a shared library, no
// entry point, another ABI version). ABI 2 is asked for first, then 1 (device.h "Versions").
struct Plugin {
  std::shared_ptr<void> library;
  const vp_device_api* api;
};
Plugin load_plugin(const std::string& path);

// A device kind the engine runs itself, by the name sut.py gives it: "null" (every batch
// complete at once, no gather), "null-gather" (the same after the host gather), "simulated"
// (simulated.cc) or "plugin:PATH" (load_plugin). Throws Error for any other name.
struct NativeKind {
  const vp_device_api* api;
  std::shared_ptr<void> library;  // a plug-in's: kept until its devices are closed
  bool reads_input = true;
};
NativeKind native_kind(const std::string& kind);

// "key=value;key=value" lookup for device options; DEFAULT when absent.
double option_double(const char* options, const char* key, double fallback);

}  // namespace vp
