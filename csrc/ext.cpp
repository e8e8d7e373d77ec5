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
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "fast_math.h"
#include "gaussian_setup.h"
#include "bindings.h"
#include "raster.h"
#include "channels.h"
#include "rans.h"

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

py::dict forward_u8(const FArray& means, const FArray& chol, const FArray& colors,
                    int height, int width, py::array_t<uint8_t, py::array::c_style> out, int num_threads) {
  const py::ssize_t n = means.ndim() == 2 ? means.shape(0) : -1;
  check_shape(means, n, 2, "means");
  check_shape(chol, n, 3, "chol");
  check_shape(colors, n, 3, "colors");
  check_size(height, width);
  if (out.ndim() != 3 || out.shape(0) != height || out.shape(1) != width || out.shape(2) != 3)
    throw std::invalid_argument("out: expected shape [H, W, 3]");
  gfix::RasterStats s;
  {
    py::gil_scoped_release release;
    s = gfix::rasterize_forward_u8_cpu(means.data(), chol.data(), colors.data(), n,
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

// A float image to uint8: clamp to [0, 1], scale by 255, round half to even -
// torch's clamp(0, 1) * 255 -> round -> uint8, bit for bit, in one pass instead
// of four (a 1080p frame: ~12 ms in torch on 2 cores). NaN becomes 0.
py::array_t<uint8_t> float_to_uint8(const py::array_t<float, py::array::c_style>& image, int num_threads) {
  const int64_t size = static_cast<int64_t>(image.size());
  std::vector<py::ssize_t> shape(image.shape(), image.shape() + image.ndim());
  py::array_t<uint8_t> out(shape);
  const float* src = image.data();
  uint8_t* dst = out.mutable_data();
  {
    py::gil_scoped_release release;
#ifdef _OPENMP
    const int threads = num_threads > 0 ? num_threads : omp_get_max_threads();
#endif
#pragma omp parallel for schedule(static) num_threads(threads) if (size > (1 << 16))
    for (int64_t i = 0; i < size; ++i) dst[i] = gfix::unit_to_uint8(src[i]);
  }
  return out;
}

// The discrete Laplace table's decay T(0) = peak, T(d + 1) = max(1, T(d) * ratio_q >> 16)
// for d < reach: an exact integer recursion (encoder and decoder must agree to
// the last unit), thousands of steps for wide channels - too slow in Python.
py::array_t<int64_t> to_array(const std::vector<int64_t>& values) {
  py::array_t<int64_t> out(static_cast<py::ssize_t>(values.size()));
  std::copy(values.begin(), values.end(), out.mutable_data());
  return out;
}

py::array_t<int64_t> laplace_decay(int64_t peak, int64_t ratio_q, int64_t reach) {
  return to_array(gfix::channels::laplace_decay(peak, ratio_q, reach));
}

// The discrete Laplace's weights over [lo, hi]: T(|k - center|), and the
// mixture max(1, (w T_narrow + (2^16 - w) T_wide) >> 16), built in one pass
// (the entropy decoder builds one per channel).
py::array_t<int64_t> laplace_weights(int64_t peak, int64_t center, int64_t lo, int64_t hi, int64_t ratio_narrow,
                                     int64_t ratio_wide, int64_t weight_q) {
  return to_array(gfix::channels::laplace_weights(peak, center, lo, hi, ratio_narrow, ratio_wide, weight_q));
}

using I64Array = py::array_t<int64_t, py::array::c_style | py::array::forcecast>;
using U32Array = py::array_t<uint32_t, py::array::c_style | py::array::forcecast>;

// An output array the decoder writes in place: never a converted copy, which
// would silently receive the symbols instead of the caller's array.
int64_t* output_buffer(const py::array& out, int64_t count) {
  if (!py::isinstance<py::array_t<int64_t>>(out) || out.ndim() != 1 || out.shape(0) != count ||
      !(out.flags() & py::array::c_style) || !out.writeable())
    throw std::invalid_argument("an output must be a writeable, C-contiguous int64 array of its symbol count");
  return static_cast<int64_t*>(const_cast<void*>(out.data()));
}

gfix::rans::Table rans_table(const I64Array& weights) {
  if (weights.ndim() != 1) throw std::invalid_argument("weights must be 1-D");
  return gfix::rans::quantize_weights(weights.data(), static_cast<size_t>(weights.shape(0)));
}

// rANS coding of a channel (csrc/rans.h): symbols index the weights.
U32Array rans_encode(const I64Array& symbols, const I64Array& weights) {
  if (symbols.ndim() != 1) throw std::invalid_argument("symbols must be 1-D");
  const gfix::rans::Table table = rans_table(weights);
  std::vector<uint32_t> words;
  {
    py::gil_scoped_release release;
    words = gfix::rans::encode(symbols.data(), static_cast<size_t>(symbols.shape(0)), table);
  }
  U32Array out(static_cast<py::ssize_t>(words.size()));
  std::copy(words.begin(), words.end(), out.mutable_data());
  return out;
}

// Decodes into out (1-D, C-contiguous, count values) when given, else into a
// new array; offset is added to every symbol (the channel's minimum).
py::array rans_decode(const U32Array& words, const I64Array& weights, int64_t count, int64_t offset,
                     std::optional<py::array> out) {
  if (words.ndim() != 1) throw std::invalid_argument("words must be 1-D");
  if (count < 0) throw std::invalid_argument("count must be >= 0");
  py::array result = out ? *out : py::array(I64Array(count));
  int64_t* dst = output_buffer(result, count);
  const gfix::rans::Table table = rans_table(weights);
  {
    py::gil_scoped_release release;
    gfix::rans::decode(words.data(), static_cast<size_t>(words.shape(0)), table,
                       static_cast<size_t>(count), dst);
    if (offset != 0)
      for (int64_t k = 0; k < count; ++k) dst[k] += offset;
  }
  return result;
}

// Reads num = len(outs) channel codings of count values from data[pos:]
// (gfix::channels::decode_channels): the position after them, or -1 when the
// Python reader must read them.
int64_t channels_decode(const py::buffer& data, int64_t pos, int64_t count, const std::vector<py::array>& outs,
                        int num_threads) {
  const py::buffer_info info = data.request();
  if (info.ndim != 1 || info.itemsize != 1 || (info.shape[0] > 1 && info.strides[0] != 1))
    throw std::invalid_argument("data must be a contiguous byte buffer");
  if (pos < 0 || count < 0) throw std::invalid_argument("pos and count must be >= 0");
  std::vector<int64_t*> dst;
  for (const py::array& out : outs) dst.push_back(output_buffer(out, count));
  py::gil_scoped_release release;
  return gfix::channels::decode_channels(static_cast<const uint8_t*>(info.ptr), static_cast<size_t>(info.shape[0]),
                                         static_cast<size_t>(pos), count, dst.data(), static_cast<int>(dst.size()),
                                         num_threads);
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "GFix native CPU kernels (2D Gaussian rasterizer).";
  m.def("rasterize_forward", &forward, py::arg("means"), py::arg("chol"),
        py::arg("colors"), py::arg("height"), py::arg("width"),
        py::arg("out").noconvert(), py::arg("num_threads") = 0,
        "Render N Gaussians into out[H, W, 3]; returns binning statistics.");
  m.def("rasterize_forward_u8", &forward_u8, py::arg("means"), py::arg("chol"),
        py::arg("colors"), py::arg("height"), py::arg("width"),
        py::arg("out").noconvert(), py::arg("num_threads") = 0,
        "rasterize_forward, written as uint8 (clamp to [0, 1], * 255, round half to even) "
        "into out[H, W, 3] without a float image; returns binning statistics.");
  m.def("rasterize_backward", &backward, py::arg("means"), py::arg("chol"),
        py::arg("colors"), py::arg("height"), py::arg("width"), py::arg("grad_out"),
        py::arg("grad_means").noconvert(), py::arg("grad_chol").noconvert(),
        py::arg("grad_colors").noconvert(), py::arg("num_threads") = 0,
        "Gradients of sum(out * grad_out) w.r.t. means, chol and colors.");
  m.def("float_to_uint8", &float_to_uint8, py::arg("image").noconvert(), py::arg("num_threads") = 0,
        "float32 array (C-contiguous) to uint8: clamp to [0, 1], * 255, round half to even "
        "(torch's to_uint8 bit for bit; NaN -> 0).");
  m.def("laplace_decay", &laplace_decay, py::arg("peak"), py::arg("ratio_q"), py::arg("reach"),
        "Integer decay table of the entropy coder's discrete Laplace (gfix_sdk.coding.symbols).");
  m.def("laplace_weights", &laplace_weights, py::arg("peak"), py::arg("center"), py::arg("lo"), py::arg("hi"),
        py::arg("ratio_narrow"), py::arg("ratio_wide") = 1, py::arg("weight_q") = 1 << 16,
        "Integer weights over [lo, hi] of the entropy coder's discrete Laplace (weight_q = 65536) "
        "or of its two-Laplace mixture (gfix_sdk.coding.symbols).");
  m.def("rans_encode", &rans_encode, py::arg("symbols"), py::arg("weights"),
        "rANS-code symbols (indices into weights, integer probabilities); returns uint32 words.");
  m.def("rans_decode", &rans_decode, py::arg("words"), py::arg("weights"), py::arg("count"),
        py::arg("offset") = 0, py::arg("out").noconvert() = py::none(),
        "Decode count symbols coded by rans_encode with the same weights, plus offset, "
        "into out (int64, C-contiguous) or a new array; RuntimeError when the words are "
        "not an intact coding.");
  m.def("decode_channels", &channels_decode, py::arg("data"), py::arg("pos"), py::arg("count"), py::arg("outs"),
        py::arg("num_threads") = 0,
        "Parse and decode len(outs) consecutive channel codings (gfix_sdk.coding.symbols) of count "
        "values from data[pos:] into outs; the end position, or -1 when the Python reader must read them.");
  m.def("build_info", &build_info, "How this module was compiled.");
}
