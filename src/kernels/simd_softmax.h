// x86 online-softmax block kernels (kernels/attn.h: scale_max, exp_sum) for the *_avx2 /
// *_avx512 units. Include ONLY from a per-ISA unit.
// exp is the Cephes single-precision scheme: n = round(x log2 e), r = x - n ln2 (ln2 split in
// two), a degree-5 polynomial of r, times 2^n from the exponent bits; within 2 ulp of expf.
// Arguments here are <= 0 (scores minus their running max); below -87.33 (and -inf, a masked
// key) the result is exactly 0. Tails run through the same vector code on padded lanes, so a
// value's result does not depend on where it sits in the block.
#pragma once
#include <immintrin.h>

#include <cmath>
#include <cstdint>
#include <cstring>

namespace coppice::kernels {
namespace {  // NOLINT: per-ISA copies by design

constexpr float kExpLo = -87.33654f;  // below it exp underflows (flushed to 0)
constexpr float kLog2e = 1.44269504088896341f;
constexpr float kLn2Hi = 0.693359375f, kLn2Lo = -2.12194440e-4f;
constexpr float kP0 = 1.9875691500e-4f, kP1 = 1.3981999507e-3f, kP2 = 8.3334519073e-3f,
                kP3 = 4.1665795894e-2f, kP4 = 1.6666665459e-1f, kP5 = 5.0000001201e-1f;

#ifdef __AVX512F__
constexpr int kSW = 16;
using SVec = __m512;
// (maskz_ forms: GCC 12's unmasked ones trip -Wmaybe-uninitialized)
inline SVec s_exp_neg(SVec x) {
  const __m512 lo = _mm512_set1_ps(kExpLo);
  const __mmask16 live = _mm512_cmp_ps_mask(x, lo, _CMP_GE_OQ);
  x = _mm512_maskz_max_ps(0xFFFF, x, lo);
  const __m512 n = _mm512_maskz_roundscale_ps(0xFFFF, _mm512_mul_ps(x, _mm512_set1_ps(kLog2e)),
                                              _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(kLn2Hi), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(kLn2Lo), r);
  __m512 y = _mm512_set1_ps(kP0);
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(kP1));
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(kP2));
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(kP3));
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(kP4));
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(kP5));
  y = _mm512_fmadd_ps(y, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
  const __m512i ni = _mm512_maskz_cvtps_epi32(0xFFFF, n);
  const __m512i e = _mm512_maskz_slli_epi32(0xFFFF, _mm512_add_epi32(ni, _mm512_set1_epi32(127)), 23);
  return _mm512_maskz_mul_ps(live, y, _mm512_castsi512_ps(e));
}
inline SVec s_load_pad(const float* p, int n, float pad) {  // lanes >= n hold pad
  const __mmask16 k = static_cast<__mmask16>(n >= kSW ? 0xFFFF : (1u << n) - 1);
  return _mm512_mask_loadu_ps(_mm512_set1_ps(pad), k, p);
}
inline void s_store_n(float* p, SVec v, int n) {
  _mm512_mask_storeu_ps(p, static_cast<__mmask16>(n >= kSW ? 0xFFFF : (1u << n) - 1), v);
}
inline SVec s_add(SVec a, SVec b) { return _mm512_add_ps(a, b); }
inline SVec s_sub(SVec a, SVec b) { return _mm512_sub_ps(a, b); }
inline SVec s_max(SVec a, SVec b) { return _mm512_maskz_max_ps(0xFFFF, a, b); }
inline SVec s_set1(float x) { return _mm512_set1_ps(x); }
inline SVec s_mul(SVec a, SVec b) { return _mm512_mul_ps(a, b); }
// keys whose mask byte is 0 become -inf (mask: n bytes; lanes >= n untouched)
inline SVec s_apply_mask(SVec v, const uint8_t* mask, int n) {
  const __mmask16 lanes = static_cast<__mmask16>(n >= kSW ? 0xFFFF : (1u << n) - 1);
  const __m128i mb = _mm_maskz_loadu_epi8(lanes, mask);
  const __mmask16 hidden = _mm_mask_cmpeq_epi8_mask(lanes, mb, _mm_setzero_si128());
  return _mm512_mask_mov_ps(v, hidden, _mm512_set1_ps(-INFINITY));
}
// In-register reductions, one fixed order: halves, quarters, pairs, neighbours.
inline float s_hsum(SVec v) {
  v = _mm512_add_ps(v, _mm512_maskz_shuffle_f32x4(0xFFFF, v, v, 0x4E));
  v = _mm512_add_ps(v, _mm512_maskz_shuffle_f32x4(0xFFFF, v, v, 0xB1));
  v = _mm512_add_ps(v, _mm512_maskz_permute_ps(0xFFFF, v, 0x4E));
  v = _mm512_add_ps(v, _mm512_maskz_permute_ps(0xFFFF, v, 0xB1));
  return _mm512_cvtss_f32(v);
}
inline float s_hmax(SVec v) {
  v = s_max(v, _mm512_maskz_shuffle_f32x4(0xFFFF, v, v, 0x4E));
  v = s_max(v, _mm512_maskz_shuffle_f32x4(0xFFFF, v, v, 0xB1));
  v = s_max(v, _mm512_maskz_permute_ps(0xFFFF, v, 0x4E));
  v = s_max(v, _mm512_maskz_permute_ps(0xFFFF, v, 0xB1));
  return _mm512_cvtss_f32(v);
}
#else
constexpr int kSW = 8;
using SVec = __m256;
inline SVec s_exp_neg(SVec x) {
  const __m256 lo = _mm256_set1_ps(kExpLo);
  const __m256 live = _mm256_cmp_ps(x, lo, _CMP_GE_OQ);
  x = _mm256_max_ps(x, lo);
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(kLog2e)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(kLn2Hi), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(kLn2Lo), r);
  __m256 y = _mm256_set1_ps(kP0);
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(kP1));
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(kP2));
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(kP3));
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(kP4));
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(kP5));
  y = _mm256_fmadd_ps(y, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
  const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_and_ps(_mm256_mul_ps(y, _mm256_castsi256_ps(e)), live);
}
inline SVec s_load_pad(const float* p, int n, float pad) {
  if (n >= kSW) return _mm256_loadu_ps(p);
  alignas(32) float t[8];
  for (int i = 0; i < 8; ++i) t[i] = i < n ? p[i] : pad;
  return _mm256_load_ps(t);
}
inline void s_store_n(float* p, SVec v, int n) {
  if (n >= kSW) return _mm256_storeu_ps(p, v);
  alignas(32) float t[8];
  _mm256_store_ps(t, v);
  for (int i = 0; i < n; ++i) p[i] = t[i];
}
inline SVec s_add(SVec a, SVec b) { return _mm256_add_ps(a, b); }
inline SVec s_sub(SVec a, SVec b) { return _mm256_sub_ps(a, b); }
inline SVec s_max(SVec a, SVec b) { return _mm256_max_ps(a, b); }
inline SVec s_set1(float x) { return _mm256_set1_ps(x); }
inline SVec s_mul(SVec a, SVec b) { return _mm256_mul_ps(a, b); }
inline SVec s_apply_mask(SVec v, const uint8_t* mask, int n) {
  alignas(32) float hide[8];
  for (int i = 0; i < 8; ++i) hide[i] = i < n && mask[i] == 0 ? -INFINITY : 0.0f;
  const __m256 h = _mm256_load_ps(hide);
  return _mm256_blendv_ps(v, h, _mm256_cmp_ps(h, _mm256_setzero_ps(), _CMP_NEQ_OQ));
}

inline float s_hsum(SVec v) {  // halves, pairs, neighbours
  __m128 x = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  x = _mm_add_ps(x, _mm_movehl_ps(x, x));
  return _mm_cvtss_f32(_mm_add_ss(x, _mm_movehdup_ps(x)));
}
inline float s_hmax(SVec v) {
  __m128 x = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  x = _mm_max_ps(x, _mm_movehl_ps(x, x));
  return _mm_cvtss_f32(_mm_max_ss(x, _mm_movehdup_ps(x)));
}
#endif

float kv_scale_max(float* s, int n, float scale, const uint8_t* mask) {
  SVec mx = s_set1(-INFINITY);
  for (int j = 0; j < n; j += kSW) {
    const int m = n - j;
    SVec v = s_mul(s_load_pad(s + j, m, -INFINITY), s_set1(scale));
    if (mask != nullptr) v = s_apply_mask(v, mask + j, m);
    s_store_n(s + j, v, m);
    mx = s_max(mx, v);
  }
  return s_hmax(mx);
}

float kv_exp_sum(float* s, int n, float m) {
  SVec sum = s_set1(0.0f);
  const SVec mv = s_set1(m);
  for (int j = 0; j < n; j += kSW) {
    const int k = n - j;
    const SVec e = s_exp_neg(s_sub(s_load_pad(s + j, k, -INFINITY), mv));
    s_store_n(s + j, e, k);
    sum = s_add(sum, e);
  }
  return s_hsum(sum);
}

}  // namespace
}  // namespace coppice::kernels
