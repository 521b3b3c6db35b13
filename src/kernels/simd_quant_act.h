// x86 SIMD activation quantizers (q8_0, q8_1, q8_K) and f16 conversion. Include ONLY from a
// per-ISA unit (anonymous namespace, see simd_x86.h). Results are byte-identical to the scalar
// references in quant_legacy.cpp / quant_k_quantize.cpp: same float operations in the same
// order, and the same rounding rule (q8_0/q8_1 round half away from zero, q8_K half to even).
#pragma once
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "kernels/blocks.h"

namespace coppice::kernels {
namespace {  // NOLINT: per-ISA copies by design

inline __m256 abs_ps(__m256 v) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), v); }

inline float hmax(__m256 v) {
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_movehdup_ps(m));
  return _mm_cvtss_f32(m);
}

inline int hsum_i32(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
  return _mm_cvtsi128_si32(s);
}

// std::round (half away from zero), exactly: t = trunc(|v|); |v| - t is exact below 2^23.
inline __m256i round_away(__m256 v) {
  const __m256 a = abs_ps(v);
  __m256 t = _mm256_round_ps(a, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
  const __m256 up = _mm256_cmp_ps(_mm256_sub_ps(a, t), _mm256_set1_ps(0.5f), _CMP_GE_OQ);
  t = _mm256_add_ps(t, _mm256_and_ps(up, _mm256_set1_ps(1.0f)));
  return _mm256_cvttps_epi32(_mm256_or_ps(t, _mm256_and_ps(v, _mm256_set1_ps(-0.0f))));
}

// 4 x 8 int32 (elements 0..31 in order) -> 32 int8
inline __m256i pack32(__m256i i0, __m256i i1, __m256i i2, __m256i i3) {
  const __m256i a = _mm256_packs_epi32(i0, i1), b = _mm256_packs_epi32(i2, i3);
  return _mm256_permutevar8x32_epi32(_mm256_packs_epi16(a, b), _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

inline uint16_t f2h(float f) { return static_cast<uint16_t>(_cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT)); }

// One 32-element block: codes to qs; returns d = amax / 127 and the code sum.
inline float q8_block(const float* x, int8_t* qs, int* sum) {
  __m256 v[4];
  __m256 m = _mm256_setzero_ps();
  for (int k = 0; k < 4; ++k) {
    v[k] = _mm256_loadu_ps(x + 8 * k);
    m = _mm256_max_ps(m, abs_ps(v[k]));
  }
  const float d = hmax(m) / 127.0f;
  const __m256 id = _mm256_set1_ps(d != 0.0f ? 1.0f / d : 0.0f);
  __m256i q[4];
  for (int k = 0; k < 4; ++k) q[k] = round_away(_mm256_mul_ps(v[k], id));
  if (sum != nullptr) {
    *sum = hsum_i32(_mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3])));
  }
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(qs), pack32(q[0], q[1], q[2], q[3]));
  return d;
}

[[maybe_unused]] void quantize_q8_0(const float* src, void* dst, int64_t n) {
  auto* b = static_cast<BlockQ8_0*>(dst);
  for (int64_t i = 0; i < n / 32; ++i, src += 32) b[i].d = f2h(q8_block(src, b[i].qs, nullptr));
}

[[maybe_unused]] void quantize_q8_1(const float* src, void* dst, int64_t n) {
  auto* b = static_cast<BlockQ8_1*>(dst);
  for (int64_t i = 0; i < n / 32; ++i, src += 32) {
    int sum = 0;
    const float d = q8_block(src, b[i].qs, &sum);
    b[i].d = f2h(d);
    b[i].s = f2h(static_cast<float>(sum) * d);
  }
}

[[maybe_unused]] void quantize_q8_K(const float* src, void* dst, int64_t n) {
  auto* b = static_cast<BlockQ8_K*>(dst);
  for (int64_t i = 0; i < n / QK_K; ++i, src += QK_K) {
    __m256 m = _mm256_setzero_ps();
    for (int k = 0; k < 32; ++k) m = _mm256_max_ps(m, abs_ps(_mm256_loadu_ps(src + 8 * k)));
    const float amax = hmax(m);
    if (amax == 0.0f) {
      std::memset(&b[i], 0, sizeof b[i]);
      continue;
    }
    // the first element of largest magnitude fixes the sign (as the reference's strict '>')
    float max = 0.0f;
    const __m256 am = _mm256_set1_ps(amax);
    for (int k = 0; k < 32; ++k) {
      const int hit = _mm256_movemask_ps(_mm256_cmp_ps(abs_ps(_mm256_loadu_ps(src + 8 * k)), am, _CMP_EQ_OQ));
      if (hit != 0) {
        max = src[8 * k + __builtin_ctz(static_cast<unsigned>(hit))];
        break;
      }
    }
    const float iscale = -127.0f / max;
    const __m256 is = _mm256_set1_ps(iscale);
    const __m256i c127 = _mm256_set1_epi32(127);
    for (int g = 0; g < 8; ++g) {  // 32 elements = 2 bsums groups
      __m256i q[4];
      for (int k = 0; k < 4; ++k) {
        const __m256 v = _mm256_mul_ps(_mm256_loadu_ps(src + 32 * g + 8 * k), is);
        q[k] = _mm256_min_epi32(_mm256_cvtps_epi32(v), c127);  // MXCSR default: half to even
      }
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(b[i].qs + 32 * g), pack32(q[0], q[1], q[2], q[3]));
      b[i].bsums[2 * g] = static_cast<int16_t>(hsum_i32(_mm256_add_epi32(q[0], q[1])));
      b[i].bsums[2 * g + 1] = static_cast<int16_t>(hsum_i32(_mm256_add_epi32(q[2], q[3])));
    }
    b[i].d = 1.0f / iscale;
  }
}

[[maybe_unused]] void convert_f16(const float* src, void* dst, int64_t n) {
  auto* h = static_cast<uint16_t*>(dst);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128i v = _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(h + i), v);
  }
  for (; i < n; ++i) h[i] = f2h(src[i]);
}

[[maybe_unused]] void widen_f16(const void* src, float* dst, int64_t n) {
  const auto* h = static_cast<const uint16_t*>(src);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(h + i))));
  }
  for (; i < n; ++i) dst[i] = _cvtsh_ss(h[i]);
}

}  // namespace
}  // namespace coppice::kernels
