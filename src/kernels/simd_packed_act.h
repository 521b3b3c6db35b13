// x86 activation quantizers of the panel layouts (packed.h): q8s (per 32) and q8k (per 256),
// byte-identical to packed::quantize_q8s_ref / quantize_q8k_ref. AVX2 instructions only; include
// ONLY from a per-ISA unit (anonymous namespace, one copy per ISA, see simd_x86.h).
#pragma once
#include "kernels/packed.h"
#include "kernels/simd_quant_act.h"

namespace coppice::kernels {
namespace {  // NOLINT: per-ISA copies by design

// Byte-identical to packed::quantize_q8s_ref.
void quantize_q8s(const float* src, void* dst, int64_t n) {
  auto* o = static_cast<uint8_t*>(dst);
  for (int64_t i = 0; i < n / 32; ++i, src += 32, o += packed::kQ8sBlockBytes) {
    int sum = 0;
    const float d = q8_block(src, reinterpret_cast<int8_t*>(o), &sum);
    const int32_t s = sum;
    std::memcpy(o + 32, &d, 4);
    std::memcpy(o + 36, &s, 4);
  }
}

// Byte-identical to packed::quantize_q8k_ref: one d per 256, codes rounded half away from zero.
void quantize_q8k(const float* src, void* dst, int64_t n) {
  auto* o = static_cast<uint8_t*>(dst);
  for (int64_t i = 0; i < n / QK_K; ++i, src += QK_K, o += packed::kQ8kBlockBytes) {
    __m256 m = _mm256_setzero_ps();
    for (int k = 0; k < 32; ++k) m = _mm256_max_ps(m, abs_ps(_mm256_loadu_ps(src + 8 * k)));
    const float d = hmax(m) / 127.0f;
    const __m256 id = _mm256_set1_ps(d != 0.0f ? 1.0f / d : 0.0f);
    int16_t sums[8];
    for (int s = 0; s < 8; ++s) {
      __m256i q[4];
      for (int k = 0; k < 4; ++k) q[k] = round_away(_mm256_mul_ps(_mm256_loadu_ps(src + 32 * s + 8 * k), id));
      sums[s] = static_cast<int16_t>(hsum_i32(_mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3]))));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(o + 32 * s), pack32(q[0], q[1], q[2], q[3]));
    }
    std::memcpy(o + 256, &d, 4);
    std::memcpy(o + 260, sums, sizeof sums);
    std::memset(o + 276, 0, packed::kQ8kBlockBytes - 276);
  }
}

}  // namespace
}  // namespace coppice::kernels
