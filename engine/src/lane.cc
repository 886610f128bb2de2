#include "lane.h"

#include <sys/mman.h>

#include <algorithm>

namespace vp {

Lane::Lane(std::unique_ptr<Device> device, int spare) {
  const DeviceInfo& info = device->info;
  if (info.fetches_rows) {
    row_addrs.resize(size_t(info.batch_size));
  } else {
    staging_bytes = std::max<size_t>(1, size_t(info.batch_size) * info.input_row_bytes());
    void* p = mmap(nullptr, staging_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw Error("cannot allocate the staging buffer of " + info.name);
    staging = static_cast<uint8_t*>(p);
  }
  int pool = info.max_in_flight + spare;
  for (int k = 0; k < pool; ++k) {
    auto b = std::make_unique<Batch>();
    b->resize(size_t(info.batch_size));
    for (const vp_tensor& t : info.outputs) {
      out_storage_.emplace_back(size_t(info.batch_size) * tensor_bytes(t), uint8_t(0));
      b->outputs.push_back(out_storage_.back().data());
    }
    free_.push_back(b.get());
    all_.push_back(std::move(b));
  }
  dev = std::move(device);
}

Lane::~Lane() {
  if (staging) munmap(staging, staging_bytes);
}

Batch* Lane::acquire() {
  std::lock_guard<std::mutex> lk(mu_);
  if (free_.empty()) return nullptr;
  Batch* b = free_.back();
  free_.pop_back();
  return b;
}

void Lane::release(Batch* b) {
  std::lock_guard<std::mutex> lk(mu_);
  free_.push_back(b);
}

}  // namespace vp
