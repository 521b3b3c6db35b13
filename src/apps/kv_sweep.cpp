#include "apps/kv_sweep.h"

#include <algorithm>
#include <cmath>
#include <memory>
#include <cstdio>
#include <string>

#include "engine/kv_eval.h"

namespace coppice::cli {
namespace {

struct Row {
  std::string policy;
  int budget = 0;
  double kv_mib = 0, ppl = 0;
  KlStats kl;
};

}  // namespace

int kv_sweep(Loaded& l, const std::vector<int32_t>& tokens, int n_ctx, int n_chunk, int n_batch) {
  Model& m = *l.model;
  const int64_t V = m.n_vocab();
  const int first = n_ctx / 2;
  KvCache cache = make_kv_cache(l, n_ctx);
  std::vector<float> base;  // [scored][V] log-probs of the full-KV run
  std::vector<int32_t> base_arg;
  std::vector<Row> rows;
  std::vector<double> lp;

  auto run = [&](std::string name, KvPolicyKind kind, int budget, bool cake) {
    std::unique_ptr<KvPolicy> pol;
    if (kind != KvPolicyKind::None) {
      KvPolicyOptions o;
      o.kind = kind;
      o.budget = budget;
      o.cake = cake;
      pol = std::make_unique<KvPolicy>(o);
      m.set_attention_observer(pol->needs_attention() ? pol.get() : nullptr);
    }
    Row r{name, budget, 0, 0, {}};
    double nll = 0;
    int64_t count = 0, agree = 0;
    size_t peak = 0;
    std::vector<double> kls;
    for (int c = 0; c < n_chunk; ++c) {
      std::vector<int32_t> chunk(tokens.begin() + static_cast<std::ptrdiff_t>(c) * n_ctx,
                                 tokens.begin() + static_cast<std::ptrdiff_t>(c + 1) * n_ctx);
      if (l.tok->add_bos() && l.tok->bos() >= 0) chunk[0] = l.tok->bos();
      const ChunkEval ev = eval_chunk(m, cache, pol.get(), chunk, first, n_batch);
      peak = std::max(peak, ev.peak_bytes);
      for (int i = first; i < n_ctx - 1; ++i, ++count) {
        const int32_t arg = log_softmax_row(ev.rows.data() + static_cast<int64_t>(i - first) * V, V, lp);
        nll -= lp[static_cast<size_t>(chunk[i + 1])];
        if (kind == KvPolicyKind::None) {
          base.insert(base.end(), lp.begin(), lp.end());
          base_arg.push_back(arg);
          continue;
        }
        const float* b = base.data() + count * V;
        double kl = 0;
        for (int64_t j = 0; j < V; ++j) kl += std::exp(double{b[j]}) * (b[j] - lp[static_cast<size_t>(j)]);
        kls.push_back(std::max(0.0, kl));
        agree += arg == base_arg[static_cast<size_t>(count)];
      }
    }
    m.set_attention_observer(l.policy && l.policy->needs_attention() ? l.policy.get() : nullptr);
    r.ppl = std::exp(nll / static_cast<double>(count));
    r.kv_mib = static_cast<double>(peak) / 1048576.0;
    r.kl = summarize_kl(kls, agree);
    rows.push_back(r);
    std::fprintf(stderr, "%s budget %d: ppl %.4f\n", name.c_str(), budget, r.ppl);
  };

  run("none", KvPolicyKind::None, 0, false);
  run("window", KvPolicyKind::Window, n_ctx, false);  // budget = context: the stepwise path, no eviction
  for (KvPolicyKind k : {KvPolicyKind::Window, KvPolicyKind::H2O, KvPolicyKind::SnapKV})
    for (int div : {2, 4, 8}) run(kv_policy_name(k), k, n_ctx / div, false);
  for (KvPolicyKind k : {KvPolicyKind::H2O, KvPolicyKind::SnapKV})  // CAKE per-layer budgets
    for (int div : {2, 4, 8}) run(std::string(kv_policy_name(k)) + "+cake", k, n_ctx / div, true);

  std::printf("KV sweep: %d chunks of %d tokens, second half scored (%lld tokens), prompt batch %d, k %s / v %s\n\n",
              n_chunk, n_ctx, static_cast<long long>(n_chunk) * (n_ctx - 1 - first), n_batch,
              dtype_name(cache.k_type(0)), dtype_name(cache.v_type(0)));
  std::printf("| policy | budget | KV peak MiB | perplexity | mean KL | p99 KL | top-1 agree |\n"
              "|---|---:|---:|---:|---:|---:|---:|\n");
  for (const Row& r : rows) {
    if (r.policy == "none")
      std::printf("| none | %d | %.3f | %.4f | - | - | - |\n", n_ctx, r.kv_mib, r.ppl);
    else
      std::printf("| %s | %d | %.3f | %.4f | %.5f | %.5f | %.2f%% |\n", r.policy.c_str(), r.budget, r.kv_mib,
                  r.ppl, r.kl.mean_kl, r.kl.p99_kl, 100.0 * r.kl.top1_agree);
  }
  return 0;
}

}  // namespace coppice::cli
