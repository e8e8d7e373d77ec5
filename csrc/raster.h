// GFix 2D Gaussian rasterizer: declarations shared by the CPU and CUDA builds.
//
// Image model (GaussianImage / GSVC "accumulated summation", no depth sort):
//     out[y, x, :] = sum_i colors[i, :] * w_i(x + 0.5, y + 0.5)
// over the Gaussians whose 3-sigma box contains the pixel centre; w_i and the
// box are defined in gaussian_setup.h. All buffers are dense, row-major,
// float32. No Python or PyTorch in here: the bindings live in ext*.cpp.
#pragma once

#include <cstdint>

namespace gfix {

struct RasterStats {
  int64_t num_intersections = 0;  // (tile, Gaussian) pairs binned
  int64_t max_per_tile = 0;       // longest tile list (no cap is applied)
  int64_t scratch_bytes = 0;      // temporary memory the call allocated
};

// means [N, 2], chol [N, 3], colors [N, 3]  ->  out [H, W, 3] (overwritten).
RasterStats rasterize_forward_cpu(const float* means, const float* chol,
                                  const float* colors, int64_t n, int height,
                                  int width, float* out, int num_threads);

// The same image written as uint8 (gfix::unit_to_uint8 of each float value:
// the decoder's to_uint8) without a float image in memory: a 1080p float image
// is 25 MB written and read back.
RasterStats rasterize_forward_u8_cpu(const float* means, const float* chol,
                                     const float* colors, int64_t n, int height,
                                     int width, uint8_t* out, int num_threads);

// grad_out [H, W, 3]  ->  grad_means [N, 2], grad_chol [N, 3], grad_colors [N, 3]
// (each overwritten; any may be nullptr to skip it).
RasterStats rasterize_backward_cpu(const float* means, const float* chol,
                                   const float* colors, int64_t n, int height,
                                   int width, const float* grad_out,
                                   float* grad_means, float* grad_chol,
                                   float* grad_colors, int num_threads);

}  // namespace gfix
