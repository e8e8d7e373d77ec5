// Per-Gaussian preprocessing shared by the CPU and CUDA rasterizers.
//
// A Gaussian is given by its mean (mx, my) in pixels and the lower Cholesky
// factor L = [[a, 0], [b, c]] of its covariance Sigma = L L^T. Its weight at a
// pixel centre p = (x + 0.5, y + 0.5) is
//     w = exp(-0.5 * |L^{-1} (p - mean)|^2)
// and it contributes only to pixels inside its 3-sigma box:
//     |dx| <= rx = 3 |a|,  |dy| <= ry = 3 sqrt(b^2 + c^2)
// (the tight axis-aligned box of the 3-sigma ellipse).
//
// Near-singular factors are clamped: |a| and |c| are raised to at least
// kMinCholDiag pixels, keeping their sign. Such a Gaussian is a sub-pixel
// needle; the clamp keeps L invertible and every weight finite. Gradients
// with respect to a clamped diagonal entry are zero. Gaussians with a
// non-finite parameter are skipped (they render nothing, get zero gradient).
//
// Which pixels a Gaussian touches must agree exactly with the dense PyTorch
// reference (gfix_sdk/raster/_torch_impl.py): the box test uses only
// correctly rounded single operations (no fused multiply-add), so the same
// float32 arithmetic gives the same answer on CPU, GPU and in PyTorch.
#pragma once

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define GFIX_HD __host__ __device__ __forceinline__
#else
#define GFIX_HD inline
#endif

namespace gfix {

using std::isfinite;

constexpr int kTileSize = 16;
constexpr float kMinCholDiag = 1e-3f;  // pixels
constexpr float kBoxSigmas = 3.0f;

// Rounded-to-nearest arithmetic that the compiler may not contract into FMA.
#if defined(__CUDA_ARCH__)
GFIX_HD float mul_rn(float x, float y) { return __fmul_rn(x, y); }
GFIX_HD float add_rn(float x, float y) { return __fadd_rn(x, y); }
GFIX_HD float sub_rn(float x, float y) { return __fsub_rn(x, y); }
GFIX_HD float sqrt_rn(float x) { return __fsqrt_rn(x); }
#else
// The host build compiles with -ffp-contract=off (CMakeLists.txt).
GFIX_HD float mul_rn(float x, float y) { return x * y; }
GFIX_HD float add_rn(float x, float y) { return x + y; }
GFIX_HD float sub_rn(float x, float y) { return x - y; }
GFIX_HD float sqrt_rn(float x) { return std::sqrt(x); }
#endif

struct GaussianSetup {
  float mx, my;    // mean in pixels
  float a, b, c;   // clamped Cholesky factor
  float ia, ic;    // 1 / a, 1 / c
  float ga, gc;    // 1 where a (c) was not clamped, else 0: gradient gate
  int x0, x1;      // inclusive pixel column range inside the image (x0 > x1: empty)
  int y0, y1;      // inclusive pixel row range inside the image
};

GFIX_HD float clamp_diag(float v) {
  return copysignf(fmaxf(fabsf(v), kMinCholDiag), v);
}

GFIX_HD bool inside_box(int coord, float mean, float radius) {
  const float d = sub_rn(add_rn(static_cast<float>(coord), 0.5f), mean);
  return fabsf(d) <= radius;
}

// Exact inclusive range of pixel indices in [0, size) whose centre lies within
// `radius` of `mean`. Starts from a conservative estimate in double precision
// and tightens it with the exact float32 test; empty ranges give lo > hi.
GFIX_HD void exact_range(float mean, float radius, int size, int& lo, int& hi) {
  const double m = static_cast<double>(mean);
  const double r = static_cast<double>(radius);
  double glo = floor(m - r - 0.5) - 1.0;
  double ghi = ceil(m + r - 0.5) + 1.0;
  glo = glo < 0.0 ? 0.0 : glo;
  ghi = ghi > static_cast<double>(size - 1) ? static_cast<double>(size - 1) : ghi;
  if (!(glo <= ghi)) {  // also catches NaN
    lo = 0;
    hi = -1;
    return;
  }
  lo = static_cast<int>(glo);
  hi = static_cast<int>(ghi);
  while (lo <= hi && !inside_box(lo, mean, radius)) ++lo;
  while (hi >= lo && !inside_box(hi, mean, radius)) --hi;
}

// Fills `g` for Gaussian i; returns false when it touches no pixel.
GFIX_HD bool setup_gaussian(const float* means, const float* chol, int64_t i,
                            int height, int width, GaussianSetup& g) {
  const float mx = means[2 * i], my = means[2 * i + 1];
  const float a_raw = chol[3 * i], b = chol[3 * i + 1], c_raw = chol[3 * i + 2];
  g.x0 = g.y0 = 0;
  g.x1 = g.y1 = -1;
  if (!(isfinite(mx) && isfinite(my) && isfinite(a_raw) && isfinite(b) &&
        isfinite(c_raw))) {
    return false;
  }
  g.mx = mx;
  g.my = my;
  g.a = clamp_diag(a_raw);
  g.b = b;
  g.c = clamp_diag(c_raw);
  g.ia = 1.0f / g.a;
  g.ic = 1.0f / g.c;
  g.ga = fabsf(a_raw) >= kMinCholDiag ? 1.0f : 0.0f;
  g.gc = fabsf(c_raw) >= kMinCholDiag ? 1.0f : 0.0f;
  const float rx = mul_rn(kBoxSigmas, fabsf(g.a));
  const float ry = mul_rn(kBoxSigmas, sqrt_rn(add_rn(mul_rn(b, b), mul_rn(g.c, g.c))));
  exact_range(mx, rx, width, g.x0, g.x1);
  if (g.x0 > g.x1) return false;
  exact_range(my, ry, height, g.y0, g.y1);
  return g.y0 <= g.y1;
}

}  // namespace gfix
