#include "model/kv_policy.h"

#include <algorithm>
#include <numeric>

#include "util/error.h"

namespace coppice {

std::optional<KvPolicyKind> kv_policy_from_name(std::string_view name) {
  if (name == "none") return KvPolicyKind::None;
  if (name == "window") return KvPolicyKind::Window;
  if (name == "h2o") return KvPolicyKind::H2O;
  if (name == "snapkv") return KvPolicyKind::SnapKV;
  return std::nullopt;
}

const char* kv_policy_name(KvPolicyKind k) {
  switch (k) {
    case KvPolicyKind::Window: return "window";
    case KvPolicyKind::H2O: return "h2o";
    case KvPolicyKind::SnapKV: return "snapkv";
    default: return "none";
  }
}

void validate(const KvPolicyOptions& o) {
  const std::string b = std::to_string(o.budget);
  if (o.budget < 0) fail("kv", "--kv-budget " + b + " must be >= 0 (0: no eviction)");
  if (o.cake && o.kind != KvPolicyKind::H2O && o.kind != KvPolicyKind::SnapKV)
    fail("kv", std::string("--kv-layer-budgets cake applies to h2o and snapkv (attention-ranked), not ") +
                   kv_policy_name(o.kind));
  if (o.cake && !(o.cake_tau1 > 0 && o.cake_tau2 > 0)) fail("kv", "cake: tau1 and tau2 must be positive");
  if (o.budget == 0) return;
  if (o.kind == KvPolicyKind::Window && (o.sinks < 0 || o.sinks >= o.budget))
    fail("kv", "window policy: " + std::to_string(o.sinks) + " sink cells leave no room in a budget of " + b);
  if (o.kind == KvPolicyKind::H2O && o.recent >= o.budget)
    fail("kv", "h2o policy: " + std::to_string(o.recent) + " recent cells leave no heavy hitters in a budget of " + b);
  if (o.kind == KvPolicyKind::SnapKV && (o.obs_window >= o.budget || o.pool < 1 || o.pool % 2 == 0))
    fail("kv", "snapkv policy: observation window " + std::to_string(o.obs_window) +
                   " must be below the budget " + b + " and the pooling width " +
                   std::to_string(o.pool) + " odd");
  if (o.budget < 2) fail("kv", "--kv-budget " + b + " is too small (at least 2 cells)");
}

namespace {
// The m cells of [0, n) with the highest score (ties: the earlier cell), increasing.
std::vector<int> top_cells(std::span<const float> score, int n, int m) {
  std::vector<int> idx(static_cast<size_t>(n));
  std::iota(idx.begin(), idx.end(), 0);
  m = std::clamp(m, 0, n);
  std::partial_sort(idx.begin(), idx.begin() + m, idx.end(), [&](int a, int b) {
    return score[a] != score[b] ? score[a] > score[b] : a < b;
  });
  idx.resize(static_cast<size_t>(m));
  std::sort(idx.begin(), idx.end());
  return idx;
}

std::vector<int> with_tail(std::vector<int> keep, int from, int n) {
  for (int c = from; c < n; ++c) keep.push_back(c);
  return keep;
}
}  // namespace

std::vector<int> select_window(int n, int budget, int sinks) {
  if (n <= budget) return with_tail({}, 0, n);
  std::vector<int> keep;
  for (int c = 0; c < sinks; ++c) keep.push_back(c);
  return with_tail(std::move(keep), n - (budget - sinks), n);
}

std::vector<int> select_h2o(std::span<const float> acc, int budget, int recent) {
  const int n = static_cast<int>(acc.size());
  if (n <= budget) return with_tail({}, 0, n);
  recent = std::clamp(recent, 0, budget);
  return with_tail(top_cells(acc, n - recent, budget - recent), n - recent, n);
}

std::vector<int> select_snapkv(std::span<const float> obs, int budget, int window, int pool) {
  const int n = static_cast<int>(obs.size());
  if (n <= budget) return with_tail({}, 0, n);
  window = std::clamp(window, 0, budget);
  const int prefix = n - window, r = pool / 2;
  std::vector<float> pooled(static_cast<size_t>(prefix));
  for (int j = 0; j < prefix; ++j) {
    const int lo = std::max(0, j - r), hi = std::min(prefix - 1, j + r);
    float s = 0;
    for (int t = lo; t <= hi; ++t) s += obs[t];
    pooled[j] = s / static_cast<float>(hi - lo + 1);
  }
  return with_tail(top_cells(pooled, prefix, budget - window), prefix, n);
}

KvPolicy::KvPolicy(const KvPolicyOptions& o) : o_(o) { validate(o_); }

int KvPolicy::recent() const { return o_.recent >= 0 ? o_.recent : o_.budget / 2; }
int KvPolicy::obs_window() const {
  return o_.obs_window >= 0 ? o_.obs_window : std::max(1, std::min(32, o_.budget / 4));
}

void KvPolicy::on_attention(int layer, std::span<const BatchToken> batch, std::span<const int> cells,
                            const float* q, const ops::AttentionShape& shape, const KvCache& cache) {
  if (!needs_attention()) return;
  if (o_.cake) return observe_layer(layer, batch, cells, q, shape, cache);
  const int n = static_cast<int>(batch.size());
  const int64_t qd = static_cast<int64_t>(shape.n_head) * shape.head_dim;
  for (int i = 0; i < n; ++i) {
    const SeqId seq = batch[i].seq;
    SeqState& st = st_[seq];
    const size_t len = static_cast<size_t>(cache.length(seq));
    float* dst = nullptr;
    if (o_.kind == KvPolicyKind::H2O) {
      if (st.acc.size() < len) st.acc.resize(len, 0.0f);
      dst = st.acc.data();
    } else {
      // SnapKV: only the last obs_window() tokens of this sequence in the batch are observers.
      int later = 0;
      for (int j = i + 1; j < n; ++j) later += batch[j].seq == seq;
      const int w = obs_window();
      if (later >= w) continue;
      // Layer 0 opens one row per observer, in batch order; later layers add to the same rows.
      if (layer == 0) {
        st.obs.emplace_back(len, 0.0f);
        while (static_cast<int>(st.obs.size()) > w) st.obs.pop_front();
      }
      const size_t back = layer == 0 ? 0 : static_cast<size_t>(later);
      CP_ASSERT(back < st.obs.size());
      std::vector<float>& row = st.obs[st.obs.size() - 1 - back];
      if (row.size() < len) row.resize(len, 0.0f);
      dst = row.data();
    }
    const int visible = cells[i] + 1;
    cache.chunks(layer, seq, 0, visible, chunks_);
    if (w_.size() < static_cast<size_t>(visible)) w_.resize(static_cast<size_t>(visible));
    for (int h = 0; h < shape.n_head; ++h) {
      ops::attention_weights(q + i * qd, chunks_, shape, h, w_.data());
      for (int c = 0; c < visible; ++c) dst[c] += w_[c];
    }
  }
}

int KvPolicy::enforce(KvCache& cache, SeqId seq) {
  const int n = cache.length(seq);
  if (o_.cake && o_.budget > 0) return enforce_layers(cache, seq);
  if (o_.budget <= 0 || o_.kind == KvPolicyKind::None || n <= o_.budget) return 0;
  SeqState& st = st_[seq];
  std::vector<int> keep;
  if (o_.kind == KvPolicyKind::Window) {
    keep = select_window(n, o_.budget, o_.sinks);
  } else if (o_.kind == KvPolicyKind::H2O) {
    st.acc.resize(static_cast<size_t>(n), 0.0f);
    keep = select_h2o(st.acc, o_.budget, recent());
  } else {
    std::vector<float> sum(static_cast<size_t>(n), 0.0f);
    for (const std::vector<float>& row : st.obs)
      for (size_t c = 0; c < row.size() && c < sum.size(); ++c) sum[c] += row[c];
    keep = select_snapkv(sum, o_.budget, obs_window(), o_.pool);
  }
  if (!cache.compact(seq, keep)) return 0;
  auto remap = [&](std::vector<float>& v) {
    v.resize(static_cast<size_t>(n), 0.0f);
    for (size_t i = 0; i < keep.size(); ++i) v[i] = v[static_cast<size_t>(keep[i])];
    v.resize(keep.size());
  };
  if (!st.acc.empty()) remap(st.acc);
  for (std::vector<float>& row : st.obs) remap(row);
  const int gone = n - static_cast<int>(keep.size());
  evicted_ += gone;
  return gone;
}

}  // namespace coppice
