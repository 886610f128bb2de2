#include "store.h"

#include <immintrin.h>
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

void SampleStore::add_reader(Reader reader) {
  if (!buffers_.empty()) reader.attach(buffers_[size_t(reader.replica)], buffer_bytes_);
  readers_.push_back(std::move(reader));
}

void SampleStore::forget_readers() {
  detach_readers();
  readers_.clear();
}

void SampleStore::detach_readers() {
  if (buffers_.empty()) return;  // nothing attached
  for (Reader& r : readers_) r.detach();
}

void SampleStore::attach_readers() {
  for (Reader& r : readers_) r.attach(buffers_[size_t(r.replica)], buffer_bytes_);
}

void SampleStore::load(const size_t* indices, size_t n) {
  double c0 = process_cpu_s();
  detach_readers();
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
  attach_readers();  // pinning for DMA is a one-off of the load, counted with it
  load_cpu_s += process_cpu_s() - c0;
}

void SampleStore::unload() {
  double c0 = process_cpu_s();
  detach_readers();
  free_buffers();
  loaded_.clear();
  load_cpu_s += process_cpu_s() - c0;  // freeing gigabytes of pages is not free
}

namespace {

// Copy N bytes with non-temporal (streaming) stores: the staging buffer is written once and
// next read by the device's DMA, so filling the caches with it only evicts the sample rows.
// Measured on this project's machine (benchmarks/gather.py, gather_bench): 7-15% more bytes
// per second than glibc's memcpy for 150,528-byte rows, on one thread and on two.
void copy_streaming(uint8_t* dst, const uint8_t* src, size_t n) {
  size_t head = (64 - (reinterpret_cast<uintptr_t>(dst) & 63)) & 63;
  if (head > n) head = n;
  std::memcpy(dst, src, head);
  size_t i = head;
#if defined(__AVX512F__)
  for (; i + 64 <= n; i += 64)
    _mm512_stream_si512(reinterpret_cast<__m512i*>(dst + i), _mm512_loadu_si512(src + i));
#elif defined(__AVX__)
  for (; i + 32 <= n; i += 32)
    _mm256_stream_si256(reinterpret_cast<__m256i*>(dst + i),
                        _mm256_loadu_si256(reinterpret_cast<const __m256i*>(src + i)));
#else
  for (; i + 16 <= n; i += 16)
    _mm_stream_si128(reinterpret_cast<__m128i*>(dst + i), _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i)));
#endif
  std::memcpy(dst + i, src + i, n - i);
}

constexpr size_t kStreamingRowBytes = 16384;  // smaller rows stay in cache: plain memcpy

}  // namespace

void SampleStore::gather(int r, const size_t* indices, size_t n, uint8_t* dst) const {
  const uint8_t* buf = buffers_[r];
  const size_t rb = row_bytes_;
  if (rb < kStreamingRowBytes) {
    for (size_t k = 0; k < n; ++k) std::memcpy(dst + k * rb, buf + size_t(row_of_[indices[k]]) * rb, rb);
    return;
  }
  for (size_t k = 0; k < n; ++k) copy_streaming(dst + k * rb, buf + size_t(row_of_[indices[k]]) * rb, rb);
  _mm_sfence();  // the streaming stores are visible before the batch is handed on
}

}  // namespace vp
