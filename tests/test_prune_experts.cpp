// coppice prune --method experts: expert statistics against a hand-built case and against an
// independent double-precision recomputation of the routing; keeping every expert reproduces
// the logits bit for bit, removing an expert the router never picks leaves them identical;
// the output passes the strict loader with the kept experts' slices and consistent metadata.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "engine/prune.h"
#include "engine/synth.h"
#include "test_util.h"
#include "util/error.h"

using namespace coppice;
using testutil::temp_path;

namespace {

std::vector<float> dequant(const gguf::TensorInfo& t) {
  std::vector<float> out(static_cast<size_t>(t.n_elements()));
  type_traits(t.type)->to_float(t.data, out.data(), t.n_elements());
  return out;
}

SynthOptions tiny_moe(const std::string& arch, const std::string& type, int64_t experts, int64_t used) {
  SynthOptions o;
  o.arch = arch;
  o.dim = 64; o.layers = 2; o.heads = 4; o.kv_heads = 2; o.ffn = 64; o.vocab = 300; o.ctx = 256;
  o.experts = experts; o.experts_used = used; o.ffn_exp = 32; o.ffn_shexp = 48;
  o.type = type; o.pure = true; o.n_threads = 1; o.std_dev = 0.05f;
  return o;
}

std::vector<int32_t> prompt(int n) {
  std::vector<int32_t> ids;
  for (int i = 0; i < n; ++i) ids.push_back(static_cast<int32_t>(1 + (37 * i + 11) % 290));
  return ids;
}

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

PruneOptions experts(int keep, double sparsity = 0.0) {
  PruneOptions o;
  o.method = PruneMethod::Experts;
  o.experts_keep = keep;
  o.sparsity = sparsity;
  o.calib_tokens = 48;
  o.calib_ctx = 24;
  o.n_threads = 1;
  return o;
}

}  // namespace

// Hand-built: 2 tokens, top-2 of 4 experts. Contributions (sum of w * ||y|| / 2 tokens):
// e0 0.5 * 5 / 2 = 1.25; e1 (both tokens) 2 * 0.1 * 1 / 2 = 0.1; e2 0.9 * 2 / 2 = 0.9; e3 0.
TEST(PruneExperts, StatsAndRankingOnAHandBuiltCase) {
  ExpertStats st(2, 4);
  const std::vector<float> p = {0.5f, 0.1f, 0.3f, 0.1f, 0.2f, 0.1f, 0.6f, 0.1f};  // [2][4]
  st.observe_router(0, p.data(), 2, 4);
  const std::vector<float> y0 = {3, 4}, y1 = {1, 0, 0, -1}, y2 = {0, 2};
  const std::vector<float> w0 = {0.5f}, w1 = {0.1f, 0.1f}, w2 = {0.9f};
  st.observe_expert(0, 0, 1, w0.data(), y0.data(), 2);
  st.observe_expert(0, 1, 2, w1.data(), y1.data(), 2);
  st.observe_expert(0, 2, 1, w2.data(), y2.data(), 2);
  EXPECT_EQ(st.tokens(0), 2);
  EXPECT_EQ(st.routed(0, 1), 2);
  EXPECT_EQ(st.routed(0, 3), 0);
  EXPECT_DOUBLE_EQ(st.frequency(0, 1), 1.0);
  EXPECT_DOUBLE_EQ(st.frequency(0, 0), 0.5);
  EXPECT_NEAR(st.contribution(0, 0), 1.25, 1e-7);
  EXPECT_NEAR(st.contribution(0, 1), 0.1, 1e-7);
  EXPECT_NEAR(st.contribution(0, 2), 0.9, 1e-7);
  EXPECT_EQ(st.contribution(0, 3), 0.0);
  EXPECT_NEAR(st.mean_prob(0, 2), 0.45, 1e-7);
  // The most frequent expert (e1) still goes before e2: its outputs are small.
  EXPECT_EQ(st.keep(0, 1), (std::vector<int>{0}));
  EXPECT_EQ(st.keep(0, 2), (std::vector<int>{0, 2}));
  EXPECT_EQ(st.keep(0, 3), (std::vector<int>{0, 1, 2}));
  EXPECT_EQ(st.keep(0, 4), (std::vector<int>{0, 1, 2, 3}));

  // Layer 1: no expert routed (contributions all 0): frequency, then probability decide.
  const std::vector<float> q = {0.1f, 0.4f, 0.2f, 0.3f};
  st.observe_router(1, q.data(), 1, 4);
  const std::vector<float> z = {0, 0}, w = {1.0f};
  st.observe_expert(1, 2, 1, w.data(), z.data(), 2);  // routed once, zero output
  EXPECT_EQ(st.keep(1, 1), (std::vector<int>{2}));
  EXPECT_EQ(st.keep(1, 2), (std::vector<int>{1, 2}));
  EXPECT_EQ(st.keep(1, 3), (std::vector<int>{1, 2, 3}));
}

namespace {

// ExpertStats that also records each MoE layer's input (FfnIn) for an independent recomputation.
struct RecordingStats : ExpertStats {
  using ExpertStats::ExpertStats;
  std::vector<std::vector<float>> xn;  // [n_layer][tokens * n_embd]
  void observe(int il, MatInput site, const float* x, int n_tok, int64_t dim) override {
    if (site != MatInput::FfnIn) return;
    if (xn.size() <= static_cast<size_t>(il)) xn.resize(static_cast<size_t>(il) + 1);
    xn[static_cast<size_t>(il)].insert(xn[static_cast<size_t>(il)].end(), x, x + n_tok * dim);
  }
};

// y = W x for W [rows][cols] (f32 values of the file), in double.
std::vector<double> matvec(const std::vector<float>& w, int64_t rows, int64_t cols, const double* x) {
  std::vector<double> y(static_cast<size_t>(rows), 0.0);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) y[r] += static_cast<double>(w[r * cols + c]) * x[c];
  return y;
}

}  // namespace

// Routing counts, probabilities and contributions recomputed from the MoE inputs with the
// file's weights in double precision (softmax, top-k, SwiGLU expert, gate weight x norm).
TEST(PruneExperts, StatsMatchAnIndependentRecomputation) {
  for (const char* arch : {"qwen2moe", "qwen3moe"}) {
    SCOPED_TRACE(arch);
    const std::string base = temp_path(std::string("experts-stats-") + arch + ".gguf");
    synth_model(base, tiny_moe(arch, "f32", 6, 2));
    std::unique_ptr<Model> m = Model::load(base);
    const ModelConfig& c = m->config();
    RecordingStats st(static_cast<int>(c.n_layer), static_cast<int>(c.n_expert));
    const std::vector<int32_t> ids = prompt(30);
    run_calibration(*m, ids, 16, st);  // two sequences: 16 + 14 tokens
    const gguf::File& f = m->file();
    const int64_t E = c.n_embd, ne = c.n_expert, k = c.n_expert_used, ff = c.n_ff_exp;
    for (int il = 0; il < static_cast<int>(c.n_layer); ++il) {
      ASSERT_EQ(st.tokens(il), 30);
      const std::string p = "blk." + std::to_string(il) + ".";
      const std::vector<float> wr = dequant(*f.tensor(p + "ffn_gate_inp.weight"));
      const std::vector<float> wg = dequant(*f.tensor(p + "ffn_gate_exps.weight"));
      const std::vector<float> wu = dequant(*f.tensor(p + "ffn_up_exps.weight"));
      const std::vector<float> wd = dequant(*f.tensor(p + "ffn_down_exps.weight"));
      std::vector<int64_t> routed(static_cast<size_t>(ne), 0);
      std::vector<double> prob(static_cast<size_t>(ne), 0.0), contrib(static_cast<size_t>(ne), 0.0);
      ASSERT_EQ(st.xn[static_cast<size_t>(il)].size(), static_cast<size_t>(30 * E));
      for (int t = 0; t < 30; ++t) {
        std::vector<double> x(static_cast<size_t>(E));
        for (int64_t j = 0; j < E; ++j) x[j] = st.xn[static_cast<size_t>(il)][t * E + j];
        std::vector<double> l = matvec(wr, ne, E, x.data());
        const double mx = *std::max_element(l.begin(), l.end());
        double sum = 0;
        for (double& v : l) sum += v = std::exp(v - mx);
        for (double& v : l) v /= sum;
        std::vector<int> order(static_cast<size_t>(ne));
        for (int e = 0; e < ne; ++e) order[e] = e;
        std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return l[a] > l[b]; });
        double top = 0;
        for (int64_t j = 0; j < k; ++j) top += l[order[j]];
        for (int e = 0; e < ne; ++e) prob[e] += l[e];
        for (int64_t j = 0; j < k; ++j) {
          const int e = order[j];
          ++routed[e];
          const size_t eo = static_cast<size_t>(e);
          const std::vector<float> ge(wg.begin() + eo * ff * E, wg.begin() + (eo + 1) * ff * E);
          const std::vector<float> ue(wu.begin() + eo * ff * E, wu.begin() + (eo + 1) * ff * E);
          const std::vector<float> de(wd.begin() + eo * E * ff, wd.begin() + (eo + 1) * E * ff);
          std::vector<double> g = matvec(ge, ff, E, x.data());
          const std::vector<double> u = matvec(ue, ff, E, x.data());
          for (int64_t i = 0; i < ff; ++i) g[i] = g[i] / (1.0 + std::exp(-g[i])) * u[i];
          const std::vector<double> y = matvec(de, E, ff, g.data());
          double ss = 0;
          for (double v : y) ss += v * v;
          contrib[e] += (c.moe_norm_topk ? l[e] / top : l[e]) * std::sqrt(ss);
        }
      }
      for (int e = 0; e < ne; ++e) {
        EXPECT_EQ(st.routed(il, e), routed[e]) << "layer " << il << " expert " << e;
        EXPECT_NEAR(st.mean_prob(il, e), prob[e] / 30, 1e-5) << "layer " << il << " expert " << e;
        EXPECT_NEAR(st.contribution(il, e), contrib[e] / 30, 1e-4 * (1 + contrib[e] / 30)) << "layer " << il << " expert " << e;
      }
    }
  }
}

TEST(PruneExperts, KeepingEveryExpertIsBitIdentical) {
  const std::string base = temp_path("experts-keep-all.gguf"), out = temp_path("experts-keep-all-out.gguf");
  synth_model(base, tiny_moe("qwen3moe", "q8_0", 8, 2));
  const PruneReport r = prune_file(base, out, experts(0, 0.0));  // sparsity 0: all 8 stay
  EXPECT_EQ(r.experts_after, 8);
  EXPECT_EQ(r.calib_tokens, 48);
  const gguf::File bf = gguf::File::open(base), pf = gguf::File::open(out);
  ASSERT_EQ(bf.tensors().size(), pf.tensors().size());
  for (size_t i = 0; i < bf.tensors().size(); ++i) {
    ASSERT_EQ(pf.tensors()[i].size, bf.tensors()[i].size);
    EXPECT_EQ(0, std::memcmp(pf.tensors()[i].data, bf.tensors()[i].data, bf.tensors()[i].size)) << bf.tensors()[i].name;
  }
  const std::vector<int32_t> ids = prompt(12);
  EXPECT_EQ(logits_of(out, ids), logits_of(base, ids));
}

// An expert the router can never pick: residual channel 0 is held at a constant (set in every
// token embedding, never written by attention or FFN outputs), and expert 3's router row reads
// -100 x that channel, so its probability underflows to exactly 0. Removing it changes no
// softmax sum and no selection: the logits stay bit-identical, while the kept experts shift
// to new ids (a wrong router row or expert slice would change them).
TEST(PruneExperts, RemovingAnExpertTheRouterNeverPicksKeepsTheLogits) {
  for (const char* arch : {"qwen2moe", "qwen3moe", "llama"}) {
    SCOPED_TRACE(arch);
    const std::string synth = temp_path(std::string("experts-dead-synth-") + arch + ".gguf");
    SynthOptions so = tiny_moe(arch, "f32", 8, 2);
    if (std::string(arch) == "llama") so.ffn_exp = 0;  // Mixtral: the experts use feed_forward_length
    synth_model(synth, so);
    const gguf::File sf = gguf::File::open(synth);
    const int64_t E = 64;
    std::vector<std::vector<float>> data;
    std::vector<gguf::WriterTensor> wt;
    for (const gguf::TensorInfo& t : sf.tensors()) {
      std::vector<float> v = dequant(t);
      const std::string& n = t.name;
      auto ends = [&](const char* s) { return n.size() >= std::strlen(s) && n.compare(n.size() - std::strlen(s), std::string::npos, s) == 0; };
      if (n == "token_embd.weight") {
        for (int64_t r = 0; r < t.dims[1]; ++r) v[r * E] = 1.0f;
      } else if (ends("attn_output.weight") || ends("ffn_down_shexp.weight")) {
        std::fill(v.begin(), v.begin() + t.dims[0], 0.0f);  // output row 0
      } else if (ends("ffn_down_exps.weight")) {
        for (int64_t e = 0; e < t.dims[2]; ++e)
          std::fill(v.begin() + e * t.dims[0] * t.dims[1], v.begin() + e * t.dims[0] * t.dims[1] + t.dims[0], 0.0f);
      } else if (ends("ffn_gate_inp.weight")) {
        for (int64_t e = 0; e < t.dims[1]; ++e) v[e * E] = 0.0f;
        std::fill(v.begin() + 3 * E, v.begin() + 4 * E, 0.0f);
        v[3 * E] = -100.0f;
      }
      data.push_back(std::move(v));
      wt.push_back({t.name, t.dims, DType::F32, nullptr, static_cast<uint64_t>(t.n_elements()) * 4});
    }
    for (size_t i = 0; i < wt.size(); ++i) wt[i].data = data[i].data();
    const std::string base = temp_path(std::string("experts-dead-") + arch + ".gguf");
    gguf::write_file(base, sf.kvs(), wt);

    // Precondition, measured: expert 3 never routed, probability exactly 0 (the others' is
    // not, so it ranks strictly last even among experts the prompts do not route to).
    const std::vector<int32_t> ids = prompt(24);
    {
      std::unique_ptr<Model> m = Model::load(base);
      ExpertStats st(2, 8);
      run_calibration(*m, ids, 24, st);
      for (int il = 0; il < 2; ++il) {
        EXPECT_EQ(st.routed(il, 3), 0);
        EXPECT_EQ(st.mean_prob(il, 3), 0.0);
        for (int e = 0; e < 8; ++e)
          if (e != 3) { EXPECT_GT(st.mean_prob(il, e), 0.0) << "layer " << il << " expert " << e; }
      }
    }
    const std::string calib = temp_path("experts-dead-calib.txt");
    const std::string text = "one two three four five six seven eight nine ten eleven twelve";
    testutil::write_bytes(calib, std::vector<uint8_t>(text.begin(), text.end()));
    PruneOptions o = experts(7);
    o.calib_file = calib;
    const std::string out = temp_path(std::string("experts-dead-out-") + arch + ".gguf");
    const PruneReport r = prune_file(base, out, o);
    for (const std::vector<int>& kept : r.experts_kept) EXPECT_EQ(kept, (std::vector<int>{0, 1, 2, 4, 5, 6, 7}));
    const std::vector<float> a = logits_of(out, ids), b = logits_of(base, ids);
    ASSERT_EQ(a.size(), b.size());
    EXPECT_EQ(a, b);

    // Control: removing routed experts does change them.
    PruneOptions o2 = o;
    o2.experts_keep = 2;
    const PruneReport r2 = prune_file(base, out, o2);
    EXPECT_EQ(std::count(r2.experts_kept[0].begin(), r2.experts_kept[0].end(), 3), 0);
    EXPECT_NE(logits_of(out, ids), b);
  }
}

// Quantized experts: kept slices are byte copies of the source experts, metadata follows
// (expert_used_count lowered to the kept count), and the strict loader accepts the file.
TEST(PruneExperts, OutputPassesTheStrictLoaderWithTheKeptSlices) {
  const std::string base = temp_path("experts-q8.gguf"), out = temp_path("experts-q8-out.gguf");
  synth_model(base, tiny_moe("qwen2moe", "q8_0", 8, 4));
  const PruneReport r = prune_file(base, out, experts(3));
  EXPECT_EQ(r.experts_before, 8);
  EXPECT_EQ(r.experts_after, 3);
  EXPECT_EQ(r.experts_used, 3);
  EXPECT_EQ(r.n_pruned, 2u * 4u);  // router + 3 expert stacks per layer
  EXPECT_LT(r.out_file_bytes, r.in_file_bytes);
  const gguf::File bf = gguf::File::open(base), pf = gguf::File::open(out);  // strict
  const ModelConfig pc = ModelConfig::from_gguf(pf);
  EXPECT_EQ(pc.n_expert, 3);
  EXPECT_EQ(pc.n_expert_used, 3);
  EXPECT_EQ(pf.get_string("coppice.prune.method").value_or(""), "experts");
  ASSERT_EQ(r.experts_kept.size(), 2u);
  for (size_t i = 0; i < bf.tensors().size(); ++i) {
    const gguf::TensorInfo &b = bf.tensors()[i], &p = pf.tensors()[i];
    ASSERT_EQ(b.name, p.name);
    const bool per_expert = b.name.find("_exps.") != std::string::npos || b.name.find("ffn_gate_inp.weight") != std::string::npos;
    if (!per_expert) {
      ASSERT_EQ(p.dims, b.dims);
      EXPECT_EQ(0, std::memcmp(p.data, b.data, b.size)) << b.name;
      continue;
    }
    ASSERT_EQ(p.dims.back(), 3) << b.name;
    const std::vector<int>& kept = r.experts_kept[static_cast<size_t>(b.name[4] - '0')];
    ASSERT_EQ(kept.size(), 3u);
    const size_t slice = b.size / 8;
    ASSERT_EQ(p.size, 3 * slice);
    for (size_t j = 0; j < 3; ++j)
      EXPECT_EQ(0, std::memcmp(p.data + j * slice, b.data + static_cast<size_t>(kept[j]) * slice, slice)) << b.name;
  }
  const std::vector<float> l = logits_of(out, prompt(6));
  ASSERT_EQ(l.size(), 6u * 300u);
  for (float v : l) ASSERT_TRUE(std::isfinite(v));
  // --sparsity: round(0.25 * 8) = 2 removed; expert_used_count (4) stays.
  const PruneReport r2 = prune_file(base, out, experts(0, 0.25));
  EXPECT_EQ(r2.experts_after, 6);
  EXPECT_EQ(ModelConfig::from_gguf(gguf::File::open(out)).n_expert_used, 4);
}

TEST(PruneExperts, RejectsBadInput) {
  const std::string moe = temp_path("experts-bad-moe.gguf"), dense = temp_path("experts-bad-dense.gguf");
  synth_model(moe, tiny_moe("qwen3moe", "f32", 4, 2));
  SynthOptions d = tiny_moe("llama", "f32", 0, 2);
  synth_model(dense, d);
  const std::string out = temp_path("experts-bad-out.gguf");
  EXPECT_THROW(prune_file(dense, out, experts(2)), Error);  // not MoE
  EXPECT_THROW(prune_file(moe, out, experts(5)), Error);    // more than it has
  EXPECT_THROW(prune_file(moe, out, experts(0, 1.0)), Error);  // would remove every expert
  auto r = testutil::run_cli("prune " + dense + " " + out + " --method experts --experts-keep 2");
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.err.find("not a mixture-of-experts"), std::string::npos) << r.err;
  r = testutil::run_cli("prune " + moe + " " + out + " --method wanda --experts-keep 2");
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.err.find("--experts-keep needs --method experts"), std::string::npos) << r.err;
  r = testutil::run_cli("prune " + moe + " " + out + " --method experts --experts-keep 3 --calib-tokens 32 --calib-ctx 16 -t 1");
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("experts per layer: 4 -> 3"), std::string::npos) << r.out;
  EXPECT_EQ(ModelConfig::from_gguf(gguf::File::open(out)).n_expert, 3);
}
