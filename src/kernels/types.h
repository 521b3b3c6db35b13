// Tensor element types: one traits entry per type (block layout, dequantize, quantize, dot).
// Numbering and block layouts follow the GGUF ecosystem (ggml type ids) bit-exactly.
#pragma once
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace coppice {

enum class DType : uint32_t {
  F32 = 0, F16 = 1, Q4_0 = 2, Q4_1 = 3, Q5_0 = 6, Q5_1 = 7, Q8_0 = 8, Q8_1 = 9,
  Q2_K = 10, Q3_K = 11, Q4_K = 12, Q5_K = 13, Q6_K = 14, Q8_K = 15, BF16 = 30,
};

constexpr int QK4_0 = 32, QK4_1 = 32, QK5_0 = 32, QK5_1 = 32, QK8_0 = 32, QK8_1 = 32;
constexpr int QK_K = 256;  // super-block size of the K-quants

using ToFloatFn = void (*)(const void* src, float* dst, int64_t n);      // n % block_size == 0
using FromFloatFn = void (*)(const float* src, void* dst, int64_t n);    // n % block_size == 0
// s = dot(x, y) over n elements; x in this type, y in the traits' vec_dot_type.
using VecDotFn = void (*)(int64_t n, float* s, const void* x, const void* y);

struct TypeTraits {
  DType type;
  const char* name;        // "q4_K" style lower-case name used by GGUF tooling
  int64_t block_size;      // elements per block
  size_t type_size;        // bytes per block
  bool quantized;
  ToFloatFn to_float;      // dequantize
  FromFloatFn from_float;  // quantize (reference, round-to-nearest / scale search)
  DType vec_dot_type;      // the activation format vec_dot expects
  VecDotFn vec_dot;
};

// nullptr for an id that is not a supported type.
const TypeTraits* type_traits(uint32_t id);
inline const TypeTraits* type_traits(DType t) { return type_traits(static_cast<uint32_t>(t)); }
std::optional<DType> dtype_from_name(std::string_view name);  // case-insensitive
const char* dtype_name(DType t);

// Bytes of a row of n elements (n must be a multiple of the block size).
inline size_t row_size(const TypeTraits& tt, int64_t n) {
  return static_cast<size_t>(n / tt.block_size) * tt.type_size;
}

}  // namespace coppice
