// Packed weight layouts: formats whose GGUF block layout is slow to decode are rewritten once at
// load into a SIMD-friendly interleaved layout with its own activation format. A packed format
// is all-or-nothing per ISA: KernelSet::packed[type] is set only where that ISA has a fast
// kernel for it, so other ISAs keep using the file's bytes in place (mmap, no copy).
//
// q4_0x128 (from q4_0): groups of 128 elements = 4 q4_0 blocks, 72 bytes (same size as the
// source):  [64 bytes: byte k = code(e = k) | code(e = 64 + k) << 4][4 x f16 scales d]
//   value(e) = d[e / 32] * (code(e) - 8)
// Its activations (q8x128), per group of 128: [128 x int8 codes][32 x f32 da][32 x f32 corr],
// codes and d exactly as q8_0 (d rounded through f16); lane l (0..31) covers codes 4l..4l+3:
//   da[l] = d of that lane's block, corr[l] = 8 * da[l] * (sum of the lane's 4 codes)
// so that dot = sum_l dw[l] * (da[l] * sum_4(code * a) - corr[l]) needs no per-block sign fix.
#pragma once
#include <cstddef>
#include <cstdint>

#include "kernels/types.h"

namespace coppice::kernels {

using GemmFn = void (*)(int64_t n, int nr, int nc, const void* w, size_t w_stride, const void* a,
                        size_t a_stride, float* y, size_t y_stride);

struct PackedKernels {
  const char* name;            // "q4_0x128"
  DType source;                // the file type it replaces
  int64_t k_multiple;          // rows must have n_in % k_multiple == 0 to be packed
  size_t (*row_bytes)(int64_t n);
  void (*pack_rows)(const void* src, void* dst, int64_t n, int64_t rows);  // source rows -> packed
  size_t (*act_row_bytes)(int64_t n);
  FromFloatFn quantize_act;    // f32 row -> packed activation row
  VecDotFn vec_dot;            // packed weight row . packed activation row
  GemmFn gemm;                 // same arithmetic as vec_dot for every (row, token)
};

namespace packed {
constexpr int64_t kGroup = 128;
constexpr size_t kQ4GroupBytes = 72, kQ8GroupBytes = 128 + 2 * 32 * sizeof(float);
size_t q4_0x128_row_bytes(int64_t n);
size_t q8x128_row_bytes(int64_t n);
void pack_q4_0x128(const void* src, void* dst, int64_t n, int64_t rows);
// Scalar twins (the test oracle; plain loops).
void quantize_q8x128_ref(const float* src, void* dst, int64_t n);
void vec_dot_q4_0x128_ref(int64_t n, float* s, const void* x, const void* y);
}  // namespace packed

}  // namespace coppice::kernels
