// AVX-512 (VNNI) kernels of the panel layouts (packed.h): 16 rows per panel, one int32 lane per
// row. Per 32-element block, the 8 code vectors (codes 4j..4j+3 of every row, unsigned) are each
// multiplied (vpdpbusd) with the token's activation bytes 4j..4j+3 broadcast to all lanes. The
// block's scale work (code bias, activation and weight scales) is then 4 vector ops for 16 rows,
// where a row-major layout pays it per row, and the decoded codes serve every token of a tile.
#include "kernels/dispatch_impl.h"
#include "kernels/packed.h"
#include "kernels/simd_packed_act.h"
#include "kernels/simd_x86.h"

namespace coppice::kernels {
namespace {  // NOLINT: per-ISA copies by design

using packed::kPanel;
using packed::kQ8sBlockBytes;

inline __m512i bcast32(const uint8_t* p) { return _mm512_set1_epi32(static_cast<int32_t>(load_u32(p))); }

// q4_0x16: four loads, low and high nibbles.
struct Q4Panel {
  static constexpr size_t kBytes = packed::kQ4PanelBlockBytes, kScales = 256;
  static constexpr int kBiasShift = 3;  // bias 8
  static void decode(const uint8_t* w, __m512i q[8]) {
    const __m512i m4 = _mm512_set1_epi8(0x0F);
#pragma GCC unroll 4
    for (int k = 0; k < 4; ++k) {
      const __m512i v = _mm512_loadu_si512(w + 64 * k);
      q[k] = _mm512_and_si512(v, m4);
      q[k + 4] = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
    }
  }
};

// q8_0x16: eight loads, codes stored + 128.
struct Q8Panel {
  static constexpr size_t kBytes = packed::kQ8PanelBlockBytes, kScales = 512;
  static constexpr int kBiasShift = 7;  // bias 128
  static void decode(const uint8_t* w, __m512i q[8]) {
#pragma GCC unroll 8
    for (int j = 0; j < 8; ++j) q[j] = _mm512_loadu_si512(w + 64 * j);
  }
};

// One panel x C tokens over nb blocks; y[c * ys + lane] for the panel's 16 rows.
template <class L, int C>
void panel_tile(int64_t nb, const uint8_t* w, const uint8_t* a, size_t as, float* y, size_t ys) {
  __m512 acc[C];
#pragma GCC unroll 8
  for (int c = 0; c < C; ++c) acc[c] = _mm512_setzero_ps();
  for (int64_t i = 0; i < nb; ++i, w += L::kBytes) {
    if constexpr (C >= 2) prefetch_block_ahead<L::kBytes>(w);  // decode (C == 1): slower with it (RESULTS)
    __m512i q[8];
    L::decode(w, q);
    const __m512 dw = _mm512_maskz_cvtph_ps(0xFFFF, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + L::kScales)));
#pragma GCC unroll 8
    for (int c = 0; c < C; ++c) {
      const uint8_t* ab = a + c * as + i * kQ8sBlockBytes;
      __m512i s0 = _mm512_setzero_si512(), s1 = _mm512_setzero_si512();
#pragma GCC unroll 4
      for (int j = 0; j < 8; j += 2) {
        s0 = _mm512_dpbusd_epi32(s0, q[j], bcast32(ab + 4 * j));
        s1 = _mm512_dpbusd_epi32(s1, q[j + 1], bcast32(ab + 4 * j + 4));
      }
      const __m512i bias = _mm512_set1_epi32(static_cast<int32_t>(load_u32(ab + 36) << L::kBiasShift));
      const __m512i isum = _mm512_sub_epi32(_mm512_add_epi32(s0, s1), bias);
      float da;
      std::memcpy(&da, ab + 32, 4);
      const __m512 t = _mm512_mul_ps(_mm512_maskz_cvtepi32_ps(0xFFFF, isum), _mm512_set1_ps(da));
      acc[c] = _mm512_fmadd_ps(dw, t, acc[c]);
    }
  }
#pragma GCC unroll 8
  for (int c = 0; c < C; ++c) _mm512_storeu_ps(y + c * ys, acc[c]);
}

constexpr int kMaxC = 8;  // tokens per tile: 8 accumulators + 8 code vectors + temporaries

template <class L>
void gemm_panel(int64_t n, int nr, int nc, const void* vw, size_t ws, const void* va, size_t as, float* y,
                size_t ys) {
  using TileFn = void (*)(int64_t, const uint8_t*, const uint8_t*, size_t, float*, size_t);
  static constexpr TileFn kTiles[kMaxC] = {panel_tile<L, 1>, panel_tile<L, 2>, panel_tile<L, 3>, panel_tile<L, 4>,
                                           panel_tile<L, 5>, panel_tile<L, 6>, panel_tile<L, 7>, panel_tile<L, 8>};
  const auto* w = static_cast<const uint8_t*>(vw);
  const auto* a = static_cast<const uint8_t*>(va);
  for (int r0 = 0; r0 < nr; r0 += kPanel) {
    const uint8_t* panel = w + static_cast<size_t>(r0) * ws;
    for (int c0 = 0; c0 < nc; c0 += kMaxC) {
      const int cc = nc - c0 < kMaxC ? nc - c0 : kMaxC;
      kTiles[cc - 1](n / 32, panel, a + c0 * as, as, y + c0 * ys + r0, ys);
    }
  }
}

// q4_Kx16: per super-block, sub-block by sub-block (8 code vectors live), the integer dot of
// each token is scaled by the rows' 6-bit scales in int32 (exact); the mins term is 4 vpdpwssd
// of the rows' mins (int16 pairs) with the token's sub-block sums.
template <int C>
void q4k_tile(int64_t nsb, const uint8_t* w, const uint8_t* a, size_t as, float* y, size_t ys) {
  __m512 acc[C];
#pragma GCC unroll 8
  for (int c = 0; c < C; ++c) acc[c] = _mm512_setzero_ps();
  const __m512i m4 = _mm512_set1_epi8(0x0F);
  for (int64_t i = 0; i < nsb; ++i, w += packed::kQ4KPanelBlockBytes) {
    prefetch_block_ahead<packed::kQ4KPanelBlockBytes>(w);  // decode too: +18-27 % tg (RESULTS)
    const uint8_t* ai = a + i * packed::kQ8kBlockBytes;
    __m512i isum[C];
#pragma GCC unroll 8
    for (int c = 0; c < C; ++c) isum[c] = _mm512_setzero_si512();
    for (int s = 0; s < 8; ++s) {
      const uint8_t* chunk = w + 64 * 8 * (s / 2);
      __m512i q[8];
#pragma GCC unroll 8
      for (int k = 0; k < 8; ++k) {
        const __m512i v = _mm512_loadu_si512(chunk + 64 * k);
        q[k] = _mm512_and_si512(s % 2 == 0 ? v : _mm512_srli_epi16(v, 4), m4);
      }
      const __m512i sc = _mm512_maskz_cvtepu8_epi32(0xFFFF, _mm_loadu_si128(reinterpret_cast<const __m128i*>(w + 2048 + 16 * s)));
#pragma GCC unroll 8
      for (int c = 0; c < C; ++c) {
        const uint8_t* ab = ai + c * as + 32 * s;
        __m512i s0 = _mm512_setzero_si512(), s1 = _mm512_setzero_si512();
#pragma GCC unroll 4
        for (int k = 0; k < 8; k += 2) {
          s0 = _mm512_dpbusd_epi32(s0, q[k], bcast32(ab + 4 * k));
          s1 = _mm512_dpbusd_epi32(s1, q[k + 1], bcast32(ab + 4 * k + 4));
        }
        isum[c] = _mm512_add_epi32(isum[c], _mm512_mullo_epi32(_mm512_add_epi32(s0, s1), sc));
      }
    }
    __m512i mins[4];
#pragma GCC unroll 4
    for (int p = 0; p < 4; ++p)
      mins[p] = _mm512_maskz_cvtepu8_epi16(0xFFFFFFFF, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + 2176 + 32 * p)));
    const __m512 d = _mm512_maskz_cvtph_ps(0xFFFF, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + 2304)));
    const __m512 dmin = _mm512_maskz_cvtph_ps(0xFFFF, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w + 2336)));
#pragma GCC unroll 8
    for (int c = 0; c < C; ++c) {
      const uint8_t* ab = ai + c * as;
      __m512i msum = _mm512_setzero_si512();
#pragma GCC unroll 4
      for (int p = 0; p < 4; ++p) msum = _mm512_dpwssd_epi32(msum, mins[p], bcast32(ab + 260 + 4 * p));
      float da;
      std::memcpy(&da, ab + 256, 4);
      const __m512 vda = _mm512_set1_ps(da);
      const __m512 t1 = _mm512_mul_ps(_mm512_maskz_cvtepi32_ps(0xFFFF, isum[c]), vda);
      const __m512 t2 = _mm512_mul_ps(_mm512_maskz_cvtepi32_ps(0xFFFF, msum), vda);
      acc[c] = _mm512_fnmadd_ps(dmin, t2, _mm512_fmadd_ps(d, t1, acc[c]));
    }
  }
#pragma GCC unroll 8
  for (int c = 0; c < C; ++c) _mm512_storeu_ps(y + c * ys, acc[c]);
}

void gemm_q4_Kx16(int64_t n, int nr, int nc, const void* vw, size_t ws, const void* va, size_t as, float* y,
                  size_t ys) {
  using TileFn = void (*)(int64_t, const uint8_t*, const uint8_t*, size_t, float*, size_t);
  constexpr int kMaxCK = 6;  // 6 float + 6 int accumulators + 8 code vectors
  static constexpr TileFn kTiles[kMaxCK] = {q4k_tile<1>, q4k_tile<2>, q4k_tile<3>,
                                            q4k_tile<4>, q4k_tile<5>, q4k_tile<6>};
  const auto* w = static_cast<const uint8_t*>(vw);
  const auto* a = static_cast<const uint8_t*>(va);
  for (int r0 = 0; r0 < nr; r0 += kPanel) {
    const uint8_t* panel = w + static_cast<size_t>(r0) * ws;
    for (int c0 = 0; c0 < nc; c0 += kMaxCK) {
      const int cc = nc - c0 < kMaxCK ? nc - c0 : kMaxCK;
      kTiles[cc - 1](n / QK_K, panel, a + c0 * as, as, y + c0 * ys + r0, ys);
    }
  }
}

const PackedKernels kQ4_0x16 = {"q4_0x16", DType::Q4_0, 32, packed::q4_0x16_row_bytes, packed::pack_q4_0x16,
                                packed::q8s_row_bytes, quantize_q8s, nullptr, gemm_panel<Q4Panel>, kPanel};
const PackedKernels kQ8_0x16 = {"q8_0x16", DType::Q8_0, 32, packed::q8_0x16_row_bytes, packed::pack_q8_0x16,
                                packed::q8s_row_bytes, quantize_q8s, nullptr, gemm_panel<Q8Panel>, kPanel};
const PackedKernels kQ4_Kx16 = {"q4_Kx16", DType::Q4_K, QK_K, packed::q4_Kx16_row_bytes, packed::pack_q4_Kx16,
                                packed::q8k_row_bytes, quantize_q8k, nullptr, gemm_q4_Kx16, kPanel};

}  // namespace

namespace avx512 {
void fill_packed(KernelSet& ks) {
  ks.packed[static_cast<uint32_t>(DType::Q4_0)] = &kQ4_0x16;
  ks.packed[static_cast<uint32_t>(DType::Q8_0)] = &kQ8_0x16;
  ks.packed[static_cast<uint32_t>(DType::Q4_K)] = &kQ4_Kx16;
}
}  // namespace avx512

}  // namespace coppice::kernels
