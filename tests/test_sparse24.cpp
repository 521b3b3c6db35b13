// 2:4 sparse kernels: the packed layout round-trips, every ISA's vec_dot and gemm match a
// double-precision dense dot on the same pruned weights, gemm equals vec_dot bit for bit,
// ops::matmul on packed rows matches the dense F16 matmul, and a 2:4-pruned model is repacked
// at load with the same logits as without repacking. The same for Q8_0 values (codes 2:4).
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "engine/prune.h"
#include "engine/synth.h"
#include "kernels/sparse24.h"
#include "model/model.h"
#include "ops/ops.h"
#include "test_util.h"
#include "kernels/blocks.h"
#include "kernels/types.h"
#include "util/fp16.h"

using namespace coppice;
namespace sp = coppice::kernels::sparse24;

namespace {

// rows x n 16-bit values (f16 or bf16) with every group of 4 holding 0, 1 or 2 non-zeros at
// random positions; also returns the f32 values.
std::vector<uint16_t> random_2of4(int64_t rows, int64_t n, bool bf, uint32_t seed, std::vector<float>& f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::vector<uint16_t> h(static_cast<size_t>(rows * n), 0);
  f.assign(h.size(), 0.0f);
  for (int64_t g = 0; g < rows * n; g += 4) {
    const int k = static_cast<int>(rng() % 8) == 0 ? static_cast<int>(rng() % 2) : 2;  // some 0/1
    int p0 = static_cast<int>(rng() % 4), p1 = static_cast<int>(rng() % 3);
    if (p1 >= p0) ++p1;
    for (int i = 0; i < k; ++i) {
      const int64_t at = g + (i == 0 ? p0 : p1);
      const float v = d(rng);
      h[at] = bf ? fp32_to_bf16(v) : fp32_to_fp16(v);
      f[at] = bf ? bf16_to_fp32(h[at]) : fp16_to_fp32(h[at]);
    }
  }
  return h;
}

std::vector<float> random_vec(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = d(rng);
  return v;
}

double norm(const float* x, int64_t n) {
  double s = 0;
  for (int64_t i = 0; i < n; ++i) s += double(x[i]) * x[i];
  return std::sqrt(s);
}

}  // namespace

TEST(Sparse24, DetectsThePattern) {
  std::vector<uint16_t> h = {0, 0x3C00, 0, 0x8000, 0x3C00, 0x3C00, 0, 0};  // -0 counts as zero
  EXPECT_TRUE(sp::is_2of4(h.data(), 8, 1));
  h[2] = 0x3C00;  // still 2: the other is -0
  EXPECT_TRUE(sp::is_2of4(h.data(), 8, 1));
  h[0] = 0xBC00;
  EXPECT_FALSE(sp::is_2of4(h.data(), 8, 1));
}

TEST(Sparse24, EveryIsaMatchesTheDenseDot) {
  const int64_t rows = 13, n = 4096 + 64, T = 7;  // odd rows / tokens: every tile edge
  for (bool bf : {false, true}) {
    std::vector<float> wf;
    const std::vector<uint16_t> h = random_2of4(rows, n, bf, bf ? 11 : 12, wf);
    ASSERT_TRUE(sp::is_2of4(h.data(), n, rows));
    std::vector<float> x(static_cast<size_t>(T * n));
    for (int64_t t = 0; t < T; ++t) {
      const std::vector<float> v = random_vec(n, static_cast<uint32_t>(100 + t));
      std::copy(v.begin(), v.end(), x.begin() + t * n);
    }
    std::vector<uint8_t> packed(sp::row_bytes(n) * rows);
    sp::pack_rows(h.data(), packed.data(), n, rows);
    for (kernels::Isa isa : {kernels::Isa::Scalar, kernels::Isa::Avx2, kernels::Isa::Avx512}) {
      const kernels::PackedKernels* pk = sp::kernels_for(isa, bf ? DType::BF16 : DType::F16);
      if (pk == nullptr) continue;
      SCOPED_TRACE(std::string(kernels::isa_name(isa)) + (bf ? " bf16" : " f16"));
      std::vector<float> y(static_cast<size_t>(T * rows));
      pk->gemm(n, static_cast<int>(rows), static_cast<int>(T), packed.data(), sp::row_bytes(n), x.data(),
               n * sizeof(float), y.data(), rows);
      for (int64_t r = 0; r < rows; ++r) {
        for (int64_t t = 0; t < T; ++t) {
          double ref = 0;
          for (int64_t j = 0; j < n; ++j) ref += double(wf[r * n + j]) * x[t * n + j];
          // f32 accumulation of n/2 products: error <= ~n/2 * eps * ||w|| ||x||
          const double tol = 0.5 * n * 1.2e-7 * norm(&wf[r * n], n) * norm(&x[t * n], n);
          ASSERT_NEAR(y[t * rows + r], ref, tol) << "row " << r << " token " << t;
          float s = 0;
          pk->vec_dot(n, &s, packed.data() + r * sp::row_bytes(n), x.data() + t * n);
          ASSERT_EQ(s, y[t * rows + r]) << "gemm != vec_dot at row " << r << " token " << t;
        }
      }
    }
  }
}

namespace {

// rows x n weights, 2:4 (some groups with 0 or 1 non-zeros), quantized to q8_0 rows; `f` gets
// the dequantized values (the pruned weights the kernels must reproduce).
std::vector<uint8_t> random_2of4_q8(int64_t rows, int64_t n, uint32_t seed, std::vector<float>& f) {
  std::vector<float> src;
  const std::vector<uint16_t> h = random_2of4(rows, n, false, seed, src);
  const TypeTraits& tt = *type_traits(DType::Q8_0);
  std::vector<uint8_t> q(row_size(tt, n) * static_cast<size_t>(rows));
  tt.from_float(src.data(), q.data(), rows * n);
  f.resize(src.size());
  tt.to_float(q.data(), f.data(), rows * n);
  return q;
}

}  // namespace

TEST(Sparse24, Q8DetectsThePatternOnCodes) {
  std::vector<float> w(64, 0.0f);
  w[0] = 1; w[3] = -2; w[5] = 0.5f; w[6] = 0.25f; w[40] = 3;  // groups: {0,3}, {5,6}, {40}
  const TypeTraits& tt = *type_traits(DType::Q8_0);
  std::vector<uint8_t> q(row_size(tt, 64));
  tt.from_float(w.data(), q.data(), 64);
  EXPECT_TRUE(sp::row_is_2of4(DType::Q8_0, q.data(), 64));
  w[1] = 1;  // group 0 now has 3
  tt.from_float(w.data(), q.data(), 64);
  EXPECT_FALSE(sp::row_is_2of4(DType::Q8_0, q.data(), 64));
  w[1] = 0; w[41] = 1e-5f;  // rounds to code 0 (|w| < d / 2): still 2:4
  tt.from_float(w.data(), q.data(), 64);
  EXPECT_TRUE(sp::row_is_2of4(DType::Q8_0, q.data(), 64));
  EXPECT_FALSE(sp::row_is_2of4(DType::Q4_0, q.data(), 64));
}

TEST(Sparse24, Q8EveryIsaMatchesTheDenseDot) {
  const int64_t rows = 11, n = 2048 + 96, T = 6;
  std::vector<float> wf;
  const std::vector<uint8_t> q = random_2of4_q8(rows, n, 21, wf);
  const size_t qrow = row_size(*type_traits(DType::Q8_0), n);
  for (int64_t r = 0; r < rows; ++r) ASSERT_TRUE(sp::row_is_2of4(DType::Q8_0, q.data() + r * qrow, n));
  std::vector<float> x(static_cast<size_t>(T * n));
  for (int64_t t = 0; t < T; ++t) {
    const std::vector<float> v = random_vec(n, static_cast<uint32_t>(300 + t));
    std::copy(v.begin(), v.end(), x.begin() + t * n);
  }
  const size_t rb = sp::row_bytes_q8(n);
  EXPECT_EQ(rb * 34, qrow * 22);  // 22 bytes per 32 inputs instead of 34
  std::vector<uint8_t> packed(rb * rows);
  sp::pack_rows_q8(q.data(), packed.data(), n, rows);
  int n_isa = 0;
  for (kernels::Isa isa : {kernels::Isa::Scalar, kernels::Isa::Avx2, kernels::Isa::Avx512}) {
    const kernels::PackedKernels* pk = sp::kernels_for(isa, DType::Q8_0);
    if (pk == nullptr) continue;
    ++n_isa;
    SCOPED_TRACE(kernels::isa_name(isa));
    EXPECT_EQ(pk->row_bytes(n), rb);
    std::vector<float> y(static_cast<size_t>(T * rows));
    pk->gemm(n, static_cast<int>(rows), static_cast<int>(T), packed.data(), rb, x.data(), n * sizeof(float), y.data(), rows);
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t t = 0; t < T; ++t) {
        double ref = 0;
        for (int64_t j = 0; j < n; ++j) ref += double(wf[r * n + j]) * x[t * n + j];
        // f32 products d * code * x and their f32 sum: <= ~n/2 * eps * ||w|| ||x||
        const double tol = 0.5 * n * 1.2e-7 * norm(&wf[r * n], n) * norm(&x[t * n], n);
        ASSERT_NEAR(y[t * rows + r], ref, tol) << "row " << r << " token " << t;
        float s = 0;
        pk->vec_dot(n, &s, packed.data() + r * rb, x.data() + t * n);
        ASSERT_EQ(s, y[t * rows + r]) << "gemm != vec_dot at row " << r << " token " << t;
        float s_ref = 0;
        sp::vec_dot_q8_ref(n, &s_ref, packed.data() + r * rb, x.data() + t * n);
        ASSERT_NEAR(s, s_ref, tol) << "SIMD vs scalar twin, row " << r << " token " << t;
      }
    }
  }
  EXPECT_GE(n_isa, 1);
}

TEST(Sparse24, PackedMatmulMatchesDenseF16Matmul) {
  const int64_t rows = 96, n = 256;
  std::vector<float> wf;
  const std::vector<uint16_t> h = random_2of4(rows, n, false, 5, wf);
  std::vector<uint8_t> packed(sp::row_bytes(n) * rows);
  sp::pack_rows(h.data(), packed.data(), n, rows);
  WeightView dense{DType::F16, h.data(), n, rows, n * 2, nullptr};
  const kernels::PackedKernels* pk = sp::best(DType::F16);
  if (pk == nullptr) pk = sp::kernels_for(kernels::Isa::Scalar, DType::F16);
  WeightView sparse{DType::F16, packed.data(), n, rows, sp::row_bytes(n), pk};
  ThreadPool pool(2);
  std::vector<uint8_t> scratch;
  for (int T : {1, 9}) {
    std::vector<float> x(static_cast<size_t>(T * n));
    for (int t = 0; t < T; ++t) {
      const auto v = random_vec(n, static_cast<uint32_t>(7 + t));
      std::copy(v.begin(), v.end(), x.begin() + t * n);
    }
    std::vector<float> yd(static_cast<size_t>(T * rows)), ys(yd.size());
    ops::matmul(dense, x.data(), T, yd.data(), pool, scratch);
    ops::matmul(sparse, x.data(), T, ys.data(), pool, scratch);
    for (int t = 0; t < T; ++t)
      for (int64_t r = 0; r < rows; ++r) {
        // the dense F16 path rounds activations to f16 (relative 2^-11 each)
        const double tol = 2 * 4.9e-4 * norm(&wf[r * n], n) * norm(&x[t * n], n);
        ASSERT_NEAR(ys[t * rows + r], yd[t * rows + r], tol) << "T " << T << " row " << r;
      }
  }
}

TEST(Sparse24, PrunedModelIsRepackedWithTheSameLogits) {
 for (const char* type : {"f16", "q8_0"}) {
  SCOPED_TRACE(type);
  const DType dt = std::string(type) == "f16" ? DType::F16 : DType::Q8_0;
  SynthOptions so;
  so.dim = 128; so.layers = 2; so.heads = 4; so.kv_heads = 2; so.ffn = 256; so.vocab = 300;
  so.ctx = 128; so.type = type; so.pure = true; so.n_threads = 1;
  const std::string base = testutil::temp_path(std::string("s24-base-") + type + ".gguf");
  const std::string pruned = testutil::temp_path(std::string("s24-nm-") + type + ".gguf");
  synth_model(base, so);
  PruneOptions po;
  po.method = PruneMethod::NM;
  po.nm_magnitude = true;
  prune_file(base, pruned, po);
  auto logits_of = [&](bool sparse, int* n_packed) {
    setenv("COPPICE_SPARSE", sparse ? "1" : "0", 1);
    setenv("COPPICE_PACK", "0", 1);  // dense matrices in the file's rows: n_packed counts 2:4 only
    std::unique_ptr<Model> m = Model::load(pruned);
    unsetenv("COPPICE_SPARSE");
    unsetenv("COPPICE_PACK");
    *n_packed = m->packed().n_packed;
    KvCache cache = m->make_cache(32);
    cache.add_sequence(0);
    std::vector<BatchToken> batch;
    for (int i = 0; i < 6; ++i) batch.push_back({static_cast<int32_t>(3 + 11 * i), i, 0, true});
    std::vector<float> logits, step1;
    m->step(batch, cache, logits);  // prefill (gemm)
    const BatchToken next{42, 6, 0, true};
    m->step(std::span<const BatchToken>(&next, 1), cache, step1);  // decode (vec_dot)
    logits.insert(logits.end(), step1.begin(), step1.end());
    return logits;
  };
  int np_dense = 0, np_sparse = 0;
  const std::vector<float> a = logits_of(false, &np_dense), b = logits_of(true, &np_sparse);
  // every layer matrix, not token_embd / output; none where the ISA has no 2:4 kernel
  EXPECT_EQ(np_sparse - np_dense, sp::best(dt) != nullptr ? 2 * 7 : 0);
  ASSERT_EQ(a.size(), b.size());
  double d = 0, s = 0;
  for (size_t i = 0; i < a.size(); ++i) { d += double(a[i] - b[i]) * (a[i] - b[i]); s += double(a[i]) * a[i]; }
  // The dense paths round activations (f16: 2^-11 relative; q8_0: up to 1/254 of a block's
  // max), the 2:4 kernels keep them f32.
  EXPECT_LT(std::sqrt(d / s), dt == DType::F16 ? 2e-3 : 1e-2);
 }
}
