#include "store.h"

#include <sys/mman.h>

#include <algorithm>
#include <cstring>
#include <numeric>
#include <thread>

#include "common.h"

namespace vp {

SampleStore::SampleStore(const uint8_t* source, size_t total, size_t row_bytes,
                         std::vector<std::vector<int>> fill_cpus)
    : source_(source), total_(total), row_bytes_(row_bytes), fill_cpus_(std::move(fill_cpus)),
      row_of_(total, 0) {
  if (fill_cpus_.empty()) fill_cpus_.push_back({});
}

SampleStore::~SampleStore() { free_buffers(); }

void SampleStore::free_buffers() {
  for (uint8_t* b : buffers_)
    if (b) munmap(b, buffer_bytes_);
  buffers_.clear();
  buffer_bytes_ = 0;
}

void SampleStore::load(const size_t* indices, size_t n) {
  double c0 = process_cpu_s();
  free_buffers();
  std::vector<size_t> order(n);
  std::iota(order.begin(), order.end(), size_t(0));
  // Read the cache front to back (it is usually a memory-mapped file).
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return indices[a] < indices[b]; });
  buffer_bytes_ = std::max<size_t>(1, n * row_bytes_);
  buffers_.assign(fill_cpus_.size(), nullptr);
  std::vector<std::string> errors(fill_cpus_.size());
  auto fill = [&](size_t r) {
    pin_thread(fill_cpus_[r]);
    void* p = mmap(nullptr, buffer_bytes_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
      errors[r] = "cannot allocate a sample buffer of " + std::to_string(buffer_bytes_) + " bytes";
      return;
    }
    madvise(p, buffer_bytes_, MADV_HUGEPAGE);  // big rows, random batch gathers: fewer TLB misses
    auto* buf = static_cast<uint8_t*>(p);
    for (size_t k : order) std::memcpy(buf + k * row_bytes_, source_ + indices[k] * row_bytes_, row_bytes_);
    buffers_[r] = buf;
  };
  if (fill_cpus_.size() == 1 && fill_cpus_[0].empty()) {
    fill(0);
  } else {
    std::vector<std::thread> threads;
    for (size_t r = 0; r < fill_cpus_.size(); ++r) threads.emplace_back(fill, r);
    for (auto& t : threads) t.join();
  }
  for (auto& e : errors)
    if (!e.empty()) throw Error(e);
  for (size_t k = 0; k < n; ++k) row_of_[indices[k]] = uint32_t(k);
  loaded_.assign(indices, indices + n);
  load_cpu_s += process_cpu_s() - c0;
}

void SampleStore::unload() {
  double c0 = process_cpu_s();
  free_buffers();
  loaded_.clear();
  load_cpu_s += process_cpu_s() - c0;  // freeing gigabytes of pages is not free
}

void SampleStore::gather(int r, const size_t* indices, size_t n, uint8_t* dst) const {
  // Plain memcpy of whole rows: glibc picks the widest copy for the machine and switches to
  // non-temporal stores for large sizes itself (benchmarks/gather.py measures the choice).
  const uint8_t* buf = buffers_[r];
  const size_t rb = row_bytes_;
  for (size_t k = 0; k < n; ++k) std::memcpy(dst + k * rb, buf + size_t(row_of_[indices[k]]) * rb, rb);
}

}  // namespace vp
