// CAKE-style per-layer budgets (Qin et al. 2025, "CAKE: Cascading and Adaptive KV Cache
// Eviction with Layer Preferences", ICLR 2025) on top of h2o / snapkv: every layer keeps the
// last obs_window() queries' attention; at eviction the total budget (budget x n_layer cells)
// is split by the layers' preferences H^(1/tau1) V^(1/tau2) and each layer keeps its own top
// cells by the policy's score on that layer (KvCache::compact_layers: per-layer slots, so a
// layer keeping fewer cells holds less memory; enforce returns cells summed over layers). The split is recomputed at every eviction
// from the current window (the paper fixes it once after prefill; here decode runs under the
// policy from the first token, so the window is wherever the sequence is). It is recomputed
// once every W evictions, when the window holds new queries (its statistics cost W x heads x
// cells logarithms per layer).
#include <algorithm>
#include <cmath>
#include <numeric>
#include <unordered_map>

#include "model/kv_policy.h"
#include "util/error.h"

namespace coppice {

LayerDispersion layer_dispersion(const std::deque<AttnRow>& rows, int prefix) {
  LayerDispersion d;
  if (rows.empty() || prefix <= 0 || rows[0].n <= 0) return d;
  const int heads = static_cast<int>(rows[0].w.size()) / rows[0].n;
  const double w = static_cast<double>(rows.size());
  for (const AttnRow& r : rows) CP_ASSERT(r.n >= prefix && static_cast<int>(r.w.size()) == heads * r.n);
  for (int h = 0; h < heads; ++h)
    for (int j = 0; j < prefix; ++j) {
      double s = 0, s2 = 0;
      for (const AttnRow& r : rows) {
        const double a = r.w[static_cast<size_t>(h) * r.n + j];
        if (a > 0) d.entropy -= a * std::log(a);
        s += a;
        s2 += a * a;
      }
      d.variance += std::max(0.0, s2 / w - (s / w) * (s / w));  // population variance over rows
    }
  return d;
}

double cake_preference(const LayerDispersion& d, double tau1, double tau2) {
  if (d.entropy <= 0 || d.variance <= 0) return 0;
  return std::pow(d.entropy, 1.0 / tau1) * std::pow(d.variance, 1.0 / tau2);
}

std::vector<int> split_layer_budgets(std::span<const double> pref, int64_t total, std::span<const int> cap, int floor) {
  const size_t L = pref.size();
  CP_ASSERT(cap.size() == L);
  std::vector<int> lo(L), out(cap.begin(), cap.end());
  int64_t lo_sum = 0, hi_sum = 0;
  double pmax = 0;
  for (size_t l = 0; l < L; ++l) {
    lo[l] = std::min(cap[l], std::max(0, floor));
    lo_sum += lo[l];
    hi_sum += cap[l];
    pmax = std::max(pmax, pref[l]);
  }
  if (hi_sum <= total) return out;
  if (lo_sum >= total) return lo;
  // Layers without preference get a vanishing share, so they fill only after the rest cap.
  std::vector<double> p(L);
  for (size_t l = 0; l < L; ++l) p[l] = pmax > 0 ? std::max(pref[l], 1e-9 * pmax) : 1.0;
  auto at = [&](double lam, size_t l) { return std::clamp(lam * p[l], double(lo[l]), double(cap[l])); };
  auto sum = [&](double lam) {
    double s = 0;
    for (size_t l = 0; l < L; ++l) s += at(lam, l);
    return s;
  };
  const double t = static_cast<double>(total);
  double a = 0, b = 1;
  while (sum(b) < t) b *= 2;
  for (int it = 0; it < 200; ++it) {
    const double m = 0.5 * (a + b);
    (sum(m) < t ? a : b) = m;
  }
  std::vector<double> frac(L);
  int64_t got = 0;
  for (size_t l = 0; l < L; ++l) {
    const double x = at(b, l);
    out[l] = std::clamp(static_cast<int>(std::floor(x)), lo[l], cap[l]);
    frac[l] = x - out[l];
    got += out[l];
  }
  // Largest remainders first (ties: the lower layer); cells left over go one per layer.
  std::vector<size_t> order(L);
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(), [&](size_t x, size_t y) { return frac[x] > frac[y]; });
  while (got < total) {
    bool moved = false;
    for (size_t k = 0; k < L && got < total; ++k)
      if (out[order[k]] < cap[order[k]]) ++out[order[k]], ++got, moved = true;
    if (!moved) break;
  }
  while (got > total) {
    bool moved = false;
    for (size_t k = L; k-- > 0 && got > total;)
      if (out[order[k]] > lo[order[k]]) --out[order[k]], --got, moved = true;
    if (!moved) break;
  }
  return out;
}

void KvPolicy::observe_layer(int layer, std::span<const BatchToken> batch, std::span<const int> cells, const float* q,
                             const ops::AttentionShape& shape, const KvCache& cache) {
  const int n = static_cast<int>(batch.size()), W = obs_window();
  const int64_t qd = static_cast<int64_t>(shape.n_head) * shape.head_dim;
  // later_[i]: tokens of batch[i]'s sequence after it in the batch (one backward pass, not a
  // scan per token: a prefill batch has thousands).
  later_.resize(static_cast<size_t>(n));
  {
    std::unordered_map<SeqId, int> seen;
    for (int i = n; i-- > 0;) later_[static_cast<size_t>(i)] = seen[batch[i].seq]++;
  }
  for (int i = 0; i < n; ++i) {
    const SeqId seq = batch[i].seq;
    SeqState& st = st_[seq];
    if (st.layers.size() < static_cast<size_t>(cache.n_layer())) st.layers.resize(static_cast<size_t>(cache.n_layer()));
    LayerState& ls = st.layers[static_cast<size_t>(layer)];
    const bool in_window = later_[static_cast<size_t>(i)] < W;
    if (o_.kind == KvPolicyKind::SnapKV && !in_window) continue;
    const int len = cache.layer_length(layer, seq);
    const int visible = cells[i] + 1 - (cache.length(seq) - len);  // the layer's own cells
    cache.chunks(layer, seq, 0, cells[i] + 1, chunks_);
    if (w_.size() < static_cast<size_t>(visible)) w_.resize(static_cast<size_t>(visible));
    AttnRow* row = nullptr;
    if (in_window) {
      std::vector<float> buf;  // the row leaving the window lends its buffer (no allocation per step)
      if (static_cast<int>(ls.win.size()) >= W) {
        buf = std::move(ls.win.front().w);
        ls.win.pop_front();
      }
      buf.resize(static_cast<size_t>(shape.n_head) * visible);
      ls.win.push_back({visible, std::move(buf)});
      while (static_cast<int>(ls.win.size()) > W) ls.win.pop_front();
      row = &ls.win.back();
    }
    if (o_.kind == KvPolicyKind::H2O && ls.acc.size() < static_cast<size_t>(len)) ls.acc.resize(static_cast<size_t>(len), 0.0f);
    for (int h = 0; h < shape.n_head; ++h) {
      ops::attention_weights(q + i * qd, chunks_, shape, h, w_.data());
      if (o_.kind == KvPolicyKind::H2O)
        for (int c = 0; c < visible; ++c) ls.acc[static_cast<size_t>(c)] += w_[static_cast<size_t>(c)];
      if (row != nullptr) std::copy(w_.begin(), w_.begin() + visible, row->w.begin() + static_cast<ptrdiff_t>(h) * visible);
    }
  }
}

int KvPolicy::enforce_layers(KvCache& cache, SeqId seq) {
  const int L = cache.n_layer(), W = obs_window();
  SeqState& st = st_[seq];
  st.layers.resize(static_cast<size_t>(L));
  std::vector<int> n(static_cast<size_t>(L));
  int64_t have = 0;
  for (int l = 0; l < L; ++l) have += n[static_cast<size_t>(l)] = cache.layer_length(l, seq);
  const int64_t total = static_cast<int64_t>(o_.budget) * L;
  if (have <= total) return 0;
  std::vector<double> pref(static_cast<size_t>(L));
  const bool resplit = st.budgets.size() != static_cast<size_t>(L) || ++st.evictions_since_split >= W;
  for (int l = 0; l < L && resplit; ++l) {
    const LayerState& ls = st.layers[static_cast<size_t>(l)];
    int prefix = n[static_cast<size_t>(l)] - static_cast<int>(ls.win.size());
    for (const AttnRow& r : ls.win) prefix = std::min(prefix, r.n);
    pref[static_cast<size_t>(l)] = cake_preference(layer_dispersion(ls.win, prefix), o_.cake_tau1, o_.cake_tau2);
  }
  // Every layer keeps at least its observation window + 1 cells.
  if (resplit) {
    st.budgets = split_layer_budgets(pref, total, n, W + 1);
    st.evictions_since_split = 0;
  }
  const std::vector<int> B = st.budgets;
  std::vector<std::vector<int>> keep(static_cast<size_t>(L));
  for (int l = 0; l < L; ++l) {
    LayerState& ls = st.layers[static_cast<size_t>(l)];
    const int nl = n[static_cast<size_t>(l)], b = B[static_cast<size_t>(l)];
    std::vector<int>& k = keep[static_cast<size_t>(l)];
    if (nl <= b) {
      k.resize(static_cast<size_t>(nl));
      std::iota(k.begin(), k.end(), 0);
    } else if (o_.kind == KvPolicyKind::H2O) {
      ls.acc.resize(static_cast<size_t>(nl), 0.0f);
      k = select_h2o(ls.acc, b, o_.recent >= 0 ? std::min(o_.recent, b - 1) : b / 2);
    } else {
      std::vector<float> obs(static_cast<size_t>(nl), 0.0f);
      for (const AttnRow& r : ls.win) {
        const int heads = r.n > 0 ? static_cast<int>(r.w.size()) / r.n : 0;
        for (int h = 0; h < heads; ++h)
          for (int c = 0; c < r.n; ++c) obs[static_cast<size_t>(c)] += r.w[static_cast<size_t>(h) * r.n + c];
      }
      k = select_snapkv(obs, b, W, o_.pool);
    }
  }
  if (!cache.compact_layers(seq, keep)) return 0;
  layer_budgets_ = B;
  int64_t kept = 0;
  for (int l = 0; l < L; ++l) {
    const std::vector<int>& k = keep[static_cast<size_t>(l)];
    kept += static_cast<int64_t>(k.size());
    LayerState& ls = st.layers[static_cast<size_t>(l)];
    if (!ls.acc.empty()) {
      for (size_t i = 0; i < k.size(); ++i) ls.acc[i] = ls.acc[static_cast<size_t>(k[i])];
      ls.acc.resize(k.size());
    }
    for (AttnRow& r : ls.win) {  // the kept cells this query saw form a prefix of k
      const int m = static_cast<int>(std::lower_bound(k.begin(), k.end(), r.n) - k.begin());
      const int heads = r.n > 0 ? static_cast<int>(r.w.size()) / r.n : 0;
      std::vector<float> w(static_cast<size_t>(heads) * m);
      for (int h = 0; h < heads; ++h)
        for (int i = 0; i < m; ++i)
          w[static_cast<size_t>(h) * m + i] = r.w[static_cast<size_t>(h) * r.n + k[static_cast<size_t>(i)]];
      r.n = m;
      r.w = std::move(w);
    }
  }
  const int gone = static_cast<int>(have - kept);
  layer_cells_evicted_ += gone;
  n_layer_ = L;
  return gone;
}

}  // namespace coppice
