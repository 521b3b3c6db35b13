// AVX2 kernels of the panel layouts (packed.h), for CPUs without AVX-512: the same bytes as the
// AVX-512 VNNI kernels, walked as two halves of 8 rows (bytes 32h..32h+31 of each 64-byte chunk,
// one int32 lane per row of a ymm). vpmaddubsw multiplies unsigned weight codes by signed
// activation bytes into int16 pairs, so every int16 sum is bounded to stay below 2^15:
//   q4 codes 0..15, |a| <= 127: a pair <= 3810, a block's 8 pairs summed in int16 <= 30480;
//   q8 codes: |code| <= 128 times |a| <= 127 (sign moved onto a): a pair <= 32512, widened at once.
// The integer sums are exact, and the float work is the twins' in the same order, so results
// are bit-identical to the scalar twins and the AVX-512 kernels.
#include "kernels/dispatch_impl.h"
#include "kernels/packed.h"
#include "kernels/simd_packed_act.h"
#include "kernels/simd_x86.h"

namespace coppice::kernels {
namespace {  // NOLINT: per-ISA copies by design

using packed::kPanel;
using packed::kQ8sBlockBytes;

inline __m256i bcast32(const uint8_t* p) { return _mm256_set1_epi32(static_cast<int32_t>(load_u32(p))); }
inline __m256i load256(const uint8_t* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }
inline __m256 load_f16x8(const uint8_t* p) { return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))); }

// q4_0x16 half: 8 code vectors (low, high nibbles of 4 chunks); dot = sum(biased code * a).
struct Q4Half {
  static constexpr size_t kBytes = packed::kQ4PanelBlockBytes, kScales = 256;
  static constexpr int kBiasShift = 3;  // bias 8
  __m256i q[8];
  void decode(const uint8_t* w) {
    const __m256i m4 = _mm256_set1_epi8(0x0F);
#pragma GCC unroll 4
    for (int k = 0; k < 4; ++k) {
      const __m256i v = load256(w + 64 * k);
      q[k] = _mm256_and_si256(v, m4);
      q[k + 4] = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
    }
  }
  __m256i dot(const uint8_t* ab) const {
    __m256i s = _mm256_maddubs_epi16(q[0], bcast32(ab));
#pragma GCC unroll 7
    for (int j = 1; j < 8; ++j) s = _mm256_add_epi16(s, _mm256_maddubs_epi16(q[j], bcast32(ab + 4 * j)));
    return _mm256_madd_epi16(s, _mm256_set1_epi16(1));
  }
};

// q8_0x16 half: codes stored + 128; |code| and code kept, the code's sign moved onto a
// (vpsignb), so dot = sum(code * a) directly and no bias is subtracted.
struct Q8Half {
  static constexpr size_t kBytes = packed::kQ8PanelBlockBytes, kScales = 512;
  static constexpr int kBiasShift = -1;  // unbiased dot
  __m256i mag[8], code[8];
  void decode(const uint8_t* w) {
    const __m256i flip = _mm256_set1_epi8(static_cast<char>(0x80));
#pragma GCC unroll 8
    for (int j = 0; j < 8; ++j) {
      code[j] = _mm256_xor_si256(load256(w + 64 * j), flip);
      mag[j] = _mm256_abs_epi8(code[j]);  // -128 -> 128 as u8
    }
  }
  __m256i dot(const uint8_t* ab) const {
    const __m256i ones = _mm256_set1_epi16(1);
    __m256i s0 = _mm256_setzero_si256(), s1 = _mm256_setzero_si256();
#pragma GCC unroll 4
    for (int j = 0; j < 8; j += 2) {
      const __m256i p0 = _mm256_maddubs_epi16(mag[j], _mm256_sign_epi8(bcast32(ab + 4 * j), code[j]));
      const __m256i p1 = _mm256_maddubs_epi16(mag[j + 1], _mm256_sign_epi8(bcast32(ab + 4 * j + 4), code[j + 1]));
      s0 = _mm256_add_epi32(s0, _mm256_madd_epi16(p0, ones));
      s1 = _mm256_add_epi32(s1, _mm256_madd_epi16(p1, ones));
    }
    return _mm256_add_epi32(s0, s1);
  }
};

// Rows 8h..8h+7 of one panel x C tokens over nb blocks: codes at bytes 32h.. of each chunk,
// f16 scales at kScales + 16h; y[c * ys + r] for the half's 8 rows.
template <class L, int C>
void half_tile(int64_t nb, const uint8_t* panel, int h, const uint8_t* a, size_t as, float* y, size_t ys) {
  __m256 acc[C];
#pragma GCC unroll 8
  for (int c = 0; c < C; ++c) acc[c] = _mm256_setzero_ps();
  const uint8_t* w = panel + 32 * h;
  const uint8_t* sc = panel + L::kScales + 16 * h;
  for (int64_t i = 0; i < nb; ++i, w += L::kBytes, sc += L::kBytes) {
    L half;
    half.decode(w);
    const __m256 dw = load_f16x8(sc);
#pragma GCC unroll 8
    for (int c = 0; c < C; ++c) {
      const uint8_t* ab = a + c * as + i * kQ8sBlockBytes;
      __m256i isum = half.dot(ab);
      if constexpr (L::kBiasShift >= 0)
        isum = _mm256_sub_epi32(isum, _mm256_set1_epi32(static_cast<int32_t>(load_u32(ab + 36) << L::kBiasShift)));
      float da;
      std::memcpy(&da, ab + 32, 4);
      const __m256 t = _mm256_mul_ps(_mm256_cvtepi32_ps(isum), _mm256_set1_ps(da));
      acc[c] = _mm256_fmadd_ps(dw, t, acc[c]);
    }
  }
#pragma GCC unroll 8
  for (int c = 0; c < C; ++c) _mm256_storeu_ps(y + c * ys, acc[c]);
}

using TileFn = void (*)(int64_t, const uint8_t*, int, const uint8_t*, size_t, float*, size_t);

// Panels x token tiles x halves; blk = elements per block of the layout.
template <int kMaxC, int64_t kBlk>
void walk_panels(const TileFn* tiles, int64_t n, int nr, int nc, const void* vw, size_t ws, const void* va,
                 size_t as, float* y, size_t ys) {
  const auto* w = static_cast<const uint8_t*>(vw);
  const auto* a = static_cast<const uint8_t*>(va);
  for (int r0 = 0; r0 < nr; r0 += kPanel) {
    const uint8_t* panel = w + static_cast<size_t>(r0) * ws;
    for (int c0 = 0; c0 < nc; c0 += kMaxC) {
      const int cc = nc - c0 < kMaxC ? nc - c0 : kMaxC;
      for (int h = 0; h < 2; ++h) tiles[cc - 1](n / kBlk, panel, h, a + c0 * as, as, y + c0 * ys + r0 + 8 * h, ys);
    }
  }
}

constexpr int kMaxC = 4;  // tokens per tile: 4 accumulators beside the decoded half block

template <class L>
void gemm_panel(int64_t n, int nr, int nc, const void* w, size_t ws, const void* a, size_t as, float* y, size_t ys) {
  static constexpr TileFn kTiles[kMaxC] = {half_tile<L, 1>, half_tile<L, 2>, half_tile<L, 3>, half_tile<L, 4>};
  walk_panels<kMaxC, 32>(kTiles, n, nr, nc, w, ws, a, as, y, ys);
}

// q4_Kx16 half: per sub-block the 8 code vectors' int16 dot (<= 30480) times the rows' 6-bit
// scales (vpmaddwd with each row's scale in both of its int16 lanes) adds to an exact int32 sum;
// the mins term is 4 vpmaddwd of the rows' mins (int16 pairs) with the token's sub-block sums.
template <int C>
void q4k_half(int64_t nsb, const uint8_t* panel, int h, const uint8_t* a, size_t as, float* y, size_t ys) {
  __m256 acc[C];
#pragma GCC unroll 8
  for (int c = 0; c < C; ++c) acc[c] = _mm256_setzero_ps();
  const __m256i m4 = _mm256_set1_epi8(0x0F);
  const uint8_t* w = panel;
  for (int64_t i = 0; i < nsb; ++i, w += packed::kQ4KPanelBlockBytes) {
    const uint8_t* ai = a + i * packed::kQ8kBlockBytes;
    __m256i isum[C];
#pragma GCC unroll 8
    for (int c = 0; c < C; ++c) isum[c] = _mm256_setzero_si256();
    for (int s = 0; s < 8; ++s) {
      const uint8_t* chunk = w + 64 * 8 * (s / 2) + 32 * h;
      __m256i q[8];
#pragma GCC unroll 8
      for (int k = 0; k < 8; ++k) {
        const __m256i v = load256(chunk + 64 * k);
        q[k] = _mm256_and_si256(s % 2 == 0 ? v : _mm256_srli_epi16(v, 4), m4);
      }
      const __m128i sc8 = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(w + 2048 + 16 * s + 8 * h));
      const __m256i sc = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(sc8, sc8));  // row r in lanes 2r, 2r + 1
#pragma GCC unroll 8
      for (int c = 0; c < C; ++c) {
        const uint8_t* ab = ai + c * as + 32 * s;
        __m256i d16 = _mm256_maddubs_epi16(q[0], bcast32(ab));
#pragma GCC unroll 7
        for (int k = 1; k < 8; ++k) d16 = _mm256_add_epi16(d16, _mm256_maddubs_epi16(q[k], bcast32(ab + 4 * k)));
        isum[c] = _mm256_add_epi32(isum[c], _mm256_madd_epi16(d16, sc));
      }
    }
    __m256i mins[4];
#pragma GCC unroll 4
    for (int p = 0; p < 4; ++p)
      mins[p] = _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w + 2176 + 32 * p + 16 * h)));
    const __m256 d = load_f16x8(w + 2304 + 16 * h);
    const __m256 dmin = load_f16x8(w + 2336 + 16 * h);
#pragma GCC unroll 8
    for (int c = 0; c < C; ++c) {
      const uint8_t* ab = ai + c * as;
      __m256i msum = _mm256_madd_epi16(mins[0], bcast32(ab + 260));
#pragma GCC unroll 3
      for (int p = 1; p < 4; ++p) msum = _mm256_add_epi32(msum, _mm256_madd_epi16(mins[p], bcast32(ab + 260 + 4 * p)));
      float da;
      std::memcpy(&da, ab + 256, 4);
      const __m256 vda = _mm256_set1_ps(da);
      const __m256 t1 = _mm256_mul_ps(_mm256_cvtepi32_ps(isum[c]), vda);
      const __m256 t2 = _mm256_mul_ps(_mm256_cvtepi32_ps(msum), vda);
      acc[c] = _mm256_fnmadd_ps(dmin, t2, _mm256_fmadd_ps(d, t1, acc[c]));
    }
  }
#pragma GCC unroll 8
  for (int c = 0; c < C; ++c) _mm256_storeu_ps(y + c * ys, acc[c]);
}

void gemm_q4_Kx16(int64_t n, int nr, int nc, const void* w, size_t ws, const void* a, size_t as, float* y, size_t ys) {
  static constexpr TileFn kTiles[kMaxC] = {q4k_half<1>, q4k_half<2>, q4k_half<3>, q4k_half<4>};
  walk_panels<kMaxC, QK_K>(kTiles, n, nr, nc, w, ws, a, as, y, ys);
}

const PackedKernels kQ4_0x16 = {"q4_0x16", DType::Q4_0, 32, packed::q4_0x16_row_bytes, packed::pack_q4_0x16,
                                packed::q8s_row_bytes, quantize_q8s, nullptr, gemm_panel<Q4Half>, kPanel};
const PackedKernels kQ8_0x16 = {"q8_0x16", DType::Q8_0, 32, packed::q8_0x16_row_bytes, packed::pack_q8_0x16,
                                packed::q8s_row_bytes, quantize_q8s, nullptr, gemm_panel<Q8Half>, kPanel};
const PackedKernels kQ4_Kx16 = {"q4_Kx16", DType::Q4_K, QK_K, packed::q4_Kx16_row_bytes, packed::pack_q4_Kx16,
                                packed::q8k_row_bytes, quantize_q8k, nullptr, gemm_q4_Kx16, kPanel};

}  // namespace

namespace avx2 {
void fill_packed(KernelSet& ks) {
  ks.packed[static_cast<uint32_t>(DType::Q4_0)] = &kQ4_0x16;
  ks.packed[static_cast<uint32_t>(DType::Q8_0)] = &kQ8_0x16;
  ks.packed[static_cast<uint32_t>(DType::Q4_K)] = &kQ4_Kx16;
}
}  // namespace avx2

}  // namespace coppice::kernels
