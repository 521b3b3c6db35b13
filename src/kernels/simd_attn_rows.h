// x86 float-KV row-block kernels (kernels/attn.h KvFloatKernels) for the *_avx2 / *_avx512
// units: F32 / F16 / BF16 rows widened in registers, hd % 8 == 0. Include ONLY from a per-ISA
// unit.
//   score_rows: each row's products are gathered in one 8-lane vector (16 lanes folded to 8 on
//   AVX-512 when hd % 16 == 0), then 8 rows are reduced together by one horizontal-add tree
//   (6 hadds, 2 lane swaps): the tree is the same for every row slot, so a row's score does not
//   depend on its neighbours.
//   accum_rows: the hd outputs stay in up to 4 registers while the rows stream past.
#pragma once
#include <immintrin.h>

#include <cstddef>
#include <cstdint>

#include "kernels/attn.h"
#include "kernels/simd_attn.h"

namespace coppice::kernels {
namespace {  // NOLINT: per-ISA copies by design

enum class KvF { F32, F16, BF16 };

template <KvF T>
inline __m256 r_load8(const uint8_t* row, int i) {  // elements [i, i + 8) of a row
  if constexpr (T == KvF::F32) {
    return _mm256_loadu_ps(reinterpret_cast<const float*>(row) + i);
  } else {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(row + 2 * i));
    if constexpr (T == KvF::F16) return _mm256_cvtph_ps(h);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
  }
}

#ifdef __AVX512F__
template <KvF T>
inline __m512 r_load16(const uint8_t* row, int i) {  // elements [i, i + 16)
  if constexpr (T == KvF::F32) {
    return _mm512_loadu_ps(reinterpret_cast<const float*>(row) + i);
  } else {
    const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + 2 * i));
    // (maskz_ forms: GCC 12's unmasked ones trip -Wmaybe-uninitialized)
    if constexpr (T == KvF::F16) return _mm512_maskz_cvtph_ps(0xFFFF, h);
    const __m512i w = _mm512_maskz_cvtepu16_epi32(0xFFFF, h);
    return _mm512_castsi512_ps(_mm512_maskz_slli_epi32(0xFFFF, w, 16));
  }
}
inline __m256 r_fold(__m512 z) {  // lanes i and i + 8 added (GCC 12's cast trips it too)
  const __m512d d = _mm512_castps_pd(z);
  const __m256 lo = _mm256_castpd_ps(_mm512_maskz_extractf64x4_pd(0xF, d, 0));
  const __m256 hi = _mm256_castpd_ps(_mm512_maskz_extractf64x4_pd(0xF, d, 1));
  return _mm256_add_ps(lo, hi);
}
#endif

// q . row as 8 partial sums.
template <KvF T>
inline __m256 r_dot8(const float* q, const uint8_t* row, int hd) {
#ifdef __AVX512F__
  if (hd % 16 == 0) {
    __m512 a = _mm512_setzero_ps();
    for (int i = 0; i < hd; i += 16) a = _mm512_fmadd_ps(_mm512_loadu_ps(q + i), r_load16<T>(row, i), a);
    return r_fold(a);
  }
#endif
  __m256 a = _mm256_setzero_ps();
  for (int i = 0; i < hd; i += 8) a = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), r_load8<T>(row, i), a);
  return a;
}


template <KvF T>
void score_rows_t(const float* q, const uint8_t* k, size_t stride, int n, int hd, float* out) {
  __m256 a[8];
  int j0 = 0;
  for (; j0 + 8 <= n; j0 += 8) {
    for (int r = 0; r < 8; ++r) a[r] = r_dot8<T>(q, k + static_cast<size_t>(j0 + r) * stride, hd);
    _mm256_storeu_ps(out + j0, reduce8(a));
  }
  if (j0 == n) return;
  for (int r = 0; r < 8; ++r) {
    a[r] = j0 + r < n ? r_dot8<T>(q, k + static_cast<size_t>(j0 + r) * stride, hd) : _mm256_setzero_ps();
  }
  alignas(32) float t[8];
  _mm256_store_ps(t, reduce8(a));
  for (int r = 0; j0 + r < n; ++r) out[j0 + r] = t[r];
}

// Columns [c, c + 8R) of y over every row.
template <KvF T, int R>
void accum_y8(float* y, const float* p, const uint8_t* v, size_t stride, int n, int c) {
  __m256 acc[R];
  for (int r = 0; r < R; ++r) acc[r] = _mm256_loadu_ps(y + c + 8 * r);
  for (int j = 0; j < n; ++j) {
    if (p[j] == 0.0f) continue;
    const __m256 pj = _mm256_set1_ps(p[j]);
    const uint8_t* row = v + static_cast<size_t>(j) * stride;
    for (int r = 0; r < R; ++r) acc[r] = _mm256_fmadd_ps(pj, r_load8<T>(row, c + 8 * r), acc[r]);
  }
  for (int r = 0; r < R; ++r) _mm256_storeu_ps(y + c + 8 * r, acc[r]);
}

#ifdef __AVX512F__
template <KvF T, int R>  // columns [c, c + 16R)
void accum_y16(float* y, const float* p, const uint8_t* v, size_t stride, int n, int c) {
  __m512 acc[R];
  for (int r = 0; r < R; ++r) acc[r] = _mm512_loadu_ps(y + c + 16 * r);
  for (int j = 0; j < n; ++j) {
    if (p[j] == 0.0f) continue;
    const __m512 pj = _mm512_set1_ps(p[j]);
    const uint8_t* row = v + static_cast<size_t>(j) * stride;
    for (int r = 0; r < R; ++r) acc[r] = _mm512_fmadd_ps(pj, r_load16<T>(row, c + 16 * r), acc[r]);
  }
  for (int r = 0; r < R; ++r) _mm512_storeu_ps(y + c + 16 * r, acc[r]);
}
#endif

template <KvF T>
void accum_rows_t(float* y, const float* p, const uint8_t* v, size_t stride, int n, int hd) {
  int c = 0;
#ifdef __AVX512F__
  if (hd % 16 == 0) {
    for (; c + 64 <= hd; c += 64) accum_y16<T, 4>(y, p, v, stride, n, c);
    switch ((hd - c) / 16) {
      case 3: return accum_y16<T, 3>(y, p, v, stride, n, c);
      case 2: return accum_y16<T, 2>(y, p, v, stride, n, c);
      case 1: return accum_y16<T, 1>(y, p, v, stride, n, c);
      default: return;
    }
  }
#endif
  for (; c + 32 <= hd; c += 32) accum_y8<T, 4>(y, p, v, stride, n, c);
  switch ((hd - c) / 8) {
    case 3: return accum_y8<T, 3>(y, p, v, stride, n, c);
    case 2: return accum_y8<T, 2>(y, p, v, stride, n, c);
    case 1: return accum_y8<T, 1>(y, p, v, stride, n, c);
    default: return;
  }
}

void kv_score_rows(const float* q, const void* k, size_t stride, int n, int hd, DType t, float* out) {
  const auto* kb = static_cast<const uint8_t*>(k);
  switch (t) {
    case DType::F16: return score_rows_t<KvF::F16>(q, kb, stride, n, hd, out);
    case DType::BF16: return score_rows_t<KvF::BF16>(q, kb, stride, n, hd, out);
    default: return score_rows_t<KvF::F32>(q, kb, stride, n, hd, out);
  }
}

void kv_accum_rows(float* y, const float* p, const void* v, size_t stride, int n, int hd, DType t) {
  const auto* vb = static_cast<const uint8_t*>(v);
  switch (t) {
    case DType::F16: return accum_rows_t<KvF::F16>(y, p, vb, stride, n, hd);
    case DType::BF16: return accum_rows_t<KvF::BF16>(y, p, vb, stride, n, hd);
    default: return accum_rows_t<KvF::F32>(y, p, vb, stride, n, hd);
  }
}

}  // namespace
}  // namespace coppice::kernels
