// AVX-512 2:4 kernels (layouts in sparse24.h; f16, bf16 and q8_0 values decode to 16 f32
// lanes, the rest is shared): per chunk of 32 inputs, the 16 kept positions
// become lane indices (srlv + and + group base) and one vpermt2ps gathers their activations
// from the two 16-float halves, then one FMA with the 16 values. The gemm tile decodes each
// row's chunk once and reuses it for every token of the tile. (maskz_ forms with a full mask:
// GCC 12's unmasked ones trip -Wmaybe-uninitialized.)
#include <immintrin.h>

#include <cstring>
#include <utility>

#include "kernels/sparse24.h"

namespace coppice::kernels::sparse24::avx512 {
namespace {

inline float hsum(__m512 v) {  // (not _mm512_reduce_add_ps: GCC 12 -Wuninitialized)
  alignas(64) float t[16];
  _mm512_store_ps(t, v);
  float s = 0;
  for (float x : t) s += x;
  return s;
}

struct Dec {
  __m512 v;
  __m512i idx;
};

inline __m512i lane_index(const uint8_t* p) {  // p: the chunk's u32 of positions
  uint32_t bits;
  std::memcpy(&bits, p, 4);
  const __m512i sh = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  const __m512i base = _mm512_setr_epi32(0, 0, 4, 4, 8, 8, 12, 12, 16, 16, 20, 20, 24, 24, 28, 28);
  const __m512i pos = _mm512_and_si512(_mm512_maskz_srlv_epi32(0xFFFF, _mm512_set1_epi32(static_cast<int>(bits)), sh),
                                       _mm512_set1_epi32(3));
  return _mm512_add_epi32(pos, base);
}

struct F16V {
  static constexpr size_t kBytes = kChunkBytes, kIdx = 32;
  static __m512 values(const uint8_t* p) {
    return _mm512_maskz_cvtph_ps(0xFFFF, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  }
};
struct BF16V {
  static constexpr size_t kBytes = kChunkBytes, kIdx = 32;
  static __m512 values(const uint8_t* p) {
    const __m512i w = _mm512_maskz_cvtepu16_epi32(0xFFFF, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
    return _mm512_castsi512_ps(_mm512_maskz_slli_epi32(0xFFFF, w, 16));
  }
};
// Q8_0: 16 int8 codes -> f32, times the chunk's f16 scale (one multiply per chunk and row).
struct Q8V {
  static constexpr size_t kBytes = kChunkBytesQ8, kIdx = 16;
  static __m512 values(const uint8_t* p) {
    const __m512i c = _mm512_maskz_cvtepi8_epi32(0xFFFF, _mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    uint16_t d;
    std::memcpy(&d, p + 20, 2);
    return _mm512_maskz_mul_ps(0xFFFF, _mm512_maskz_cvtepi32_ps(0xFFFF, c), _mm512_set1_ps(_cvtsh_ss(d)));
  }
};

template <class V, int R, int C>
void tile(int64_t n, const uint8_t* w, size_t ws, const uint8_t* a, size_t as, float* y, size_t ys) {
  __m512 acc[R][C];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 8
    for (int c = 0; c < C; ++c) acc[r][c] = _mm512_setzero_ps();
  }
  const int64_t nc = n / kChunk;
  for (int64_t i = 0; i < nc; ++i) {
    Dec d[R];
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const uint8_t* p = w + r * ws + i * V::kBytes;
      d[r] = {V::values(p), lane_index(p + V::kIdx)};
    }
#pragma GCC unroll 8
    for (int c = 0; c < C; ++c) {
      const float* x = reinterpret_cast<const float*>(a + c * as) + i * kChunk;
      const __m512 lo = _mm512_loadu_ps(x), hi = _mm512_loadu_ps(x + 16);
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r)
        acc[r][c] = _mm512_fmadd_ps(d[r].v, _mm512_permutex2var_ps(lo, d[r].idx, hi), acc[r][c]);
    }
  }
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) y[c * ys + r] = hsum(acc[r][c]);
}

// vec_dot is the 1 x 1 tile, so decode and prefill give bit-identical results.
template <class V>
void vec_dot(int64_t n, float* s, const void* w, const void* x) {
  tile<V, 1, 1>(n, static_cast<const uint8_t*>(w), 0, static_cast<const uint8_t*>(x), 0, s, 0);
}

using TileFn = void (*)(int64_t, const uint8_t*, size_t, const uint8_t*, size_t, float*, size_t);
constexpr int kR = 4, kC = 4;

template <class V>
struct Table {
  TileFn f[kR][kC];
  Table() {
    [&]<int... Rs>(std::integer_sequence<int, Rs...>) {
      (row<Rs + 1>(std::make_integer_sequence<int, kC>{}), ...);
    }(std::make_integer_sequence<int, kR>{});
  }
  template <int R, int... Cs>
  void row(std::integer_sequence<int, Cs...>) {
    ((f[R - 1][Cs] = &tile<V, R, Cs + 1>), ...);
  }
};

template <class V>
void gemm(int64_t n, int nr, int nc, const void* vw, size_t ws, const void* va, size_t as, float* y,
          size_t ys) {
  static const Table<V> table;
  const auto* w = static_cast<const uint8_t*>(vw);
  const auto* a = static_cast<const uint8_t*>(va);
  for (int r0 = 0; r0 < nr; r0 += kR) {
    const int rr = nr - r0 < kR ? nr - r0 : kR;
    for (int c0 = 0; c0 < nc; c0 += kC) {
      const int cc = nc - c0 < kC ? nc - c0 : kC;
      table.f[rr - 1][cc - 1](n, w + r0 * ws, ws, a + c0 * as, as, y + c0 * ys + r0, ys);
    }
  }
}

}  // namespace

const PackedKernels kF16{"f16_2of4", DType::F16, kChunk, row_bytes, pack_rows, act_row_bytes,
                         nullptr, vec_dot<F16V>, gemm<F16V>};
const PackedKernels kBF16{"bf16_2of4", DType::BF16, kChunk, row_bytes, pack_rows, act_row_bytes,
                          nullptr, vec_dot<BF16V>, gemm<BF16V>};
const PackedKernels kQ8{"q8_0_2of4", DType::Q8_0, kChunk, row_bytes_q8, pack_rows_q8, act_row_bytes,
                        nullptr, vec_dot<Q8V>, gemm<Q8V>};

}  // namespace coppice::kernels::sparse24::avx512
