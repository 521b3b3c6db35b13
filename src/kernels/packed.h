// Packed weight layouts: formats whose GGUF block layout is slow to decode are rewritten once at
// load into a SIMD-friendly interleaved layout with its own activation format. A packed format
// is all-or-nothing per ISA: KernelSet::packed[type] is set only where that ISA has a fast
// kernel for it, so other ISAs keep using the file's bytes in place (mmap, no copy).
//
// Activations are converted once per matmul to the layout's own format (quantize_act).
#pragma once
#include <cstddef>
#include <cstdint>

#include "kernels/types.h"

namespace coppice::kernels {

using GemmFn = void (*)(int64_t n, int nr, int nc, const void* w, size_t w_stride, const void* a,
                        size_t a_stride, float* y, size_t y_stride);

struct PackedKernels {
  const char* name;            // "q4_0x16"
  DType source;                // the file type it replaces
  int64_t k_multiple;          // rows must have n_in % k_multiple == 0 to be packed
  size_t (*row_bytes)(int64_t n);
  void (*pack_rows)(const void* src, void* dst, int64_t n, int64_t rows);  // source rows -> packed
  size_t (*act_row_bytes)(int64_t n);
  FromFloatFn quantize_act;    // f32 row -> packed activation row
  VecDotFn vec_dot;            // packed weight row . packed activation row (nullptr: panels)
  GemmFn gemm;                 // same arithmetic as vec_dot for every (row, token)
  // Rows interleaved per panel: 1 for row-major layouts; > 1 for panel layouts, whose gemm
  // takes nr as a multiple of it with w at a panel start (row r0's panel = r0 * row_bytes), and
  // which have no vec_dot (decode is the gemm with nc = 1). Matrices need n_out % row_panel == 0.
  int row_panel = 1;
};

namespace packed {
// Panel layouts: 16 rows per panel, one int32 lane per row. Per 32-element block of a panel:
//   q4_0x16 (from q4_0), 288 bytes: [4 x 64 bytes: byte 4r + t of chunk k = source qs[4k + t] of
//     row r][16 x f16 d]: chunk k's low nibbles are codes 4k..4k+3 of the 16 rows, its high
//     nibbles codes 16 + 4k..; code c in 0..15 stands for c - 8 (bias 8).
//   q8_0x16 (from q8_0), 544 bytes: [8 x 64 bytes: byte 4r + t of chunk j = qs[4j + t] of row r,
//     plus 128 as u8][16 x f16 d]; code c in 0..255 stands for c - 128 (bias 128).
// Either way a panel holds its 16 rows' bytes (same size as the file's), reordered.
// Activations (q8s), per block of 32: [32 x int8 codes][f32 d][int32 sum(codes)] (codes and d
// as q8_0 before d is rounded to f16). For row r, token c, blocks in order:
//   acc = fma(dw[r], float(sum(code * a) - bias * sum(a)) * da, acc)
// in one lane per row, so every tile shape computes a (row, token) bit-identically.
//   q4_Kx16 (from q4_K), per 256-element super-block, 2368 bytes (148 per row, file: 144):
//     [2048: chunk 8j + k (64 bytes), byte 4r + t = qs[32j + 4k + t] of row r: low nibbles are
//      codes 4k..4k+3 of sub-block 2j, high nibbles of sub-block 2j + 1]
//     [128: sub-block s, byte r = 6-bit scale of row r][128: pair p, byte 2r + u = 6-bit min of
//      sub-block 2p + u, row r][16 x f16 d][16 x f16 dmin]
//   with q8k activations per 256: [256 x int8][f32 d][8 x int16 sub-block sums][12 pad] (one d
//   per 256, as q8_K). For row r, token c, super-blocks in order (integer sums exact):
//     acc = fma(d[r], float(sum_s sc[s] * dot_s) * da, acc)
//     acc = fnma(dmin[r], float(sum_s m[s] * asum_s) * da, acc)
constexpr int kPanel = 16;
constexpr size_t kQ4KPanelBlockBytes = 2368, kQ8kBlockBytes = 288;
size_t q4_Kx16_row_bytes(int64_t n);
size_t q8k_row_bytes(int64_t n);
void pack_q4_Kx16(const void* src, void* dst, int64_t n, int64_t rows);
void quantize_q8k_ref(const float* src, void* dst, int64_t n);
void gemm_q4_Kx16_ref(int64_t n, int nr, int nc, const void* w, size_t w_stride, const void* a,
                      size_t a_stride, float* y, size_t y_stride);
constexpr size_t kQ4PanelBlockBytes = 288, kQ8PanelBlockBytes = 544, kQ8sBlockBytes = 40;
size_t q4_0x16_row_bytes(int64_t n);
size_t q8_0x16_row_bytes(int64_t n);
size_t q8s_row_bytes(int64_t n);
void pack_q4_0x16(const void* src, void* dst, int64_t n, int64_t rows);  // rows % 16 == 0
void pack_q8_0x16(const void* src, void* dst, int64_t n, int64_t rows);
// Scalar twins (the test oracles; plain loops, the same float operations as the SIMD kernels).
void quantize_q8s_ref(const float* src, void* dst, int64_t n);
void gemm_q4_0x16_ref(int64_t n, int nr, int nc, const void* w, size_t w_stride, const void* a,
                      size_t a_stride, float* y, size_t y_stride);
void gemm_q8_0x16_ref(int64_t n, int nr, int nc, const void* w, size_t w_stride, const void* a,
                      size_t a_stride, float* y, size_t y_stride);
}  // namespace packed

}  // namespace coppice::kernels
