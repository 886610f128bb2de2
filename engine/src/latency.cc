#include "latency.h"

#include <cmath>

namespace vp {

void LatencyLog::start(int64_t t0_ns) {
  if (!counts_) counts_.reset(new std::atomic<uint32_t>[size_t(kMinutes) * kBins]);
  for (size_t i = 0; i < size_t(kMinutes) * kBins; ++i) counts_[i].store(0, std::memory_order_relaxed);
  t0_ = t0_ns;
  on_.store(true, std::memory_order_release);
}

void LatencyLog::add(int64_t now_ns, int64_t latency_ns) {
  int64_t minute = (now_ns - t0_) / 60'000'000'000LL;
  if (minute < 0 || minute >= kMinutes) return;
  double us = double(latency_ns) * 1e-3;
  int b = us <= 1 ? 0 : std::min(kBins - 1, int(16 * std::log2(us)));
  counts_[size_t(minute) * kBins + size_t(b)].fetch_add(1, std::memory_order_relaxed);
}

std::vector<std::pair<int, std::vector<uint32_t>>> LatencyLog::minutes() const {
  std::vector<std::pair<int, std::vector<uint32_t>>> out;
  if (!counts_) return out;
  for (int m = 0; m < kMinutes; ++m) {
    std::vector<uint32_t> row(kBins);
    bool any = false;
    for (int b = 0; b < kBins; ++b) any |= (row[size_t(b)] = counts_[size_t(m) * kBins + size_t(b)].load()) != 0;
    if (any) out.emplace_back(m, std::move(row));
  }
  return out;
}

double LatencyLog::bin_upper_s(int b) { return std::exp2(double(b + 1) / 16) * 1e-6; }

}  // namespace vp
