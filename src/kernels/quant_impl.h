// Internal: the scalar reference kernels behind the traits table (types.cpp), plus the small
// helpers they share. SIMD kernels and their tests compare against these functions.
#pragma once
#include <cmath>
#include <cstdint>

#include "kernels/blocks.h"

namespace coppice::quant {

// Round half to even, as ggml's nearest_int (valid for |x| < 2^22).
inline int nearest_int(float x) { return static_cast<int>(std::nearbyint(x)); }

// Sub-block j (0..7) scale and min of q4_K / q5_K: 6 bits each in 12 bytes. Bytes 0-3 hold
// scales 0-3 and 4-7 mins 0-3 (low 6 bits); bytes 8-11 hold the low nibbles of scale/min 4-7
// and bits 6-7 of bytes 0-7 their high 2 bits (ggml-quants.c get_scale_min_k4).
inline void get_scale_min_k4(int j, const uint8_t* q, uint8_t* sc, uint8_t* m) {
  if (j < 4) {
    *sc = q[j] & 63;
    *m = q[j + 4] & 63;
  } else {
    *sc = static_cast<uint8_t>((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
    *m = static_cast<uint8_t>((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
  }
}

// Sub-block j (0..15) scale of q3_K, already de-biased to -32..31. Low 4 bits: byte j (j < 8)
// or the high nibble of byte j-8; high 2 bits: bits 2*(j/4) of byte 8 + j%4.
inline int q3k_scale(const uint8_t* s, int j) {
  const int lo = j < 8 ? (s[j] & 0xF) : (s[j - 8] >> 4);
  const int hi = (s[8 + j % 4] >> (2 * (j / 4))) & 3;
  return (lo | (hi << 4)) - 32;
}

// ---- K-quant code accessors: element e (0..255) of a super-block. Layouts follow
// ggml-quants.c dequantize_row_q*_K; the quantizers in quant_k_quantize.cpp pack the inverse.

// q2_K / q3_K low 2 bits: each 128-element half uses 32 bytes, and
// the four 32-element quarters of it sit at bit offsets 0, 2, 4, 6 of the same bytes.
inline int q2_bits(const uint8_t* qs, int e) {
  return (qs[32 * (e / 128) + e % 32] >> (2 * ((e % 128) / 32))) & 3;
}

// q2_K: unsigned 0..3.
inline int q2k_code(const BlockQ2_K& b, int e) { return q2_bits(b.qs, e); }

// q3_K: signed -4..3; a clear hmask bit means "subtract 4".
inline int q3k_code(const BlockQ3_K& b, int e) {
  const int hbit = (b.hmask[e % 32] >> (e / 32)) & 1;
  return q2_bits(b.qs, e) + 4 * hbit - 4;
}

// q4_K / q5_K low nibble: each 64-element chunk uses 32 bytes, low nibbles first.
inline int q4_bits(const uint8_t* qs, int e) {
  const int r = e % 64;
  return (qs[32 * (e / 64) + r % 32] >> (4 * (r / 32))) & 0xF;
}

inline int q4k_code(const BlockQ4_K& b, int e) { return q4_bits(b.qs, e); }

// q5_K: 5th bit of element e is bit (e / 32) of qh[e % 32].
inline int q5k_code(const BlockQ5_K& b, int e) {
  return q4_bits(b.qs, e) | (((b.qh[e % 32] >> (e / 32)) & 1) << 4);
}

// q6_K: signed -32..31. Per 128-element half: ql holds quarters 0,1 in low nibbles of bytes
// 0-31 / 32-63 and quarters 2,3 in their high nibbles; qh holds 2 bits per quarter.
inline int q6k_code(const BlockQ6_K& b, int e) {
  const int half = e / 128, g = (e % 128) / 32, l = e % 32;
  const int lo = (b.ql[64 * half + l + 32 * (g & 1)] >> (4 * (g >> 1))) & 0xF;
  const int hi = (b.qh[32 * half + l] >> (2 * g)) & 3;
  return (lo | (hi << 4)) - 32;
}

// ---- float types (quant_float.cpp)
void to_float_f32(const void* src, float* dst, int64_t n);
void from_float_f32(const float* src, void* dst, int64_t n);
void vec_dot_f32(int64_t n, float* s, const void* x, const void* y);
void to_float_f16(const void* src, float* dst, int64_t n);
void from_float_f16(const float* src, void* dst, int64_t n);
void vec_dot_f16(int64_t n, float* s, const void* x, const void* y);
void to_float_bf16(const void* src, float* dst, int64_t n);
void from_float_bf16(const float* src, void* dst, int64_t n);
void vec_dot_bf16(int64_t n, float* s, const void* x, const void* y);

// ---- legacy 32-element blocks (quant_legacy.cpp)
void to_float_q4_0(const void* src, float* dst, int64_t n);
void to_float_q4_1(const void* src, float* dst, int64_t n);
void to_float_q5_0(const void* src, float* dst, int64_t n);
void to_float_q5_1(const void* src, float* dst, int64_t n);
void to_float_q8_0(const void* src, float* dst, int64_t n);
void to_float_q8_1(const void* src, float* dst, int64_t n);
void from_float_q4_0(const float* src, void* dst, int64_t n);
void from_float_q4_1(const float* src, void* dst, int64_t n);
void from_float_q5_0(const float* src, void* dst, int64_t n);
void from_float_q5_1(const float* src, void* dst, int64_t n);
void from_float_q8_0(const float* src, void* dst, int64_t n);
void from_float_q8_1(const float* src, void* dst, int64_t n);
void vec_dot_q4_0_q8_0(int64_t n, float* s, const void* x, const void* y);
void vec_dot_q4_1_q8_1(int64_t n, float* s, const void* x, const void* y);
void vec_dot_q5_0_q8_0(int64_t n, float* s, const void* x, const void* y);
void vec_dot_q5_1_q8_1(int64_t n, float* s, const void* x, const void* y);
void vec_dot_q8_0_q8_0(int64_t n, float* s, const void* x, const void* y);
void vec_dot_q8_1_q8_1(int64_t n, float* s, const void* x, const void* y);

// ---- K-quants: dequantize and dot (quant_k.cpp), quantize (quant_k_quantize.cpp)
void to_float_q2_K(const void* src, float* dst, int64_t n);
void to_float_q3_K(const void* src, float* dst, int64_t n);
void to_float_q4_K(const void* src, float* dst, int64_t n);
void to_float_q5_K(const void* src, float* dst, int64_t n);
void to_float_q6_K(const void* src, float* dst, int64_t n);
void to_float_q8_K(const void* src, float* dst, int64_t n);
void from_float_q2_K(const float* src, void* dst, int64_t n);
void from_float_q3_K(const float* src, void* dst, int64_t n);
void from_float_q4_K(const float* src, void* dst, int64_t n);
void from_float_q5_K(const float* src, void* dst, int64_t n);
void from_float_q6_K(const float* src, void* dst, int64_t n);
void from_float_q8_K(const float* src, void* dst, int64_t n);
void vec_dot_q2_K_q8_K(int64_t n, float* s, const void* x, const void* y);
void vec_dot_q3_K_q8_K(int64_t n, float* s, const void* x, const void* y);
void vec_dot_q4_K_q8_K(int64_t n, float* s, const void* x, const void* y);
void vec_dot_q5_K_q8_K(int64_t n, float* s, const void* x, const void* y);
void vec_dot_q6_K_q8_K(int64_t n, float* s, const void* x, const void* y);
void vec_dot_q8_K_q8_K(int64_t n, float* s, const void* x, const void* y);

}  // namespace coppice::quant
