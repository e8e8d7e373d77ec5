// pybind11 module gfix_sdk._C_cuda: the CUDA kernels on raw device pointers.
//
// Built only when a CUDA toolkit is present. It takes integer device pointers
// (torch.Tensor.data_ptr()) and the caller's stream handle, so it has no
// PyTorch dependency; gfix_sdk/raster validates shapes, dtypes and devices
// before calling it.
#include <pybind11/pybind11.h>

#include <cstdint>

#include "bindings.h"
#include "raster_cuda.h"

namespace py = pybind11;

namespace {

template <typename T>
T* ptr(uintptr_t p) {
  return reinterpret_cast<T*>(p);
}

py::dict forward(uintptr_t means, uintptr_t chol, uintptr_t colors, int64_t n,
                 int height, int width, uintptr_t out, int device, uintptr_t stream) {
  gfix::RasterStats s;
  {
    py::gil_scoped_release release;
    s = gfix::rasterize_forward_cuda(ptr<const float>(means), ptr<const float>(chol),
                                     ptr<const float>(colors), n, height, width,
                                     ptr<float>(out), device,
                                     reinterpret_cast<cudaStream_t>(stream));
  }
  return gfix::stats_dict(s);
}

py::dict backward(uintptr_t means, uintptr_t chol, uintptr_t colors, int64_t n,
                  int height, int width, uintptr_t grad_out, uintptr_t grad_means,
                  uintptr_t grad_chol, uintptr_t grad_colors, int device,
                  uintptr_t stream) {
  gfix::RasterStats s;
  {
    py::gil_scoped_release release;
    s = gfix::rasterize_backward_cuda(
        ptr<const float>(means), ptr<const float>(chol), ptr<const float>(colors), n,
        height, width, ptr<const float>(grad_out), ptr<float>(grad_means),
        ptr<float>(grad_chol), ptr<float>(grad_colors), device,
        reinterpret_cast<cudaStream_t>(stream));
  }
  return gfix::stats_dict(s);
}

}  // namespace

PYBIND11_MODULE(_C_cuda, m) {
  m.doc() = "GFix native CUDA kernels (2D Gaussian rasterizer). Pointers are device "
            "addresses; a null gradient pointer (0) skips that gradient.";
  m.def("rasterize_forward", &forward, py::arg("means"), py::arg("chol"),
        py::arg("colors"), py::arg("n"), py::arg("height"), py::arg("width"),
        py::arg("out"), py::arg("device"), py::arg("stream"));
  m.def("rasterize_backward", &backward, py::arg("means"), py::arg("chol"),
        py::arg("colors"), py::arg("n"), py::arg("height"), py::arg("width"),
        py::arg("grad_out"), py::arg("grad_means"), py::arg("grad_chol"),
        py::arg("grad_colors"), py::arg("device"), py::arg("stream"));
  m.def("device_count", &gfix::cuda_device_count,
        "CUDA devices visible to this module (0 when no driver is installed).");
#ifdef CUDART_VERSION
  m.attr("cuda_runtime_version") = CUDART_VERSION;
#endif
}
