// x86 fused quantized-KV attention kernels (kernels/attn.h) for the *_avx2 / *_avx512 units.
// Include ONLY from a per-ISA unit, after simd_x86.h.
//
// Scores: each K block's codes are read as unsigned bytes u with k = d (u - o) + m (q8_0 on
// VNNI: u = k ^ 0x80, o = 128; AVX2 keeps q8_0 signed with o = 0 and moves the sign onto the
// query), dotted with the int8 query codes in 8 int32 lanes that start at -o * (lane's query
// code sum), so the lanes sum to the exact integer dot; one fma per block applies d * d_q, and
// 8 keys' lane vectors are reduced together (one horizontal add tree per 8 keys).
// Values: blocks are widened to float lanes in registers (16 per zmm, 8 per ymm); per 32-block
// of the head the output lanes stay in registers across the keys, p d u is accumulated and the
// block's constant p (m - d o) is summed once per key and added at the end.
#pragma once
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "kernels/attn.h"
#include "kernels/blocks.h"
#include "kernels/simd_attn.h"

namespace coppice::kernels {
namespace {  // NOLINT: per-ISA copies by design

inline float kv_h2f(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return h2f(h);
}

template <DType T>
struct KvQ;  // per type: block bytes, where the codes sit, code offset o, has a min m
template <>
struct KvQ<DType::Q8_0> {
  static constexpr size_t kBytes = sizeof(BlockQ8_0);
  static constexpr int kOff = CP_VNNI ? 128 : 0;
  static constexpr bool kMin = false;
  static __m256i u32(const uint8_t* p) {  // 32 codes for the score (see kOff)
    const __m256i v = load256(p + 2);
#if CP_VNNI
    return _mm256_xor_si256(v, _mm256_set1_epi8(static_cast<char>(0x80)));
#else
    return v;
#endif
  }
};
template <>
struct KvQ<DType::Q4_0> {
  static constexpr size_t kBytes = sizeof(BlockQ4_0);
  static constexpr int kOff = 8;
  static constexpr bool kMin = false;
  static __m256i u32(const uint8_t* p) { return nibbles32(p + 2); }
};
template <>
struct KvQ<DType::Q4_1> {
  static constexpr size_t kBytes = sizeof(BlockQ4_1);
  static constexpr int kOff = 0;
  static constexpr bool kMin = true;
  static __m256i u32(const uint8_t* p) { return nibbles32(p + 4); }
};
template <>
struct KvQ<DType::Q5_0> {
  static constexpr size_t kBytes = sizeof(BlockQ5_0);
  static constexpr int kOff = 16;
  static constexpr bool kMin = false;
  static __m256i u32(const uint8_t* p) {
    const __m256i hi = _mm256_and_si256(bits32(load_u32(p + 2)), _mm256_set1_epi8(0x10));
    return _mm256_or_si256(nibbles32(p + 6), hi);
  }
};
template <>
struct KvQ<DType::Q5_1> {
  static constexpr size_t kBytes = sizeof(BlockQ5_1);
  static constexpr int kOff = 0;
  static constexpr bool kMin = true;
  static __m256i u32(const uint8_t* p) {
    const __m256i hi = _mm256_and_si256(bits32(load_u32(p + 4)), _mm256_set1_epi8(0x10));
    return _mm256_or_si256(nibbles32(p + 8), hi);
  }
};
// Where a block's fp16 scale / min sit: d first, m (the _1 types) second.
inline float blk_d(const uint8_t* p) { return kv_h2f(p); }
inline float blk_m(const uint8_t* p) { return kv_h2f(p + 2); }

// Brings one cell's head bytes towards L1 (cells are strided: one head's slice of each row).
inline void prefetch_head(const uint8_t* p, size_t bytes) {
  for (size_t o = 0; o < bytes; o += 64) _mm_prefetch(reinterpret_cast<const char*>(p + o), _MM_HINT_T0);
  _mm_prefetch(reinterpret_cast<const char*>(p + bytes - 1), _MM_HINT_T0);
}


template <DType T>
void kvq_score_rows(const KvQuery& q, const void* k, size_t stride, int n, float* scores) {
  using B = KvQ<T>;
  const int nb = q.nb;
  __m256i qv[KvQuery::kMaxBlocks], init[KvQuery::kMaxBlocks];
  for (int b = 0; b < nb; ++b) {
    qv[b] = _mm256_load_si256(reinterpret_cast<const __m256i*>(q.q + 32 * b));
    if constexpr (B::kOff != 0) {  // -o * (the 4 query codes of each lane)
      const __m256i s = dot_u8s8(_mm256_set1_epi8(1), qv[b]);
      init[b] = _mm256_mullo_epi32(s, _mm256_set1_epi32(-B::kOff));
    } else {
      init[b] = _mm256_setzero_si256();
    }
  }
  const auto* base = static_cast<const uint8_t*>(k);
  const size_t head_bytes = nb * B::kBytes;
  for (int j0 = 0; j0 < n; j0 += 8) {
    const int cnt = n - j0 < 8 ? n - j0 : 8;
    for (int i = j0 + 8; i < j0 + 16 && i < n; ++i) prefetch_head(base + i * stride, head_bytes);
    __m256 acc[8];
    float mterm[8] = {};
    for (int i = 0; i < 8; ++i) {
      acc[i] = _mm256_setzero_ps();
      if (i >= cnt) continue;
      const uint8_t* row = base + (j0 + i) * stride;
      for (int b = 0; b < nb; ++b) {
        const uint8_t* blk = row + b * B::kBytes;
        __m256i is;
        if constexpr (T == DType::Q8_0 && !CP_VNNI) {
          is = dot_s8s8(B::u32(blk), qv[b]);
        } else {
#if CP_VNNI
          is = _mm256_dpbusd_epi32(init[b], B::u32(blk), qv[b]);
#else
          is = _mm256_add_epi32(init[b], dot_u8s8(B::u32(blk), qv[b]));
#endif
        }
        acc[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(is), _mm256_set1_ps(blk_d(blk) * q.d[b]), acc[i]);
        if constexpr (B::kMin) mterm[i] += blk_m(blk) * q.s[b];
      }
    }
    alignas(32) float r[8];
    _mm256_store_ps(r, reduce8(acc));
    for (int i = 0; i < cnt; ++i) scores[j0 + i] = r[i] + mterm[i];
  }
}

// ---- value accumulation: the block's unsigned codes as float lanes
#ifdef __AVX512F__
using KFV = __m512;
constexpr int kKW = 16;  // lanes per register; 32 / kKW registers per block
inline KFV kf_load(const float* p) { return _mm512_loadu_ps(p); }
inline void kf_store(float* p, KFV v) { _mm512_storeu_ps(p, v); }
inline KFV kf_set1(float x) { return _mm512_set1_ps(x); }
inline KFV kf_fma(KFV a, KFV b, KFV c) { return _mm512_fmadd_ps(a, b, c); }
inline KFV kf_add(KFV a, KFV b) { return _mm512_add_ps(a, b); }
inline KFV kf_cvt(__m512i x) { return _mm512_maskz_cvtepi32_ps(0xFFFF, x); }
inline __m128i load128(const uint8_t* p) { return _mm_loadu_si128(reinterpret_cast<const __m128i*>(p)); }
// 16 nibble bytes -> low nibbles (elements 0..15) and high nibbles (16..31) as int32 lanes
inline void nib_lanes(const uint8_t* qs, __m512i& lo, __m512i& hi) {
  const __m512i w = _mm512_maskz_cvtepu8_epi32(0xFFFF, load128(qs));
  lo = _mm512_and_si512(w, _mm512_set1_epi32(15));
  hi = _mm512_maskz_srli_epi32(0xFFFF, w, 4);
}
template <DType T>
inline void kv_ucodes(const uint8_t* p, KFV* u) {
  if constexpr (T == DType::Q8_0) {
    u[0] = kf_cvt(_mm512_maskz_cvtepi8_epi32(0xFFFF, load128(p + 2)));
    u[1] = kf_cvt(_mm512_maskz_cvtepi8_epi32(0xFFFF, load128(p + 18)));
  } else if constexpr (T == DType::Q4_0 || T == DType::Q4_1) {
    __m512i lo, hi;
    nib_lanes(p + (T == DType::Q4_0 ? 2 : 4), lo, hi);
    u[0] = kf_cvt(lo);
    u[1] = kf_cvt(hi);
  } else {
    constexpr int h = T == DType::Q5_0 ? 2 : 4;
    const uint32_t qh = load_u32(p + h);
    __m512i lo, hi;
    nib_lanes(p + h + 4, lo, hi);
    const __m512i b5 = _mm512_set1_epi32(16);
    lo = _mm512_or_si512(lo, _mm512_maskz_mov_epi32(static_cast<__mmask16>(qh & 0xFFFF), b5));
    hi = _mm512_or_si512(hi, _mm512_maskz_mov_epi32(static_cast<__mmask16>(qh >> 16), b5));
    u[0] = kf_cvt(lo);
    u[1] = kf_cvt(hi);
  }
}
#else
using KFV = __m256;
constexpr int kKW = 8;
inline KFV kf_load(const float* p) { return _mm256_loadu_ps(p); }
inline void kf_store(float* p, KFV v) { _mm256_storeu_ps(p, v); }
inline KFV kf_set1(float x) { return _mm256_set1_ps(x); }
inline KFV kf_fma(KFV a, KFV b, KFV c) { return _mm256_fmadd_ps(a, b, c); }
inline KFV kf_add(KFV a, KFV b) { return _mm256_add_ps(a, b); }
inline KFV kf_cvt(__m256i x) { return _mm256_cvtepi32_ps(x); }
inline __m128i load64(const uint8_t* p) { return _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)); }
template <DType T>
inline void kv_ucodes(const uint8_t* p, KFV* u) {
  if constexpr (T == DType::Q8_0) {
    for (int i = 0; i < 4; ++i) u[i] = kf_cvt(_mm256_cvtepi8_epi32(load64(p + 2 + 8 * i)));
  } else {
    constexpr int h = T == DType::Q5_0 ? 2 : 4;  // q5: qh offset
    constexpr int qs = T == DType::Q4_0 ? 2 : T == DType::Q4_1 ? 4 : h + 4;
    constexpr bool five = T == DType::Q5_0 || T == DType::Q5_1;
    const __m256i m15 = _mm256_set1_epi32(15);
    for (int i = 0; i < 2; ++i) {
      const __m256i w = _mm256_cvtepu8_epi32(load64(p + qs + 8 * i));
      __m256i lo = _mm256_and_si256(w, m15), hi = _mm256_srli_epi32(w, 4);
      if constexpr (five) {  // element e gets bit e of qh as 16
        const __m256i qh = _mm256_set1_epi32(static_cast<int>(load_u32(p + h)));
        const __m256i e = _mm256_add_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_epi32(8 * i));
        const __m256i one = _mm256_set1_epi32(1);
        lo = _mm256_or_si256(lo, _mm256_slli_epi32(_mm256_and_si256(_mm256_srlv_epi32(qh, e), one), 4));
        const __m256i e16 = _mm256_add_epi32(e, _mm256_set1_epi32(16));
        hi = _mm256_or_si256(hi, _mm256_slli_epi32(_mm256_and_si256(_mm256_srlv_epi32(qh, e16), one), 4));
      }
      u[i] = kf_cvt(lo);
      u[2 + i] = kf_cvt(hi);
    }
  }
}
#endif

template <DType T>
void kvq_accum_rows(float* y, const float* p, const void* v, size_t stride, int n, int nb) {
  using B = KvQ<T>;
  constexpr int kR = 32 / kKW;
  const auto* base = static_cast<const uint8_t*>(v);
  for (int j = 0; j < n; ++j) prefetch_head(base + j * stride, nb * B::kBytes);
  for (int b = 0; b < nb; ++b) {
    float* yb = y + 32 * b;
    KFV acc[kR];
    for (int r = 0; r < kR; ++r) acc[r] = kf_load(yb + kKW * r);
    float c = 0.0f;  // sum of p (m - d o) over the keys
    for (int j = 0; j < n; ++j) {
      if (p[j] == 0.0f) continue;
      const uint8_t* blk = base + j * stride + b * B::kBytes;
      const float d = blk_d(blk);
      KFV u[kR];
      kv_ucodes<T>(blk, u);
      const KFV w = kf_set1(p[j] * d);
      for (int r = 0; r < kR; ++r) acc[r] = kf_fma(w, u[r], acc[r]);
      if constexpr (B::kMin) {
        c += p[j] * blk_m(blk);
      } else if constexpr (T != DType::Q8_0) {
        c -= p[j] * d * static_cast<float>(B::kOff);
      }
    }
    if constexpr (T != DType::Q8_0) {
      const KFV cv = kf_set1(c);
      for (int r = 0; r < kR; ++r) acc[r] = kf_add(acc[r], cv);
    }
    for (int r = 0; r < kR; ++r) kf_store(yb + kKW * r, acc[r]);
  }
}

inline void fill_attn_quant(AttnKernels& a) {
  a.quant[kv_quant_index(DType::Q8_0)] = {kvq_score_rows<DType::Q8_0>, kvq_accum_rows<DType::Q8_0>};
  a.quant[kv_quant_index(DType::Q4_0)] = {kvq_score_rows<DType::Q4_0>, kvq_accum_rows<DType::Q4_0>};
  a.quant[kv_quant_index(DType::Q4_1)] = {kvq_score_rows<DType::Q4_1>, kvq_accum_rows<DType::Q4_1>};
  a.quant[kv_quant_index(DType::Q5_0)] = {kvq_score_rows<DType::Q5_0>, kvq_accum_rows<DType::Q5_0>};
  a.quant[kv_quant_index(DType::Q5_1)] = {kvq_score_rows<DType::Q5_1>, kvq_accum_rows<DType::Q5_1>};
}

}  // namespace
}  // namespace coppice::kernels
