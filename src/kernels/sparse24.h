// 2:4 sparse weight layouts: a matrix whose every group of 4 consecutive inputs holds at most 2
// non-zeros keeps only 2 values per group plus their 2-bit positions. Rewritten at load from
// F16 / BF16 rows (model/sparse_pack.cpp); the kernels read half the value bytes and do half the
// multiplies of the dense ones. Activations stay f32 (no conversion).
//
// Row layout, per chunk of 32 inputs (36 bytes; rows need n_in % 32 == 0):
//   [16 x value (f16 or bf16, as the source)][u32 idx]
//   kept value j (0..15) belongs to group j / 2; its input is 4 * (j / 2) + ((idx >> 2j) & 3).
// A group with fewer than 2 non-zeros stores 0 for the missing ones (at unused positions).
//
// From Q8_0 rows (one chunk = one q8_0 block; 22 bytes instead of 34):
//   [16 x int8 code][u32 idx][f16 d]   kept value j = d * code[j], positions as above.
#pragma once
#include <cstddef>
#include <cstdint>

#include "kernels/dispatch.h"
#include "kernels/packed.h"

namespace coppice::kernels::sparse24 {

constexpr int64_t kChunk = 32;              // inputs per chunk
constexpr size_t kChunkBytes = 16 * 2 + 4;  // 16 values + u32 positions

constexpr size_t kChunkBytesQ8 = 16 + 4 + 2;  // 16 codes + u32 positions + f16 scale

size_t row_bytes(int64_t n);
size_t row_bytes_q8(int64_t n);
size_t act_row_bytes(int64_t n);  // f32 activations
// True if every group of 4 in `rows` rows of n 16-bit values (f16 or bf16; +0 and -0 are zero)
// has at most 2 non-zeros.
bool is_2of4(const uint16_t* src, int64_t n, int64_t rows);
// True if one row of n inputs in `type` (F16 / BF16: values; Q8_0: codes) is 2:4; false for
// other types.
bool row_is_2of4(DType type, const void* row, int64_t n);
// Source rows (16-bit, any 2:4 pattern) -> packed rows; the same for f16 and bf16.
void pack_rows(const void* src, void* dst, int64_t n, int64_t rows);
// Q8_0 rows (codes 2:4) -> packed rows.
void pack_rows_q8(const void* src, void* dst, int64_t n, int64_t rows);
// Scalar twins (the test oracle): packed row . f32 activations, accumulated in double.
void vec_dot_f16_ref(int64_t n, float* s, const void* w, const void* x);
void vec_dot_bf16_ref(int64_t n, float* s, const void* w, const void* x);
void vec_dot_q8_ref(int64_t n, float* s, const void* w, const void* x);

// The 2:4 kernels of `isa` for source type F16, BF16 or Q8_0, or nullptr (other types, ISA missing).
const PackedKernels* kernels_for(Isa isa, DType source);
// The kernels for the ISA kernels() picked, or nullptr where that ISA has no SIMD 2:4 kernel
// (AVX2, scalar: the dense kernels are faster than the scalar twin; the rows stay dense).
const PackedKernels* best(DType source);

// The Q8_0 2:4 panel layout "q8_0x16s" (integer kernels; AVX-512 VNNI + VBMI), 16 rows per
// panel like q8_0x16 (packed.h), 384 bytes per 32-element panel block instead of 544:
//   [4 x 64: byte 4r + t of vector v = kept code 4v + t of row r (int8)]
//   [16 x u32: row r's 2-bit positions, as the row layout's idx word]
//   [16 x int16: sum of row r's kept codes][16 x f16 d]
// Activations are q8s (packed.h). Per row, token and block the integer sum over the kept codes
// equals q8_0x16's over all 32 (the pruned codes are 0), and the float steps are the same:
//   acc = fma(d[r], float(sum_kept(code * a)) * da, acc)
// so a row's result is bit-identical to the dense panel kernels on the same matrix.
constexpr size_t kQ8PanelBlockBytes = 384;
size_t q8_0x16s_row_bytes(int64_t n);
void pack_q8_0x16s(const void* src, void* dst, int64_t n, int64_t rows);  // q8_0 rows (2:4), rows % 16 == 0
void gemm_q8_0x16s_ref(int64_t n, int nr, int nc, const void* w, size_t w_stride, const void* a,
                       size_t a_stride, float* y, size_t y_stride);
// The panel kernels for `isa` (AVX-512 with VBMI: the SIMD ones; scalar: the twin), or nullptr.
const PackedKernels* q8_panel_for(Isa isa);

namespace avx512 {
extern const PackedKernels kF16, kBF16, kQ8, kQ8Panel;
}
namespace avx2 {
extern const PackedKernels kF16, kBF16, kQ8;
}
}  // namespace coppice::kernels::sparse24
