// Helpers shared by the two pybind11 modules (ext.cpp, ext_cuda.cpp).
#pragma once

#include <pybind11/pybind11.h>

#include "raster.h"

namespace gfix {

inline pybind11::dict stats_dict(const RasterStats& s) {
  pybind11::dict d;
  d["num_intersections"] = s.num_intersections;
  d["max_per_tile"] = s.max_per_tile;
  d["scratch_bytes"] = s.scratch_bytes;
  return d;
}

}  // namespace gfix
