// Vectorisable float helpers for the CPU rasterizer's inner loops.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

namespace gfix {

// a * b + c, fused where the target has FMA. The CPU build compiles with
// -ffp-contract=off (so the 3-sigma box test matches PyTorch exactly), which
// means fusion only happens where we ask for it.
inline float madd(float a, float b, float c) {
#if defined(__FMA__) || defined(__aarch64__)
  return std::fma(a, b, c);
#else
  return a * b + c;
#endif
}

// exp(x) for x <= 0, written so that GCC/Clang vectorise loops that call it
// (no libm call, no branches). Cody-Waite range reduction x = n ln2 + r with
// |r| <= ln2 / 2, then the classic degree-6 minimax polynomial for e^r
// (coefficients from Cephes' expf). Max relative error ~2 ulp. Inputs below
// kExpCutoff return exactly 0: e^-50 ~ 2e-22 is invisible in any image, and
// products of such weights with colours would otherwise be denormal floats,
// which make every later operation on the image many times slower on x86.
constexpr float kExpCutoff = -50.0f;

inline float exp_nonpositive(float x) {
  const bool negligible = x < kExpCutoff;
  x = negligible ? kExpCutoff : x;
  // Round to nearest by adding and subtracting 1.5 * 2^23 (exact for |t| < 2^22);
  // unlike std::floor this vectorises without -fno-trapping-math.
  constexpr float kRound = 12582912.0f;
  const float n = (x * 1.44269504088896341f + kRound) - kRound;
  float r = madd(n, -0.693359375f, x);
  r = madd(n, 2.12194440e-4f, r);
  float p = 1.9875691500e-4f;
  p = madd(p, r, 1.3981999507e-3f);
  p = madd(p, r, 8.3334519073e-3f);
  p = madd(p, r, 4.1665795894e-2f);
  p = madd(p, r, 1.6666665459e-1f);
  p = madd(p, r, 5.0000001201e-1f);
  p = madd(p * r, r, r) + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  float scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return negligible ? 0.0f : p * scale;
}

// A pixel value to uint8: clamp to [0, 1], scale by 255, round half to even
// (torch's clamp -> * 255 -> round -> uint8, bit for bit). NaN becomes 0.
// Adding and removing 1.5 * 2^23 rounds to an integer in the default rounding
// mode (half to even) and, unlike std::nearbyint, vectorises.
inline uint8_t unit_to_uint8(float x) {
  float v = x > 0.0f ? x : 0.0f;  // NaN compares false: 0
  v = v < 1.0f ? v : 1.0f;
  constexpr float kRound = 12582912.0f;
  return static_cast<uint8_t>(static_cast<int>((v * 255.0f + kRound) - kRound));
}

}  // namespace gfix
