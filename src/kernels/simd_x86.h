// x86 SIMD block kernels shared by the *_avx2.cpp and *_avx512.cpp units. Include ONLY from a
// per-ISA unit: everything sits in an anonymous namespace, so each unit gets its own copy
// compiled with its own target flags and nothing is merged across ISAs by the linker.
//
// Each weight type is a struct with: Dec (a decoded weight block), decode(block bytes),
// fma(Dec, activation block bytes, Acc&) (acc += that block's dot), and the block sizes.
// vec_dot and the gemm tiles (simd_tile.h) are generic over it. Integer formats decode to
// int8 codes once per block; a gemm tile reuses each decoded block for all its tokens.
#pragma once
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "kernels/blocks.h"

#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
#define CP_VNNI 1
#else
#define CP_VNNI 0
#endif

namespace coppice::kernels {
namespace {  // NOLINT: per-ISA copies by design (see above)

inline float h2f(uint16_t h) { return _cvtsh_ss(h); }
inline float bf2f(uint16_t h) {
  const uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
inline uint32_t load_u32(const uint8_t* p) { uint32_t v; std::memcpy(&v, p, 4); return v; }

// Software prefetch of the weight block kAhead blocks after w (bytes: the block size) into L1.
// A panel walk streams one block per loop step; with the vector work of one step between two
// blocks the hardware prefetcher alone runs dry (measured in bench/RESULTS.md, panel prefetch).
constexpr int kPrefetchBlocks = 4;
template <size_t Bytes>
inline void prefetch_block_ahead(const uint8_t* w) {
  const char* p = reinterpret_cast<const char*>(w + kPrefetchBlocks * Bytes);
#pragma GCC unroll 16
  for (size_t o = 0; o < Bytes; o += 64) _mm_prefetch(p + o, _MM_HINT_T0);
}

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
#ifdef __AVX512F__
// (not _mm512_reduce_add_ps / _mm512_cvtph_ps: GCC 12's versions trip -Wuninitialized)
inline float hsum(__m512 v) {
  alignas(64) float t[16];
  _mm512_store_ps(t, v);
  return hsum(_mm256_add_ps(_mm256_load_ps(t), _mm256_load_ps(t + 8)));
}
#endif

// sum of u8 * s8 in groups of 4 -> 8 x int32. u must be <= 127 (or the pair sums fit int16).
inline __m256i dot_u8s8(__m256i u, __m256i s) {
#if CP_VNNI
  return _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, s);
#else
  return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
#endif
}
// signed x signed: move x's sign onto y (codes are within -127..127, so |x| fits u8).
inline __m256i dot_s8s8(__m256i x, __m256i y) {
  return dot_u8s8(_mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x));
}
// acc + madd(a, b) (int16 pairs -> int32)
inline __m256i madd_acc(__m256i acc, __m256i a, __m256i b) {
#if CP_VNNI
  return _mm256_dpwssd_epi32(acc, a, b);
#else
  return _mm256_add_epi32(acc, _mm256_madd_epi16(a, b));
#endif
}
// acc += lane 0 <- v (for the per-block min terms of q4_1 / q5_1)
inline __m256 add_lane0(__m256 acc, float v) {
  return _mm256_add_ps(acc, _mm256_blend_ps(_mm256_setzero_ps(), _mm256_set1_ps(v), 1));
}

// 32 4-bit codes: element j in qs[j] low nibble, j + 16 in the high nibble -> bytes 0..15.
inline __m256i nibbles32(const uint8_t* qs) {
  const __m128i t = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
  const __m256i b = _mm256_set_m128i(_mm_srli_epi16(t, 4), t);
  return _mm256_and_si256(b, _mm256_set1_epi8(0x0F));
}
// bit j of a 32-bit word -> byte j = 0xFF or 0x00
inline __m256i bits32(uint32_t x) {
  const __m256i shuf = _mm256_setr_epi64x(0, 0x0101010101010101, 0x0202020202020202,
                                          0x0303030303030303);
  __m256i b = _mm256_shuffle_epi8(_mm256_set1_epi32(static_cast<int>(x)), shuf);
  b = _mm256_or_si256(b, _mm256_set1_epi64x(0x7fbfdfeff7fbfdfe));
  return _mm256_cmpeq_epi8(b, _mm256_set1_epi64x(-1));
}
inline __m256i load256(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }

// ---------------------------------------------------------------- legacy 32-element blocks

struct SignedDec { __m256i q; float d; };           // value = d * q, q signed
struct UnsignedDec { __m256i q; float d, m; };      // value = d * q + m, q unsigned

template <class WBlock, class Self>
struct LegacySigned {  // dots against q8_0
  using Acc = __m256;
  using Dec = SignedDec;
  static constexpr int kBlock = 32;
  static constexpr size_t kWBytes = sizeof(WBlock), kABytes = sizeof(BlockQ8_0);
  static constexpr bool kTail = false;
  static Acc zero() { return _mm256_setzero_ps(); }
  static void fma(const Dec& x, const uint8_t* ab, Acc& acc) {
    const auto* a = reinterpret_cast<const BlockQ8_0*>(ab);
    const __m256 s = _mm256_cvtepi32_ps(dot_s8s8(x.q, load256(a->qs)));
    acc = _mm256_fmadd_ps(s, _mm256_set1_ps(x.d * h2f(a->d)), acc);
  }
};

struct Q4_0T : LegacySigned<BlockQ4_0, Q4_0T> {
  static Dec decode(const uint8_t* p) {
    const auto* b = reinterpret_cast<const BlockQ4_0*>(p);
    return {_mm256_sub_epi8(nibbles32(b->qs), _mm256_set1_epi8(8)), h2f(b->d)};
  }
};
struct Q5_0T : LegacySigned<BlockQ5_0, Q5_0T> {
  static Dec decode(const uint8_t* p) {
    const auto* b = reinterpret_cast<const BlockQ5_0*>(p);
    // q - 16 = nibble | 0xF0 where the 5th bit is clear (two's complement)
    const __m256i hi = _mm256_andnot_si256(bits32(load_u32(b->qh)), _mm256_set1_epi8(static_cast<char>(0xF0)));
    return {_mm256_or_si256(nibbles32(b->qs), hi), h2f(b->d)};
  }
};
struct Q8_0T : LegacySigned<BlockQ8_0, Q8_0T> {
  static Dec decode(const uint8_t* p) {
    const auto* b = reinterpret_cast<const BlockQ8_0*>(p);
    return {load256(b->qs), h2f(b->d)};
  }
};

template <class WBlock>
struct LegacyUnsigned {  // dots against q8_1: sum((d q + m) y) = d dy sum(q qy) + m * s
  using Acc = __m256;
  using Dec = UnsignedDec;
  static constexpr int kBlock = 32;
  static constexpr size_t kWBytes = sizeof(WBlock), kABytes = sizeof(BlockQ8_1);
  static constexpr bool kTail = false;
  static Acc zero() { return _mm256_setzero_ps(); }
  static void fma(const Dec& x, const uint8_t* ab, Acc& acc) {
    const auto* a = reinterpret_cast<const BlockQ8_1*>(ab);
    const __m256 s = _mm256_cvtepi32_ps(dot_u8s8(x.q, load256(a->qs)));
    acc = _mm256_fmadd_ps(s, _mm256_set1_ps(x.d * h2f(a->d)), acc);
    acc = add_lane0(acc, x.m * h2f(a->s));
  }
};
struct Q4_1T : LegacyUnsigned<BlockQ4_1> {
  static Dec decode(const uint8_t* p) {
    const auto* b = reinterpret_cast<const BlockQ4_1*>(p);
    return {nibbles32(b->qs), h2f(b->d), h2f(b->m)};
  }
};
struct Q5_1T : LegacyUnsigned<BlockQ5_1> {
  static Dec decode(const uint8_t* p) {
    const auto* b = reinterpret_cast<const BlockQ5_1*>(p);
    const __m256i hi = _mm256_and_si256(bits32(load_u32(b->qh)), _mm256_set1_epi8(0x10));
    return {_mm256_or_si256(nibbles32(b->qs), hi), h2f(b->d), h2f(b->m)};
  }
};

// ---------------------------------------------------------------- K-quants
// Every K-quant decodes to one canonical form: unsigned codes u (<= 63) in 8 x 32 bytes, a
// signed int16 scale per 16 elements, and an int16 "min" per 16 elements:
//   value = d * sc[g] * u - dmin * mn[g].
// Signed formats fold their code bias into the min (q3_K: u = q + 4, mn = 4 sc, dmin = d).
// Against q8_K the mins need only its bsums: sum(mn * y) = sum_g mn[g] * bsums[g].

struct KDec {
  __m256i u[8];   // codes of elements 32j .. 32j+31
  __m256i sv[8];  // int16 scales for u[j]: sc[2j] in the low 8 lanes, sc[2j+1] in the high 8
  __m256i mn;     // 16 x int16 mins
  float d, dmin;
};

// sv[j] from 16 int16 scales in memory: broadcast the pair (sc[2j], sc[2j+1]) to the halves.
inline void scales_per16(const int16_t* sc, __m256i* sv) {
  const __m256i ctl = _mm256_setr_epi8(0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1,
                                       2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3, 2, 3);
  for (int j = 0; j < 8; ++j) {
    int32_t pair;
    std::memcpy(&pair, sc + 2 * j, 4);
    sv[j] = _mm256_shuffle_epi8(_mm256_set1_epi32(pair), ctl);
  }
}

template <class WBlock, class Self>
struct KQuant {
  using Acc = __m256;
  using Dec = KDec;
  static constexpr int kBlock = QK_K;
  static constexpr size_t kWBytes = sizeof(WBlock), kABytes = sizeof(BlockQ8_K);
  static constexpr bool kTail = false;
  static Acc zero() { return _mm256_setzero_ps(); }
  static void fma(const Dec& x, const uint8_t* ab, Acc& acc) {
    const auto* a = reinterpret_cast<const BlockQ8_K*>(ab);
    __m256i isum = _mm256_setzero_si256();
#pragma GCC unroll 8
    for (int j = 0; j < 8; ++j) {
      const __m256i p = _mm256_maddubs_epi16(x.u[j], load256(a->qs + 32 * j));  // |p| <= 16128
      isum = madd_acc(isum, p, x.sv[j]);
    }
    const __m256i msum = _mm256_madd_epi16(load256(a->bsums), x.mn);
    acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), _mm256_set1_ps(x.d * a->d), acc);
    acc = _mm256_fnmadd_ps(_mm256_cvtepi32_ps(msum), _mm256_set1_ps(x.dmin * a->d), acc);
  }
};

struct Q2_KT : KQuant<BlockQ2_K, Q2_KT> {
  static Dec decode(const uint8_t* p) {
    const auto* b = reinterpret_cast<const BlockQ2_K*>(p);
    Dec x;
    const __m256i m3 = _mm256_set1_epi8(3);
#pragma GCC unroll 8
    for (int j = 0; j < 8; ++j) {
      const __m256i q = load256(b->qs + 32 * (j / 4));
      x.u[j] = _mm256_and_si256(_mm256_srli_epi16(q, 2 * (j % 4)), m3);
    }
    const __m128i s = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b->scales));
    const __m128i m4 = _mm_set1_epi8(0x0F);
    alignas(32) int16_t sc[16];
    _mm256_store_si256(reinterpret_cast<__m256i*>(sc), _mm256_cvtepu8_epi16(_mm_and_si128(s, m4)));
    scales_per16(sc, x.sv);
    x.mn = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(s, 4), m4));
    x.d = h2f(b->d);
    x.dmin = h2f(b->dmin);
    return x;
  }
};

struct Q3_KT : KQuant<BlockQ3_K, Q3_KT> {
  static Dec decode(const uint8_t* p) {
    const auto* b = reinterpret_cast<const BlockQ3_K*>(p);
    Dec x;
    const __m256i m3 = _mm256_set1_epi8(3), one = _mm256_set1_epi8(1);
    const __m256i hm = load256(b->hmask);
#pragma GCC unroll 8
    for (int j = 0; j < 8; ++j) {
      const __m256i q = load256(b->qs + 32 * (j / 4));
      const __m256i lo = _mm256_and_si256(_mm256_srli_epi16(q, 2 * (j % 4)), m3);
      const __m256i hb = _mm256_and_si256(_mm256_srli_epi16(hm, j), one);
      x.u[j] = _mm256_or_si256(lo, _mm256_slli_epi16(hb, 2));  // q + 4
    }
    // 16 6-bit scales (see quant_impl.h q3k_scale), four bytes at a time
    const uint32_t a0 = load_u32(b->scales), a1 = load_u32(b->scales + 4), a2 = load_u32(b->scales + 8);
    const uint32_t lo4 = 0x0F0F0F0Fu, lo2 = 0x03030303u;
    const uint32_t w[4] = {(a0 & lo4) | ((a2 & lo2) << 4), (a1 & lo4) | (((a2 >> 2) & lo2) << 4),
                           ((a0 >> 4) & lo4) | (((a2 >> 4) & lo2) << 4),
                           ((a1 >> 4) & lo4) | (((a2 >> 6) & lo2) << 4)};
    const __m128i raw = _mm_loadu_si128(reinterpret_cast<const __m128i*>(w));
    const __m256i sc16 = _mm256_sub_epi16(_mm256_cvtepu8_epi16(raw), _mm256_set1_epi16(32));
    alignas(32) int16_t sc[16];
    _mm256_store_si256(reinterpret_cast<__m256i*>(sc), sc16);
    scales_per16(sc, x.sv);
    x.mn = _mm256_slli_epi16(sc16, 2);
    x.d = x.dmin = h2f(b->d);
    return x;
  }
};

// q4_K / q5_K: 8 x (6-bit scale, 6-bit min) in 12 bytes (quant_impl.h get_scale_min_k4).
inline void scale_min_k4(const uint8_t* q, uint8_t* sc, uint8_t* mn) {
  const uint32_t a = load_u32(q), b = load_u32(q + 4), c = load_u32(q + 8);
  const uint32_t m6 = 0x3F3F3F3Fu, m4 = 0x0F0F0F0Fu, hi2 = 0x30303030u;
  const uint32_t s[2] = {a & m6, (c & m4) | ((a >> 2) & hi2)};
  const uint32_t m[2] = {b & m6, ((c >> 4) & m4) | ((b >> 2) & hi2)};
  std::memcpy(sc, s, 8);
  std::memcpy(mn, m, 8);
}

template <class WBlock, class Self>
struct K45 : KQuant<WBlock, Self> {
  static void scales(const WBlock* b, KDec& x) {
    alignas(8) uint8_t sc[8], mn[8];
    scale_min_k4(b->scales, sc, mn);
#pragma GCC unroll 8
    for (int j = 0; j < 8; ++j) x.sv[j] = _mm256_set1_epi16(sc[j]);
    __m128i m = _mm_cvtepu8_epi16(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(mn)));
    x.mn = _mm256_set_m128i(_mm_unpackhi_epi16(m, m), _mm_unpacklo_epi16(m, m));
    x.d = h2f(b->d);
    x.dmin = h2f(b->dmin);
  }
};

struct Q4_KT : K45<BlockQ4_K, Q4_KT> {
  static Dec decode(const uint8_t* p) {
    const auto* b = reinterpret_cast<const BlockQ4_K*>(p);
    Dec x;
    const __m256i m4 = _mm256_set1_epi8(0x0F);
#pragma GCC unroll 4
    for (int c = 0; c < 4; ++c) {
      const __m256i q = load256(b->qs + 32 * c);
      x.u[2 * c] = _mm256_and_si256(q, m4);
      x.u[2 * c + 1] = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
    }
    scales(b, x);
    return x;
  }
};

struct Q5_KT : K45<BlockQ5_K, Q5_KT> {
  static Dec decode(const uint8_t* p) {
    const auto* b = reinterpret_cast<const BlockQ5_K*>(p);
    Dec x;
    const __m256i m4 = _mm256_set1_epi8(0x0F), one = _mm256_set1_epi8(1);
    const __m256i qh = load256(b->qh);
#pragma GCC unroll 4
    for (int c = 0; c < 4; ++c) {
      const __m256i q = load256(b->qs + 32 * c);
      const __m256i h0 = _mm256_and_si256(_mm256_srli_epi16(qh, 2 * c), one);
      const __m256i h1 = _mm256_and_si256(_mm256_srli_epi16(qh, 2 * c + 1), one);
      x.u[2 * c] = _mm256_or_si256(_mm256_and_si256(q, m4), _mm256_slli_epi16(h0, 4));
      x.u[2 * c + 1] =
          _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q, 4), m4), _mm256_slli_epi16(h1, 4));
    }
    scales(b, x);
    return x;
  }
};

struct Q6_KT : KQuant<BlockQ6_K, Q6_KT> {
  static Dec decode(const uint8_t* p) {
    const auto* b = reinterpret_cast<const BlockQ6_K*>(p);
    Dec x;
    const __m256i m4 = _mm256_set1_epi8(0x0F), m3 = _mm256_set1_epi8(3);
#pragma GCC unroll 8
    for (int j = 0; j < 8; ++j) {
      const int half = j / 4, g = j % 4;
      const __m256i l = load256(b->ql + 64 * half + 32 * (g & 1));
      const __m256i lo = _mm256_and_si256(_mm256_srli_epi16(l, 4 * (g >> 1)), m4);
      const __m256i h = _mm256_and_si256(_mm256_srli_epi16(load256(b->qh + 32 * half), 2 * g), m3);
      x.u[j] = _mm256_or_si256(lo, _mm256_slli_epi16(h, 4));  // q + 32
    }
    const __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b->scales)));
    alignas(32) int16_t sc[16];
    _mm256_store_si256(reinterpret_cast<__m256i*>(sc), sc16);
    scales_per16(sc, x.sv);
    x.mn = _mm256_slli_epi16(sc16, 5);
    x.d = x.dmin = h2f(b->d);
    return x;
  }
};

// ---------------------------------------------------------------- float types
// A block is one vector of elements; rows whose length is not a multiple finish in scalar code.

#ifdef __AVX512F__
using FVec = __m512;
constexpr int kFW = 16;
inline FVec fzero() { return _mm512_setzero_ps(); }
inline FVec fload_f32(const uint8_t* p) { return _mm512_loadu_ps(reinterpret_cast<const float*>(p)); }
inline FVec fload_f16(const uint8_t* p) {
  return _mm512_maskz_cvtph_ps(0xFFFF, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}
inline FVec ffma(FVec a, FVec b, FVec c) { return _mm512_fmadd_ps(a, b, c); }
#else
using FVec = __m256;
constexpr int kFW = 8;
inline FVec fzero() { return _mm256_setzero_ps(); }
inline FVec fload_f32(const uint8_t* p) { return _mm256_loadu_ps(reinterpret_cast<const float*>(p)); }
inline FVec fload_f16(const uint8_t* p) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}
inline FVec ffma(FVec a, FVec b, FVec c) { return _mm256_fmadd_ps(a, b, c); }
#endif

struct F32T {
  using Acc = FVec;
  using Dec = FVec;
  static constexpr int kBlock = kFW;
  static constexpr size_t kWBytes = kFW * 4, kABytes = kFW * 4;
  static constexpr bool kTail = true;
  static Acc zero() { return fzero(); }
  static Dec decode(const uint8_t* p) { return fload_f32(p); }
  static void fma(const Dec& x, const uint8_t* ab, Acc& acc) { acc = ffma(x, fload_f32(ab), acc); }
  static float tail(int64_t n, const uint8_t* w, const uint8_t* a) {
    float s = 0.0f, x, y;
    for (int64_t i = 0; i < n; ++i) {
      std::memcpy(&x, w + 4 * i, 4);
      std::memcpy(&y, a + 4 * i, 4);
      s += x * y;
    }
    return s;
  }
};

struct F16T {
  using Acc = FVec;
  using Dec = FVec;
  static constexpr int kBlock = kFW;
  static constexpr size_t kWBytes = kFW * 2, kABytes = kFW * 2;
  static constexpr bool kTail = true;
  static Acc zero() { return fzero(); }
  static Dec decode(const uint8_t* p) { return fload_f16(p); }
  static void fma(const Dec& x, const uint8_t* ab, Acc& acc) { acc = ffma(x, fload_f16(ab), acc); }
  static float tail(int64_t n, const uint8_t* w, const uint8_t* a) {
    float s = 0.0f;
    uint16_t x, y;
    for (int64_t i = 0; i < n; ++i) {
      std::memcpy(&x, w + 2 * i, 2);
      std::memcpy(&y, a + 2 * i, 2);
      s += h2f(x) * h2f(y);
    }
    return s;
  }
};

#if defined(__AVX512BF16__)
// vdpbf16ps: pairs of bf16 products accumulated in fp32, 32 elements per instruction.
struct BF16T {
  using Acc = __m512;
  using Dec = __m512i;
  static constexpr int kBlock = 32;
  static constexpr size_t kWBytes = 64, kABytes = 64;
  static constexpr bool kTail = true;
  static Acc zero() { return _mm512_setzero_ps(); }
  static Dec decode(const uint8_t* p) { return _mm512_loadu_si512(p); }
  static void fma(const Dec& x, const uint8_t* ab, Acc& acc) {
    acc = _mm512_dpbf16_ps(acc, (__m512bh)x, (__m512bh)_mm512_loadu_si512(ab));
  }
#else
struct BF16T {
  using Acc = __m256;
  using Dec = __m256;
  static constexpr int kBlock = 8;
  static constexpr size_t kWBytes = 16, kABytes = 16;
  static constexpr bool kTail = true;
  static __m256 widen(const uint8_t* p) {
    const __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
  }
  static Acc zero() { return _mm256_setzero_ps(); }
  static Dec decode(const uint8_t* p) { return widen(p); }
  static void fma(const Dec& x, const uint8_t* ab, Acc& acc) { acc = _mm256_fmadd_ps(x, widen(ab), acc); }
#endif
  static float tail(int64_t n, const uint8_t* w, const uint8_t* a) {
    float s = 0.0f;
    uint16_t x, y;
    for (int64_t i = 0; i < n; ++i) {
      std::memcpy(&x, w + 2 * i, 2);
      std::memcpy(&y, a + 2 * i, 2);
      s += bf2f(x) * bf2f(y);
    }
    return s;
  }
};

}  // namespace
}  // namespace coppice::kernels
