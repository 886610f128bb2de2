// A lane: one device as the engine drives it, with its pool of batches, its staging buffer
// (the gather's destination; a fetch device is given row addresses instead) and its counters.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <vector>

#include "devices.h"
#include "latency.h"
#include "query_sample.h"

namespace vp {

// A counter with one writer (a lane's driver thread) that other threads read while it is
// written (Engine::live(), several times a second): relaxed loads and stores, which on x86 are
// the plain moves a bare field compiles to, with no lock and no read-modify-write.
template <class T>
class Relaxed {
 public:
  Relaxed(T v = T()) : v_(v) {}
  Relaxed(const Relaxed& o) : v_(T(o)) {}
  operator T() const { return v_.load(std::memory_order_relaxed); }
  Relaxed& operator=(T v) {
    v_.store(v, std::memory_order_relaxed);
    return *this;
  }
  Relaxed& operator=(const Relaxed& o) { return *this = T(o); }
  Relaxed& operator+=(T d) { return *this = T(*this) + d; }  // single writer: no lost updates
  void operator++(int) { *this += T(1); }

 private:
  std::atomic<T> v_;
};

struct LaneStats {
  Relaxed<uint64_t> batches = 0, samples = 0;
  Relaxed<double> busy_s = 0;  // the device's own time on its batches
  Relaxed<double> host_s = 0;  // gathering and submitting
  std::atomic<int64_t> post_ns{0};  // post-processing and completing (any thread)
};

struct Batch {  // one device batch: its samples and the host buffers of its outputs
  std::vector<mlperf::ResponseId> ids;
  std::vector<size_t> idx;
  std::vector<int64_t> issued;  // one-sample queries: when LoadGen issued each (else 0)
  int n = 0;
  uint64_t ticket = 0;
  int64_t start = 0, ready = 0;
  std::vector<void*> outputs;
  void resize(size_t samples) {
    ids.resize(samples);
    idx.resize(samples);
    issued.resize(samples);
  }
};

struct Lane {
  // Takes DEVICE; its pool holds max_in_flight + SPARE batches (the spares sit in post-processing).
  Lane(std::unique_ptr<Device> device, int spare);
  ~Lane();
  Lane(const Lane&) = delete;
  Lane& operator=(const Lane&) = delete;

  Batch* acquire();  // a free batch, or nullptr when every one is in flight or post-processing
  void release(Batch* b);

  std::unique_ptr<Device> dev;
  uint8_t* staging = nullptr;  // page-aligned; none for a fetch device
  size_t staging_bytes = 0;
  std::vector<const void*> row_addrs;  // a fetch device's batch: its rows in the replica
  std::deque<Batch*> pending;  // submitted, oldest first (driver thread only)
  LaneStats stats;
  LiveLatency live;  // while Engine::live_latency is on
  vp_device_counters counters_base{};  // the device's own counters at the last reset_stats
  int64_t refill_ns = 0;  // moving average of one gather + submit (driver thread only)
  int64_t last_done = 0;  // when its last batch completed (driver thread only)
  std::atomic<bool> dead{false};  // stuck: given no more work
  // A blocking device's batch in run, and since when (for the watchdog thread). RUN_START is
  // also the claim on its samples: the driver takes it back with exchange(0) when run
  // returns, the watchdog with a compare-exchange to -1; whoever wins completes them.
  std::atomic<Batch*> running{nullptr};
  std::atomic<int64_t> run_start{0};
  std::atomic<bool> abandoned{false};  // its driver is stuck in run: never joined
  // Moving average of the device's batch times (the watchdog's guess); atomic because the
  // watchdog thread reads it for blocking devices.
  std::atomic<int64_t> batch_ns{0};

 private:
  std::mutex mu_;  // guards free_ (post threads return batches)
  std::vector<Batch*> free_;
  std::vector<std::unique_ptr<Batch>> all_;
  std::vector<std::vector<uint8_t>> out_storage_;
};

}  // namespace vp
