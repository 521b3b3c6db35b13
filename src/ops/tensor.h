// A read-only 2-D weight view: rows of n_in elements in any supported type, used in place
// from the mapped file. Ops know nothing about models; they see only these views.
#pragma once
#include <cstddef>
#include <cstdint>

#include "kernels/packed.h"
#include "kernels/types.h"

namespace coppice {

struct WeightView {
  DType type = DType::F32;
  const void* data = nullptr;  // [n_out][row_bytes]
  int64_t n_in = 0;            // ne0: elements per row (contiguous)
  int64_t n_out = 0;           // ne1: rows
  size_t row_bytes = 0;
  // Set when the rows were rewritten at load into a packed layout (kernels/packed.h); `type`
  // stays the file's type and data/row_bytes then describe the packed rows.
  const kernels::PackedKernels* packed = nullptr;
  bool valid() const { return data != nullptr; }
  const uint8_t* row(int64_t r) const { return static_cast<const uint8_t*>(data) + r * row_bytes; }
};

}  // namespace coppice
