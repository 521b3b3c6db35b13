// Generic vec_dot and gemm register tiles over the block types of simd_x86.h. Include ONLY from
// a per-ISA unit (anonymous namespace, see simd_x86.h).
#pragma once
#include <utility>

#include "kernels/dispatch.h"
#include "kernels/simd_x86.h"

namespace coppice::kernels {
namespace {  // NOLINT: per-ISA copies by design

// An R x C register tile: each decoded weight block is used for C tokens, each activation
// block for R rows.
template <class T, int R, int C>
void tile_t(int64_t n, const uint8_t* w, size_t ws, const uint8_t* a, size_t as, float* y,
            size_t ys) {
  const int64_t nb = n / T::kBlock;
  typename T::Acc acc[R][C];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 8
    for (int c = 0; c < C; ++c) acc[r][c] = T::zero();
  }
  for (int64_t i = 0; i < nb; ++i) {
    typename T::Dec d[R];
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) d[r] = T::decode(w + r * ws + i * T::kWBytes);
#pragma GCC unroll 8
    for (int c = 0; c < C; ++c) {
      const uint8_t* ab = a + c * as + i * T::kABytes;
#pragma GCC unroll 8
      for (int r = 0; r < R; ++r) T::fma(d[r], ab, acc[r][c]);
    }
  }
  for (int r = 0; r < R; ++r) {
    for (int c = 0; c < C; ++c) {
      float v = hsum(acc[r][c]);
      if constexpr (T::kTail) {
        v += T::tail(n - nb * T::kBlock, w + r * ws + nb * T::kWBytes, a + c * as + nb * T::kABytes);
      }
      y[c * ys + r] = v;
    }
  }
}

// vec_dot is the 1 x 1 tile: every (row, token) result is then bit-identical whichever path
// computed it (decode or prefill, any batch), so batching never changes a request's output.
template <class T>
void vec_dot_t(int64_t n, float* s, const void* x, const void* y) {
  tile_t<T, 1, 1>(n, static_cast<const uint8_t*>(x), 0, static_cast<const uint8_t*>(y), 0, s, 0);
}

using TileFn = void (*)(int64_t, const uint8_t*, size_t, const uint8_t*, size_t, float*, size_t);

template <class T, int R, int... Cs>
constexpr void fill_row(TileFn* row, std::integer_sequence<int, Cs...>) {
  ((row[Cs] = &tile_t<T, R, Cs + 1>), ...);
}

// Walks nr x nc in R x C tiles (smaller tiles at the edges); rows outer so a tile's weight
// rows stay in L1 while every token passes.
template <class T, int R, int C>
void gemm_t(int64_t n, int nr, int nc, const void* vw, size_t ws, const void* va, size_t as,
            float* y, size_t ys) {
  static const auto table = [] {
    struct Table { TileFn f[R][C]; } t{};
    [&]<int... Rs>(std::integer_sequence<int, Rs...>) {
      (fill_row<T, Rs + 1>(t.f[Rs], std::make_integer_sequence<int, C>{}), ...);
    }(std::make_integer_sequence<int, R>{});
    return t;
  }();
  const auto* w = static_cast<const uint8_t*>(vw);
  const auto* a = static_cast<const uint8_t*>(va);
  for (int r0 = 0; r0 < nr; r0 += R) {
    const int rr = nr - r0 < R ? nr - r0 : R;
    for (int c0 = 0; c0 < nc; c0 += C) {
      const int cc = nc - c0 < C ? nc - c0 : C;
      table.f[rr - 1][cc - 1](n, w + r0 * ws, ws, a + c0 * as, as, y + c0 * ys + r0, ys);
    }
  }
}

}  // namespace
}  // namespace coppice::kernels
