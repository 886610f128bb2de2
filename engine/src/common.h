// Small shared pieces of the engine: the clock, thread pinning, tensor sizes, errors.
#pragma once

#include <pthread.h>
#include <sched.h>
#include <time.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "visionperf/device.h"

namespace vp {

// CLOCK_MONOTONIC, the clock of Python's time.perf_counter() and of the plug-in ABI.
inline int64_t now_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t(ts.tv_sec) * 1000000000LL + ts.tv_nsec;
}

inline double thread_cpu_s() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return double(ts.tv_sec) + 1e-9 * double(ts.tv_nsec);
}

double process_cpu_s();

// Pin the calling thread to CPUS (no-op when empty or when the machine refuses).
void pin_thread(const std::vector<int>& cpus);

// Sleep until the monotonic time T (ns): absolute, so wake-ups do not drift.
void sleep_until_ns(int64_t t);

size_t dtype_size(int32_t dtype);
size_t tensor_bytes(const vp_tensor& t);  // one sample

struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

}  // namespace vp
