// IEEE fp16 as the detection kernels read it: raw device scores and heads, converted exactly (no
// F16C dependency: the kernels compare most scores as raw bits and convert only the few they keep).
#pragma once

#include <cstdint>
#include <cstring>

namespace vp {

// fp16 bits -> the float they encode, exactly (subnormals, infinities and NaNs included).
inline float half_to_float(uint16_t h) {
  uint32_t sign = uint32_t(h & 0x8000u) << 16, exp = (h >> 10) & 0x1fu, man = h & 0x3ffu, bits;
  if (exp == 0x1f) {
    bits = sign | 0x7f800000u | (man << 13);
  } else if (exp == 0) {
    float f = float(man) * 0x1p-24f;  // zero or subnormal: exact in float
    return sign ? -f : f;
  } else {
    bits = sign | ((exp + 112u) << 23) | (man << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

}  // namespace vp
