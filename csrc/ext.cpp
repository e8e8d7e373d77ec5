// pybind11 module gfix_sdk._C: the CPU kernels, on NumPy views of tensors.
//
// The Python side (gfix_sdk/raster) validates arguments and passes
// C-contiguous float32 arrays; the checks here are a second line of defence
// so that a wrong call raises instead of reading out of bounds.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "gaussian_setup.h"
#include "bindings.h"
#include "raster.h"

namespace py = pybind11;
using FArray = py::array_t<float, py::array::c_style>;

namespace {

void check_shape(const FArray& a, py::ssize_t rows, py::ssize_t cols,
                 const char* name) {
  if (a.ndim() != 2 || a.shape(0) != rows || a.shape(1) != cols)
    throw std::invalid_argument(std::string(name) + ": expected shape [" +
                                std::to_string(rows) + ", " + std::to_string(cols) + "]");
}

void check_image(const FArray& a, int height, int width, const char* name) {
  if (a.ndim() != 3 || a.shape(0) != height || a.shape(1) != width || a.shape(2) != 3)
    throw std::invalid_argument(std::string(name) + ": expected shape [H, W, 3]");
}

void check_size(int height, int width) {
  if (height <= 0 || width <= 0 || height > 65536 || width > 65536)
    throw std::invalid_argument("height and width must be in [1, 65536]");
}

py::dict forward(const FArray& means, const FArray& chol, const FArray& colors,
                 int height, int width, FArray out, int num_threads) {
  const py::ssize_t n = means.ndim() == 2 ? means.shape(0) : -1;
  check_shape(means, n, 2, "means");
  check_shape(chol, n, 3, "chol");
  check_shape(colors, n, 3, "colors");
  check_size(height, width);
  check_image(out, height, width, "out");
  gfix::RasterStats s;
  {
    py::gil_scoped_release release;
    s = gfix::rasterize_forward_cpu(means.data(), chol.data(), colors.data(), n,
                                    height, width, out.mutable_data(), num_threads);
  }
  return gfix::stats_dict(s);
}

py::dict backward(const FArray& means, const FArray& chol, const FArray& colors,
                  int height, int width, const FArray& grad_out,
                  std::optional<FArray> grad_means, std::optional<FArray> grad_chol,
                  std::optional<FArray> grad_colors, int num_threads) {
  const py::ssize_t n = means.ndim() == 2 ? means.shape(0) : -1;
  check_shape(means, n, 2, "means");
  check_shape(chol, n, 3, "chol");
  check_shape(colors, n, 3, "colors");
  check_size(height, width);
  check_image(grad_out, height, width, "grad_out");
  if (grad_means) check_shape(*grad_means, n, 2, "grad_means");
  if (grad_chol) check_shape(*grad_chol, n, 3, "grad_chol");
  if (grad_colors) check_shape(*grad_colors, n, 3, "grad_colors");
  float* gm = grad_means ? grad_means->mutable_data() : nullptr;
  float* gl = grad_chol ? grad_chol->mutable_data() : nullptr;
  float* gc = grad_colors ? grad_colors->mutable_data() : nullptr;
  gfix::RasterStats s;
  {
    py::gil_scoped_release release;
    s = gfix::rasterize_backward_cpu(means.data(), chol.data(), colors.data(), n,
                                     height, width, grad_out.data(), gm, gl, gc,
                                     num_threads);
  }
  return gfix::stats_dict(s);
}

py::dict build_info() {
  py::dict d;
#ifdef _OPENMP
  d["openmp"] = true;
  d["openmp_max_threads"] = omp_get_max_threads();
#else
  d["openmp"] = false;
  d["openmp_max_threads"] = 1;
#endif
#if defined(__AVX512F__)
  d["simd"] = "avx512";
#elif defined(__AVX2__)
  d["simd"] = "avx2";
#elif defined(__SSE4_1__)
  d["simd"] = "sse4.1";
#elif defined(__ARM_NEON)
  d["simd"] = "neon";
#else
  d["simd"] = "baseline";
#endif
#if defined(__FMA__) || defined(__aarch64__)
  d["fma"] = true;
#else
  d["fma"] = false;
#endif
  d["compiler"] = __VERSION__;
  d["tile_size"] = gfix::kTileSize;
  d["min_chol_diag"] = gfix::kMinCholDiag;
  d["box_sigmas"] = gfix::kBoxSigmas;
  return d;
}

// The discrete Laplace table's decay T(0) = peak, T(d + 1) = max(1, T(d) * ratio_q >> 16)
// for d < reach: an exact integer recursion (encoder and decoder must agree to
// the last unit), thousands of steps for wide channels - too slow in Python.
py::array_t<int64_t> laplace_decay(int64_t peak, int64_t ratio_q, int64_t reach) {
  if (peak < 1 || peak > (int64_t{1} << 40)) throw std::invalid_argument("peak must lie in [1, 2^40]");
  if (ratio_q <= 0 || ratio_q >= (1 << 16)) throw std::invalid_argument("ratio_q must lie in (0, 65536)");
  if (reach < 0) throw std::invalid_argument("reach must be >= 0");
  py::array_t<int64_t> out(reach);
  int64_t* decay = out.mutable_data();
  int64_t value = peak;
  for (int64_t d = 0; d < reach; ++d) {
    decay[d] = value;
    if (value > 1) value = std::max<int64_t>(1, (value * ratio_q) >> 16);
  }
  return out;
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "GFix native CPU kernels (2D Gaussian rasterizer).";
  m.def("rasterize_forward", &forward, py::arg("means"), py::arg("chol"),
        py::arg("colors"), py::arg("height"), py::arg("width"),
        py::arg("out").noconvert(), py::arg("num_threads") = 0,
        "Render N Gaussians into out[H, W, 3]; returns binning statistics.");
  m.def("rasterize_backward", &backward, py::arg("means"), py::arg("chol"),
        py::arg("colors"), py::arg("height"), py::arg("width"), py::arg("grad_out"),
        py::arg("grad_means").noconvert(), py::arg("grad_chol").noconvert(),
        py::arg("grad_colors").noconvert(), py::arg("num_threads") = 0,
        "Gradients of sum(out * grad_out) w.r.t. means, chol and colors.");
  m.def("laplace_decay", &laplace_decay, py::arg("peak"), py::arg("ratio_q"), py::arg("reach"),
        "Integer decay table of the entropy coder's discrete Laplace (gfix_sdk.coding.symbols).");
  m.def("build_info", &build_info, "How this module was compiled.");
}
