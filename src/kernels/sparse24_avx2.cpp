// AVX2 2:4 kernels (layouts in sparse24.h). AVX2 has no two-source permute, so each chunk is
// two halves: kept values 0-7 come from inputs 0-15, values 8-15 from inputs 16-31; a half
// gathers its 8 activations with one vpermps per 8-input block and a blend on bit 3 of each
// lane's input index. The gemm tile decodes a row's chunk once for all tokens of the tile.
#include <immintrin.h>

#include <cstring>
#include <utility>

#include "kernels/sparse24.h"

namespace coppice::kernels::sparse24::avx2 {
namespace {

inline float hsum(__m256 v) {
  alignas(32) float t[8];
  _mm256_store_ps(t, v);
  float s = 0;
  for (float x : t) s += x;
  return s;
}

// Input index (0..15 within the half) of each of the 8 kept values of one half.
inline __m256i half_index(uint32_t bits16) {
  const __m256i sh = _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14);
  const __m256i base = _mm256_setr_epi32(0, 0, 4, 4, 8, 8, 12, 12);
  const __m256i pos = _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32(static_cast<int>(bits16)), sh),
                                       _mm256_set1_epi32(3));
  return _mm256_add_epi32(pos, base);
}

// x: 16 activations; idx: lane -> input 0..15.
inline __m256 gather16(const float* x, __m256i idx) {
  const __m256 a = _mm256_permutevar8x32_ps(_mm256_loadu_ps(x), idx);
  const __m256 b = _mm256_permutevar8x32_ps(_mm256_loadu_ps(x + 8), idx);
  return _mm256_blendv_ps(a, b, _mm256_castsi256_ps(_mm256_slli_epi32(idx, 28)));
}

struct F16V {
  static constexpr size_t kBytes = kChunkBytes, kIdx = 32;
  static __m256 values(const uint8_t* p, int h) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 16 * h)));
  }
};
struct BF16V {
  static constexpr size_t kBytes = kChunkBytes, kIdx = 32;
  static __m256 values(const uint8_t* p, int h) {
    const __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 16 * h)));
    return _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
  }
};
struct Q8V {
  static constexpr size_t kBytes = kChunkBytesQ8, kIdx = 16;
  static __m256 values(const uint8_t* p, int h) {
    const __m256i c = _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p + 8 * h)));
    uint16_t d;
    std::memcpy(&d, p + 20, 2);
    return _mm256_mul_ps(_mm256_cvtepi32_ps(c), _mm256_set1_ps(_cvtsh_ss(d)));
  }
};

struct Dec {
  __m256 v[2];
  __m256i idx[2];
};

template <class V, int R, int C>
void tile(int64_t n, const uint8_t* w, size_t ws, const uint8_t* a, size_t as, float* y, size_t ys) {
  __m256 acc[R][C];
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) acc[r][c] = _mm256_setzero_ps();
  const int64_t nc = n / kChunk;
  for (int64_t i = 0; i < nc; ++i) {
    Dec d[R];
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) {
      const uint8_t* p = w + r * ws + i * V::kBytes;
      uint32_t bits;
      std::memcpy(&bits, p + V::kIdx, 4);
      d[r] = {{V::values(p, 0), V::values(p, 1)}, {half_index(bits & 0xFFFF), half_index(bits >> 16)}};
    }
#pragma GCC unroll 4
    for (int c = 0; c < C; ++c) {
      const float* x = reinterpret_cast<const float*>(a + c * as) + i * kChunk;
#pragma GCC unroll 4
      for (int r = 0; r < R; ++r) {
        acc[r][c] = _mm256_fmadd_ps(d[r].v[0], gather16(x, d[r].idx[0]), acc[r][c]);
        acc[r][c] = _mm256_fmadd_ps(d[r].v[1], gather16(x + 16, d[r].idx[1]), acc[r][c]);
      }
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
constexpr int kR = 2, kC = 4;  // 8 accumulators + 2 decoded rows: within 16 ymm registers

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

}  // namespace coppice::kernels::sparse24::avx2
