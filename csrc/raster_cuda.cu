// CUDA rasterizer. Same algorithm as raster_cpu.cpp:
//   forward  : per-Gaussian setup -> tile counts -> scan -> (tile, Gaussian)
//              pairs -> stable radix sort by tile (keeps Gaussian index order
//              inside a tile) -> per-tile ranges -> one 16x16 block per tile
//              sums its whole list in shared-memory batches (no 256 cap).
//   backward : one warp per Gaussian walks its 3-sigma box and reduces the
//              eight sums it needs with shuffles (no atomics: deterministic).
#include <cub/device/device_radix_sort.cuh>
#include <cub/device/device_scan.cuh>

#include <climits>
#include <stdexcept>
#include <string>

#include "gaussian_setup.h"
#include "raster_cuda.h"

namespace gfix {
namespace {

#define GFIX_CUDA_CHECK(expr)                                                  \
  do {                                                                         \
    cudaError_t err_ = (expr);                                                 \
    if (err_ != cudaSuccess)                                                   \
      throw std::runtime_error(std::string("CUDA error in " #expr ": ") +      \
                               cudaGetErrorString(err_));                      \
  } while (0)

constexpr int kBlock = kTileSize * kTileSize;  // threads per tile block
constexpr int kWarpsPerBlock = 8;              // backward: Gaussians per block

// Scratch buffer freed on scope exit (also on exceptions). Stream-ordered
// (cudaMallocAsync) where the device supports memory pools; otherwise plain
// cudaMalloc, with a stream synchronisation before the free.
template <typename T>
class DeviceBuffer {
 public:
  DeviceBuffer(size_t count, cudaStream_t stream) : stream_(stream) {
    bytes_ = count * sizeof(T);
    if (count == 0) return;
    void* p = nullptr;
    if (cudaMallocAsync(&p, bytes_, stream) != cudaSuccess) {
      cudaGetLastError();  // not supported here: fall back
      GFIX_CUDA_CHECK(cudaMalloc(&p, bytes_));
      async_ = false;
    }
    ptr_ = static_cast<T*>(p);
  }
  ~DeviceBuffer() {
    if (!ptr_) return;
    if (async_) {
      cudaFreeAsync(ptr_, stream_);
    } else {
      cudaStreamSynchronize(stream_);
      cudaFree(ptr_);
    }
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  T* get() const { return ptr_; }
  size_t bytes() const { return bytes_; }

 private:
  T* ptr_ = nullptr;
  size_t bytes_ = 0;
  bool async_ = true;
  cudaStream_t stream_;
};

unsigned blocks_for(int64_t n, int threads) {
  return static_cast<unsigned>((n + threads - 1) / threads);
}

int tile_key_bits(int64_t num_tiles) {
  int bits = 1;
  while ((int64_t{1} << bits) < num_tiles) ++bits;
  return bits;
}

__global__ void setup_kernel(const float* __restrict__ means,
                             const float* __restrict__ chol, int64_t n, int height,
                             int width, GaussianSetup* __restrict__ setups,
                             int64_t* __restrict__ tile_counts) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= n) return;
  GaussianSetup g;
  const bool live = setup_gaussian(means, chol, i, height, width, g);
  setups[i] = g;
  tile_counts[i] = live ? (g.x1 / kTileSize - g.x0 / kTileSize + 1) *
                              (g.y1 / kTileSize - g.y0 / kTileSize + 1)
                        : 0;
}

__global__ void emit_pairs_kernel(const GaussianSetup* __restrict__ setups,
                                  const int64_t* __restrict__ tile_counts,
                                  const int64_t* __restrict__ ends, int64_t n,
                                  int tiles_x, uint32_t* __restrict__ keys,
                                  int32_t* __restrict__ values) {
  const int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (i >= n || tile_counts[i] == 0) return;
  const GaussianSetup g = setups[i];
  int64_t k = ends[i] - tile_counts[i];
  for (int ty = g.y0 / kTileSize; ty <= g.y1 / kTileSize; ++ty)
    for (int tx = g.x0 / kTileSize; tx <= g.x1 / kTileSize; ++tx) {
      keys[k] = static_cast<uint32_t>(ty * tiles_x + tx);
      values[k] = static_cast<int32_t>(i);
      ++k;
    }
}

__global__ void tile_ranges_kernel(const uint32_t* __restrict__ sorted_keys,
                                   int64_t count, int64_t* __restrict__ begins,
                                   int64_t* __restrict__ ends) {
  const int64_t k = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (k >= count) return;
  const uint32_t key = sorted_keys[k];
  if (k == 0 || sorted_keys[k - 1] != key) begins[key] = k;
  if (k == count - 1 || sorted_keys[k + 1] != key) ends[key] = k + 1;
}

__global__ void __launch_bounds__(kBlock)
    render_kernel(const GaussianSetup* __restrict__ setups,
                  const float* __restrict__ colors,
                  const int32_t* __restrict__ sorted_ids,
                  const int64_t* __restrict__ begins,
                  const int64_t* __restrict__ ends, int height, int width,
                  float* __restrict__ out) {
  __shared__ GaussianSetup s_setup[kBlock];
  __shared__ float3 s_color[kBlock];
  const int tile = blockIdx.y * gridDim.x + blockIdx.x;
  const int x = blockIdx.x * kTileSize + threadIdx.x;
  const int y = blockIdx.y * kTileSize + threadIdx.y;
  const int rank = threadIdx.y * kTileSize + threadIdx.x;
  const float px = static_cast<float>(x) + 0.5f;
  const float py = static_cast<float>(y) + 0.5f;
  float3 acc = make_float3(0.f, 0.f, 0.f);
  const int64_t begin = begins[tile], end = ends[tile];
  for (int64_t batch = begin; batch < end; batch += kBlock) {
    __syncthreads();  // previous batch fully consumed
    const int64_t k = batch + rank;
    if (k < end) {
      const int32_t i = sorted_ids[k];
      s_setup[rank] = setups[i];
      s_color[rank] = make_float3(colors[3 * i], colors[3 * i + 1], colors[3 * i + 2]);
    }
    __syncthreads();
    const int count = end - batch < kBlock ? static_cast<int>(end - batch) : kBlock;
    for (int j = 0; j < count; ++j) {
      const GaussianSetup& g = s_setup[j];
      if (x < g.x0 || x > g.x1 || y < g.y0 || y > g.y1) continue;
      const float u = (px - g.mx) * g.ia;
      const float v = ((py - g.my) - g.b * u) * g.ic;
      const float w = __expf(-0.5f * (u * u + v * v));
      acc.x += w * s_color[j].x;
      acc.y += w * s_color[j].y;
      acc.z += w * s_color[j].z;
    }
  }
  if (x < width && y < height) {
    float* o = out + (static_cast<int64_t>(y) * width + x) * 3;
    o[0] = acc.x;
    o[1] = acc.y;
    o[2] = acc.z;
  }
}

__device__ __forceinline__ float warp_sum(float v) {
  for (int offset = 16; offset > 0; offset >>= 1)
    v += __shfl_down_sync(0xffffffffu, v, offset);
  return v;
}

__global__ void __launch_bounds__(32 * kWarpsPerBlock)
    backward_kernel(const float* __restrict__ means, const float* __restrict__ chol,
                    const float* __restrict__ colors, int64_t n, int height,
                    int width, const float* __restrict__ grad_out,
                    float* __restrict__ grad_means, float* __restrict__ grad_chol,
                    float* __restrict__ grad_colors) {
  const int lane = threadIdx.x & 31;
  const int64_t i = blockIdx.x * static_cast<int64_t>(kWarpsPerBlock) + (threadIdx.x >> 5);
  if (i >= n) return;  // whole warp leaves together
  GaussianSetup g;
  const bool live = setup_gaussian(means, chol, i, height, width, g);
  const float cr = colors[3 * i], cg = colors[3 * i + 1], cb = colors[3 * i + 2];
  float s[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
  if (live) {
    const int bw = g.x1 - g.x0 + 1;
    const int64_t area = static_cast<int64_t>(bw) * (g.y1 - g.y0 + 1);
    for (int64_t p = lane; p < area; p += 32) {
      const int x = g.x0 + static_cast<int>(p % bw);
      const int y = g.y0 + static_cast<int>(p / bw);
      const float u = ((static_cast<float>(x) + 0.5f) - g.mx) * g.ia;
      const float v = (((static_cast<float>(y) + 0.5f) - g.my) - g.b * u) * g.ic;
      const float w = __expf(-0.5f * (u * u + v * v));
      const float* G = grad_out + (static_cast<int64_t>(y) * width + x) * 3;
      const float gr = G[0], gg = G[1], gb = G[2];
      const float gs = -w * (gr * cr + gg * cg + gb * cb);  // dL/dsigma
      s[0] += w * gr;
      s[1] += w * gg;
      s[2] += w * gb;
      s[3] += gs * u;
      s[4] += gs * v;
      s[5] += gs * u * u;
      s[6] += gs * u * v;
      s[7] += gs * v * v;
    }
  }
#pragma unroll
  for (int k = 0; k < 8; ++k) s[k] = warp_sum(s[k]);
  if (lane != 0) return;
  const float ia = live ? g.ia : 0.f, ic = live ? g.ic : 0.f;
  const float b_ac = live ? g.b * ia * ic : 0.f;
  if (grad_colors) {
    grad_colors[3 * i] = s[0];
    grad_colors[3 * i + 1] = s[1];
    grad_colors[3 * i + 2] = s[2];
  }
  if (grad_means) {
    grad_means[2 * i] = -ia * s[3] + b_ac * s[4];
    grad_means[2 * i + 1] = -ic * s[4];
  }
  if (grad_chol) {
    const float ga = live ? g.ga : 0.f, gc = live ? g.gc : 0.f;
    grad_chol[3 * i] = ga * (-ia * s[5] + b_ac * s[6]);
    grad_chol[3 * i + 1] = -ic * s[6];
    grad_chol[3 * i + 2] = gc * (-ic * s[7]);
  }
}

}  // namespace

int cuda_device_count() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no driver" error
    return 0;
  }
  return count;
}

RasterStats rasterize_forward_cuda(const float* means, const float* chol,
                                   const float* colors, int64_t n, int height,
                                   int width, float* out, int device,
                                   cudaStream_t stream) {
  GFIX_CUDA_CHECK(cudaSetDevice(device));
  RasterStats stats;
  const int tiles_x = (width + kTileSize - 1) / kTileSize;
  const int tiles_y = (height + kTileSize - 1) / kTileSize;
  const int64_t num_tiles = static_cast<int64_t>(tiles_x) * tiles_y;
  DeviceBuffer<int64_t> begins(num_tiles, stream), ends(num_tiles, stream);
  GFIX_CUDA_CHECK(cudaMemsetAsync(begins.get(), 0, begins.bytes(), stream));
  GFIX_CUDA_CHECK(cudaMemsetAsync(ends.get(), 0, ends.bytes(), stream));

  int64_t total = 0;
  DeviceBuffer<GaussianSetup> setups(n, stream);
    size_t scratch = begins.bytes() + ends.bytes() + setups.bytes();
  if (n > 0) {
    DeviceBuffer<int64_t> counts(n, stream);
    DeviceBuffer<int64_t> cum(n, stream);
    setup_kernel<<<blocks_for(n, 256), 256, 0, stream>>>(means, chol, n, height, width,
                                                         setups.get(), counts.get());
    GFIX_CUDA_CHECK(cudaGetLastError());
    size_t temp_bytes = 0;
    GFIX_CUDA_CHECK(cub::DeviceScan::InclusiveSum(nullptr, temp_bytes, counts.get(),
                                                  cum.get(), n, stream));
    {
      DeviceBuffer<unsigned char> temp(temp_bytes, stream);
      GFIX_CUDA_CHECK(cub::DeviceScan::InclusiveSum(temp.get(), temp_bytes, counts.get(),
                                                    cum.get(), n, stream));
    }
    GFIX_CUDA_CHECK(cudaMemcpyAsync(&total, cum.get() + (n - 1), sizeof(int64_t),
                                    cudaMemcpyDeviceToHost, stream));
    GFIX_CUDA_CHECK(cudaStreamSynchronize(stream));
    if (total > INT_MAX)
      throw std::runtime_error("too many (tile, Gaussian) intersections: " +
                               std::to_string(total));
    if (total > 0) {
      DeviceBuffer<uint32_t> keys(total, stream), skeys(total, stream);
      DeviceBuffer<int32_t> ids(total, stream), sids(total, stream);
      emit_pairs_kernel<<<blocks_for(n, 256), 256, 0, stream>>>(
          setups.get(), counts.get(), cum.get(), n, tiles_x, keys.get(), ids.get());
      GFIX_CUDA_CHECK(cudaGetLastError());
      const int items = static_cast<int>(total);
      const int end_bit = tile_key_bits(num_tiles);
      temp_bytes = 0;
      GFIX_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(
          nullptr, temp_bytes, keys.get(), skeys.get(), ids.get(), sids.get(), items,
          0, end_bit, stream));
      DeviceBuffer<unsigned char> temp(temp_bytes, stream);
      GFIX_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(
          temp.get(), temp_bytes, keys.get(), skeys.get(), ids.get(), sids.get(), items,
          0, end_bit, stream));
      tile_ranges_kernel<<<blocks_for(total, 256), 256, 0, stream>>>(
          skeys.get(), total, begins.get(), ends.get());
      GFIX_CUDA_CHECK(cudaGetLastError());
      scratch += counts.bytes() + cum.bytes() + 4 * keys.bytes() + temp.bytes();
      dim3 grid(tiles_x, tiles_y), block(kTileSize, kTileSize);
      render_kernel<<<grid, block, 0, stream>>>(setups.get(), colors, sids.get(),
                                                begins.get(), ends.get(), height, width,
                                                out);
      GFIX_CUDA_CHECK(cudaGetLastError());
    }
  }
  if (total == 0) {
    GFIX_CUDA_CHECK(cudaMemsetAsync(
        out, 0, static_cast<size_t>(height) * width * 3 * sizeof(float), stream));
  }
  stats.num_intersections = total;
  stats.scratch_bytes = static_cast<int64_t>(scratch);
  return stats;
}

RasterStats rasterize_backward_cuda(const float* means, const float* chol,
                                    const float* colors, int64_t n, int height,
                                    int width, const float* grad_out,
                                    float* grad_means, float* grad_chol,
                                    float* grad_colors, int device,
                                    cudaStream_t stream) {
  GFIX_CUDA_CHECK(cudaSetDevice(device));
  RasterStats stats;
  if (n > 0) {
    backward_kernel<<<blocks_for(n, kWarpsPerBlock), 32 * kWarpsPerBlock, 0, stream>>>(
        means, chol, colors, n, height, width, grad_out, grad_means, grad_chol,
        grad_colors);
    GFIX_CUDA_CHECK(cudaGetLastError());
  }
  return stats;
}

}  // namespace gfix
