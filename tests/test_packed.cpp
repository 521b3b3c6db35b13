// Packed weight layouts (kernels/packed.h): the packing against the file format's own dot, the
// SIMD kernels against their scalar twins, gemm tiles bit-identical to vec_dot, and matmul on
// packed views against matmul on the file's rows.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "kernels/blocks.h"
#include "kernels/dispatch.h"
#include "kernels/packed.h"
#include "ops/ops.h"
#include "util/threadpool.h"

using namespace coppice;
using kernels::Isa;

namespace {

std::vector<float> normal(int64_t n, std::mt19937& rng, float scale = 1.0f) {
  std::normal_distribution<float> nd(0.0f, scale);
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& x : v) x = nd(rng);
  return v;
}

std::vector<uint8_t> q4_0_rows(int64_t n, int64_t rows, std::mt19937& rng) {
  const TypeTraits& tt = *type_traits(DType::Q4_0);
  std::vector<uint8_t> b(row_size(tt, n) * static_cast<size_t>(rows));
  const auto f = normal(n * rows, rng);
  tt.from_float(f.data(), b.data(), n * rows);
  return b;
}

// sum over blocks of |dw| * |da| * sum|q - 8| |a|: every rounding step errs relative to it.
double magnitude(const std::vector<uint8_t>& w, const std::vector<uint8_t>& a8, int64_t n) {
  const TypeTraits& tt = *type_traits(DType::Q4_0);
  const TypeTraits& vt = *type_traits(DType::Q8_0);
  std::vector<float> wf(static_cast<size_t>(n)), af(static_cast<size_t>(n));
  tt.to_float(w.data(), wf.data(), n);
  vt.to_float(a8.data(), af.data(), n);
  double m = 0;
  for (int64_t i = 0; i < n; ++i) m += std::fabs(double(wf[i]) * af[i]);
  return m;
}

constexpr double kEps = 1.0 / (1 << 24);

TEST(Packed, Q4_0x128ScalarTwinEqualsTheFileFormatDot) {
  std::mt19937 rng(5);
  for (int64_t n : {128, 256, 128 * 7, 4096}) {
    const auto w = q4_0_rows(n, 1, rng);
    const auto x = normal(n, rng);
    std::vector<uint8_t> a8(row_size(*type_traits(DType::Q8_0), n));
    type_traits(DType::Q8_0)->from_float(x.data(), a8.data(), n);
    std::vector<uint8_t> pw(kernels::packed::q4_0x128_row_bytes(n)), pa(kernels::packed::q8x128_row_bytes(n));
    EXPECT_EQ(pw.size(), w.size()) << "packing keeps the size";
    kernels::packed::pack_q4_0x128(w.data(), pw.data(), n, 1);
    kernels::packed::quantize_q8x128_ref(x.data(), pa.data(), n);
    float ref = 0, got = 0;
    type_traits(DType::Q4_0)->vec_dot(n, &ref, w.data(), a8.data());
    kernels::packed::vec_dot_q4_0x128_ref(n, &got, pw.data(), pa.data());
    const double tol = 2.0 * (n / 32 + 16) * kEps * magnitude(w, a8, n);
    EXPECT_NEAR(got, ref, tol) << "n=" << n;
  }
}

class PackedIsa : public ::testing::TestWithParam<Isa> {};

TEST_P(PackedIsa, KernelsMatchTheScalarTwinsAndGemmEqualsVecDot) {
  const kernels::KernelSet* ks = kernels::kernels_for(GetParam());
  if (ks == nullptr) GTEST_SKIP() << kernels::isa_name(GetParam()) << " not on this CPU";
  const kernels::PackedKernels* pk = ks->packed[static_cast<uint32_t>(DType::Q4_0)];
  if (pk == nullptr) GTEST_SKIP() << kernels::isa_name(GetParam()) << " keeps q4_0 in place";
  std::mt19937 rng(11);
  const int64_t n = 128 * 5;
  const int max_r = 7, max_c = 9;
  const size_t ws = pk->row_bytes(n), as = pk->act_row_bytes(n);
  const auto wsrc = q4_0_rows(n, max_r, rng);
  std::vector<uint8_t> w(ws * max_r), a(as * max_c), a_ref(as * max_c);
  pk->pack_rows(wsrc.data(), w.data(), n, max_r);
  std::vector<std::vector<uint8_t>> a8(max_c);
  for (int c = 0; c < max_c; ++c) {
    auto x = normal(n, rng, c == 3 ? 1e-3f : 1.0f);
    if (c == 4) std::fill(x.begin(), x.begin() + 200, 0.0f);  // zero blocks: d = 0
    pk->quantize_act(x.data(), a.data() + c * as, n);
    kernels::packed::quantize_q8x128_ref(x.data(), a_ref.data() + c * as, n);
    a8[c].resize(row_size(*type_traits(DType::Q8_0), n));
    type_traits(DType::Q8_0)->from_float(x.data(), a8[c].data(), n);
  }
  EXPECT_EQ(a, a_ref) << "the activation quantizer is byte-identical to its twin";
  for (int r = 0; r < max_r; ++r) {
    const std::vector<uint8_t> wr(wsrc.begin() + r * (ws), wsrc.begin() + (r + 1) * ws);
    for (int c = 0; c < max_c; ++c) {
      float ref = 0, got = 0;
      kernels::packed::vec_dot_q4_0x128_ref(n, &ref, w.data() + r * ws, a.data() + c * as);
      pk->vec_dot(n, &got, w.data() + r * ws, a.data() + c * as);
      const double tol = 2.0 * (n / 32 + 16) * kEps * magnitude(wr, a8[c], n) + 1e-30;
      EXPECT_NEAR(got, ref, tol) << "row " << r << " token " << c;
    }
  }
  for (int nr = 1; nr <= max_r; ++nr) {
    for (int nc = 1; nc <= max_c; ++nc) {
      const size_t ys = static_cast<size_t>(nr) + 2;
      std::vector<float> y(ys * nc, -7.0f);
      pk->gemm(n, nr, nc, w.data(), ws, a.data(), as, y.data(), ys);
      for (int c = 0; c < nc; ++c) {
        for (int r = 0; r < nr; ++r) {
          float ref = 0;
          pk->vec_dot(n, &ref, w.data() + r * ws, a.data() + c * as);
          EXPECT_EQ(y[c * ys + r], ref) << "tile " << nr << "x" << nc << " at " << r << "," << c;
        }
        for (size_t r = nr; r < ys; ++r) EXPECT_EQ(y[c * ys + r], -7.0f) << "wrote outside the tile";
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(All, PackedIsa, ::testing::Values(Isa::Scalar, Isa::Avx2, Isa::Avx512),
                         [](const auto& p) { return std::string(kernels::isa_name(p.param)); });

// matmul over a packed view (the start-up ISA's layout, when it has one) against the file rows:
// close for every token, and a token's row is bit-identical alone or inside any batch.
TEST(Packed, MatmulOnPackedViewsMatchesTheFileRowsAndIsBatchInvariant) {
  const kernels::PackedKernels* pk = kernels::kernels().packed[static_cast<uint32_t>(DType::Q4_0)];
  if (pk == nullptr) GTEST_SKIP() << kernels::kernel_isa_name() << " keeps q4_0 in place";
  std::mt19937 rng(3);
  const int64_t n = 512, rows = 75;
  ThreadPool pool(2);
  std::vector<uint8_t> scratch;
  const auto wsrc = q4_0_rows(n, rows, rng);
  std::vector<uint8_t> wp(pk->row_bytes(n) * rows);
  pk->pack_rows(wsrc.data(), wp.data(), n, rows);
  const WeightView file{DType::Q4_0, wsrc.data(), n, rows, row_size(*type_traits(DType::Q4_0), n)};
  WeightView packed{DType::Q4_0, wp.data(), n, rows, pk->row_bytes(n)};
  packed.packed = pk;
  std::vector<float> wf(static_cast<size_t>(n * rows));
  type_traits(DType::Q4_0)->to_float(wsrc.data(), wf.data(), n * rows);
  for (int n_tok : {1, 5, 33}) {
    const auto x = normal(n * n_tok, rng);
    std::vector<float> y0(rows * n_tok), y1(rows * n_tok);
    ops::matmul(file, x.data(), n_tok, y0.data(), pool, scratch);
    ops::matmul(packed, x.data(), n_tok, y1.data(), pool, scratch);
    for (int t = 0; t < n_tok; ++t) {
      std::vector<float> solo(rows);
      ops::matmul(packed, x.data() + t * n, 1, solo.data(), pool, scratch);
      for (int64_t r = 0; r < rows; ++r) {
        EXPECT_EQ(solo[r], y1[t * rows + r]) << "token " << t << " row " << r << " batch " << n_tok;
        double mag = 0;  // both sides round the same exact block terms differently
        for (int64_t i = 0; i < n; ++i) mag += std::fabs(double(wf[r * n + i]) * x[t * n + i]);
        EXPECT_NEAR(y1[t * rows + r], y0[t * rows + r], 4.0 * (n / 32 + 16) * kEps * mag * 1.01);
      }
    }
  }
}

}  // namespace
