// Mixture-of-experts feed-forward (Mixtral, Qwen2-MoE, Qwen3-MoE). Each token is routed to its
// top-k experts (softmax over all experts first, as in Mixtral / Qwen); tokens are then grouped
// by expert so that each expert's weights are read once per step, for its tokens only.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "model/model.h"
#include "ops/ops.h"

namespace coppice {

void Model::moe_ffn(const LayerWeights& L, int n, int il) {
  const int64_t E = cfg_.n_embd, ne = cfg_.n_expert, k = cfg_.n_expert_used, ff = cfg_.n_ff_exp;
  const float* xn = s_.xn.data();
  float* out = s_.tmp.data();
  const size_t un = static_cast<size_t>(n);
  if (s_.router.size() < un * ne) s_.router.resize(un * ne);
  s_.sel.resize(un * k);
  s_.sel_w.resize(un * k);

  // Routing: probabilities, top-k (ties to the lower expert id), optional renormalization.
  ops::matmul(L.gate_inp, xn, n, s_.router.data(), *pool_, s_.act);
  for (int i = 0; i < n; ++i) {
    float* p = s_.router.data() + i * ne;
    ops::softmax(p, ne);
    int* sel = s_.sel.data() + i * k;
    float* w = s_.sel_w.data() + i * k;
    float sum = 0;
    for (int64_t j = 0; j < k; ++j) {
      int best = -1;
      for (int e = 0; e < ne; ++e) {
        if (std::find(sel, sel + j, e) != sel + j) continue;
        if (best < 0 || p[e] > p[best]) best = e;
      }
      sel[j] = best;
      w[j] = p[best];
      sum += p[best];
    }
    if (cfg_.moe_norm_topk)
      for (int64_t j = 0; j < k; ++j) w[j] /= sum;
  }

  if (observer_) observer_->observe_router(il, s_.router.data(), n, ne);

  // Group (token, slot) pairs by expert: counting sort.
  s_.expert_start.assign(static_cast<size_t>(ne + 1), 0);
  for (size_t j = 0; j < un * k; ++j) ++s_.expert_start[s_.sel[j] + 1];
  for (int64_t e = 0; e < ne; ++e) s_.expert_start[e + 1] += s_.expert_start[e];
  s_.by_expert.resize(un * k);
  s_.expert_fill.assign(s_.expert_start.begin(), s_.expert_start.end() - 1);
  for (size_t j = 0; j < un * k; ++j)  // stable: token order within an expert
    s_.by_expert[static_cast<size_t>(s_.expert_fill[s_.sel[j]]++)] = static_cast<int>(j);

  std::memset(out, 0, sizeof(float) * un * E);
  for (int64_t e = 0; e < ne; ++e) {
    const int b = s_.expert_start[e], m = s_.expert_start[e + 1] - b;
    if (m == 0) continue;
    const size_t um = static_cast<size_t>(m);
    if (s_.xe.size() < um * E) s_.xe.resize(um * E);
    if (s_.ye.size() < um * E) s_.ye.resize(um * E);
    if (s_.ge.size() < um * ff) s_.ge.resize(um * ff);
    if (s_.ue.size() < um * ff) s_.ue.resize(um * ff);
    for (int r = 0; r < m; ++r) {
      const int tok = s_.by_expert[b + r] / static_cast<int>(k);
      std::memcpy(s_.xe.data() + r * E, xn + tok * E, sizeof(float) * E);
    }
    ops::matmul(L.gate_exps.at(e), s_.xe.data(), m, s_.ge.data(), *pool_, s_.act);
    ops::matmul(L.up_exps.at(e), s_.xe.data(), m, s_.ue.data(), *pool_, s_.act);
    ops::swiglu(s_.ge.data(), s_.ue.data(), m * ff);
    ops::matmul(L.down_exps.at(e), s_.ge.data(), m, s_.ye.data(), *pool_, s_.act);
    if (observer_) {
      std::vector<float> w(um);  // [m] gate weights of this expert's tokens
      for (int r = 0; r < m; ++r) w[static_cast<size_t>(r)] = s_.sel_w[static_cast<size_t>(s_.by_expert[b + r])];
      observer_->observe_expert(il, static_cast<int>(e), m, w.data(), s_.ye.data(), E);
    }
    for (int r = 0; r < m; ++r) {
      const int slot = s_.by_expert[b + r];
      ops::axpy(out + (slot / k) * E, s_.sel_w[slot], s_.ye.data() + r * E, E);
    }
  }

  if (cfg_.n_ff_shexp > 0) {  // Qwen2-MoE shared expert, gated by sigmoid(w . x)
    const int64_t sf = cfg_.n_ff_shexp;
    ops::matmul(L.gate_shexp, xn, n, s_.gate.data(), *pool_, s_.act);
    ops::matmul(L.up_shexp, xn, n, s_.up.data(), *pool_, s_.act);
    ops::swiglu(s_.gate.data(), s_.up.data(), n * sf);
    if (s_.ye.size() < un * E) s_.ye.resize(un * E);
    ops::matmul(L.down_shexp, s_.gate.data(), n, s_.ye.data(), *pool_, s_.act);
    for (int i = 0; i < n; ++i) {
      double dot = 0;
      for (int64_t j = 0; j < E; ++j) dot += static_cast<double>(xn[i * E + j]) * L.gate_inp_shexp[j];
      const float g = static_cast<float>(1.0 / (1.0 + std::exp(-dot)));
      ops::axpy(out + i * E, g, s_.ye.data() + i * E, E);
    }
  }
}

}  // namespace coppice
