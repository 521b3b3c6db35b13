// CAKE per-layer KV budgets: per-layer cell tables in the paged cache (rows, positions, slots
// back in the pool, fork / copy-on-write / truncate), the budget split and the dispersion
// statistics on hand-built numbers, each layer's eviction on hand-built attention computed here
// in double precision, and the real model (budget >= context: bit-identical; small budgets:
// less memory), the CLI and the serving engine.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <future>
#include <numeric>

#include "engine/generate.h"
#include "engine/scheduler.h"
#include "model/kv_policy.h"
#include "model/model.h"
#include "ops/attention.h"
#include "test_util.h"
#include "util/error.h"

using namespace coppice;

namespace {
std::vector<int32_t> iota32(int n, int from = 0) {
  std::vector<int32_t> v(static_cast<size_t>(n));
  std::iota(v.begin(), v.end(), from);
  return v;
}

// 2 layers of different types (layer 0 f32 K/V, layer 1 q8_0 K + f16 V), 1 kv head of dim 32.
constexpr size_t kK[2] = {128, 34}, kV[2] = {128, 64};
KvCache two_layer_cache(int64_t blocks, int bs = 4) {
  KvCacheOptions o;
  o.block_size = bs;
  o.n_blocks = blocks;
  o.layer_types = {{DType::F32, DType::F32}, {DType::Q8_0, DType::F16}};
  return KvCache(2, 1, 32, o);
}
// Writes a recognisable row for (layer, value) at a sequence cell.
void fill(KvCache& c, int layer, SeqId s, int cell, float val) {
  std::vector<float> row(32);
  for (int t = 0; t < 32; ++t) row[t] = val + 0.01f * t;
  ops::store_kv_row(row.data(), c.k_row(layer, s, cell), 32, c.k_type(layer));
  ops::store_kv_row(row.data(), c.v_row(layer, s, cell), 32, c.v_type(layer));
}
std::vector<uint8_t> row_bytes(KvCache& c, int layer, SeqId s, int cell) {
  const auto* k = static_cast<const uint8_t*>(c.k_row(layer, s, cell));
  const auto* v = static_cast<const uint8_t*>(c.v_row(layer, s, cell));
  std::vector<uint8_t> b(k, k + kK[layer]);
  b.insert(b.end(), v, v + kV[layer]);
  return b;
}
// The rows attention sees for a layer (chunks over the whole sequence), concatenated K then V.
std::vector<std::vector<uint8_t>> seen_rows(const KvCache& c, int layer, SeqId s) {
  std::vector<ops::KvChunk> ch;
  c.chunks(layer, s, c.length(s), ch);
  std::vector<std::vector<uint8_t>> out;
  for (const ops::KvChunk& k : ch)
    for (int i = 0; i < k.n; ++i) {
      const auto* kp = static_cast<const uint8_t*>(k.k) + i * kK[layer];
      const auto* vp = static_cast<const uint8_t*>(k.v) + i * kV[layer];
      std::vector<uint8_t> b(kp, kp + kK[layer]);
      b.insert(b.end(), vp, vp + kV[layer]);
      out.push_back(b);
    }
  return out;
}
std::vector<int32_t> vec(std::span<const int32_t> s) { return {s.begin(), s.end()}; }
}  // namespace

TEST(KvLayers, PerLayerCompactionKeepsRowsAndReturnsSlots) {
  KvCache c = two_layer_cache(8);
  c.add_sequence(0);
  ASSERT_TRUE(c.append(0, iota32(16, 100)));  // 4 blocks of 4 cells
  std::vector<std::vector<uint8_t>> before[2];
  for (int l = 0; l < 2; ++l)
    for (int i = 0; i < 16; ++i) {
      fill(c, l, 0, i, static_cast<float>(10 * l + i));
      before[l].push_back(row_bytes(c, l, 0, i));
    }
  EXPECT_EQ(c.blocks_used(), 4);
  const std::vector<std::vector<int>> keep = {{0, 5, 9, 13}, {1, 2, 3, 4, 6, 7, 8, 10, 11, 12, 14, 15}};
  ASSERT_TRUE(c.compact_layers(0, keep));
  ASSERT_TRUE(c.layered(0));
  EXPECT_EQ(c.length(0), 12);
  EXPECT_EQ(c.layer_length(0, 0), 4);
  EXPECT_EQ(c.layer_length(1, 0), 12);
  for (int l = 0; l < 2; ++l) {
    const auto& k = keep[static_cast<size_t>(l)];
    const auto rows = seen_rows(c, l, 0);
    ASSERT_EQ(rows.size(), k.size());
    std::vector<int32_t> pos;
    for (size_t i = 0; i < k.size(); ++i) {
      EXPECT_EQ(rows[i], before[l][static_cast<size_t>(k[i])]) << "layer " << l << " cell " << i;
      pos.push_back(100 + k[i]);
      // Sequence indices are right-aligned: a layer's cells are the last layer_length ones.
      const int cell = c.length(0) - static_cast<int>(k.size()) + static_cast<int>(i);
      EXPECT_EQ(row_bytes(c, l, 0, cell), before[l][static_cast<size_t>(k[i])]);
    }
    EXPECT_EQ(vec(c.layer_positions(l, 0)), pos);
  }
  // Slots: layer 0 holds 1 (4 cells), layer 1 holds 3; the 4th block is whole and free again.
  EXPECT_EQ(c.layer_slots_used(), 4);
  EXPECT_EQ(c.blocks_free(), 5);
  EXPECT_EQ(c.blocks_used(), 2);  // 4 layer slots / 2 layers
  EXPECT_EQ(c.bytes_used(), 4 * (kK[0] + kV[0]) + 3 * 4 * (kK[1] + kV[1]));

  // A new cell goes to every layer: layer 0 reuses a free slot of a split block, layer 1
  // splits a whole block.
  EXPECT_EQ(c.blocks_needed(0, 1), 1);
  ASSERT_TRUE(c.append(0, std::vector<int32_t>{200}));
  EXPECT_EQ(c.length(0), 13);
  fill(c, 0, 0, 12, 77.0f);
  fill(c, 1, 0, 12, 88.0f);
  EXPECT_EQ(seen_rows(c, 0, 0).size(), 5u);
  EXPECT_EQ(seen_rows(c, 0, 0).back(), row_bytes(c, 0, 0, 12));
  EXPECT_EQ(seen_rows(c, 1, 0).back(), row_bytes(c, 1, 0, 12));
  EXPECT_EQ(seen_rows(c, 1, 0)[11], before[1][15]);
  EXPECT_EQ(c.layer_positions(0, 0).back(), 200);
  EXPECT_EQ(c.positions(0).back(), 200);
  EXPECT_EQ(c.layer_slots_used(), 6);
  EXPECT_EQ(c.blocks_free(), 4);
  EXPECT_EQ(c.blocks_used(), 3);

  c.truncate(0, 12);  // rollback of the new cell: both its slots go back, the block is whole again
  EXPECT_EQ(c.layer_slots_used(), 4);
  EXPECT_EQ(c.blocks_free(), 5);
  EXPECT_EQ(c.blocks_used(), 2);
  EXPECT_THROW(c.compact(0, std::vector<int>{0}), Error);  // one set no longer fits a layered sequence
  EXPECT_THROW(c.compact_layers(0, std::vector<std::vector<int>>{{0}, {5, 4}}), Error);
  c.remove_sequence(0);
  EXPECT_EQ(c.blocks_free(), 8);
  EXPECT_EQ(c.blocks_used(), 0);
  EXPECT_EQ(c.bytes_used(), 0u);
  EXPECT_EQ(c.layer_slots_used(), 0);
}

TEST(KvLayers, ForkSharesSlotsAndCopiesOnWrite) {
  KvCache c = two_layer_cache(10);
  c.add_sequence(0);
  ASSERT_TRUE(c.append(0, iota32(14)));
  for (int l = 0; l < 2; ++l)
    for (int i = 0; i < 14; ++i) fill(c, l, 0, i, static_cast<float>(20 * l + i));
  ASSERT_TRUE(c.compact_layers(0, std::vector<std::vector<int>>{{0, 4, 8}, {0, 1, 2, 3, 5, 6, 9, 10, 11, 13}}));
  const auto p0 = seen_rows(c, 0, 0), p1 = seen_rows(c, 1, 0);
  const int64_t slots = c.layer_slots_used();
  EXPECT_EQ(slots, 1 + 3);
  c.fork_sequence(0, 1);
  EXPECT_TRUE(c.layered(1));
  EXPECT_EQ(c.layer_slots_used(), slots);  // shared, nothing copied
  EXPECT_EQ(seen_rows(c, 0, 1), p0);
  // The child's partial last slots (3 of 4 and 10 of 12 cells) are shared: copied before written.
  EXPECT_EQ(c.blocks_needed(1, 1), 1);
  ASSERT_TRUE(c.append(1, std::vector<int32_t>{50}));
  fill(c, 0, 1, 10, 5.0f);
  fill(c, 1, 1, 10, 6.0f);
  EXPECT_EQ(c.layer_slots_used(), slots + 2);
  EXPECT_EQ(seen_rows(c, 0, 0), p0);  // the parent is intact
  EXPECT_EQ(seen_rows(c, 1, 0), p1);
  auto c0 = seen_rows(c, 0, 1);
  ASSERT_EQ(c0.size(), 4u);
  EXPECT_EQ(std::vector<std::vector<uint8_t>>(c0.begin(), c0.begin() + 3), p0);
  // Per-layer compaction of the child copies shared slots it writes, never the parent's.
  ASSERT_TRUE(c.compact_layers(1, std::vector<std::vector<int>>{{1, 3}, {0, 2, 4, 10}}));
  EXPECT_EQ(seen_rows(c, 0, 0), p0);
  EXPECT_EQ(seen_rows(c, 1, 0), p1);
  EXPECT_EQ(seen_rows(c, 0, 1)[0], p0[1]);
  EXPECT_EQ(seen_rows(c, 1, 1)[2], p1[4]);
  EXPECT_EQ(vec(c.layer_positions(1, 1)), (std::vector<int32_t>{0, 2, 5, 50}));
  // Truncating the child to nothing returns it to the shared-table form.
  c.truncate(1, 0);
  EXPECT_FALSE(c.layered(1));
  EXPECT_EQ(c.layer_slots_used(), slots);
  ASSERT_TRUE(c.append(1, iota32(3)));
  EXPECT_EQ(c.blocks_used(), 2 + 1);  // parent's 4 slots / 2 + one whole block
  c.remove_sequence(1);
  c.remove_sequence(0);
  EXPECT_EQ(c.blocks_free(), 10);
  EXPECT_EQ(c.layer_slots_used(), 0);
}

TEST(KvLayers, SameSetEveryLayerStaysOneTable) {
  KvCache c = two_layer_cache(4);
  c.add_sequence(0);
  ASSERT_TRUE(c.append(0, iota32(8)));
  ASSERT_TRUE(c.compact_layers(0, std::vector<std::vector<int>>{{1, 5}, {1, 5}}));
  EXPECT_FALSE(c.layered(0));
  EXPECT_EQ(vec(c.positions(0)), (std::vector<int32_t>{1, 5}));
  EXPECT_EQ(c.blocks_used(), 1);
}

TEST(KvCakeRules, BudgetSplitFollowsPreferencesAndSumsToTotal) {
  auto split = [](std::vector<double> p, int64_t total, std::vector<int> cap, int floor) {
    return split_layer_budgets(p, total, cap, floor);
  };
  using V = std::vector<int>;
  EXPECT_EQ(split({1, 3}, 40, {100, 100}, 0), (V{10, 30}));
  EXPECT_EQ(split({1, 3}, 40, {8, 100}, 0), (V{8, 32}));    // a layer cannot keep more than it has
  EXPECT_EQ(split({1, 3}, 40, {100, 100}, 12), (V{12, 28}));  // floor
  EXPECT_EQ(split({1, 1, 1}, 10, {100, 100, 100}, 0), (V{4, 3, 3}));  // largest remainder, ties: lower layer
  EXPECT_EQ(split({0, 0, 0}, 10, {100, 100, 100}, 0), (V{4, 3, 3}));  // no preference: even
  EXPECT_EQ(split({1, 2}, 50, {10, 20}, 0), (V{10, 20}));  // everything fits
  EXPECT_EQ(split({0, 5}, 30, {20, 20}, 2), (V{10, 20}));  // no preference fills after the rest caps
  const V b = split({0.3, 2.9, 0.01, 1.7, 0.5}, 640, {256, 256, 256, 256, 256}, 33);
  EXPECT_EQ(std::accumulate(b.begin(), b.end(), 0), 640);
  for (int x : b) EXPECT_GE(x, 33);
  EXPECT_LT(b[2], b[0]);
  EXPECT_LT(b[0], b[4]);
  EXPECT_LT(b[4], b[3]);
}

TEST(KvCakeRules, DispersionOnHandBuiltRows) {
  // Rows of 6 cells, prefix 4 (the last two cells are the window's own and do not count).
  std::deque<AttnRow> spread;
  const std::vector<float> uni = {0.25f, 0.25f, 0.25f, 0.25f, 9, 9}, peak = {0.7f, 0.1f, 0.1f, 0.1f, 9, 9};
  spread.push_back({6, uni});
  spread.push_back({6, peak});
  const LayerDispersion d = layer_dispersion(spread, 4);
  const double h = -4 * 0.25 * std::log(0.25) - (0.7 * std::log(0.7) + 3 * 0.1 * std::log(0.1));
  const double v = 0.225 * 0.225 + 3 * 0.075 * 0.075;  // (a - b)^2 / 4 per cell
  EXPECT_NEAR(d.entropy, h, 1e-6);
  EXPECT_NEAR(d.variance, v, 1e-7);
  EXPECT_NEAR(cake_preference(d, 1, 1), h * v, 1e-6);
  EXPECT_NEAR(cake_preference(d, 2, 0.5), std::sqrt(h) * v * v, 1e-7);
  // All attention on one cell, always: no dispersion, no shift.
  std::deque<AttnRow> focused;
  focused.push_back({4, {1, 0, 0, 0}});
  focused.push_back({4, {1, 0, 0, 0}});
  EXPECT_EQ(cake_preference(layer_dispersion(focused, 4), 1, 1), 0.0);
  // Two heads: statistics add over heads.
  std::deque<AttnRow> two;
  two.push_back({4, {0.25f, 0.25f, 0.25f, 0.25f, 0.7f, 0.1f, 0.1f, 0.1f}});
  two.push_back({4, {0.7f, 0.1f, 0.1f, 0.1f, 0.25f, 0.25f, 0.25f, 0.25f}});
  EXPECT_NEAR(layer_dispersion(two, 4).entropy, 2 * h, 1e-6);
  EXPECT_NEAR(layer_dispersion(two, 4).variance, 2 * v, 1e-7);
}

TEST(KvCakeRules, OptionsAreValidated) {
  KvPolicyOptions o;
  o.kind = KvPolicyKind::Window;
  o.budget = 16;
  o.cake = true;
  EXPECT_THROW(validate(o), Error);
  o.kind = KvPolicyKind::H2O;
  validate(o);
  o.cake_tau1 = 0;
  EXPECT_THROW(validate(o), Error);
}

namespace {
// Two layers, one head of dim 32, f32: in layer l key j = spike[l][j] * e0, so a query s * e0
// gives cell j the score s * spike[l][j].
struct Toy2 {
  std::vector<float> spike[2];
  KvCache cache;
  ops::AttentionShape shape{1, 1, 32, DType::F32, 1.0f};
  Toy2(std::vector<float> a, std::vector<float> b) : spike{std::move(a), std::move(b)}, cache(make(spike[0].size())) {
    const int n = static_cast<int>(spike[0].size());
    cache.add_sequence(0);
    EXPECT_TRUE(cache.append(0, iota32(n, 10)));
    for (int l = 0; l < 2; ++l)
      for (int j = 0; j < n; ++j) {
        std::vector<float> k(32, 0.0f);
        k[0] = spike[l][static_cast<size_t>(j)];
        std::memcpy(cache.k_row(l, 0, j), k.data(), 128);
        std::memcpy(cache.v_row(l, 0, j), k.data(), 128);
      }
  }
  static KvCache make(size_t n) {
    KvCacheOptions o;
    o.block_size = 4;
    o.n_blocks = static_cast<int64_t>(n + 3) / 4 + 2;
    o.type = DType::F32;
    return KvCache(2, 1, 32, o);
  }
  // The last strength[l].size() cells query layer l with strength[l][i] * e0, as one batch.
  void observe(KvPolicy& p, const std::vector<float> (&strength)[2]) {
    const int n = cache.length(0), m = static_cast<int>(strength[0].size());
    std::vector<BatchToken> batch;
    std::vector<int> cells;
    for (int i = 0; i < m; ++i) {
      batch.push_back({0, cache.position(0, n - m + i), 0, false});
      cells.push_back(n - m + i);
    }
    for (int l = 0; l < 2; ++l) {
      std::vector<float> q(static_cast<size_t>(m) * 32, 0.0f);
      for (int i = 0; i < m; ++i) q[static_cast<size_t>(i) * 32] = strength[l][static_cast<size_t>(i)];
      p.on_attention(l, batch, cells, q.data(), shape, cache);
    }
  }
  // Softmax weights (double) of query strength s at cell `at` over cells [0, at] of layer l.
  std::vector<double> weights(int l, float s, int at) const {
    std::vector<double> w(static_cast<size_t>(at) + 1);
    double mx = -1e300, sum = 0;
    for (int j = 0; j <= at; ++j) mx = std::max(mx, double{s} * spike[l][static_cast<size_t>(j)]);
    for (int j = 0; j <= at; ++j) sum += w[static_cast<size_t>(j)] = std::exp(double{s} * spike[l][static_cast<size_t>(j)] - mx);
    for (double& x : w) x /= sum;
    return w;
  }
};
}  // namespace

TEST(KvCakeObserved, EachLayerKeepsItsOwnTopCellsUnderItsShareOfTheBudget) {
  // Layer 0 attends almost only to cell 2 (concentrated); layer 1 spreads its attention and the
  // window's queries disagree (sign flips): higher entropy and variance, so a larger share.
  const int n = 24;
  std::vector<float> a(n, 0.0f), b(n);
  a[2] = 6.0f;
  for (int j = 0; j < n; ++j) b[static_cast<size_t>(j)] = 0.6f * std::cos(1.7f * static_cast<float>(j));
  Toy2 t(a, b);
  const std::vector<float> strength[2] = {{1.0f, 1.5f, 2.0f, 2.5f, 3.0f, 3.5f}, {1.0f, -1.2f, 1.4f, -1.6f, 1.8f, -2.0f}};
  KvPolicyOptions o;
  o.kind = KvPolicyKind::H2O;
  o.budget = 8;  // 16 cells over 2 layers; observation window min(32, 8 / 4) = 2, floor 3
  o.cake = true;
  KvPolicy p(o);
  t.observe(p, strength);

  // The rule, computed here from double-precision attention.
  const int W = 2, m = 6;
  std::vector<double> pref(2);
  std::vector<float> acc[2];
  for (int l = 0; l < 2; ++l) {
    acc[l].assign(n, 0.0f);
    std::vector<std::vector<double>> win;
    for (int i = 0; i < m; ++i) {
      const auto w = t.weights(l, strength[l][static_cast<size_t>(i)], n - m + i);
      for (size_t j = 0; j < w.size(); ++j) acc[l][j] += static_cast<float>(w[j]);
      if (i >= m - W) win.push_back(w);
    }
    double h = 0, v = 0;
    for (int j = 0; j < n - W; ++j) {  // the cells before the window
      const double x = win[0][static_cast<size_t>(j)], y = win[1][static_cast<size_t>(j)];
      h -= x * std::log(x) + y * std::log(y);
      v += (x - y) * (x - y) / 4;
    }
    pref[static_cast<size_t>(l)] = h * v;
  }
  ASSERT_LT(pref[0], pref[1]);
  const std::vector<int> want_b = split_layer_budgets(pref, 16, std::vector<int>{n, n}, W + 1);

  EXPECT_EQ(p.enforce(t.cache, 0), 2 * n - 16);
  const auto got_b = p.last_layer_budgets();
  ASSERT_EQ(got_b.size(), 2u);
  EXPECT_EQ(std::vector<int>(got_b.begin(), got_b.end()), want_b);
  EXPECT_LT(got_b[0], got_b[1]) << "concentrated attention gets the smaller share";
  EXPECT_EQ(got_b[0] + got_b[1], 16);
  for (int l = 0; l < 2; ++l) {
    const int bl = got_b[static_cast<size_t>(l)];
    std::vector<int32_t> want;
    for (int c : select_h2o(acc[l], bl, bl / 2)) want.push_back(10 + c);
    EXPECT_EQ(vec(t.cache.layer_positions(l, 0)), want) << "layer " << l;
  }
  EXPECT_NE(vec(t.cache.layer_positions(0, 0)), vec(t.cache.layer_positions(1, 0)));
  // Memory: each layer holds the slots of its own cells.
  EXPECT_EQ(t.cache.layer_slots_used(), (got_b[0] + 3) / 4 + (got_b[1] + 3) / 4);
  EXPECT_EQ(t.cache.blocks_used(), ((got_b[0] + 3) / 4 + (got_b[1] + 3) / 4 + 1) / 2);
  EXPECT_EQ(p.cells_evicted(), (2 * n - 16) / 2);
}

namespace {
// Prefill 40 tokens in batches of 16, then decode 60 greedy tokens; every step's logits.
std::vector<float> stories_run(Model& m, KvPolicy* p, KvCache& cache, size_t* max_bytes, int64_t* max_layer_cells) {
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
    *max_bytes = std::max(*max_bytes, cache.bytes_used());
    if (p != nullptr) p->enforce(cache, 0);
    int64_t cells = 0;
    for (int l = 0; l < cache.n_layer(); ++l) cells += cache.layer_length(l, 0);
    *max_layer_cells = std::max(*max_layer_cells, cells);
    all.insert(all.end(), logits.begin(), logits.end());
  }
  cache.remove_sequence(0);
  m.set_attention_observer(nullptr);
  return all;
}
}  // namespace

TEST(KvCakeModel, BudgetAtLeastContextIsBitIdenticalAndSmallBudgetsHoldLessMemory) {
  ModelOptions mo;
  mo.n_threads = 1;
  auto m = Model::load(testutil::shared("models/stories260K.gguf"), mo);
  const int L = static_cast<int>(m->config().n_layer);
  KvCache cache = m->make_cache(128, DType::F32);
  size_t bytes_full = 0;
  int64_t cells = 0;
  const auto ref = stories_run(*m, nullptr, cache, &bytes_full, &cells);
  EXPECT_EQ(bytes_full, 7 * cache.block_bytes_all_layers());  // 100 cells
  for (KvPolicyKind k : {KvPolicyKind::H2O, KvPolicyKind::SnapKV}) {
    KvPolicyOptions o;
    o.kind = k;
    o.budget = 100;
    o.cake = true;
    KvPolicy same(o);
    size_t bytes = 0;
    cells = 0;
    EXPECT_EQ(stories_run(*m, &same, cache, &bytes, &cells), ref) << kv_policy_name(k);
    EXPECT_EQ(same.cells_evicted(), 0);
    o.budget = 32;
    KvPolicy small(o);
    bytes = 0;
    cells = 0;
    const auto got = stories_run(*m, &small, cache, &bytes, &cells);
    EXPECT_NE(got, ref) << kv_policy_name(k);
    EXPECT_LE(cells, 32 * L) << kv_policy_name(k);  // after each eviction: the total budget
    const auto b = small.last_layer_budgets();
    ASSERT_EQ(static_cast<int>(b.size()), L);
    EXPECT_EQ(std::accumulate(b.begin(), b.end(), 0), 32 * L);
    EXPECT_NE(*std::min_element(b.begin(), b.end()), *std::max_element(b.begin(), b.end())) << kv_policy_name(k);
    // 32 x 5 layer cells (+1 per layer per step) in slots of 16: about a third of the full 7 blocks.
    EXPECT_LT(bytes, 4 * cache.block_bytes_all_layers()) << kv_policy_name(k);
    EXPECT_EQ(cache.blocks_used(), 0);
    EXPECT_EQ(cache.layer_slots_used(), 0);
  }
}

namespace {
const std::string kStories = "-m " + testutil::shared("models/stories260K.gguf") + " -t 1";
}  // namespace

TEST(KvCakeCli, RunWithCakeAndErrors) {
  const std::string gen = "run " + kStories + " -c 128 -p 'Once upon a time' -n 200 --ignore-eos --temp 0 -v";
  const auto r = testutil::run_cli(gen + " --kv-policy h2o --kv-budget 48 --kv-layer-budgets cake");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.err.find("policy h2o+cake budget 48"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("layer budgets"), std::string::npos) << r.err;
  for (const char* bad : {"--kv-policy window --kv-budget 48 --kv-layer-budgets cake",
                          "--kv-policy h2o --kv-budget 48 --kv-layer-budgets pie", "--kv-layer-budgets cake"}) {
    const auto e = testutil::run_cli("run " + kStories + " -p hi -n 1 " + bad);
    EXPECT_EQ(e.status, 1) << bad;
    EXPECT_NE(e.err.find("error"), std::string::npos) << bad << ": " << e.err;
  }
}

TEST(KvCakeEngine, ServedSequencesEvictLikeTheSingleSequencePath) {
  ModelOptions mo;
  mo.n_threads = 1;
  auto m = Model::load(testutil::shared("models/stories260K.gguf"), mo);
  auto tok = Tokenizer::from_gguf(m->file());
  KvPolicyOptions po;
  po.kind = KvPolicyKind::SnapKV;
  po.budget = 48;
  po.cake = true;
  std::vector<std::vector<int32_t>> prompts;
  for (int r = 0; r < 3; ++r) {
    std::vector<int32_t> p = {1};
    for (int i = 0; i < 40; ++i) p.push_back(3 + (i * 37 + r * 89) % 500);
    prompts.push_back(p);
  }
  SamplingParams greedy;
  greedy.temperature = 0;
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
  EngineOptions eo;
  eo.n_ctx = 256;
  eo.n_parallel = 4;
  eo.step_tokens = 64;
  eo.kv_policy = po;
  Engine e(*m, *tok, eo);
  std::vector<std::shared_ptr<std::promise<std::vector<int32_t>>>> done;
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
  EXPECT_GT(st.kv_cells_evicted, 0);
  EXPECT_EQ(st.kv_blocks_used, 0);  // every sequence finished: all slots back
  EXPECT_EQ(st.kv_bytes_used, 0);
}
