// AVX-512 VNNI + VBMI kernels of the Q8_0 2:4 panel layout q8_0x16s (sparse24.h). Per panel
// block the 2-bit positions become 4 byte-index vectors (vpmultishiftqb, and, add: lane r's
// bytes 4t.. of vector v index kept value 4v + t of row r), once for every token of the tile.
// Per token the block's 32 activation codes, flipped to unsigned (+128), are gathered per row
// by one vpermb per vector and dotted with the signed kept codes by vpdpbusd; the +128 comes
// back out through the rows' stored code sums (the chain starts at -128 * sum). VBMI is not in
// the AVX-512 table's requirements (Cooper Lake has BF16 without it): these functions carry it
// as a target attribute and are chosen only where CPUID reports it (q8_panel_for).
#include <immintrin.h>

#include <cstring>

#include "kernels/simd_packed_act.h"
#include "kernels/simd_x86.h"
#include "kernels/sparse24.h"

namespace coppice::kernels::sparse24 {
namespace {

#define CP_VBMI __attribute__((target("avx512vbmi")))

constexpr size_t kPos = 256, kSum = 320, kScale = 352;

// Byte j of every qword (rows 2q, 2q + 1 in its two dwords): the bit offset of kept value
// 4v + j % 4 of row 2q + j / 4 within the qword, and that value's group base 4 * ((4v + t) / 2).
// Compile-time constants, so the block loop holds them in registers.
constexpr uint64_t shift_ctl(int v) {
  uint64_t r = 0;
  for (int j = 0; j < 8; ++j) r |= static_cast<uint64_t>(32 * (j / 4) + 2 * (4 * v + j % 4)) << (8 * j);
  return r;
}
constexpr uint64_t group_base(int v) {
  uint64_t r = 0;
  for (int j = 0; j < 8; ++j) r |= static_cast<uint64_t>(4 * ((4 * v + j % 4) / 2)) << (8 * j);
  return r;
}

template <int V>
CP_VBMI inline __m512i index_vector(__m512i pos) {
  constexpr uint64_t ctl = shift_ctl(V), base = group_base(V);
  const __m512i sel = _mm512_maskz_multishift_epi64_epi8(~0ULL, _mm512_set1_epi64(static_cast<long long>(ctl)), pos);
  return _mm512_add_epi8(_mm512_and_si512(sel, _mm512_set1_epi8(3)), _mm512_set1_epi64(static_cast<long long>(base)));
}

template <int C>
CP_VBMI void tile(int64_t nb, const uint8_t* w, const uint8_t* a, size_t as, float* y, size_t ys) {
  __m512 acc[C];
#pragma GCC unroll 8
  for (int c = 0; c < C; ++c) acc[c] = _mm512_setzero_ps();
  const __m512i flip = _mm512_set1_epi8(static_cast<char>(0x80));
  for (int64_t i = 0; i < nb; ++i, w += kQ8PanelBlockBytes) {
    prefetch_block_ahead<kQ8PanelBlockBytes>(w);  // decode too: 25 -> 33 tok/s on the 1.1B (RESULTS)
    const __m512i pos = _mm512_loadu_si512(w + kPos);
    const __m512i idx[4] = {index_vector<0>(pos), index_vector<1>(pos), index_vector<2>(pos), index_vector<3>(pos)};
    __m512i code[4];
#pragma GCC unroll 4
    for (int v = 0; v < 4; ++v) code[v] = _mm512_loadu_si512(w + 64 * v);
    const __m512i sums = _mm512_maskz_cvtepi16_epi32(0xFFFF, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + kSum)));
    const __m512i start = _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_maskz_slli_epi32(0xFFFF, sums, 7));
    const __m512 dw = _mm512_maskz_cvtph_ps(0xFFFF, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + kScale)));
#pragma GCC unroll 8
    for (int c = 0; c < C; ++c) {
      const uint8_t* ab = a + c * as + i * packed::kQ8sBlockBytes;
      const __m512i act = _mm512_xor_si512(  // the 32 codes in the low half (vpermb reads indices < 32)
          _mm512_maskz_broadcast_i64x4(0x0F, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ab))), flip);
      __m512i isum = start;
#pragma GCC unroll 4
      for (int v = 0; v < 4; ++v) isum = _mm512_dpbusd_epi32(isum, _mm512_maskz_permutexvar_epi8(~0ULL, idx[v], act), code[v]);
      float da;
      std::memcpy(&da, ab + 32, 4);
      const __m512 t = _mm512_mul_ps(_mm512_maskz_cvtepi32_ps(0xFFFF, isum), _mm512_set1_ps(da));
      acc[c] = _mm512_fmadd_ps(dw, t, acc[c]);
    }
  }
#pragma GCC unroll 8
  for (int c = 0; c < C; ++c) _mm512_storeu_ps(y + c * ys, acc[c]);
}

constexpr int kMaxC = 8;  // tokens per tile: 8 accumulators + 4 index + 4 code vectors

CP_VBMI void gemm(int64_t n, int nr, int nc, const void* vw, size_t ws, const void* va, size_t as, float* y,
                  size_t ys) {
  using TileFn = void (*)(int64_t, const uint8_t*, const uint8_t*, size_t, float*, size_t);
  static constexpr TileFn kTiles[kMaxC] = {tile<1>, tile<2>, tile<3>, tile<4>, tile<5>, tile<6>, tile<7>, tile<8>};
  const auto* w = static_cast<const uint8_t*>(vw);
  const auto* a = static_cast<const uint8_t*>(va);
  for (int r0 = 0; r0 < nr; r0 += packed::kPanel) {
    const uint8_t* panel = w + static_cast<size_t>(r0) * ws;
    for (int c0 = 0; c0 < nc; c0 += kMaxC) {
      const int cc = nc - c0 < kMaxC ? nc - c0 : kMaxC;
      kTiles[cc - 1](n / kChunk, panel, a + c0 * as, as, y + c0 * ys + r0, ys);
    }
  }
}

#undef CP_VBMI

[[maybe_unused]] constexpr auto* kSharedUnused = &quantize_q8k;  // simd_packed_act.h's other quantizer

}  // namespace

namespace avx512 {
const PackedKernels kQ8Panel = {"q8_0x16s", DType::Q8_0, kChunk, q8_0x16s_row_bytes, pack_q8_0x16s,
                                packed::q8s_row_bytes, quantize_q8s, nullptr, gemm, packed::kPanel};
}  // namespace avx512

}  // namespace coppice::kernels::sparse24
