// KV eviction: compaction moves rows and frees blocks; each policy's selection rule on
// hand-built scores and hand-built attention patterns; with a budget >= the context every
// policy is bit-identical to no eviction on the real stories260K model.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <numeric>

#include <future>

#include "engine/generate.h"
#include "engine/scheduler.h"
#include "model/kv_policy.h"
#include "model/model.h"
#include "ops/attention.h"
#include "test_util.h"
#include "util/error.h"

using namespace coppice;

namespace {
std::vector<int32_t> iota(int n, int from = 0) {
  std::vector<int32_t> v(static_cast<size_t>(n));
  std::iota(v.begin(), v.end(), from);
  return v;
}
std::vector<int> ints(std::initializer_list<int> l) { return l; }

// 2 layers; layer 0 f32 K/V, layer 1 q8_0 K and f16 V; 1 kv head of dim 32.
KvCache mixed_cache(int64_t blocks, int bs = 4) {
  KvCacheOptions o;
  o.block_size = bs;
  o.n_blocks = blocks;
  o.layer_types = {{DType::F32, DType::F32}, {DType::Q8_0, DType::F16}};
  return KvCache(2, 1, 32, o);
}
void fill(KvCache& c, SeqId s, int cell, float val) {
  std::vector<float> row(32);
  for (int t = 0; t < 32; ++t) row[t] = val + 0.01f * t;
  for (int l = 0; l < 2; ++l) {
    ops::store_kv_row(row.data(), c.k_row(l, s, cell), 32, c.k_type(l));
    ops::store_kv_row(row.data(), c.v_row(l, s, cell), 32, c.v_type(l));
  }
}
std::vector<uint8_t> bytes_of(KvCache& c, SeqId s, int cell) {
  std::vector<uint8_t> b;
  const size_t kr[2] = {32 * 4, 34}, vr[2] = {32 * 4, 64};
  for (int l = 0; l < 2; ++l) {
    const auto* k = static_cast<const uint8_t*>(c.k_row(l, s, cell));
    const auto* v = static_cast<const uint8_t*>(c.v_row(l, s, cell));
    b.insert(b.end(), k, k + kr[l]);
    b.insert(b.end(), v, v + vr[l]);
  }
  return b;
}
}  // namespace

TEST(KvCompact, MovesRowsKeepsPositionsAndFreesBlocks) {
  KvCache c = mixed_cache(8);
  c.add_sequence(0);
  ASSERT_TRUE(c.append(0, iota(14, 100)));  // 4 blocks of 4
  for (int i = 0; i < 14; ++i) fill(c, 0, i, static_cast<float>(i));
  std::vector<std::vector<uint8_t>> before;
  for (int i = 0; i < 14; ++i) before.push_back(bytes_of(c, 0, i));
  EXPECT_EQ(c.blocks_used(), 4);
  const auto keep = ints({0, 1, 5, 9, 12, 13});
  ASSERT_TRUE(c.compact(0, keep));
  ASSERT_EQ(c.length(0), 6);
  EXPECT_EQ(c.blocks_used(), 2);  // 6 cells: two blocks, the other two back in the pool
  EXPECT_EQ(c.blocks_free(), 6);
  for (int i = 0; i < 6; ++i) {
    EXPECT_EQ(c.position(0, i), 100 + keep[i]);
    EXPECT_EQ(bytes_of(c, 0, i), before[static_cast<size_t>(keep[i])]) << "cell " << i;
  }
  EXPECT_THROW(c.compact(0, ints({2, 1})), Error);
  EXPECT_THROW(c.compact(0, ints({0, 6})), Error);
  ASSERT_TRUE(c.compact(0, {}));
  EXPECT_EQ(c.blocks_used(), 0);
}

TEST(KvCompact, SharedBlocksAreCopiedNotChanged) {
  KvCache c = mixed_cache(8);
  c.add_sequence(0);
  ASSERT_TRUE(c.append(0, iota(8)));
  for (int i = 0; i < 8; ++i) fill(c, 0, i, static_cast<float>(i));
  std::vector<std::vector<uint8_t>> before;
  for (int i = 0; i < 8; ++i) before.push_back(bytes_of(c, 0, i));
  c.fork_sequence(0, 1);
  EXPECT_EQ(c.blocks_used(), 2);
  ASSERT_TRUE(c.compact(1, ints({0, 3, 7})));
  for (int i = 0; i < 8; ++i) EXPECT_EQ(bytes_of(c, 0, i), before[i]);  // the parent is intact
  EXPECT_EQ(bytes_of(c, 1, 1), before[3]);
  EXPECT_EQ(bytes_of(c, 1, 2), before[7]);
  EXPECT_EQ(c.blocks_used(), 3);  // the child's first block was copied; its second released
}

TEST(KvPolicyRules, SelectionOnHandBuiltScores) {
  EXPECT_EQ(select_window(10, 6, 2), ints({0, 1, 6, 7, 8, 9}));
  EXPECT_EQ(select_window(5, 6, 2), ints({0, 1, 2, 3, 4}));
  // H2O: the 2 most recent cells, then the 3 highest accumulated scores among the rest.
  const std::vector<float> acc = {5, 0, 0, 9, 0, 0, 1, 0, 8, 0};
  EXPECT_EQ(select_h2o(acc, 5, 2), ints({0, 3, 6, 8, 9}));
  // SnapKV: a cluster (cells 1, 2) beats a single larger spike (cell 5) once pooled over 3
  // neighbours (8/3 vs 7/3); the observation window (cells 8, 9) is always kept.
  const std::vector<float> obs = {0, 4, 4, 0, 0, 7, 0, 0, 50, 50};
  EXPECT_EQ(select_snapkv(obs, 4, 2, 3), ints({1, 2, 8, 9}));
  EXPECT_EQ(select_snapkv(obs, 4, 2, 1), ints({1, 5, 8, 9}));  // no pooling: the spike wins (ties: earlier)
}

TEST(KvPolicyRules, OptionsAreValidated) {
  KvPolicyOptions o;
  o.kind = KvPolicyKind::Window;
  o.budget = 4;
  o.sinks = 4;
  EXPECT_THROW(validate(o), Error);
  o.kind = KvPolicyKind::SnapKV;
  o.obs_window = 2;
  o.pool = 4;
  EXPECT_THROW(validate(o), Error);
  o.budget = -1;
  EXPECT_THROW(validate(o), Error);
  EXPECT_FALSE(kv_policy_from_name("lru").has_value());
}

namespace {
// One layer, one head of dim 32, f32: key j = spike[j] * e0, so q = e0 scores cell j by spike[j].
struct Toy {
  KvCache cache;
  ops::AttentionShape shape{1, 1, 32, DType::F32, 1.0f};
  explicit Toy(const std::vector<float>& spike) : cache(make(spike.size())) {
    cache.add_sequence(0);
    EXPECT_TRUE(cache.append(0, iota(static_cast<int>(spike.size()), 10)));
    for (size_t j = 0; j < spike.size(); ++j) {
      std::vector<float> k(32, 0.0f);
      k[0] = spike[j];
      std::memcpy(cache.k_row(0, 0, static_cast<int>(j)), k.data(), 128);
      std::memcpy(cache.v_row(0, 0, static_cast<int>(j)), k.data(), 128);
    }
  }
  static KvCache make(size_t n) {
    KvCacheOptions o;
    o.block_size = 4;
    o.n_blocks = static_cast<int64_t>(n + 3) / 4;
    o.type = DType::F32;
    return KvCache(1, 1, 32, o);
  }
  // Queries (each e0 * strength[i]) for the last strength.size() cells, as one batch.
  void observe(KvPolicy& p, const std::vector<float>& strength) {
    const int n = cache.length(0), m = static_cast<int>(strength.size());
    std::vector<BatchToken> batch;
    std::vector<int> cells;
    std::vector<float> q(static_cast<size_t>(m) * 32, 0.0f);
    for (int i = 0; i < m; ++i) {
      batch.push_back({0, cache.position(0, n - m + i), 0, false});
      cells.push_back(n - m + i);
      q[static_cast<size_t>(i) * 32] = strength[i];
    }
    p.on_attention(0, batch, cells, q.data(), shape, cache);
  }
  std::vector<int32_t> positions() const {
    auto p = cache.positions(0);
    return {p.begin(), p.end()};
  }
};
}  // namespace

TEST(KvPolicyObserved, H2oKeepsHeavyHittersOfRealAttention) {
  // Cells 1 and 4 get most of every query's attention; 6, 7 are the recent ones.
  Toy t({0, 3, 0, 0, 2.5f, 0, 0, 0});
  KvPolicyOptions o;
  o.kind = KvPolicyKind::H2O;
  o.budget = 4;
  o.recent = 2;
  KvPolicy p(o);
  t.observe(p, {1, 1, 1, 1});
  EXPECT_EQ(p.enforce(t.cache, 0), 4);
  EXPECT_EQ(t.positions(), std::vector<int32_t>({11, 14, 16, 17}));
  EXPECT_EQ(t.cache.blocks_used(), 1);
}

TEST(KvPolicyObserved, SnapKvListensOnlyToTheObservationWindow) {
  // Early queries (strength -4) favour cell 0 (spike -3); the last two (strength +4) favour
  // cell 2 (spike +3). SnapKV with a window of 2 keeps cell 2; H2O, which sums every query,
  // keeps cell 0.
  const std::vector<float> spike = {-3, 0, 3, 0, 0, 0, 0, 0, 0, 0};
  const std::vector<float> strength = {-4, -4, -4, -4, -4, -4, 4, 4};
  KvPolicyOptions o;
  o.kind = KvPolicyKind::SnapKV;
  o.budget = 3;
  o.obs_window = 2;
  o.pool = 1;
  Toy a(spike);
  KvPolicy snap(o);
  a.observe(snap, strength);
  snap.enforce(a.cache, 0);
  EXPECT_EQ(a.positions(), std::vector<int32_t>({12, 18, 19}));
  o.kind = KvPolicyKind::H2O;
  o.recent = 2;
  Toy b(spike);
  KvPolicy h2o(o);
  b.observe(h2o, strength);
  h2o.enforce(b.cache, 0);
  EXPECT_EQ(b.positions(), std::vector<int32_t>({10, 18, 19}));
}

namespace {
// Prefill 40 tokens in batches of 16, then decode 60 greedy tokens; every step's logits.
std::vector<float> stories_run(Model& m, KvPolicy* p, KvCache& cache, int64_t* max_blocks) {
  m.set_attention_observer(p != nullptr && p->needs_attention() ? p : nullptr);
  cache.add_sequence(0);
  std::vector<int32_t> prompt;
  for (int i = 0; i < 40; ++i) prompt.push_back(1 + (i * 53) % 500);
  std::vector<float> all, logits;
  prefill(m, cache, 0, prompt, 16, false, logits, p);
  all = logits;
  int32_t pos = 40;
  for (int i = 0; i < 60; ++i) {
    const int32_t tok = static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
    const BatchToken bt{tok, pos++, 0, true};
    m.step({&bt, 1}, cache, logits);
    if (p != nullptr) p->enforce(cache, 0);
    *max_blocks = std::max(*max_blocks, cache.blocks_used());
    all.insert(all.end(), logits.begin(), logits.end());
  }
  cache.remove_sequence(0);
  m.set_attention_observer(nullptr);
  return all;
}
}  // namespace

TEST(KvPolicyModel, BudgetAtLeastContextIsBitIdenticalAndSmallBudgetsFreeBlocks) {
  ModelOptions mo;
  mo.n_threads = 1;
  auto m = Model::load(testutil::shared("models/stories260K.gguf"), mo);
  KvCache cache = m->make_cache(128, DType::F32);
  int64_t blocks_full = 0;
  const auto ref = stories_run(*m, nullptr, cache, &blocks_full);
  EXPECT_EQ(blocks_full, 7);  // 100 cells
  for (KvPolicyKind k : {KvPolicyKind::Window, KvPolicyKind::H2O, KvPolicyKind::SnapKV}) {
    KvPolicyOptions o;
    o.kind = k;
    o.budget = 100;
    KvPolicy same(o);
    int64_t blocks = 0;
    EXPECT_EQ(stories_run(*m, &same, cache, &blocks), ref) << kv_policy_name(k);
    EXPECT_EQ(same.cells_evicted(), 0);
    o.budget = 32;
    KvPolicy small(o);
    blocks = 0;
    const auto got = stories_run(*m, &small, cache, &blocks);
    EXPECT_NE(got, ref) << kv_policy_name(k);
    // 32 kept cells + the step's new one: at most 3 blocks of 16 (vs 7 without eviction).
    EXPECT_LE(blocks, 3) << kv_policy_name(k);
    EXPECT_EQ(small.cells_evicted(), 100 - 32) << kv_policy_name(k);
    EXPECT_EQ(cache.blocks_used(), 0);
  }
}

namespace {
const std::string kStories = "-m " + testutil::shared("models/stories260K.gguf") + " -t 1";
int generated(const std::string& err) {  // "generation: N tokens in ..." from -v
  const auto at = err.find("generation: ");
  return at == std::string::npos ? -1 : std::atoi(err.c_str() + at + 12);
}
}  // namespace

TEST(KvCli, WindowGeneratesFarPastTheContext) {
  const std::string gen = "run " + kStories + " -c 128 -p 'Once upon a time' -n 600 --ignore-eos --temp 0 -v";
  const auto full = testutil::run_cli(gen);
  ASSERT_EQ(full.status, 0) << full.err;
  EXPECT_LT(generated(full.err), 128);  // the context fills up
  const auto win = testutil::run_cli(gen + " --kv-policy window --kv-budget 64");
  ASSERT_EQ(win.status, 0) << win.err;
  EXPECT_EQ(generated(win.err), 600);
  EXPECT_NE(win.err.find("policy window budget 64"), std::string::npos) << win.err;
  // The sequence ends holding its 64-cell budget: 4 blocks of 16 (the rest went back).
  EXPECT_NE(win.err.find("kv: 4 blocks of 16 cells in use"), std::string::npos) << win.err;
}

TEST(KvCli, BadKvOptionsAreErrors) {
  const std::string run = "run " + kStories + " -p hi -n 1 ";
  for (const char* bad : {"--kv-policy lru --kv-budget 8", "--kv-policy h2o", "--cache-type q4_K",
                          "--cache-type-v q3", "--cache-type-layer 9=f16", "--cache-type-layer 1-0=f16",
                          "--kv-policy window --kv-budget 4"}) {
    const auto r = testutil::run_cli(run + bad);
    EXPECT_EQ(r.status, 1) << bad;
    EXPECT_NE(r.err.find("error"), std::string::npos) << bad << ": " << r.err;
  }
  // eval computes all positions in one pass: a policy is refused, not silently ignored.
  const auto ev = testutil::run_cli("eval " + kStories + " --ids 1,2,3 -o - --kv-policy window --kv-budget 64");
  EXPECT_EQ(ev.status, 1);
  EXPECT_NE(ev.err.find("eval does not apply --kv-policy"), std::string::npos) << ev.err;
  const auto ok = testutil::run_cli(run + "--cache-type-layer 1-2=q4_0/q4_0 --cache-type-k q8_0 -v");
  EXPECT_EQ(ok.status, 0) << ok.err;
  EXPECT_NE(ok.err.find("k q8_0 / v f16"), std::string::npos) << ok.err;
}

TEST(KvPolicyEngine, ServedSequencesEvictLikeTheSingleSequencePath) {
  ModelOptions mo;
  mo.n_threads = 1;
  auto m = Model::load(testutil::shared("models/stories260K.gguf"), mo);
  auto tok = Tokenizer::from_gguf(m->file());
  KvPolicyOptions po;
  po.kind = KvPolicyKind::H2O;
  po.budget = 48;
  std::vector<std::vector<int32_t>> prompts;
  for (int r = 0; r < 3; ++r) {
    std::vector<int32_t> p = {1};
    for (int i = 0; i < 40; ++i) p.push_back(3 + (i * 31 + r * 101) % 500);
    prompts.push_back(p);
  }
  SamplingParams greedy;
  greedy.temperature = 0;
  // Alone, through prefill + decode with the policy evicting after every step.
  std::vector<std::vector<int32_t>> alone;
  for (const auto& p : prompts) {
    KvPolicy pol(po);
    m->set_attention_observer(&pol);
    KvCache cache = m->make_cache(256, DType::F16);
    cache.add_sequence(0);
    Sampler sampler(greedy);
    GenerateOptions go;
    go.n_predict = 80;
    go.n_batch = 64;
    go.stop_at_eog = false;
    go.kv_policy = &pol;
    std::vector<int32_t> out;
    generate(*m, cache, 0, *tok, sampler, p, go, [&](int32_t id) { out.push_back(id); return true; });
    alone.push_back(out);
    m->set_attention_observer(nullptr);
  }
  // Together in the serving engine.
  EngineOptions eo;
  eo.n_ctx = 256;
  eo.n_parallel = 4;
  eo.step_tokens = 64;
  eo.kv_policy = po;
  Engine e(*m, *tok, eo);
  std::vector<std::shared_ptr<std::promise<std::vector<int32_t>>>> done;
  std::vector<std::shared_ptr<std::vector<int32_t>>> got;
  for (const auto& p : prompts) {
    GenRequest r;
    r.prompt = p;
    r.max_tokens = 80;
    r.ignore_eos = true;
    r.sampling = greedy;
    auto pr = std::make_shared<std::promise<std::vector<int32_t>>>();
    auto toks = std::make_shared<std::vector<int32_t>>();
    e.submit(std::move(r), [pr, toks](const TokenEvent& ev) {
      if (ev.token >= 0) toks->push_back(ev.token);
      if (ev.finish != FinishReason::None) pr->set_value(*toks);
      return true;
    });
    done.push_back(pr);
  }
  for (size_t i = 0; i < prompts.size(); ++i) {
    auto f = done[i]->get_future();
    ASSERT_EQ(f.wait_for(std::chrono::seconds(120)), std::future_status::ready);
    EXPECT_EQ(f.get(), alone[i]) << "request " << i;
  }
  const EngineStats st = e.stats();
  EXPECT_EQ(st.kv_cells_evicted, 3 * (41 + 80 - 1 - 48));  // every cell past the budget, per sequence
  EXPECT_EQ(st.kv_blocks_cached, 0);                      // nothing published under eviction
  EXPECT_EQ(st.kv_bytes_total, static_cast<int64_t>(16 * 5 * 2 * 32 * 2) * st.kv_blocks_total);
}
