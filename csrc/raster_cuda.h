// CUDA rasterizer: same interface and algorithm as raster.h's CPU kernels.
//
// All pointers are device pointers on `device`; work is queued on `stream`
// (the caller's current stream). The forward pass synchronises the stream once
// to learn how many (tile, Gaussian) pairs to allocate for.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "raster.h"

namespace gfix {

RasterStats rasterize_forward_cuda(const float* means, const float* chol,
                                   const float* colors, int64_t n, int height,
                                   int width, float* out, int device,
                                   cudaStream_t stream);

RasterStats rasterize_backward_cuda(const float* means, const float* chol,
                                    const float* colors, int64_t n, int height,
                                    int width, const float* grad_out,
                                    float* grad_means, float* grad_chol,
                                    float* grad_colors, int device,
                                    cudaStream_t stream);

// Number of CUDA devices visible to this module's runtime (0 without a driver).
int cuda_device_count();

}  // namespace gfix
