// MoE expert pruning: routing statistics on calibration text and the GGUF rewrite that keeps
// the best experts of every layer (see engine/prune.h).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>

#include "engine/prune.h"
#include "formats/gguf_stream.h"
#include "util/error.h"

namespace coppice {
namespace {

void set_kv(std::vector<gguf::KV>& kvs, const std::string& key, gguf::Value v) {
  for (gguf::KV& kv : kvs)
    if (kv.key == key) { kv.value = std::move(v); return; }
  kvs.push_back({key, std::move(v)});
}

// Layer of "blk.N.REST" and REST, or -1.
int layer_of(const std::string& name, std::string* rest) {
  if (name.rfind("blk.", 0) != 0) return -1;
  const size_t dot = name.find('.', 4);
  if (dot == std::string::npos || dot == 4) return -1;
  int il = 0;
  for (size_t i = 4; i < dot; ++i) {
    if (name[i] < '0' || name[i] > '9') return -1;
    il = il * 10 + (name[i] - '0');
  }
  *rest = name.substr(dot + 1);
  return il;
}

// Tensors with one slice per expert along their last dimension: the router and the stacked
// expert matrices (and their biases, should an architecture have them).
bool per_expert(const std::string& rest) {
  return rest == "ffn_gate_inp.weight" || rest == "ffn_gate_inp.bias" ||
         rest.find("_exps.") != std::string::npos;
}

}  // namespace

ExpertStats::ExpertStats(int n_layer, int n_expert)
    : n_expert_(n_expert), tokens_(static_cast<size_t>(n_layer), 0),
      acc_(static_cast<size_t>(n_layer) * static_cast<size_t>(n_expert)) {}

size_t ExpertStats::slot(int il, int e) const {
  CP_ASSERT(il >= 0 && static_cast<size_t>(il) < tokens_.size() && e >= 0 && e < n_expert_);
  return static_cast<size_t>(il) * static_cast<size_t>(n_expert_) + static_cast<size_t>(e);
}
const ExpertStats::Acc& ExpertStats::at(int il, int e) const { return acc_[slot(il, e)]; }

void ExpertStats::observe_router(int il, const float* p, int n_tok, int64_t n_expert) {
  if (il < 0 || static_cast<size_t>(il) >= tokens_.size()) return;
  CP_ASSERT(n_expert == n_expert_);
  tokens_[static_cast<size_t>(il)] += n_tok;
  for (int t = 0; t < n_tok; ++t)
    for (int e = 0; e < n_expert_; ++e)
      acc_[slot(il, e)].prob += p[static_cast<int64_t>(t) * n_expert + e];
}

void ExpertStats::observe_expert(int il, int expert, int m, const float* w, const float* y, int64_t dim) {
  if (il < 0 || static_cast<size_t>(il) >= tokens_.size()) return;
  Acc& a = acc_[slot(il, expert)];
  a.routed += m;
  for (int r = 0; r < m; ++r) {
    double ss = 0;
    for (int64_t j = 0; j < dim; ++j) ss += static_cast<double>(y[r * dim + j]) * y[r * dim + j];
    a.contrib += static_cast<double>(w[r]) * std::sqrt(ss);
  }
}

int64_t ExpertStats::tokens(int il) const {
  return il >= 0 && static_cast<size_t>(il) < tokens_.size() ? tokens_[static_cast<size_t>(il)] : 0;
}
int64_t ExpertStats::routed(int il, int e) const { return at(il, e).routed; }
double ExpertStats::frequency(int il, int e) const {
  return static_cast<double>(at(il, e).routed) / static_cast<double>(std::max<int64_t>(1, tokens(il)));
}
double ExpertStats::mean_prob(int il, int e) const {
  return at(il, e).prob / static_cast<double>(std::max<int64_t>(1, tokens(il)));
}
double ExpertStats::contribution(int il, int e) const {
  return at(il, e).contrib / static_cast<double>(std::max<int64_t>(1, tokens(il)));
}

std::vector<int> ExpertStats::keep(int il, int n_keep) const {
  CP_ASSERT(n_keep >= 0 && n_keep <= n_expert_);
  std::vector<int> idx(static_cast<size_t>(n_expert_));
  std::iota(idx.begin(), idx.end(), 0);
  auto key = [&](int e) { const Acc& a = at(il, e); return std::tuple(a.contrib, a.routed, a.prob); };
  // Best first; stable, so equal keys keep the lower id first.
  std::stable_sort(idx.begin(), idx.end(), [&](int a, int b) { return key(a) > key(b); });
  idx.resize(static_cast<size_t>(n_keep));
  std::sort(idx.begin(), idx.end());
  return idx;
}

PruneReport prune_experts(const gguf::File& f, const std::string& out, const PruneOptions& opts,
                          const ExpertStats& stats) {
  PruneReport rep;
  const std::string arch = f.get_string("general.architecture").value_or("llama");
  const int64_t n_layer = f.get_int(arch + ".block_count").value_or(0);
  const int64_t n_exp = f.get_int(arch + ".expert_count").value_or(0);
  const int64_t n_used = f.get_int(arch + ".expert_used_count").value_or(0);
  if (n_exp <= 0) fail("prune", "experts: not a mixture-of-experts model (no " + arch + ".expert_count)");
  if (n_exp != stats.n_expert())
    fail("prune", "experts: statistics for " + std::to_string(stats.n_expert()) + " experts, model has " +
                      std::to_string(n_exp));
  const int64_t n_keep = opts.experts_keep > 0
                             ? opts.experts_keep
                             : n_exp - static_cast<int64_t>(std::llround(opts.sparsity * static_cast<double>(n_exp)));
  if (n_keep < 1 || n_keep > n_exp)
    fail("prune", "experts: keeping " + std::to_string(n_keep) + " of " + std::to_string(n_exp) +
                      " experts per layer; at least one must stay (lower --sparsity)");
  rep.experts_before = n_exp;
  rep.experts_after = n_keep;
  rep.experts_used = std::min(n_used, n_keep);
  rep.experts_kept.resize(static_cast<size_t>(std::max<int64_t>(0, n_layer)));
  for (int64_t il = 0; il < n_layer; ++il) {
    if (stats.tokens(static_cast<int>(il)) == 0)
      fail("prune", "experts: no calibration statistics for layer " + std::to_string(il));
    rep.experts_kept[static_cast<size_t>(il)] = stats.keep(static_cast<int>(il), static_cast<int>(n_keep));
  }

  std::vector<gguf::StreamTensor> tensors;
  std::vector<const std::vector<int>*> sel;  // per tensor: kept slices, or null (byte copy)
  for (const gguf::TensorInfo& t : f.tensors()) {
    std::string rest;
    const int il = layer_of(t.name, &rest);
    gguf::StreamTensor st{t.name, t.dims, t.type, t.size};
    const std::vector<int>* s = nullptr;
    if (il >= 0 && per_expert(rest)) {
      if (il >= n_layer) fail("prune", "experts: " + t.name + ": layer beyond block_count " + std::to_string(n_layer));
      if (t.dims.empty() || t.dims.back() != n_exp || t.size % static_cast<uint64_t>(n_exp) != 0)
        fail("prune", "experts: " + t.name + ": last dimension is not expert_count " + std::to_string(n_exp));
      s = &rep.experts_kept[static_cast<size_t>(il)];
      st.dims.back() = n_keep;
      st.size = t.size / static_cast<uint64_t>(n_exp) * static_cast<uint64_t>(n_keep);
    }
    sel.push_back(s);
    tensors.push_back(st);
  }

  std::vector<gguf::KV> kvs = f.kvs();
  set_kv(kvs, arch + ".expert_count", gguf::Value::make_u32(static_cast<uint32_t>(n_keep)));
  if (n_used > n_keep) set_kv(kvs, arch + ".expert_used_count", gguf::Value::make_u32(static_cast<uint32_t>(n_keep)));
  set_kv(kvs, "coppice.prune.method", gguf::Value::make_string("experts"));
  set_kv(kvs, "coppice.prune.expert_count_before", gguf::Value::make_u32(static_cast<uint32_t>(n_exp)));

  gguf::StreamWriter w(out, kvs, tensors);
  std::vector<uint8_t> buf;
  for (size_t i = 0; i < f.tensors().size(); ++i) {
    const gguf::TensorInfo& t = f.tensors()[i];
    if (sel[i] == nullptr) {
      w.write_tensor(t.data, t.size);
    } else {  // every expert's slice is contiguous: [n_expert][...] in memory order
      const size_t slice = t.size / static_cast<size_t>(n_exp);
      buf.resize(tensors[i].size);
      for (size_t k = 0; k < sel[i]->size(); ++k)
        std::memcpy(buf.data() + k * slice, t.data + static_cast<size_t>((*sel[i])[k]) * slice, slice);
      w.write_tensor(buf.data(), tensors[i].size);
      ++rep.n_pruned;
      rep.n_weights += t.n_elements();
      rep.n_zeros += t.n_elements() / n_exp * (n_exp - n_keep);
    }
    if (opts.on_progress) opts.on_progress(i + 1, f.tensors().size(), t.name);
  }
  rep.n_tensors = f.tensors().size();
  rep.out_file_bytes = w.bytes_written();
  w.finish();
  rep.in_file_bytes = f.mapping()->size();
  return rep;
}

}  // namespace coppice
