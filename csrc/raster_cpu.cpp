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

void bin_tiles(const std::vector<GaussianSetup>& setups,
               const std::vector<uint8_t>& live, int height, int width,
               TileBins& bins) {
  bins.tiles_x = (width + kTileSize - 1) / kTileSize;
  bins.tiles_y = (height + kTileSize - 1) / kTileSize;
  const int64_t num_tiles = static_cast<int64_t>(bins.tiles_x) * bins.tiles_y;
  bins.offsets.assign(static_cast<size_t>(num_tiles + 1), 0);
  const int64_t n = static_cast<int64_t>(setups.size());
  for (int64_t i = 0; i < n; ++i) {
    if (!live[i]) continue;
    const GaussianSetup& g = setups[i];
    for (int ty = g.y0 / kTileSize; ty <= g.y1 / kTileSize; ++ty)
      for (int tx = g.x0 / kTileSize; tx <= g.x1 / kTileSize; ++tx)
        ++bins.offsets[static_cast<size_t>(ty) * bins.tiles_x + tx + 1];
  }
  for (int64_t t = 0; t < num_tiles; ++t) bins.offsets[t + 1] += bins.offsets[t];
  bins.ids.resize(static_cast<size_t>(bins.offsets[num_tiles]));
  std::vector<int64_t> cursor(bins.offsets.begin(), bins.offsets.end() - 1);
  for (int64_t i = 0; i < n; ++i) {
    if (!live[i]) continue;
    const GaussianSetup& g = setups[i];
    for (int ty = g.y0 / kTileSize; ty <= g.y1 / kTileSize; ++ty)
      for (int tx = g.x0 / kTileSize; tx <= g.x1 / kTileSize; ++tx)
        bins.ids[cursor[static_cast<size_t>(ty) * bins.tiles_x + tx]++] =
            static_cast<int32_t>(i);
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

// Adds one Gaussian's contribution to a tile's planar accumulator.
// (X, Y): tile origin in pixels; tw, th: tile extent inside the image.
inline void splat_into_tile(const GaussianSetup& g, const float* color, int X,
                            int Y, int tw, int th, float* acc_r, float* acc_g,
                            float* acc_b) {
  constexpr int T = kTileSize;
  const int lo = std::max(g.x0, X) - X;
  const int hi = std::min(g.x1, X + tw - 1) - X;
  const int r0 = std::max(g.y0, Y), r1 = std::min(g.y1, Y + th - 1);
  if (lo > hi || r0 > r1) return;
  // Everything that depends only on the column, computed once per tile.
  alignas(64) float u[T], bu[T], uu[T], mask[T];
  for (int lx = 0; lx < T; ++lx) {
    const float dx = (static_cast<float>(X + lx) + 0.5f) - g.mx;
    u[lx] = dx * g.ia;
    bu[lx] = g.b * u[lx];
    uu[lx] = u[lx] * u[lx];
    mask[lx] = (lx >= lo && lx <= hi) ? 1.0f : 0.0f;
  }
  const float cr = color[0], cg = color[1], cb = color[2];
  for (int y = r0; y <= r1; ++y) {
    const float dy = (static_cast<float>(y) + 0.5f) - g.my;
    float* __restrict pr = acc_r + (y - Y) * T;
    float* __restrict pg = acc_g + (y - Y) * T;
    float* __restrict pb = acc_b + (y - Y) * T;
#pragma omp simd
    for (int lx = 0; lx < T; ++lx) {
      const float v = (dy - bu[lx]) * g.ic;
      const float w = exp_nonpositive(-0.5f * madd(v, v, uu[lx])) * mask[lx];
      pr[lx] = madd(w, cr, pr[lx]);
      pg[lx] = madd(w, cg, pg[lx]);
      pb[lx] = madd(w, cb, pb[lx]);
    }
  }
}

}  // namespace

RasterStats rasterize_forward_cpu(const float* means, const float* chol,
                                  const float* colors, int64_t n, int height,
                                  int width, float* out, int num_threads) {
  const int threads = resolve_threads(num_threads);
  RasterStats stats;
  std::vector<GaussianSetup> setups;
  std::vector<uint8_t> live;
  setup_all(means, chol, n, height, width, setups, live, threads);
  TileBins bins;
  bin_tiles(setups, live, height, width, bins);

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
    for (int ly = 0; ly < th; ++ly) {
      float* row = out + (static_cast<int64_t>(Y + ly) * width + X) * 3;
      for (int lx = 0; lx < tw; ++lx) {
        row[3 * lx + 0] = acc[0][ly * T + lx];
        row[3 * lx + 1] = acc[1][ly * T + lx];
        row[3 * lx + 2] = acc[2][ly * T + lx];
      }
    }
  }
  stats.num_intersections = static_cast<int64_t>(bins.ids.size());
  stats.max_per_tile = max_per_tile;
  stats.scratch_bytes = static_cast<int64_t>(
      setups.size() * sizeof(GaussianSetup) + live.size() +
      bins.offsets.size() * sizeof(int64_t) * 2 + bins.ids.size() * sizeof(int32_t));
  return stats;
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
