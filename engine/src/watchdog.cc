#include "watchdog.h"

#include <chrono>
#include <cstdio>

namespace vp {

void Watchdog::stuck(Lane& lane, int64_t since_ns, int64_t expected_ns) {
  char msg[160];
  std::snprintf(msg, sizeof msg, "no batch completed for %.1f s (expected about %.1f ms per batch): the device is stuck",
                1e-9 * double(since_ns), 1e-6 * double(std::max<int64_t>(0, expected_ns)));
  completer_.record_error(lane.dev->info.name + ": " + msg);
  if (lane.dead.exchange(true)) return;
  queues_.lane_died();
}

void Watchdog::start(std::vector<Blocking> watched) {
  if (watched.empty()) return;
  watched_ = std::move(watched);
  stop_ = false;
  thread_ = std::thread([this] { loop(); });
}

void Watchdog::stop() {
  if (!thread_.joinable()) return;
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_ = true;
    cv_.notify_all();
  }
  thread_.join();
  watched_.clear();
}

void Watchdog::loop() {
  std::unique_lock<std::mutex> lk(mu_);
  while (!stop_) {
    cv_.wait_for(lk, std::chrono::milliseconds(250));
    if (stop_) break;
    int64_t now = now_ns();
    for (auto [lane, queue] : watched_) {
      Lane& l = *lane;
      if (l.dead.load()) continue;
      int64_t t = l.run_start.load(std::memory_order_acquire);
      int64_t avg = l.batch_ns.load(std::memory_order_relaxed);
      if (t <= 0 || now - t <= limit(avg)) continue;
      Batch* b = l.running.load(std::memory_order_acquire);
      if (!l.run_start.compare_exchange_strong(t, -1)) continue;  // it returned just now
      l.abandoned = true;
      abandoned_ = true;
      stuck(l, now - t, avg);
      if (b) completer_.fail(b->ids.data(), b->n, "");
      queues_.close(*queue, false);
    }
  }
}

}  // namespace vp
