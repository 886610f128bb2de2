#include "common.h"

#include <errno.h>
#include <sys/resource.h>

namespace vp {

double process_cpu_s() {
  rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return double(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) + 1e-6 * double(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

void pin_thread(const std::vector<int>& cpus) {
  if (cpus.empty()) return;
  cpu_set_t set;
  CPU_ZERO(&set);
  for (int c : cpus)
    if (c >= 0 && c < CPU_SETSIZE) CPU_SET(c, &set);
  pthread_setaffinity_np(pthread_self(), sizeof(set), &set);  // best effort, like the plan
}

void sleep_until_ns(int64_t t) {
  timespec ts{time_t(t / 1000000000LL), long(t % 1000000000LL)};
  while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, nullptr) == EINTR) {
  }
}

size_t dtype_size(int32_t dtype) {
  switch (dtype) {
    case VP_UINT8:
    case VP_INT8:
      return 1;
    case VP_FLOAT16:
      return 2;
    case VP_FLOAT32:
    case VP_INT32:
      return 4;
    case VP_INT64:
      return 8;
  }
  throw Error("unknown vp_dtype " + std::to_string(dtype));
}

size_t tensor_bytes(const vp_tensor& t) {
  size_t n = dtype_size(t.dtype);
  for (int i = 0; i < t.ndim; ++i) n *= size_t(t.dims[i]);
  return n;
}

}  // namespace vp
