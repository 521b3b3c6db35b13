// Legacy 32-element formats q4_0, q4_1, q5_0, q5_1, q8_0, q8_1. The quantizers reproduce ggml's
// reference quantizers (ggml-quants.c quantize_row_*_ref) value for value, including their
// truncating casts and the first-max tie rule, so files we write match other engines' files.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "kernels/quant_impl.h"
#include "util/fp16.h"

namespace coppice::quant {
namespace {

constexpr int QK = 32;  // all legacy formats use 32-element blocks

// The signed value of largest magnitude (first one on ties); its sign fixes the sign of d.
float signed_absmax(const float* x) {
  float amax = 0.0f, max = 0.0f;
  for (int j = 0; j < QK; ++j) {
    if (amax < std::fabs(x[j])) {
      amax = std::fabs(x[j]);
      max = x[j];
    }
  }
  return max;
}

void min_max(const float* x, float* lo, float* hi) {
  *lo = x[0];
  *hi = x[0];
  for (int j = 1; j < QK; ++j) {
    *lo = std::min(*lo, x[j]);
    *hi = std::max(*hi, x[j]);
  }
}

uint32_t load_qh(const uint8_t* qh) { uint32_t v; std::memcpy(&v, qh, 4); return v; }
void store_qh(uint8_t* qh, uint32_t v) { std::memcpy(qh, &v, 4); }

// 5-bit code of element j (0..31) from the nibble array and the high-bit word.
int code5(const uint8_t* qs, uint32_t qh, int j) {
  const int lo = j < 16 ? (qs[j] & 0xF) : (qs[j - 16] >> 4);
  return lo | static_cast<int>(((qh >> j) & 1u) << 4);
}

int code4(const uint8_t* qs, int j) { return j < 16 ? (qs[j] & 0xF) : (qs[j - 16] >> 4); }

}  // namespace

// ---------------------------------------------------------------- dequantize

void to_float_q4_0(const void* src, float* dst, int64_t n) {
  const auto* b = static_cast<const BlockQ4_0*>(src);
  for (int64_t i = 0; i < n / QK; ++i, dst += QK) {
    const float d = fp16_to_fp32(b[i].d);
    for (int j = 0; j < QK; ++j) dst[j] = static_cast<float>(code4(b[i].qs, j) - 8) * d;
  }
}

void to_float_q4_1(const void* src, float* dst, int64_t n) {
  const auto* b = static_cast<const BlockQ4_1*>(src);
  for (int64_t i = 0; i < n / QK; ++i, dst += QK) {
    const float d = fp16_to_fp32(b[i].d), m = fp16_to_fp32(b[i].m);
    for (int j = 0; j < QK; ++j) dst[j] = static_cast<float>(code4(b[i].qs, j)) * d + m;
  }
}

void to_float_q5_0(const void* src, float* dst, int64_t n) {
  const auto* b = static_cast<const BlockQ5_0*>(src);
  for (int64_t i = 0; i < n / QK; ++i, dst += QK) {
    const float d = fp16_to_fp32(b[i].d);
    const uint32_t qh = load_qh(b[i].qh);
    for (int j = 0; j < QK; ++j) dst[j] = static_cast<float>(code5(b[i].qs, qh, j) - 16) * d;
  }
}

void to_float_q5_1(const void* src, float* dst, int64_t n) {
  const auto* b = static_cast<const BlockQ5_1*>(src);
  for (int64_t i = 0; i < n / QK; ++i, dst += QK) {
    const float d = fp16_to_fp32(b[i].d), m = fp16_to_fp32(b[i].m);
    const uint32_t qh = load_qh(b[i].qh);
    for (int j = 0; j < QK; ++j) dst[j] = static_cast<float>(code5(b[i].qs, qh, j)) * d + m;
  }
}

void to_float_q8_0(const void* src, float* dst, int64_t n) {
  const auto* b = static_cast<const BlockQ8_0*>(src);
  for (int64_t i = 0; i < n / QK; ++i, dst += QK) {
    const float d = fp16_to_fp32(b[i].d);
    for (int j = 0; j < QK; ++j) dst[j] = static_cast<float>(b[i].qs[j]) * d;
  }
}

void to_float_q8_1(const void* src, float* dst, int64_t n) {
  const auto* b = static_cast<const BlockQ8_1*>(src);
  for (int64_t i = 0; i < n / QK; ++i, dst += QK) {
    const float d = fp16_to_fp32(b[i].d);
    for (int j = 0; j < QK; ++j) dst[j] = static_cast<float>(b[i].qs[j]) * d;
  }
}

// ---------------------------------------------------------------- quantize

void from_float_q4_0(const float* src, void* dst, int64_t n) {
  auto* b = static_cast<BlockQ4_0*>(dst);
  for (int64_t i = 0; i < n / QK; ++i, src += QK) {
    const float d = signed_absmax(src) / -8.0f;  // the extreme value lands on code 0
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    b[i].d = fp32_to_fp16(d);
    for (int j = 0; j < QK / 2; ++j) {
      // ggml truncates x + 8.5 (round half up for these non-negative values), clamped to 15.
      const int q0 = std::min(15, static_cast<int>(src[j] * id + 8.5f));
      const int q1 = std::min(15, static_cast<int>(src[j + 16] * id + 8.5f));
      b[i].qs[j] = static_cast<uint8_t>(q0 | (q1 << 4));
    }
  }
}

void from_float_q4_1(const float* src, void* dst, int64_t n) {
  auto* b = static_cast<BlockQ4_1*>(dst);
  for (int64_t i = 0; i < n / QK; ++i, src += QK) {
    float lo, hi;
    min_max(src, &lo, &hi);
    const float d = (hi - lo) / 15.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    b[i].d = fp32_to_fp16(d);
    b[i].m = fp32_to_fp16(lo);
    for (int j = 0; j < QK / 2; ++j) {
      const int q0 = std::min(15, static_cast<int>((src[j] - lo) * id + 0.5f));
      const int q1 = std::min(15, static_cast<int>((src[j + 16] - lo) * id + 0.5f));
      b[i].qs[j] = static_cast<uint8_t>(q0 | (q1 << 4));
    }
  }
}

void from_float_q5_0(const float* src, void* dst, int64_t n) {
  auto* b = static_cast<BlockQ5_0*>(dst);
  for (int64_t i = 0; i < n / QK; ++i, src += QK) {
    const float d = signed_absmax(src) / -16.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    b[i].d = fp32_to_fp16(d);
    uint32_t qh = 0;
    for (int j = 0; j < QK / 2; ++j) {
      const int q0 = std::min(31, static_cast<int>(src[j] * id + 16.5f));
      const int q1 = std::min(31, static_cast<int>(src[j + 16] * id + 16.5f));
      b[i].qs[j] = static_cast<uint8_t>((q0 & 0xF) | ((q1 & 0xF) << 4));
      qh |= static_cast<uint32_t>(q0 >> 4) << j;
      qh |= static_cast<uint32_t>(q1 >> 4) << (j + 16);
    }
    store_qh(b[i].qh, qh);
  }
}

void from_float_q5_1(const float* src, void* dst, int64_t n) {
  auto* b = static_cast<BlockQ5_1*>(dst);
  for (int64_t i = 0; i < n / QK; ++i, src += QK) {
    float lo, hi;
    min_max(src, &lo, &hi);
    const float d = (hi - lo) / 31.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    b[i].d = fp32_to_fp16(d);
    b[i].m = fp32_to_fp16(lo);
    uint32_t qh = 0;
    for (int j = 0; j < QK / 2; ++j) {
      // ggml does not clamp here; (x - min) * id + 0.5 cannot exceed 31.5 beyond rounding.
      const int q0 = std::min(31, static_cast<int>((src[j] - lo) * id + 0.5f));
      const int q1 = std::min(31, static_cast<int>((src[j + 16] - lo) * id + 0.5f));
      b[i].qs[j] = static_cast<uint8_t>((q0 & 0xF) | ((q1 & 0xF) << 4));
      qh |= static_cast<uint32_t>(q0 >> 4) << j;
      qh |= static_cast<uint32_t>(q1 >> 4) << (j + 16);
    }
    store_qh(b[i].qh, qh);
  }
}

namespace {

// Shared by q8_0 and q8_1: d = amax / 127, codes round half away from zero (roundf).
float quantize_q8_block(const float* x, int8_t* qs) {
  float amax = 0.0f;
  for (int j = 0; j < QK; ++j) amax = std::max(amax, std::fabs(x[j]));
  const float d = amax / 127.0f;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  for (int j = 0; j < QK; ++j) qs[j] = static_cast<int8_t>(std::round(x[j] * id));
  return d;
}

}  // namespace

void from_float_q8_0(const float* src, void* dst, int64_t n) {
  auto* b = static_cast<BlockQ8_0*>(dst);
  for (int64_t i = 0; i < n / QK; ++i, src += QK) {
    b[i].d = fp32_to_fp16(quantize_q8_block(src, b[i].qs));
  }
}

void from_float_q8_1(const float* src, void* dst, int64_t n) {
  auto* b = static_cast<BlockQ8_1*>(dst);
  for (int64_t i = 0; i < n / QK; ++i, src += QK) {
    const float d = quantize_q8_block(src, b[i].qs);
    int sum = 0;
    for (int j = 0; j < QK; ++j) sum += b[i].qs[j];
    b[i].d = fp32_to_fp16(d);
    b[i].s = fp32_to_fp16(static_cast<float>(sum) * d);  // uses the fp32 d, as ggml does
  }
}

// ---------------------------------------------------------------- dot products
// Integer sum within a block, then one float multiply by the product of the scales.

void vec_dot_q4_0_q8_0(int64_t n, float* s, const void* x, const void* y) {
  const auto* a = static_cast<const BlockQ4_0*>(x);
  const auto* b = static_cast<const BlockQ8_0*>(y);
  float sum = 0.0f;
  for (int64_t i = 0; i < n / QK; ++i) {
    int sumi = 0;
    for (int j = 0; j < QK; ++j) sumi += (code4(a[i].qs, j) - 8) * b[i].qs[j];
    sum += static_cast<float>(sumi) * (fp16_to_fp32(a[i].d) * fp16_to_fp32(b[i].d));
  }
  *s = sum;
}

void vec_dot_q4_1_q8_1(int64_t n, float* s, const void* x, const void* y) {
  const auto* a = static_cast<const BlockQ4_1*>(x);
  const auto* b = static_cast<const BlockQ8_1*>(y);
  float sum = 0.0f;
  for (int64_t i = 0; i < n / QK; ++i) {
    int sumi = 0;
    for (int j = 0; j < QK; ++j) sumi += code4(a[i].qs, j) * b[i].qs[j];
    // sum((q*d + m) * y) = d*dy*sum(q*qy) + m*s, with s = dy*sum(qy) stored in the q8_1 block.
    sum += static_cast<float>(sumi) * (fp16_to_fp32(a[i].d) * fp16_to_fp32(b[i].d)) +
           fp16_to_fp32(a[i].m) * fp16_to_fp32(b[i].s);
  }
  *s = sum;
}

void vec_dot_q5_0_q8_0(int64_t n, float* s, const void* x, const void* y) {
  const auto* a = static_cast<const BlockQ5_0*>(x);
  const auto* b = static_cast<const BlockQ8_0*>(y);
  float sum = 0.0f;
  for (int64_t i = 0; i < n / QK; ++i) {
    const uint32_t qh = load_qh(a[i].qh);
    int sumi = 0;
    for (int j = 0; j < QK; ++j) sumi += (code5(a[i].qs, qh, j) - 16) * b[i].qs[j];
    sum += static_cast<float>(sumi) * (fp16_to_fp32(a[i].d) * fp16_to_fp32(b[i].d));
  }
  *s = sum;
}

void vec_dot_q5_1_q8_1(int64_t n, float* s, const void* x, const void* y) {
  const auto* a = static_cast<const BlockQ5_1*>(x);
  const auto* b = static_cast<const BlockQ8_1*>(y);
  float sum = 0.0f;
  for (int64_t i = 0; i < n / QK; ++i) {
    const uint32_t qh = load_qh(a[i].qh);
    int sumi = 0;
    for (int j = 0; j < QK; ++j) sumi += code5(a[i].qs, qh, j) * b[i].qs[j];
    sum += static_cast<float>(sumi) * (fp16_to_fp32(a[i].d) * fp16_to_fp32(b[i].d)) +
           fp16_to_fp32(a[i].m) * fp16_to_fp32(b[i].s);
  }
  *s = sum;
}

void vec_dot_q8_0_q8_0(int64_t n, float* s, const void* x, const void* y) {
  const auto* a = static_cast<const BlockQ8_0*>(x);
  const auto* b = static_cast<const BlockQ8_0*>(y);
  float sum = 0.0f;
  for (int64_t i = 0; i < n / QK; ++i) {
    int sumi = 0;
    for (int j = 0; j < QK; ++j) sumi += a[i].qs[j] * b[i].qs[j];
    sum += static_cast<float>(sumi) * (fp16_to_fp32(a[i].d) * fp16_to_fp32(b[i].d));
  }
  *s = sum;
}

void vec_dot_q8_1_q8_1(int64_t n, float* s, const void* x, const void* y) {
  const auto* a = static_cast<const BlockQ8_1*>(x);
  const auto* b = static_cast<const BlockQ8_1*>(y);
  float sum = 0.0f;
  for (int64_t i = 0; i < n / QK; ++i) {
    int sumi = 0;
    for (int j = 0; j < QK; ++j) sumi += a[i].qs[j] * b[i].qs[j];
    sum += static_cast<float>(sumi) * (fp16_to_fp32(a[i].d) * fp16_to_fp32(b[i].d));
  }
  *s = sum;
}

}  // namespace coppice::quant
