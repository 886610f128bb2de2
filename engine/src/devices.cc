#include "devices.h"

#include <dlfcn.h>

#include <cstdlib>
#include <algorithm>
#include <cstring>
#include <fstream>

namespace vp {

int Device::run(const void* input, int rows, const size_t*, void* const* outputs) {
  uint64_t ticket = 0;
  int64_t ready = 0;
  int s = submit(input, rows, &ticket, &ready);
  return s == VP_OK ? collect(ticket, outputs, -1) : s;
}

double option_double(const char* options, const char* key, double fallback) {
  if (!options) return fallback;
  std::string s(options), k(key);
  size_t pos = 0;
  while (pos <= s.size()) {
    size_t end = s.find(';', pos);
    if (end == std::string::npos) end = s.size();
    std::string item = s.substr(pos, end - pos);
    size_t eq = item.find('=');
    if (eq != std::string::npos && item.substr(0, eq) == k) return std::strtod(item.c_str() + eq + 1, nullptr);
    pos = end + 1;
  }
  return fallback;
}

ApiDevice::ApiDevice(DeviceInfo info_, const vp_device_api* api, std::shared_ptr<void> library,
                     const std::string& options, int index, int count,
                     const std::vector<const void*>& examples, int example_count)
    : Device(std::move(info_)), api_(api), library_(std::move(library)) {
  vp_device_config cfg{};
  cfg.abi_version = api_->abi_version;  // the version the plug-in speaks: 1 reads no further
  cfg.index = index;
  cfg.count = count;
  cfg.numa_node = info.numa_node;
  cfg.batch_size = info.batch_size;
  cfg.max_in_flight = info.max_in_flight;
  cfg.fixed_batch = 0;
  cfg.input = info.input;
  if (info.outputs.size() > VP_MAX_OUTPUTS) throw Error("too many outputs for the device ABI");
  cfg.num_outputs = int32_t(info.outputs.size());
  for (size_t k = 0; k < info.outputs.size(); ++k) cfg.outputs[k] = info.outputs[k];
  cfg.options = options.c_str();
  cfg.example_count = examples.empty() ? 0 : example_count;
  cfg.examples = examples.empty() ? nullptr : examples.data();
  char err[512] = {0};
  handle_ = api_->open(&cfg, err, sizeof(err));
  if (!handle_)
    throw Error(std::string(api_->name ? api_->name : "device") + " " + info.name + ": " +
                (err[0] ? err : "open failed without a message"));
  if (cfg.max_in_flight >= 1 && cfg.max_in_flight < info.max_in_flight) info.max_in_flight = cfg.max_in_flight;
  info.fixed_batch = cfg.fixed_batch != 0;
  if (api_->abi_version >= 2 && cfg.fetch_rows) {
    if (!api_->register_region || !api_->unregister_region || !api_->submit_rows) {
      api_->close(handle_);
      handle_ = nullptr;
      throw Error(std::string(api_->name ? api_->name : "device") + " " + info.name +
                  ": fetches its own rows but leaves register_region/unregister_region/submit_rows empty");
    }
    info.fetches_rows = true;
  }
}

ApiDevice::~ApiDevice() {
  if (handle_) api_->close(handle_);
}

int ApiDevice::submit(const void* input, int rows, uint64_t* ticket, int64_t* ready_ns) {
  return api_->submit(handle_, input, rows, ticket, ready_ns);
}

int ApiDevice::collect(uint64_t ticket, void* const* outputs, int64_t timeout_ns) {
  refused_ = false;
  return api_->collect(handle_, ticket, outputs, timeout_ns);
}

std::string ApiDevice::last_error() {
  if (refused_) return region_error_;
  const char* e = api_->last_error ? api_->last_error(handle_) : nullptr;
  return e && e[0] ? e : "device error without a message";
}

void ApiDevice::register_region(int region, const uint8_t* base, size_t bytes, size_t row_bytes) {
  refused_ = false;
  if (api_->register_region(handle_, region, base, bytes, row_bytes) == VP_OK) {
    registered_.push_back(region);
    region_error_.clear();
  } else {
    region_error_ = "cannot register its sample rows: " + last_error();
  }
}

void ApiDevice::unregister_region(int region) {
  auto it = std::find(registered_.begin(), registered_.end(), region);
  if (it == registered_.end()) return;  // its registration failed: nothing to undo
  registered_.erase(it);
  api_->unregister_region(handle_, region);
}

int ApiDevice::submit_rows(int region, const void* const* rows, int n, uint64_t* ticket, int64_t* ready_ns) {
  if (std::find(registered_.begin(), registered_.end(), region) == registered_.end()) {
    if (region_error_.empty()) region_error_ = "its sample rows are not registered (no samples loaded)";
    refused_ = true;
    return VP_ERROR;
  }
  refused_ = false;
  return api_->submit_rows(handle_, region, rows, n, ticket, ready_ns);
}

vp_device_counters ApiDevice::counters() {
  vp_device_counters c{};
  if (api_->counters) api_->counters(handle_, &c);
  return c;
}

// ---- null: completes every batch at once (the harness alone) ----
namespace {
struct NullDev {
  uint64_t next = 0;
};
void* null_open(vp_device_config*, char*, size_t) { return new NullDev(); }
int null_submit(void* d, const void*, int32_t, uint64_t* ticket, int64_t* ready_ns) {
  *ticket = static_cast<NullDev*>(d)->next++;
  *ready_ns = now_ns();
  return VP_OK;
}
// The outputs are left as they are: zero scores, zero labels (the engine zeroes its buffers).
int null_collect(void*, uint64_t, void* const*, int64_t) { return VP_OK; }
const char* null_error(void*) { return ""; }
void null_close(void* d) { delete static_cast<NullDev*>(d); }
const vp_device_api kNull = {VP_DEVICE_ABI_VERSION, "null", null_open, null_submit, null_collect,
                             null_error, nullptr, null_close, nullptr, nullptr, nullptr};
}  // namespace

const vp_device_api* null_device_api() { return &kNull; }

Plugin load_plugin(const std::string& path) {
  {
    std::ifstream f(path, std::ios::binary);
    if (!f) throw Error("plug-in " + path + " not found: pass --backend plugin:/path/to/lib.so");
    char magic[4] = {0};
    f.read(magic, 4);
    if (std::memcmp(magic, "\x7f" "ELF", 4) != 0)
      throw Error("plug-in " + path + " is not a shared library: build it with -shared -fPIC against visionperf/device.h");
  }
  void* lib = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!lib) throw Error("plug-in " + path + " cannot be loaded: " + dlerror());
  std::shared_ptr<void> holder(lib, [](void* h) { dlclose(h); });
  auto entry = reinterpret_cast<vp_device_plugin_fn>(dlsym(lib, "vp_device_plugin"));
  if (!entry)
    throw Error("plug-in " + path + " exports no vp_device_plugin(): see visionperf/device.h");
  const vp_device_api* api = entry(VP_DEVICE_ABI_VERSION);
  if (!api) api = entry(1);  // a version 1 plug-in: it gets the host gather
  if (!api || api->abi_version < 1 || api->abi_version > VP_DEVICE_ABI_VERSION)
    throw Error("plug-in " + path + " was built against another device ABI version (" +
                (api ? std::to_string(api->abi_version) : std::string("none offered")) + ", visionperf speaks 1 and " +
                std::to_string(VP_DEVICE_ABI_VERSION) + "): rebuild it against this visionperf's device.h");
  if (!api->open || !api->submit || !api->collect || !api->close)
    throw Error("plug-in " + path + " leaves open/submit/collect/close empty");
  return {holder, api};
}

NativeKind native_kind(const std::string& kind) {
  if (kind == "null" || kind == "null-gather") return {null_device_api(), nullptr, kind == "null-gather"};
  if (kind == "simulated") return {simulated_device_api(), nullptr, true};
  if (kind.rfind("plugin:", 0) == 0) {
    Plugin p = load_plugin(kind.substr(7));
    return {p.api, p.library, true};
  }
  throw Error("unknown native device " + kind);
}

}  // namespace vp
