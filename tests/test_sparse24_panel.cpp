// The Q8_0 2:4 panel layout q8_0x16s (kernels/sparse24.h): its scalar twin gives bit for bit
// what the dense q8_0x16 panel twin gives on the same pruned matrix and is close to a double
// computation of the q8_0 math; the AVX-512 (VNNI + VBMI) kernels equal the twin for every tile
// shape; ops::matmul on a 2:4 panel view equals the dense panel view; and a 2:4-pruned q8_0 model
// loads with these panels and the same logits as the dense panels.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <random>

#include "engine/prune.h"
#include "engine/synth.h"
#include "kernels/blocks.h"
#include "kernels/dispatch.h"
#include "kernels/sparse24.h"
#include "model/model.h"
#include "ops/ops.h"
#include "test_util.h"
#include "util/fp16.h"
#include "util/threadpool.h"

using namespace coppice;
namespace sp = coppice::kernels::sparse24;
namespace pk = coppice::kernels::packed;

namespace {

// rows x n q8_0 rows whose codes are 2:4: every group of 4 keeps 0, 1 or 2 codes at random
// positions (the pruned ones exactly 0), random codes and scales.
std::vector<uint8_t> random_q8_2of4(int64_t rows, int64_t n, std::mt19937& rng) {
  std::vector<BlockQ8_0> b(static_cast<size_t>(rows * n / 32));
  std::uniform_int_distribution<int> code(-127, 127), keep(0, 2), pos(0, 3);
  std::uniform_real_distribution<float> scale(0.001f, 0.05f);
  for (BlockQ8_0& blk : b) {
    blk.d = fp32_to_fp16(scale(rng));
    for (int g = 0; g < 32; g += 4) {
      for (int j = 0; j < 4; ++j) blk.qs[g + j] = 0;
      for (int k = keep(rng); k > 0; --k) blk.qs[g + pos(rng)] = static_cast<int8_t>(code(rng));
    }
  }
  std::vector<uint8_t> out(b.size() * sizeof(BlockQ8_0));
  std::memcpy(out.data(), b.data(), out.size());
  return out;
}

std::vector<uint8_t> q8s_activations(int64_t n, int nc, std::mt19937& rng, std::vector<float>* f = nullptr) {
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(n * nc));
  for (float& v : x) v = d(rng);
  std::vector<uint8_t> a(pk::q8s_row_bytes(n) * static_cast<size_t>(nc));
  for (int c = 0; c < nc; ++c) pk::quantize_q8s_ref(x.data() + c * n, a.data() + c * pk::q8s_row_bytes(n), n);
  if (f != nullptr) *f = x;
  return a;
}

std::vector<uint8_t> pack(void (*fn)(const void*, void*, int64_t, int64_t), size_t row_bytes,
                          const std::vector<uint8_t>& q, int64_t n, int64_t rows) {
  std::vector<uint8_t> w(row_bytes * static_cast<size_t>(rows));
  fn(q.data(), w.data(), n, rows);
  return w;
}

}  // namespace

TEST(Sparse24Panel, TwinEqualsTheDensePanelTwinAndTheQ8Math) {
  std::mt19937 rng(11);
  const int64_t n = 32 * 7, rows = 32;
  const int nc = 5;
  const auto q = random_q8_2of4(rows, n, rng);
  for (int64_t r = 0; r < rows; ++r) ASSERT_TRUE(sp::row_is_2of4(DType::Q8_0, q.data() + r * (n / 32) * 34, n));
  const auto ws = pack(sp::pack_q8_0x16s, sp::q8_0x16s_row_bytes(n), q, n, rows);
  const auto wd = pack(pk::pack_q8_0x16, pk::q8_0x16_row_bytes(n), q, n, rows);
  EXPECT_EQ(ws.size() * 544, wd.size() * 384);  // 384 bytes per panel block instead of 544
  const auto a = q8s_activations(n, nc, rng);
  const size_t as = pk::q8s_row_bytes(n);
  std::vector<float> ys(rows * nc), yd(rows * nc);
  sp::gemm_q8_0x16s_ref(n, rows, nc, ws.data(), sp::q8_0x16s_row_bytes(n), a.data(), as, ys.data(), rows);
  pk::gemm_q8_0x16_ref(n, rows, nc, wd.data(), pk::q8_0x16_row_bytes(n), a.data(), as, yd.data(), rows);
  for (size_t i = 0; i < ys.size(); ++i) ASSERT_EQ(ys[i], yd[i]) << "element " << i;
  // Independently: sum over blocks of d_w * d_a * sum(code_w * code_a), in double.
  const auto* b = reinterpret_cast<const BlockQ8_0*>(q.data());
  for (int c = 0; c < nc; ++c) {
    for (int64_t r = 0; r < rows; ++r) {
      double ref = 0, mag = 0;
      for (int64_t i = 0; i < n / 32; ++i) {
        const uint8_t* qa = a.data() + c * as + i * pk::kQ8sBlockBytes;
        float da;
        std::memcpy(&da, qa + 32, 4);
        const BlockQ8_0& w = b[r * (n / 32) + i];
        long isum = 0, amag = 0;
        for (int j = 0; j < 32; ++j) {
          isum += long(w.qs[j]) * static_cast<int8_t>(qa[j]);
          amag += std::labs(long(w.qs[j]) * static_cast<int8_t>(qa[j]));
        }
        ref += double(fp16_to_fp32(w.d)) * da * double(isum);
        mag += double(fp16_to_fp32(w.d)) * da * double(amag);
      }
      EXPECT_NEAR(ys[c * rows + r], ref, 1e-6 * mag + 1e-30) << "row " << r << " token " << c;
    }
  }
}

TEST(Sparse24Panel, SimdEqualsTheTwinForEveryTileShape) {
  const kernels::PackedKernels* simd = sp::q8_panel_for(kernels::Isa::Avx512);
  if (simd == nullptr) GTEST_SKIP() << "no AVX-512 VNNI + VBMI on this CPU";
  const kernels::PackedKernels* twin = sp::q8_panel_for(kernels::Isa::Scalar);
  ASSERT_NE(twin, nullptr);
  std::mt19937 rng(12);
  for (int64_t n : {32, 96, 32 * 33}) {
    const int64_t rows = 48;
    const auto q = random_q8_2of4(rows, n, rng);
    const size_t wr = sp::q8_0x16s_row_bytes(n);
    const auto w = pack(sp::pack_q8_0x16s, wr, q, n, rows);
    for (int nc : {1, 2, 3, 7, 8, 9, 17}) {
      const auto a = q8s_activations(n, nc, rng);
      const size_t as = pk::q8s_row_bytes(n), ys = rows + 3;  // a stride wider than the rows
      std::vector<float> y1(ys * nc, -7.0f), y2(ys * nc, -7.0f);
      simd->gemm(n, rows, nc, w.data(), wr, a.data(), as, y1.data(), ys);
      twin->gemm(n, rows, nc, w.data(), wr, a.data(), as, y2.data(), ys);
      for (size_t i = 0; i < y1.size(); ++i) ASSERT_EQ(y1[i], y2[i]) << "n " << n << " nc " << nc << " at " << i;
      // a token's column alone (decode) equals its column in the batch
      std::vector<float> one(rows);
      simd->gemm(n, rows, 1, w.data(), wr, a.data() + (nc - 1) * as, as, one.data(), rows);
      for (int64_t r = 0; r < rows; ++r) ASSERT_EQ(one[r], y1[(nc - 1) * ys + r]);
    }
  }
}

TEST(Sparse24Panel, MatmulOnThePanelViewEqualsTheDensePanels) {
  const kernels::PackedKernels* sparse = sp::q8_panel_for(kernels::kernels().isa);
  const kernels::PackedKernels* dense = kernels::kernels().packed[static_cast<uint32_t>(DType::Q8_0)];
  if (sparse == nullptr || dense == nullptr) GTEST_SKIP() << "no q8_0 panel layouts on this ISA";
  std::mt19937 rng(13);
  const int64_t n = 256, rows = 64;
  const auto q = random_q8_2of4(rows, n, rng);
  const auto ws = pack(sparse->pack_rows, sparse->row_bytes(n), q, n, rows);
  const auto wd = pack(dense->pack_rows, dense->row_bytes(n), q, n, rows);
  WeightView vs{DType::Q8_0, ws.data(), n, rows, sparse->row_bytes(n)}, vd{DType::Q8_0, wd.data(), n, rows, dense->row_bytes(n)};
  vs.packed = sparse;
  vd.packed = dense;
  ThreadPool pool(2);
  std::vector<uint8_t> scratch;
  std::normal_distribution<float> d(0.0f, 1.0f);
  for (int T : {1, 19}) {
    std::vector<float> x(static_cast<size_t>(n * T));
    for (float& v : x) v = d(rng);
    std::vector<float> y1(rows * T), y2(rows * T);
    ops::matmul(vs, x.data(), T, y1.data(), pool, scratch);
    ops::matmul(vd, x.data(), T, y2.data(), pool, scratch);
    for (size_t i = 0; i < y1.size(); ++i) ASSERT_EQ(y1[i], y2[i]) << "T " << T << " at " << i;
  }
}

TEST(Sparse24Panel, PrunedQ8ModelLoadsThePanelsWithTheDensePanelLogits) {
  if (sp::best(DType::Q8_0) == nullptr || sp::best(DType::Q8_0)->row_panel == 1)
    GTEST_SKIP() << "no q8_0 2:4 panel kernels on this CPU";
  SynthOptions so;
  so.dim = 128; so.layers = 2; so.heads = 4; so.kv_heads = 2; so.ffn = 256; so.vocab = 300;
  so.ctx = 128; so.type = "q8_0"; so.pure = true; so.n_threads = 1;
  const std::string base = testutil::temp_path("s24p-base.gguf"), pruned = testutil::temp_path("s24p-nm.gguf");
  synth_model(base, so);
  PruneOptions po;
  po.method = PruneMethod::NM;
  po.nm_magnitude = true;
  prune_file(base, pruned, po);
  auto logits_of = [&](bool sparse, std::vector<std::string>* layouts) {
    setenv("COPPICE_SPARSE", sparse ? "1" : "0", 1);
    std::unique_ptr<Model> m = Model::load(pruned);
    unsetenv("COPPICE_SPARSE");
    for (const LayerWeights& l : m->weights().layers)
      for (const WeightView* v : {&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down})
        layouts->push_back(v->packed != nullptr ? v->packed->name : "rows");
    KvCache cache = m->make_cache(32);
    cache.add_sequence(0);
    std::vector<BatchToken> batch;
    for (int i = 0; i < 6; ++i) batch.push_back({static_cast<int32_t>(3 + 11 * i), i, 0, true});
    std::vector<float> logits, step1;
    m->step(batch, cache, logits);  // prefill
    const BatchToken next{42, 6, 0, true};
    m->step(std::span<const BatchToken>(&next, 1), cache, step1);  // decode
    logits.insert(logits.end(), step1.begin(), step1.end());
    return logits;
  };
  std::vector<std::string> ld, ls;
  const std::vector<float> a = logits_of(false, &ld), b = logits_of(true, &ls);
  for (const std::string& s : ld) EXPECT_EQ(s, "q8_0x16");
  for (const std::string& s : ls) EXPECT_EQ(s, "q8_0x16s");
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) ASSERT_EQ(a[i], b[i]) << "logit " << i;
}
