// Latencies of one-sample queries (LoadGen's issue to the engine's completion), kept two ways:
// live, per lane, for the display while a test runs; and per minute, for soak runs.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

namespace vp {

// Since Engine::live_latency(true), per lane, for the live display (progress.py): one relaxed
// add per sample, and only while switched on. Bins from the integer's bits, no floating point:
// exact below 16 ns, then 16 per octave (at most 6.25% wide), the last one open-ended.
struct LiveLatency {
  static constexpr int kBins = 16 * 40;  // up to 2^43 ns (2.4 h)
  std::unique_ptr<std::atomic<uint64_t>[]> counts{new std::atomic<uint64_t>[kBins]()};
  static int bin(uint64_t ns) {
    if (ns < 16) return int(ns);
    int e = 63 - __builtin_clzll(ns);
    return std::min(kBins - 1, (e - 3) * 16 + int((ns >> (e - 4)) & 15));
  }
  static uint64_t lower_ns(int b) { return b < 16 ? uint64_t(b) : uint64_t(16 + b % 16) << (b / 16 - 1); }
  static uint64_t upper_ns(int b) { return b < 16 ? uint64_t(b) + 1 : uint64_t(17 + b % 16) << (b / 16 - 1); }
  void add(int64_t latency_ns) {
    counts[bin(uint64_t(std::max<int64_t>(0, latency_ns)))].fetch_add(1, std::memory_order_relaxed);
  }
  void clear() {
    for (int b = 0; b < kBins; ++b) counts[b].store(0, std::memory_order_relaxed);
  }
};

// Per-minute histograms, kept only when asked for (soak runs: is p99 the same in minute 9 as
// in minute 2?). Fixed memory, so that keeping it cannot itself look like a leak; a relaxed
// atomic add per sample. Bin b holds latencies in [2^(b/16), 2^((b+1)/16)) us: 4.4% wide,
// 1 us to 33 s.
class LatencyLog {
 public:
  static constexpr int kBins = 16 * 25;
  static constexpr int kMinutes = 24 * 60;
  void start(int64_t t0_ns);
  bool on() const { return on_.load(std::memory_order_relaxed); }
  void add(int64_t now_ns, int64_t latency_ns);
  // {minute: counts per bin} for the minutes that saw a sample.
  std::vector<std::pair<int, std::vector<uint32_t>>> minutes() const;
  static double bin_upper_s(int b);  // the upper edge of bin B, seconds

 private:
  std::atomic<bool> on_{false};
  int64_t t0_ = 0;
  std::unique_ptr<std::atomic<uint32_t>[]> counts_;  // kMinutes x kBins
};

}  // namespace vp
