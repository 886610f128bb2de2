// The sorted order of a candidate list, extended on demand, shared by the detection kernels (SSD,
// RetinaNet, YOLO): greedy NMS walks candidates best first and usually stops after a few, so a
// long list is never sorted whole.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>

namespace vp {

// Sorted order of KEYS[0..N) (ascending: callers encode "best first" into the key), sorted in
// steps that at least double; a short list is sorted at once.
struct LazyOrder {
  uint64_t* keys;
  size_t n, sorted = 0;
  LazyOrder(uint64_t* k, size_t count) : keys(k), n(count) {
    if (n <= 256) {
      std::sort(keys, keys + n);
      sorted = n;
    }
  }
  // The R-th key in order (R < N).
  uint64_t operator[](size_t r) {
    if (r >= sorted) {
      size_t e = std::min(n, std::max(sorted * 2, sorted + 256));
      if (e < n) std::nth_element(keys + sorted, keys + e, keys + n);
      std::sort(keys + sorted, keys + e);
      sorted = e;
    }
    return keys[r];
  }
};

}  // namespace vp
