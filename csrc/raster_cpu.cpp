// CPU rasterizer: tile-binned forward, Gaussian-parallel backward (OpenMP).
//
// Forward: Gaussians are binned into 16x16 pixel tiles (CSR lists, in index
// order, no cap on the list length); each tile is rendered by one thread into
// a planar on-stack accumulator, 16 pixels of a row at a time so the inner
// loop vectorises. Summation order is fixed (Gaussian index order per tile),
// so the result does not depend on the thread count.
//
// Backward: every Gaussian owns its gradients, so one thread walks that
// Gaussian's box (16-lane chunks over a padded planar copy of grad_out) and
// reduces the eight sums it needs: no atomics, no per-pixel-per-Gaussian
// buffers, deterministic.
#include "raster.h"

#include <algorithm>
#include <cstring>
#include <memory>
#include <utility>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "fast_math.h"
#include "gaussian_setup.h"

namespace gfix {
namespace {

int resolve_threads(int num_threads) {
#ifdef _OPENMP
  return num_threads > 0 ? num_threads : omp_get_max_threads();
#else
  (void)num_threads;
  return 1;
#endif
}

// Per-Gaussian setup for all N, in parallel; returns the number that touch
// at least one pixel.
int64_t setup_all(const float* means, const float* chol, int64_t n, int height,
                  int width, std::vector<GaussianSetup>& setups,
                  std::vector<uint8_t>& live, int threads) {
  setups.resize(static_cast<size_t>(n));
  live.resize(static_cast<size_t>(n));
  int64_t count = 0;
#pragma omp parallel for schedule(static) num_threads(threads) reduction(+ : count)
  for (int64_t i = 0; i < n; ++i) {
    live[i] = setup_gaussian(means, chol, i, height, width, setups[i]) ? 1 : 0;
    count += live[i];
  }
  return count;
}

struct TileBins {
  int tiles_x = 0, tiles_y = 0;
  std::vector<int64_t> offsets;  // [tiles + 1]
  std::vector<int32_t> ids;      // [intersections], Gaussian index order per tile
};

// Bins the live Gaussians by tile, in index order within each tile. Each
// thread counts and then writes one contiguous range of Gaussians, its write
// cursors starting after the earlier ranges' entries: the same ids as a
// serial pass, for any thread count.
void bin_tiles(const std::vector<GaussianSetup>& setups,
               const std::vector<uint8_t>& live, int height, int width,
               TileBins& bins, int threads) {
  bins.tiles_x = (width + kTileSize - 1) / kTileSize;
  bins.tiles_y = (height + kTileSize - 1) / kTileSize;
  const int64_t num_tiles = static_cast<int64_t>(bins.tiles_x) * bins.tiles_y;
  const int64_t n = static_cast<int64_t>(setups.size());
  // Small frames: one range (a per-thread table of all tiles would cost more than it saves).
  const int ranges = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(threads, n / 2048)));
  std::vector<int64_t> counts(static_cast<size_t>(ranges) * num_tiles, 0);
  auto range_of = [&](int r) {
    return std::make_pair(n * r / ranges, n * (r + 1) / ranges);
  };
#pragma omp parallel for schedule(static, 1) num_threads(ranges)
  for (int r = 0; r < ranges; ++r) {
    int64_t* count = counts.data() + static_cast<size_t>(r) * num_tiles;
    const auto [first, last] = range_of(r);
    for (int64_t i = first; i < last; ++i) {
      if (!live[i]) continue;
      const GaussianSetup& g = setups[i];
      for (int ty = g.y0 / kTileSize; ty <= g.y1 / kTileSize; ++ty)
        for (int tx = g.x0 / kTileSize; tx <= g.x1 / kTileSize; ++tx)
          ++count[static_cast<size_t>(ty) * bins.tiles_x + tx];
    }
  }
  // Tile offsets, then each range's cursor (counts becomes the cursors in place).
  bins.offsets.assign(static_cast<size_t>(num_tiles + 1), 0);
  for (int64_t t = 0; t < num_tiles; ++t) {
    int64_t cursor = bins.offsets[t];
    for (int r = 0; r < ranges; ++r) {
      int64_t& c = counts[static_cast<size_t>(r) * num_tiles + t];
      const int64_t here = c;
      c = cursor;
      cursor += here;
    }
    bins.offsets[t + 1] = cursor;
  }
  bins.ids.resize(static_cast<size_t>(bins.offsets[num_tiles]));
#pragma omp parallel for schedule(static, 1) num_threads(ranges)
  for (int r = 0; r < ranges; ++r) {
    int64_t* cursor = counts.data() + static_cast<size_t>(r) * num_tiles;
    const auto [first, last] = range_of(r);
    for (int64_t i = first; i < last; ++i) {
      if (!live[i]) continue;
      const GaussianSetup& g = setups[i];
      for (int ty = g.y0 / kTileSize; ty <= g.y1 / kTileSize; ++ty)
        for (int tx = g.x0 / kTileSize; tx <= g.x1 / kTileSize; ++tx)
          bins.ids[cursor[static_cast<size_t>(ty) * bins.tiles_x + tx]++] = static_cast<int32_t>(i);
    }
  }
}

// Indices of the live Gaussians sorted by the tile that holds the top-left
// corner of their box (stable counting sort: index order within a tile).
std::vector<int32_t> spatial_order(const std::vector<GaussianSetup>& setups,
                                   const std::vector<uint8_t>& live, int height,
                                   int width) {
  const int tiles_x = (width + kTileSize - 1) / kTileSize;
  const int tiles_y = (height + kTileSize - 1) / kTileSize;
  const int64_t n = static_cast<int64_t>(setups.size());
  std::vector<int64_t> start(static_cast<size_t>(tiles_x) * tiles_y + 1, 0);
  auto key = [&](const GaussianSetup& g) {
    return static_cast<size_t>(g.y0 / kTileSize) * tiles_x + g.x0 / kTileSize;
  };
  for (int64_t i = 0; i < n; ++i)
    if (live[i]) ++start[key(setups[i]) + 1];
  for (size_t t = 1; t < start.size(); ++t) start[t] += start[t - 1];
  std::vector<int32_t> order(static_cast<size_t>(start.back()));
  for (int64_t i = 0; i < n; ++i)
    if (live[i]) order[start[key(setups[i])]++] = static_cast<int32_t>(i);
  return order;
}

// Adds one Gaussian's contribution to lanes [Offset, Offset + Lanes) of a
// tile's planar accumulator (the lanes outside its box get w = 0).
template <int Lanes, int Offset>
inline void splat_lanes(const GaussianSetup& g, const float* color, int X, int Y, int lo, int hi, int r0, int r1,
                        float* acc_r, float* acc_g, float* acc_b) {
  constexpr int T = kTileSize;
  // Everything that depends only on the column, computed once per tile.
  alignas(64) float bu[Lanes], uu[Lanes], mask[Lanes];
  for (int k = 0; k < Lanes; ++k) {
    const int lx = Offset + k;
    const float dx = (static_cast<float>(X + lx) + 0.5f) - g.mx;
    const float u = dx * g.ia;
    bu[k] = g.b * u;
    uu[k] = u * u;
    mask[k] = (lx >= lo && lx <= hi) ? 1.0f : 0.0f;
  }
  const float cr = color[0], cg = color[1], cb = color[2];
  for (int y = r0; y <= r1; ++y) {
    const float dy = (static_cast<float>(y) + 0.5f) - g.my;
    float* __restrict pr = acc_r + (y - Y) * T + Offset;
    float* __restrict pg = acc_g + (y - Y) * T + Offset;
    float* __restrict pb = acc_b + (y - Y) * T + Offset;
#pragma omp simd
    for (int k = 0; k < Lanes; ++k) {
      const float v = (dy - bu[k]) * g.ic;
      const float w = exp_nonpositive(-0.5f * madd(v, v, uu[k])) * mask[k];
      pr[k] = madd(w, cr, pr[k]);
      pg[k] = madd(w, cg, pg[k]);
      pb[k] = madd(w, cb, pb[k]);
    }
  }
}

// Adds one Gaussian's contribution to a tile's planar accumulator.
// (X, Y): tile origin in pixels; tw, th: tile extent inside the image.
// A box inside one half of the tile's columns (most boxes at a tile's edge)
// is computed on those 8 lanes only: the other half would add exact zeros.
inline void splat_into_tile(const GaussianSetup& g, const float* color, int X,
                            int Y, int tw, int th, float* acc_r, float* acc_g,
                            float* acc_b) {
  constexpr int T = kTileSize;
  constexpr int H = T / 2;
  const int lo = std::max(g.x0, X) - X;
  const int hi = std::min(g.x1, X + tw - 1) - X;
  const int r0 = std::max(g.y0, Y), r1 = std::min(g.y1, Y + th - 1);
  if (lo > hi || r0 > r1) return;
  if (hi < H)
    splat_lanes<H, 0>(g, color, X, Y, lo, hi, r0, r1, acc_r, acc_g, acc_b);
  else if (lo >= H)
    splat_lanes<H, H>(g, color, X, Y, lo, hi, r0, r1, acc_r, acc_g, acc_b);
  else
    splat_lanes<T, 0>(g, color, X, Y, lo, hi, r0, r1, acc_r, acc_g, acc_b);
}

// Writes one row of a tile's planar accumulator into the interleaved image
// (float, or uint8 as the decoder shows it: converted on whole rows, which
// vectorises, then interleaved).
// A full row is a fixed-length loop, which the compiler turns into vector
// shuffles and stores (the interleave dominates an empty tile's cost).
template <typename Pixel>
inline void interleave(const Pixel* r, const Pixel* g, const Pixel* b, int count, Pixel* dst) {
  constexpr int T = kTileSize;
  if (count == T) {
#pragma omp simd
    for (int x = 0; x < T; ++x) {
      dst[3 * x + 0] = r[x];
      dst[3 * x + 1] = g[x];
      dst[3 * x + 2] = b[x];
    }
    return;
  }
  for (int x = 0; x < count; ++x) {
    dst[3 * x + 0] = r[x];
    dst[3 * x + 1] = g[x];
    dst[3 * x + 2] = b[x];
  }
}
// Writes a tile's planar accumulator acc[3][T * T] into the interleaved image
// (float, or uint8 as the decoder shows it: the whole tile converted in one
// vector loop, then interleaved row by row).
inline void store_tile(const float (*acc)[kTileSize * kTileSize], int tw, int th, float* dst, int width) {
  constexpr int T = kTileSize;
  for (int ly = 0; ly < th; ++ly)
    interleave(acc[0] + ly * T, acc[1] + ly * T, acc[2] + ly * T, tw, dst + static_cast<int64_t>(ly) * width * 3);
}
inline void store_tile(const float (*acc)[kTileSize * kTileSize], int tw, int th, uint8_t* dst, int width) {
  constexpr int T = kTileSize;
  alignas(64) uint8_t bytes[3][T * T];
  const float* src = acc[0];
  uint8_t* out = bytes[0];
#pragma omp simd
  for (int k = 0; k < 3 * T * T; ++k) out[k] = unit_to_uint8(src[k]);
  for (int ly = 0; ly < th; ++ly)
    interleave<uint8_t>(bytes[0] + ly * T, bytes[1] + ly * T, bytes[2] + ly * T, tw,
                        dst + static_cast<int64_t>(ly) * width * 3);
}

template <typename Pixel>
RasterStats forward_cpu(const float* means, const float* chol, const float* colors, int64_t n, int height,
                        int width, Pixel* out, int num_threads) {
  const int threads = resolve_threads(num_threads);
  RasterStats stats;
  std::vector<GaussianSetup> setups;
  std::vector<uint8_t> live;
  setup_all(means, chol, n, height, width, setups, live, threads);
  TileBins bins;
  bin_tiles(setups, live, height, width, bins, threads);

  const int64_t num_tiles = static_cast<int64_t>(bins.tiles_x) * bins.tiles_y;
  int64_t max_per_tile = 0;
#pragma omp parallel for schedule(dynamic, 4) num_threads(threads) reduction(max : max_per_tile)
  for (int64_t t = 0; t < num_tiles; ++t) {
    constexpr int T = kTileSize;
    alignas(64) float acc[3][T * T];
    std::memset(acc, 0, sizeof(acc));
    const int X = static_cast<int>(t % bins.tiles_x) * T;
    const int Y = static_cast<int>(t / bins.tiles_x) * T;
    const int tw = std::min(T, width - X), th = std::min(T, height - Y);
    const int64_t begin = bins.offsets[t], end = bins.offsets[t + 1];
    max_per_tile = std::max(max_per_tile, end - begin);
    for (int64_t k = begin; k < end; ++k) {
      const int32_t i = bins.ids[k];
      splat_into_tile(setups[i], colors + 3 * static_cast<int64_t>(i), X, Y, tw,
                      th, acc[0], acc[1], acc[2]);
    }
    store_tile(acc, tw, th, out + (static_cast<int64_t>(Y) * width + X) * 3, width);
  }
  stats.num_intersections = static_cast<int64_t>(bins.ids.size());
  stats.max_per_tile = max_per_tile;
  stats.scratch_bytes = static_cast<int64_t>(
      setups.size() * sizeof(GaussianSetup) + live.size() +
      bins.offsets.size() * sizeof(int64_t) * 2 + bins.ids.size() * sizeof(int32_t));
  return stats;
}

}  // namespace

RasterStats rasterize_forward_cpu(const float* means, const float* chol,
                                  const float* colors, int64_t n, int height,
                                  int width, float* out, int num_threads) {
  return forward_cpu(means, chol, colors, n, height, width, out, num_threads);
}

RasterStats rasterize_forward_u8_cpu(const float* means, const float* chol,
                                     const float* colors, int64_t n, int height,
                                     int width, uint8_t* out, int num_threads) {
  return forward_cpu(means, chol, colors, n, height, width, out, num_threads);
}

RasterStats rasterize_backward_cpu(const float* means, const float* chol,
                                   const float* colors, int64_t n, int height,
                                   int width, const float* grad_out,
                                   float* grad_means, float* grad_chol,
                                   float* grad_colors, int num_threads) {
  constexpr int T = kTileSize;
  const int threads = resolve_threads(num_threads);
  RasterStats stats;
  std::vector<GaussianSetup> setups;
  std::vector<uint8_t> live;
  setup_all(means, chol, n, height, width, setups, live, threads);

  // Planar copy of grad_out with T floats of zero padding per row, so every
  // Gaussian row is read in whole, contiguous 16-lane chunks (the lanes past
  // the box are masked, the padding keeps their loads in bounds).
  const int64_t stride = static_cast<int64_t>(width) + T;
  const int64_t plane = stride * height;
  std::unique_ptr<float[]> planar(new float[static_cast<size_t>(3 * plane)]);
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int y = 0; y < height; ++y) {
    const float* src = grad_out + static_cast<int64_t>(y) * width * 3;
    float* dst_r = planar.get() + y * stride;
    float* dst_g = dst_r + plane;
    float* dst_b = dst_g + plane;
    for (int x = 0; x < width; ++x) {
      dst_r[x] = src[3 * x];
      dst_g[x] = src[3 * x + 1];
      dst_b[x] = src[3 * x + 2];
    }
    for (int x = width; x < stride; ++x) dst_r[x] = dst_g[x] = dst_b[x] = 0.0f;
  }

  // Per Gaussian, the sums over its box of: w*G (3), and g_s*u, g_s*v,
  // g_s*u^2, g_s*u*v, g_s*v^2 where g_s = dL/dsigma = -w <G, color> and
  // sigma = (u^2 + v^2) / 2. Lanes accumulate in float and are flushed to
  // double every kFlushRows rows so that large Gaussians stay accurate.
  constexpr int kSums = 8;
  constexpr int kFlushRows = 32;
  const size_t column_len = static_cast<size_t>(width) + T;
  // Visit Gaussians in the order of the tile holding their box's top-left
  // corner (counting sort), so that consecutive Gaussians read overlapping
  // parts of the gradient image while they are still in cache.
  std::vector<int32_t> order = spatial_order(setups, live, height, width);
  const int64_t n_live = static_cast<int64_t>(order.size());
#pragma omp parallel num_threads(threads)
  {
    // Terms that depend only on the column, filled once per Gaussian.
    std::unique_ptr<float[]> col_u(new float[column_len]), col_bu(new float[column_len]),
        col_uu(new float[column_len]);
#pragma omp for schedule(dynamic, 16)
    for (int64_t j = 0; j < n_live; ++j) {
      const int64_t i = order[j];
      double total[kSums] = {0, 0, 0, 0, 0, 0, 0, 0};
      const GaussianSetup& g = setups[i];
      const float cr = colors[3 * i], cg = colors[3 * i + 1], cb = colors[3 * i + 2];
      const int chunks = (g.x1 - g.x0) / T + 1;
      float* cu = col_u.get();
      float* cbu = col_bu.get();
      float* cuu = col_uu.get();
      for (int k = 0; k < chunks * T; ++k) {
        const float dx = (static_cast<float>(g.x0 + k) + 0.5f) - g.mx;
        cu[k] = dx * g.ia;
        cbu[k] = g.b * cu[k];
        cuu[k] = cu[k] * cu[k];
      }
      alignas(64) float lane[kSums][T];
      std::memset(lane, 0, sizeof(lane));
      for (int y = g.y0; y <= g.y1; ++y) {
        const float dy = (static_cast<float>(y) + 0.5f) - g.my;
        const float* Gr = planar.get() + y * stride + g.x0;
        const float* Gg = Gr + plane;
        const float* Gb = Gg + plane;
        for (int c = 0; c < chunks; ++c) {
          const int base = c * T;
          const int valid = g.x1 - g.x0 - base;  // lanes 0..valid are in the box
#pragma omp simd
          for (int l = 0; l < T; ++l) {
            const float u = cu[base + l];
            const float v = (dy - cbu[base + l]) * g.ic;
            const float w =
                l <= valid ? exp_nonpositive(-0.5f * madd(v, v, cuu[base + l])) : 0.0f;
            const float gr = Gr[base + l], gg = Gg[base + l], gb = Gb[base + l];
            lane[0][l] = madd(w, gr, lane[0][l]);
            lane[1][l] = madd(w, gg, lane[1][l]);
            lane[2][l] = madd(w, gb, lane[2][l]);
            const float gs = -w * madd(gr, cr, madd(gg, cg, gb * cb));
            const float gu = gs * u, gv = gs * v;
            lane[3][l] += gu;
            lane[4][l] += gv;
            lane[5][l] = madd(gu, u, lane[5][l]);
            lane[6][l] = madd(gu, v, lane[6][l]);
            lane[7][l] = madd(gv, v, lane[7][l]);
          }
        }
        if ((y - g.y0) % kFlushRows == kFlushRows - 1 || y == g.y1) {
          for (int k = 0; k < kSums; ++k)
            for (int l = 0; l < T; ++l) {
              total[k] += lane[k][l];
              lane[k][l] = 0.0f;
            }
        }
      }
      // Chain rule through u = dx / a, v = (dy - b u) / c, dx = px - mx, dy = py - my.
      const double ia = g.ia, ic = g.ic;
      const double b_ac = static_cast<double>(g.b) * ia * ic;
      if (grad_colors) {
        grad_colors[3 * i] = static_cast<float>(total[0]);
        grad_colors[3 * i + 1] = static_cast<float>(total[1]);
        grad_colors[3 * i + 2] = static_cast<float>(total[2]);
      }
      if (grad_means) {
        grad_means[2 * i] = static_cast<float>(-ia * total[3] + b_ac * total[4]);
        grad_means[2 * i + 1] = static_cast<float>(-ic * total[4]);
      }
      if (grad_chol) {
        grad_chol[3 * i] = static_cast<float>(g.ga * (-ia * total[5] + b_ac * total[6]));
        grad_chol[3 * i + 1] = static_cast<float>(-ic * total[6]);
        grad_chol[3 * i + 2] = static_cast<float>(g.gc * (-ic * total[7]));
      }
    }
  }
  // Gaussians that touch no pixel get zero gradients.
#pragma omp parallel for schedule(static) num_threads(threads)
  for (int64_t i = 0; i < n; ++i) {
    if (live[i]) continue;
    if (grad_colors) grad_colors[3 * i] = grad_colors[3 * i + 1] = grad_colors[3 * i + 2] = 0.0f;
    if (grad_means) grad_means[2 * i] = grad_means[2 * i + 1] = 0.0f;
    if (grad_chol) grad_chol[3 * i] = grad_chol[3 * i + 1] = grad_chol[3 * i + 2] = 0.0f;
  }
  stats.scratch_bytes = static_cast<int64_t>(
      setups.size() * sizeof(GaussianSetup) + live.size() + order.size() * sizeof(int32_t) +
      3 * plane * sizeof(float) +
      threads * 3 * column_len * sizeof(float));
  return stats;
}

}  // namespace gfix
