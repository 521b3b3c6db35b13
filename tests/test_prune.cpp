// coppice prune: masks obey their rules exactly (per-row sparsity, N:M, Wanda ordering on
// hand-built matrices), activation norms match a direct computation, pruned GGUFs pass the
// strict loader and run, and 2:4 pruned F16 models are repacked at load to the same logits.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <cmath>
#include <random>

#include "engine/prune.h"
#include "engine/prune_eval.h"
#include "engine/prune_mask.h"
#include "engine/synth.h"
#include "tokenizer/tokenizer.h"
#include "test_util.h"
#include "util/error.h"

using namespace coppice;
using testutil::temp_path;

namespace {

std::vector<float> random_matrix(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::vector<float> w(static_cast<size_t>(n));
  for (float& v : w) v = d(rng);
  return w;
}

std::vector<float> dequant(const gguf::TensorInfo& t) {
  std::vector<float> out(static_cast<size_t>(t.n_elements()));
  type_traits(t.type)->to_float(t.data, out.data(), t.n_elements());
  return out;
}

SynthOptions tiny(const std::string& type) {
  SynthOptions o;
  o.dim = 64; o.layers = 2; o.heads = 4; o.kv_heads = 2; o.ffn = 128; o.vocab = 300; o.ctx = 256;
  o.type = type; o.pure = true; o.n_threads = 1;
  return o;
}

}  // namespace

TEST(PruneMask, RowSparsityIsExactAndDropsTheSmallest) {
  const int64_t rows = 7, n = 40;
  const std::vector<float> w = random_matrix(rows * n, 1);
  for (double sp : {0.0, 0.1, 0.33, 0.5, 0.9, 1.0}) {
    const std::vector<float> s = prune::scores(w, rows, n, {});
    const std::vector<uint8_t> keep = prune::row_mask(s, rows, n, sp);
    const int64_t want = static_cast<int64_t>(std::llround(sp * n));
    for (int64_t r = 0; r < rows; ++r) {
      int64_t pruned = 0;
      float max_pruned = 0, min_kept = INFINITY;
      for (int64_t j = 0; j < n; ++j) {
        const float a = std::fabs(w[r * n + j]);
        if (keep[r * n + j]) min_kept = std::min(min_kept, a);
        else { ++pruned; max_pruned = std::max(max_pruned, a); }
      }
      EXPECT_EQ(pruned, want) << "sparsity " << sp << " row " << r;
      if (pruned > 0 && pruned < n) { EXPECT_LE(max_pruned, min_kept); }
    }
  }
}

TEST(PruneMask, WandaOrderingOnAHandBuiltMatrix) {
  // Row 0: |W| = 1 2 3 4 with input norms 10 1 1 0.1 -> scores 10 2 3 0.4: Wanda drops inputs
  // 3 and 1, magnitude would drop 0 and 1. Row 1: equal weights, the norms alone decide.
  const std::vector<float> w = {1, -2, 3, -4, 5, 5, 5, 5};
  const std::vector<float> norms = {10, 1, 1, 0.1f};
  const std::vector<float> s = prune::scores(w, 2, 4, norms);
  EXPECT_EQ(s, (std::vector<float>{10, 2, 3, 0.4f, 50, 5, 5, 0.5f}));
  EXPECT_EQ(prune::row_mask(s, 2, 4, 0.5), (std::vector<uint8_t>{1, 0, 1, 0, 1, 0, 1, 0}));
  // ties (inputs 1, 2 of row 1) drop the lower index first
  EXPECT_EQ(prune::row_mask(prune::scores(w, 2, 4, {}), 2, 4, 0.5),
            (std::vector<uint8_t>{0, 0, 1, 1, 0, 0, 1, 1}));
  // 2:4 on the same scores: the same choice per group of 4 (same tie rule)
  EXPECT_EQ(prune::nm_mask(s, 2, 4, 2, 4), (std::vector<uint8_t>{1, 0, 1, 0, 1, 0, 1, 0}));
}

TEST(PruneMask, NmPatternKeepsExactlyNOfEveryM) {
  const int64_t rows = 5, n = 64;
  const std::vector<float> w = random_matrix(rows * n, 2);
  const std::vector<float> norms = [] { auto v = random_matrix(64, 3); for (float& x : v) x = std::fabs(x); return v; }();
  const std::vector<float> s = prune::scores(w, rows, n, norms);
  for (auto [N, M] : {std::pair{2, 4}, std::pair{1, 4}, std::pair{3, 8}, std::pair{4, 4}}) {
    const std::vector<uint8_t> keep = prune::nm_mask(s, rows, n, N, M);
    for (int64_t g = 0; g < rows * n; g += M) {
      int kept = 0;
      float min_kept = INFINITY, max_pruned = 0;
      for (int i = 0; i < M; ++i) {
        const float sc = std::fabs(w[g + i]) * norms[(g + i) % n];
        if (keep[g + i]) { ++kept; min_kept = std::min(min_kept, sc); }
        else max_pruned = std::max(max_pruned, sc);
      }
      ASSERT_EQ(kept, N) << N << ":" << M << " group " << g / M;
      if (N < M) { EXPECT_LE(max_pruned, min_kept); }
    }
  }
}

TEST(PruneMask, ApplyZeroesOnlyMaskedWeights) {
  std::vector<float> w = {1, 2, 3, 4};
  prune::apply_mask(w, std::vector<uint8_t>{1, 0, 0, 1});
  EXPECT_EQ(w, (std::vector<float>{1, 0, 0, 4}));
}

TEST(Prune, TensorNames) {
  int il = -1;
  MatInput s{};
  EXPECT_TRUE(prunable_tensor("blk.12.ffn_down.weight", &il, &s));
  EXPECT_EQ(il, 12);
  EXPECT_EQ(s, MatInput::FfnDown);
  EXPECT_TRUE(prunable_tensor("blk.0.attn_output.weight", &il, &s));
  EXPECT_EQ(s, MatInput::AttnOut);
  EXPECT_TRUE(prunable_tensor("blk.3.attn_k.weight", &il, &s));
  EXPECT_EQ(s, MatInput::AttnIn);
  for (const char* n : {"token_embd.weight", "output.weight", "blk.0.attn_norm.weight",
                        "blk.0.ffn_gate_exps.weight", "blk.0.ffn_gate_inp.weight", "blk.x.attn_q.weight",
                        "blk..attn_q.weight", "blk.1.attn_q.bias"})
    EXPECT_FALSE(prunable_tensor(n, nullptr, nullptr)) << n;
}

TEST(Prune, ActivationNormsAreChannelL2Norms) {
  ActivationNorms an(2);
  const std::vector<float> a = {1, 2, 3, 4, 5, 6};  // [2][3]
  const std::vector<float> b = {-1, 0, 2};          // [1][3]
  an.observe(1, MatInput::FfnIn, a.data(), 2, 3);
  an.observe(1, MatInput::FfnIn, b.data(), 1, 3);
  const std::vector<float> n = an.norms(1, MatInput::FfnIn);
  ASSERT_EQ(n.size(), 3u);
  EXPECT_FLOAT_EQ(n[0], std::sqrt(1.0f + 16 + 1));
  EXPECT_FLOAT_EQ(n[1], std::sqrt(4.0f + 25));
  EXPECT_FLOAT_EQ(n[2], std::sqrt(9.0f + 36 + 4));
  EXPECT_TRUE(an.norms(0, MatInput::FfnIn).empty());
}

// Pruned files pass the strict loader, keep every other tensor byte for byte, obey the rule
// in every matrix, and run.
TEST(Prune, PrunedFilesLoadStrictlyAndObeyTheRule) {
  const std::string base = temp_path("prune-base-f16.gguf");
  synth_model(base, tiny("f16"));
  const gguf::File bf = gguf::File::open(base);
  struct Case { PruneMethod m; double sp; bool calib; };
  for (const Case c : {Case{PruneMethod::Magnitude, 0.3, false}, Case{PruneMethod::Wanda, 0.6, true},
                       Case{PruneMethod::NM, 0.5, true}}) {
    PruneOptions o;
    o.method = c.m;
    o.sparsity = c.sp;
    o.calib_tokens = 48;
    o.calib_ctx = 24;
    o.n_threads = 2;
    const std::string out = temp_path("prune-out.gguf");
    const PruneReport r = prune_file(base, out, o);
    EXPECT_EQ(r.n_pruned, 2u * 7u);
    if (c.calib) { EXPECT_EQ(r.calib_tokens, 48); }
    const gguf::File f = gguf::File::open(out);  // strict: validates every tensor and offset
    ASSERT_EQ(f.tensors().size(), bf.tensors().size());
    for (size_t i = 0; i < f.tensors().size(); ++i) {
      const gguf::TensorInfo& t = f.tensors()[i];
      const gguf::TensorInfo& b = bf.tensors()[i];
      ASSERT_EQ(t.name, b.name);
      ASSERT_EQ(t.dims, b.dims);
      ASSERT_EQ(t.type, b.type);
      if (!prunable_tensor(t.name, nullptr, nullptr)) {
        EXPECT_EQ(0, std::memcmp(t.data, b.data, t.size)) << t.name;
        continue;
      }
      const std::vector<float> pw = dequant(t), bw = dequant(b);
      const int64_t n = t.dims[0];
      for (int64_t r0 = 0; r0 < t.dims[1]; ++r0) {
        int64_t zeros = 0;
        for (int64_t j = 0; j < n; ++j) {
          const float v = pw[r0 * n + j];
          zeros += v == 0.0f;
          if (v != 0.0f) { ASSERT_EQ(v, bw[r0 * n + j]) << t.name; }  // kept weights unchanged
        }
        if (c.m == PruneMethod::NM) {
          for (int64_t g = 0; g < n; g += 4) {
            int nzs = 0;
            for (int q = 0; q < 4; ++q) nzs += pw[r0 * n + g + q] != 0.0f;
            ASSERT_EQ(nzs, 2) << t.name << " row " << r0 << " group " << g / 4;
          }
        } else {
          ASSERT_EQ(zeros, std::llround(c.sp * n)) << t.name << " row " << r0;
        }
      }
    }
    std::unique_ptr<Model> m = Model::load(out);
    KvCache cache = m->make_cache(16);
    cache.add_sequence(0);
    std::vector<BatchToken> batch;
    for (int i = 0; i < 5; ++i) batch.push_back({static_cast<int32_t>(1 + 7 * i), i, 0, true});
    std::vector<float> logits;
    m->step(batch, cache, logits);
    ASSERT_EQ(logits.size(), 5u * 300u);
    for (float v : logits) ASSERT_TRUE(std::isfinite(v));
  }
}

TEST(Prune, WandaDiffersFromMagnitudeOnlyThroughTheNorms) {
  // With calibration, Wanda's mask of ffn_down follows |W| * ||X||: recompute it independently
  // from norms collected on the same self-generated tokens.
  const std::string base = temp_path("prune-wanda-base.gguf");
  synth_model(base, tiny("f32"));
  PruneOptions o;
  o.method = PruneMethod::Wanda;
  o.sparsity = 0.5;
  o.calib_tokens = 40;
  o.calib_ctx = 20;
  o.n_threads = 1;
  const std::string out = temp_path("prune-wanda.gguf");
  prune_file(base, out, o);

  std::unique_ptr<Model> m = Model::load(base);
  const std::unique_ptr<Tokenizer> tok = Tokenizer::from_gguf(m->file());
  ActivationNorms an(static_cast<int>(m->config().n_layer));
  const auto seqs = self_generated_tokens(*m, *tok, 40, 20, o.seed);
  KvCache cache = m->make_cache(20);
  m->set_observer(&an);
  for (const std::vector<int32_t>& seq : seqs) {  // replay, one token per step as generated
    cache.add_sequence(0);
    for (size_t i = 0; i < seq.size(); ++i) {
      const BatchToken bt{seq[i], static_cast<int32_t>(i), 0, true};
      std::vector<float> logits;
      m->step(std::span<const BatchToken>(&bt, 1), cache, logits);
    }
    cache.remove_sequence(0);
  }
  m->set_observer(nullptr);
  EXPECT_EQ(an.tokens(), 40);
  const std::vector<float> nr = an.norms(1, MatInput::FfnDown);
  const gguf::File bf = gguf::File::open(base), pf = gguf::File::open(out);
  const std::vector<float> bw = dequant(*bf.tensor("blk.1.ffn_down.weight"));
  const std::vector<float> pw = dequant(*pf.tensor("blk.1.ffn_down.weight"));
  const int64_t n = 128;
  int differs_from_magnitude = 0;
  for (int64_t r = 0; r < 64; ++r) {
    std::vector<std::pair<float, int>> s, mag;
    for (int j = 0; j < n; ++j) {
      s.push_back({std::fabs(bw[r * n + j]) * nr[j], j});
      mag.push_back({std::fabs(bw[r * n + j]), j});
    }
    std::sort(s.begin(), s.end());
    std::sort(mag.begin(), mag.end());
    for (int i = 0; i < n; ++i) {
      ASSERT_EQ(pw[r * n + s[i].second] == 0.0f, i < n / 2) << "row " << r << " rank " << i;
      differs_from_magnitude += (i < n / 2) != (pw[r * n + mag[i].second] == 0.0f);
    }
  }
  EXPECT_GT(differs_from_magnitude, 0);  // the norms did change the choice
}

TEST(Prune, RejectsBadInput) {
  const std::string base = temp_path("prune-bad.gguf");
  synth_model(base, tiny("q4_0"));
  PruneOptions o;
  o.method = PruneMethod::Magnitude;
  EXPECT_THROW(prune_file(base, temp_path("x.gguf"), o), Error);  // q4_0 cannot hold the zeros
  EXPECT_THROW(prune_file(base, base, o), Error);
  o.sparsity = 1.5;
  EXPECT_THROW(prune_file(base, temp_path("x.gguf"), o), Error);
  const auto r = testutil::run_cli("prune " + base + " " + temp_path("y.gguf") + " --method nope");
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.err.find("unknown method"), std::string::npos) << r.err;
}

TEST(Prune, EvalAgainstItselfAndAPrunedModel) {
  const std::string base = temp_path("prune-eval-base.gguf");
  synth_model(base, tiny("f32"));
  std::string text;
  for (int i = 0; i < 60; ++i) text += " tok" + std::to_string(7 * i % 41);
  const std::string tf = temp_path("eval.txt");
  testutil::write_bytes(tf, std::vector<uint8_t>(text.begin(), text.end()));
  PruneEvalOptions eo;
  eo.n_ctx = 16;
  eo.max_chunks = 2;
  eo.decode_tokens = 2;
  eo.n_threads = 1;
  const PruneEval self = evaluate_pruned(base, base, tf, eo);
  EXPECT_EQ(self.n_scored, 2 * 7);
  EXPECT_EQ(self.ppl_base, self.ppl_pruned);
  EXPECT_NEAR(self.mean_kl, 0.0, 1e-12);
  EXPECT_EQ(self.top1_agree, 1.0);
  PruneOptions o;
  o.method = PruneMethod::Magnitude;
  o.sparsity = 0.7;
  const std::string out = temp_path("prune-eval-70.gguf");
  prune_file(base, out, o);
  const PruneEval e = evaluate_pruned(base, out, tf, eo);
  EXPECT_DOUBLE_EQ(e.ppl_base, self.ppl_base);
  EXPECT_GT(e.mean_kl, 1e-4);
  EXPECT_NE(e.ppl_pruned, e.ppl_base);
}

namespace {

std::vector<float> logits_of(const std::string& path, const std::vector<int32_t>& ids) {
  std::unique_ptr<Model> m = Model::load(path);
  KvCache cache = m->make_cache(static_cast<int64_t>(ids.size()));
  cache.add_sequence(0);
  std::vector<BatchToken> batch;
  for (size_t i = 0; i < ids.size(); ++i) batch.push_back({ids[i], static_cast<int32_t>(i), 0, true});
  std::vector<float> logits;
  m->step(batch, cache, logits);
  return logits;
}

PruneOptions structured(double sp) {
  PruneOptions o;
  o.method = PruneMethod::Structured;
  o.sparsity = sp;
  o.calib_tokens = 64;
  o.calib_ctx = 32;
  o.n_threads = 1;
  return o;
}

}  // namespace

TEST(PruneStructured, ZeroRemovalReproducesTheLogits) {
  const std::string base = testutil::shared("models/stories260K.gguf");
  const std::string out = temp_path("structured-0.gguf");
  prune_file(base, out, structured(0.0));
  const std::vector<int32_t> ids(testutil::reference_ids().begin(), testutil::reference_ids().begin() + 20);
  EXPECT_EQ(logits_of(out, ids), logits_of(base, ids));
}

// Removing FFN channels and KV groups equals zeroing their columns of ffn_down / attn_output in
// the full-size model (their contribution to the residual stream is exactly that). With bias
// compensation (FLAP) the removed inputs are replaced by their calibration means instead:
// the full model with those columns zeroed plus the bias W[:, removed] . mean, recomputed here
// in double from the base weights and this test's own calibration run.
// base: a tiny model (2 layers, n_ff 128, 8 heads in 4 KV groups); with `skew`, 4 of layer 0's
// ffn_down columns are scaled 20x, so its standardized channel scores are heavy-tailed and a
// global (cross-layer) ranking takes more channels from layer 1.
void write_structured_base(const std::string& base, bool skew) {
  SynthOptions so = tiny("f32");
  so.heads = 8;
  so.kv_heads = 4;
  so.layers = 2;
  synth_model(base, so);
  if (!skew) return;
  const gguf::File bf = gguf::File::open(base);
  std::vector<std::vector<float>> data;
  std::vector<gguf::WriterTensor> wt;
  for (const gguf::TensorInfo& t : bf.tensors()) {
    std::vector<float> v = dequant(t);
    if (t.name == "blk.0.ffn_down.weight")
      for (int64_t r0 = 0; r0 < t.dims[1]; ++r0)
        for (int64_t c = 0; c < 4; ++c) v[r0 * t.dims[0] + c * 7] *= 20.0f;
    data.push_back(std::move(v));
    wt.push_back({t.name, t.dims, DType::F32, nullptr, t.size});
  }
  for (size_t i = 0; i < wt.size(); ++i) wt[i].data = data[i].data();
  const std::string tmp = base + ".tmp";
  gguf::write_file(tmp, bf.kvs(), wt);
  std::filesystem::rename(tmp, base);
}

void check_structured_equals_zeroed_columns(bool compensate, bool global = false) {
  const std::string tag = std::string(compensate ? "-comp" : "") + (global ? "-global" : "");
  const std::string base = temp_path("structured-base" + tag + ".gguf"), out = temp_path("structured-25" + tag + ".gguf");
  write_structured_base(base, global);
  PruneOptions po = structured(0.25);
  po.bias_compensation = compensate;
  po.ffn_global = global;
  const PruneReport r = prune_file(base, out, po);
  EXPECT_GT(r.n_zeros, 0);
  const gguf::File bf = gguf::File::open(base), pf = gguf::File::open(out);
  const ModelConfig pc = ModelConfig::from_gguf(pf);
  ASSERT_EQ(r.ffn_kept.size(), 2u);
  if (global) {
    // 64 of 256 channels removed overall, in multiples of 32 per layer, more from layer 1.
    EXPECT_EQ(r.ffn_kept[0] + r.ffn_kept[1], 192);
    EXPECT_GT(r.ffn_kept[0], r.ffn_kept[1]);
    EXPECT_EQ(r.ffn_kept[0] % 32, 0);
    EXPECT_EQ(pc.ff(0), r.ffn_kept[0]);
    EXPECT_EQ(pc.ff(1), r.ffn_kept[1]);
  } else {
    EXPECT_EQ(pc.n_ff, 96);     // 128 - 32
    EXPECT_EQ(r.ffn_kept[0], 96);
    EXPECT_EQ(r.ffn_kept[1], 96);
  }
  EXPECT_EQ(pc.n_head_kv, 3);   // 4 - 1
  EXPECT_EQ(pc.n_head, 6);
  EXPECT_EQ(pc.head_dim, 8);    // the original 64 / 8, now written as key_length
  // The calibration means, as prune_file gathers them (self-generated, same seed and threads).
  ActivationNorms stats(2);
  {
    ModelOptions mo;
    mo.n_threads = po.n_threads;
    std::unique_ptr<Model> m = Model::load(base, mo);
    const std::unique_ptr<Tokenizer> tok = Tokenizer::from_gguf(m->file());
    m->set_observer(&stats);
    self_generated_tokens(*m, *tok, po.calib_tokens, po.calib_ctx, po.seed);
    m->set_observer(nullptr);
  }
  // Which rows survived: pruned rows are byte copies of original rows.
  auto kept_rows = [&](const std::string& name) {
    const gguf::TensorInfo &b = *bf.tensor(name), &p = *pf.tensor(name);
    const size_t rb = static_cast<size_t>(b.dims[0]) * 4;
    std::vector<bool> kept(static_cast<size_t>(b.dims[1]), false);
    for (int64_t i = 0; i < p.dims[1]; ++i)
      for (int64_t j = 0; j < b.dims[1]; ++j)
        if (std::memcmp(p.data + i * rb, b.data + j * rb, rb) == 0) kept[j] = true;
    return kept;
  };
  std::vector<std::vector<float>> data;
  std::vector<gguf::WriterTensor> wt;
  int n_bias = 0;
  for (const gguf::TensorInfo& t : bf.tensors()) {
    std::vector<float> v = dequant(t);
    const bool down = t.name.find("ffn_down") != std::string::npos, wo = t.name.find("attn_output") != std::string::npos;
    std::vector<float> bias;
    if (down || wo) {
      const std::string p = t.name.substr(0, t.name.find('.', 4) + 1);
      const std::vector<bool> kept = kept_rows(p + (down ? "ffn_gate.weight" : "attn_q.weight"));
      int64_t n_kept = 0;
      for (bool k : kept) n_kept += k;
      const int il = std::atoi(t.name.c_str() + 4);
      EXPECT_EQ(n_kept, down ? pc.ff(il) : 6 * 8) << t.name;
      const std::vector<double> mean = stats.means(il, down ? MatInput::FfnDown : MatInput::AttnOut);
      ASSERT_EQ(mean.size(), static_cast<size_t>(t.dims[0]));
      for (int64_t r0 = 0; r0 < t.dims[1]; ++r0) {
        double acc = 0;
        for (int64_t c = 0; c < t.dims[0]; ++c) {
          if (kept[c]) continue;
          acc += double{v[r0 * t.dims[0] + c]} * mean[c];
          v[r0 * t.dims[0] + c] = 0.0f;
        }
        bias.push_back(static_cast<float>(acc));
      }
      const std::string bname = p + (down ? "ffn_down.bias" : "attn_output.bias");
      const gguf::TensorInfo* pb = pf.tensor(bname);
      if (!compensate || n_kept == t.dims[0]) {  // nothing to compensate
        EXPECT_EQ(pb, nullptr) << bname;
        bias.clear();
      } else {
        ASSERT_NE(pb, nullptr) << bname;
        const std::vector<float> got = dequant(*pb);
        ASSERT_EQ(got.size(), bias.size());
        double mag = 0;
        for (float b : bias) mag = std::max(mag, std::fabs(double{b}));
        EXPECT_GT(mag, 1e-6) << bname << ": a compensation bias of zeros tests nothing";
        for (size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], bias[i], 1e-5 * (1 + mag)) << bname << " " << i;
        ++n_bias;
      }
    }
    data.push_back(std::move(v));
    wt.push_back({t.name, t.dims, DType::F32, nullptr, t.size});
    if (!bias.empty()) {
      const std::string p = t.name.substr(0, t.name.find('.', 4) + 1);
      data.push_back(std::move(bias));
      wt.push_back({p + (down ? "ffn_down.bias" : "attn_output.bias"), {t.dims[1]}, DType::F32, nullptr,
                    static_cast<uint64_t>(t.dims[1]) * 4});
    }
  }
  EXPECT_EQ(n_bias, compensate ? 2 + (r.ffn_kept[0] < 128) + (r.ffn_kept[1] < 128) : 0);
  for (size_t i = 0; i < wt.size(); ++i) wt[i].data = data[i].data();
  const std::string masked = temp_path("structured-masked" + tag + ".gguf");
  gguf::write_file(masked, bf.kvs(), wt);
  const std::vector<int32_t> ids = {1, 20, 33, 47, 5, 81, 99, 120};
  const std::vector<float> a = logits_of(out, ids), b = logits_of(masked, ids);
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) ASSERT_NEAR(a[i], b[i], 1e-4f * (1.0f + std::fabs(b[i]))) << i;
}

TEST(PruneStructured, EqualsTheFullModelWithRemovedColumnsZeroed) { check_structured_equals_zeroed_columns(false); }

TEST(PruneStructured, BiasCompensationAddsTheRemovedColumnsMeanOutput) { check_structured_equals_zeroed_columns(true); }

// --ffn-global: per-layer FFN widths (an array feed_forward_length) that load and compute as
// the full model with each layer's removed columns zeroed (plus compensation).
TEST(PruneStructured, GlobalRankingGivesPerLayerWidthsThatLoad) { check_structured_equals_zeroed_columns(true, true); }
