// K-quants (q2_K..q6_K, q8_K): dequantize and dot against q8_K. Written element by element
// through small code accessors, so the bit layout of each format is stated once and the
// SIMD twins have a plain reference. The accessors live in quant_impl.h.
#include "kernels/quant_impl.h"
#include "util/fp16.h"

namespace coppice::quant {

// ---------------------------------------------------------------- dequantize

void to_float_q2_K(const void* src, float* dst, int64_t n) {
  const auto* b = static_cast<const BlockQ2_K*>(src);
  for (int64_t i = 0; i < n / QK_K; ++i, dst += QK_K) {
    const float d = fp16_to_fp32(b[i].d), dmin = fp16_to_fp32(b[i].dmin);
    for (int e = 0; e < QK_K; ++e) {
      const uint8_t sc = b[i].scales[e / 16];
      const float dl = d * static_cast<float>(sc & 0xF);
      const float ml = dmin * static_cast<float>(sc >> 4);
      dst[e] = dl * static_cast<float>(q2k_code(b[i], e)) - ml;
    }
  }
}

void to_float_q3_K(const void* src, float* dst, int64_t n) {
  const auto* b = static_cast<const BlockQ3_K*>(src);
  for (int64_t i = 0; i < n / QK_K; ++i, dst += QK_K) {
    const float d = fp16_to_fp32(b[i].d);
    for (int e = 0; e < QK_K; ++e) {
      const float dl = d * static_cast<float>(q3k_scale(b[i].scales, e / 16));
      dst[e] = dl * static_cast<float>(q3k_code(b[i], e));
    }
  }
}

void to_float_q4_K(const void* src, float* dst, int64_t n) {
  const auto* b = static_cast<const BlockQ4_K*>(src);
  for (int64_t i = 0; i < n / QK_K; ++i, dst += QK_K) {
    const float d = fp16_to_fp32(b[i].d), dmin = fp16_to_fp32(b[i].dmin);
    for (int e = 0; e < QK_K; ++e) {
      uint8_t sc, m;
      get_scale_min_k4(e / 32, b[i].scales, &sc, &m);
      const float dl = d * static_cast<float>(sc), ml = dmin * static_cast<float>(m);
      dst[e] = dl * static_cast<float>(q4k_code(b[i], e)) - ml;
    }
  }
}

void to_float_q5_K(const void* src, float* dst, int64_t n) {
  const auto* b = static_cast<const BlockQ5_K*>(src);
  for (int64_t i = 0; i < n / QK_K; ++i, dst += QK_K) {
    const float d = fp16_to_fp32(b[i].d), dmin = fp16_to_fp32(b[i].dmin);
    for (int e = 0; e < QK_K; ++e) {
      uint8_t sc, m;
      get_scale_min_k4(e / 32, b[i].scales, &sc, &m);
      const float dl = d * static_cast<float>(sc), ml = dmin * static_cast<float>(m);
      dst[e] = dl * static_cast<float>(q5k_code(b[i], e)) - ml;
    }
  }
}

void to_float_q6_K(const void* src, float* dst, int64_t n) {
  const auto* b = static_cast<const BlockQ6_K*>(src);
  for (int64_t i = 0; i < n / QK_K; ++i, dst += QK_K) {
    const float d = fp16_to_fp32(b[i].d);
    for (int e = 0; e < QK_K; ++e) {
      const float dl = d * static_cast<float>(b[i].scales[e / 16]);
      dst[e] = dl * static_cast<float>(q6k_code(b[i], e));
    }
  }
}

void to_float_q8_K(const void* src, float* dst, int64_t n) {
  const auto* b = static_cast<const BlockQ8_K*>(src);
  for (int64_t i = 0; i < n / QK_K; ++i, dst += QK_K) {
    for (int e = 0; e < QK_K; ++e) dst[e] = b[i].d * static_cast<float>(b[i].qs[e]);
  }
}

// ---------------------------------------------------------------- dot products
// Per super-block: integer sums per sub-block, weighted by the integer sub-block scales, then
// scaled once by the float super-block scales. Mins use q8_K's bsums: sum(m * y) = m * sum(y).

void vec_dot_q2_K_q8_K(int64_t n, float* s, const void* x, const void* y) {
  const auto* a = static_cast<const BlockQ2_K*>(x);
  const auto* b = static_cast<const BlockQ8_K*>(y);
  float sum = 0.0f;
  for (int64_t i = 0; i < n / QK_K; ++i) {
    int isum = 0, imin = 0;
    for (int j = 0; j < QK_K / 16; ++j) {
      int sub = 0;
      for (int l = 0; l < 16; ++l) sub += q2k_code(a[i], 16 * j + l) * b[i].qs[16 * j + l];
      isum += (a[i].scales[j] & 0xF) * sub;
      imin += (a[i].scales[j] >> 4) * b[i].bsums[j];
    }
    const float dall = b[i].d * fp16_to_fp32(a[i].d);
    const float dmin = b[i].d * fp16_to_fp32(a[i].dmin);
    sum += dall * static_cast<float>(isum) - dmin * static_cast<float>(imin);
  }
  *s = sum;
}

void vec_dot_q3_K_q8_K(int64_t n, float* s, const void* x, const void* y) {
  const auto* a = static_cast<const BlockQ3_K*>(x);
  const auto* b = static_cast<const BlockQ8_K*>(y);
  float sum = 0.0f;
  for (int64_t i = 0; i < n / QK_K; ++i) {
    int isum = 0;
    for (int j = 0; j < QK_K / 16; ++j) {
      int sub = 0;
      for (int l = 0; l < 16; ++l) sub += q3k_code(a[i], 16 * j + l) * b[i].qs[16 * j + l];
      isum += q3k_scale(a[i].scales, j) * sub;
    }
    sum += b[i].d * fp16_to_fp32(a[i].d) * static_cast<float>(isum);
  }
  *s = sum;
}

void vec_dot_q4_K_q8_K(int64_t n, float* s, const void* x, const void* y) {
  const auto* a = static_cast<const BlockQ4_K*>(x);
  const auto* b = static_cast<const BlockQ8_K*>(y);
  float sum = 0.0f;
  for (int64_t i = 0; i < n / QK_K; ++i) {
    int isum = 0, imin = 0;
    for (int j = 0; j < QK_K / 32; ++j) {
      uint8_t sc, m;
      get_scale_min_k4(j, a[i].scales, &sc, &m);
      int sub = 0;
      for (int l = 0; l < 32; ++l) sub += q4k_code(a[i], 32 * j + l) * b[i].qs[32 * j + l];
      isum += sc * sub;
      imin += m * (b[i].bsums[2 * j] + b[i].bsums[2 * j + 1]);
    }
    const float dall = b[i].d * fp16_to_fp32(a[i].d);
    const float dmin = b[i].d * fp16_to_fp32(a[i].dmin);
    sum += dall * static_cast<float>(isum) - dmin * static_cast<float>(imin);
  }
  *s = sum;
}

void vec_dot_q5_K_q8_K(int64_t n, float* s, const void* x, const void* y) {
  const auto* a = static_cast<const BlockQ5_K*>(x);
  const auto* b = static_cast<const BlockQ8_K*>(y);
  float sum = 0.0f;
  for (int64_t i = 0; i < n / QK_K; ++i) {
    int isum = 0, imin = 0;
    for (int j = 0; j < QK_K / 32; ++j) {
      uint8_t sc, m;
      get_scale_min_k4(j, a[i].scales, &sc, &m);
      int sub = 0;
      for (int l = 0; l < 32; ++l) sub += q5k_code(a[i], 32 * j + l) * b[i].qs[32 * j + l];
      isum += sc * sub;
      imin += m * (b[i].bsums[2 * j] + b[i].bsums[2 * j + 1]);
    }
    const float dall = b[i].d * fp16_to_fp32(a[i].d);
    const float dmin = b[i].d * fp16_to_fp32(a[i].dmin);
    sum += dall * static_cast<float>(isum) - dmin * static_cast<float>(imin);
  }
  *s = sum;
}

void vec_dot_q6_K_q8_K(int64_t n, float* s, const void* x, const void* y) {
  const auto* a = static_cast<const BlockQ6_K*>(x);
  const auto* b = static_cast<const BlockQ8_K*>(y);
  float sum = 0.0f;
  for (int64_t i = 0; i < n / QK_K; ++i) {
    int isum = 0;
    for (int j = 0; j < QK_K / 16; ++j) {
      int sub = 0;
      for (int l = 0; l < 16; ++l) sub += q6k_code(a[i], 16 * j + l) * b[i].qs[16 * j + l];
      isum += a[i].scales[j] * sub;
    }
    sum += b[i].d * fp16_to_fp32(a[i].d) * static_cast<float>(isum);
  }
  *s = sum;
}

void vec_dot_q8_K_q8_K(int64_t n, float* s, const void* x, const void* y) {
  const auto* a = static_cast<const BlockQ8_K*>(x);
  const auto* b = static_cast<const BlockQ8_K*>(y);
  float sum = 0.0f;
  for (int64_t i = 0; i < n / QK_K; ++i) {
    int isum = 0;
    for (int e = 0; e < QK_K; ++e) isum += a[i].qs[e] * b[i].qs[e];
    sum += a[i].d * b[i].d * static_cast<float>(isum);
  }
  *s = sum;
}

}  // namespace coppice::quant
