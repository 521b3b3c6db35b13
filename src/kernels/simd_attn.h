// x86 attention kernels (kernels/attn.h) for the *_avx2 / *_avx512 units: 8 or 16 lanes with
// f16 / bf16 widened in registers; tails in scalar code. Include ONLY from a per-ISA unit.
#pragma once
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "kernels/attn.h"

namespace coppice::kernels {
namespace {  // NOLINT: per-ISA copies by design

#ifdef __AVX512F__
using AVec = __m512;
constexpr int kAW = 16;
inline AVec a_zero() { return _mm512_setzero_ps(); }
inline AVec a_load(const float* p) { return _mm512_loadu_ps(p); }
inline void a_store(float* p, AVec v) { _mm512_storeu_ps(p, v); }
inline AVec a_set1(float x) { return _mm512_set1_ps(x); }
inline AVec a_fma(AVec a, AVec b, AVec c) { return _mm512_fmadd_ps(a, b, c); }
inline AVec a_add(AVec a, AVec b) { return _mm512_add_ps(a, b); }
inline AVec a_f16(const void* p) {
  return _mm512_maskz_cvtph_ps(0xFFFF, _mm256_loadu_si256(static_cast<const __m256i*>(p)));
}
inline AVec a_bf16(const void* p) {
  // (maskz_ forms: GCC 12's unmasked ones trip -Wmaybe-uninitialized)
  const __m512i w = _mm512_maskz_cvtepu16_epi32(0xFFFF, _mm256_loadu_si256(static_cast<const __m256i*>(p)));
  return _mm512_castsi512_ps(_mm512_maskz_slli_epi32(0xFFFF, w, 16));
}
inline float a_hsum(AVec v) {
  alignas(64) float t[16];
  _mm512_store_ps(t, v);
  __m256 s = _mm256_add_ps(_mm256_load_ps(t), _mm256_load_ps(t + 8));
  __m128 x = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
  x = _mm_add_ps(x, _mm_movehl_ps(x, x));
  return _mm_cvtss_f32(_mm_add_ss(x, _mm_movehdup_ps(x)));
}
#else
using AVec = __m256;
constexpr int kAW = 8;
inline AVec a_zero() { return _mm256_setzero_ps(); }
inline AVec a_load(const float* p) { return _mm256_loadu_ps(p); }
inline void a_store(float* p, AVec v) { _mm256_storeu_ps(p, v); }
inline AVec a_set1(float x) { return _mm256_set1_ps(x); }
inline AVec a_fma(AVec a, AVec b, AVec c) { return _mm256_fmadd_ps(a, b, c); }
inline AVec a_add(AVec a, AVec b) { return _mm256_add_ps(a, b); }
inline AVec a_f16(const void* p) { return _mm256_cvtph_ps(_mm_loadu_si128(static_cast<const __m128i*>(p))); }
inline AVec a_bf16(const void* p) {
  const __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128(static_cast<const __m128i*>(p)));
  return _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
}
inline float a_hsum(AVec v) {
  __m128 x = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  x = _mm_add_ps(x, _mm_movehl_ps(x, x));
  return _mm_cvtss_f32(_mm_add_ss(x, _mm_movehdup_ps(x)));
}
#endif

// Lane r of the result = the sum of a[r]'s 8 lanes, ((l0+l1)+(l2+l3)) + ((l4+l5)+(l6+l7)) for
// every r (the same tree whatever the slot): 8 rows' partial sums reduced together.
inline __m256 reduce8(const __m256* a) {
  const __m256 t0 = _mm256_hadd_ps(a[0], a[1]), t1 = _mm256_hadd_ps(a[2], a[3]);
  const __m256 t2 = _mm256_hadd_ps(a[4], a[5]), t3 = _mm256_hadd_ps(a[6], a[7]);
  const __m256 u0 = _mm256_hadd_ps(t0, t1), u1 = _mm256_hadd_ps(t2, t3);
  return _mm256_add_ps(_mm256_permute2f128_ps(u0, u1, 0x20), _mm256_permute2f128_ps(u0, u1, 0x31));
}

inline AVec a_kv(const void* base, int64_t i, DType t) {
  switch (t) {
    case DType::F16: return a_f16(static_cast<const uint16_t*>(base) + i);
    case DType::BF16: return a_bf16(static_cast<const uint16_t*>(base) + i);
    default: return a_load(static_cast<const float*>(base) + i);
  }
}

float kv_dot(const float* q, const void* k, int64_t n, DType t) {
  AVec s0 = a_zero(), s1 = a_zero();
  int64_t i = 0;
  for (; i + 2 * kAW <= n; i += 2 * kAW) {
    s0 = a_fma(a_load(q + i), a_kv(k, i, t), s0);
    s1 = a_fma(a_load(q + i + kAW), a_kv(k, i + kAW, t), s1);
  }
  for (; i + kAW <= n; i += kAW) s0 = a_fma(a_load(q + i), a_kv(k, i, t), s0);
  float s = a_hsum(a_add(s0, s1));
  if (i < n) {
    const int64_t off = i;
    s += attn_ref::dot(q + off, static_cast<const uint8_t*>(k) + off * (t == DType::F32 ? 4 : 2), n - off, t);
  }
  return s;
}

void kv_axpy(float* y, float a, const void* v, int64_t n, DType t) {
  const AVec av = a_set1(a);
  int64_t i = 0;
  for (; i + kAW <= n; i += kAW) a_store(y + i, a_fma(av, a_kv(v, i, t), a_load(y + i)));
  if (i < n) attn_ref::axpy(y + i, a, static_cast<const uint8_t*>(v) + i * (t == DType::F32 ? 4 : 2), n - i, t);
}

}  // namespace
}  // namespace coppice::kernels
