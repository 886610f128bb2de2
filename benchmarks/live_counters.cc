// What the live display adds to the engine's hot path, per sample and per batch, in
// nanoseconds (built and run by progress_overhead.py against the engine's own headers):
//  - LiveLatency::add, per one-sample query while the display watches (Server, SingleStream);
//  - a Relaxed<> counter update against the plain field it replaced (every batch, always).
// One thread, and two threads adding to one lane's histogram (the driver and a post thread).
#include <chrono>
#include <cstdio>
#include <thread>
#include <vector>

#include "lane.h"
#include "latency.h"

namespace {
double ns_per(long n, std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - t0).count() / double(n);
}
}  // namespace

int main() {
  constexpr long kN = 50'000'000;
  vp::LiveLatency live;
  // latencies spread over the bins a Server run sees (10 us .. 20 ms)
  std::vector<int64_t> lat(4096);
  for (size_t i = 0; i < lat.size(); ++i) lat[i] = 10'000 + int64_t((i * 2654435761u) % 20'000'000);
  auto t0 = std::chrono::steady_clock::now();
  for (long i = 0; i < kN; ++i) live.add(lat[size_t(i) & 4095]);
  double add1 = ns_per(kN, t0);

  t0 = std::chrono::steady_clock::now();
  std::thread other([&] {
    for (long i = 0; i < kN; ++i) live.add(lat[size_t(i * 7) & 4095]);
  });
  for (long i = 0; i < kN; ++i) live.add(lat[size_t(i) & 4095]);
  other.join();
  double add2 = ns_per(2 * kN, t0);

  volatile uint64_t plain = 0;  // volatile: one load and one store per update, as a field's
  t0 = std::chrono::steady_clock::now();
  for (long i = 0; i < kN; ++i) plain = plain + 8;
  double plain_ns = ns_per(kN, t0);
  vp::Relaxed<uint64_t> relaxed = 0;
  t0 = std::chrono::steady_clock::now();
  for (long i = 0; i < kN; ++i) relaxed += 8;
  double relaxed_ns = ns_per(kN, t0);

  uint64_t total = 0;
  for (int b = 0; b < vp::LiveLatency::kBins; ++b) total += live.counts[b].load();
  std::printf("{\"live_add_ns\": %.3f, \"live_add_2threads_ns\": %.3f, \"plain_counter_ns\": %.3f, "
              "\"relaxed_counter_ns\": %.3f, \"checked\": %d}\n",
              add1, add2, plain_ns, relaxed_ns, int(total == uint64_t(3 * kN) && uint64_t(relaxed) == uint64_t(8 * kN)));
}
