#include "engine/prune_eval.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <vector>

#include "engine/generate.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"

namespace coppice {
namespace {

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

void log_softmax(const float* row, int64_t V, std::vector<double>& out) {
  out.resize(static_cast<size_t>(V));
  const float mx = *std::max_element(row, row + V);
  double sum = 0;
  for (int64_t j = 0; j < V; ++j) sum += std::exp(static_cast<double>(row[j]) - mx);
  const double lse = mx + std::log(sum);
  for (int64_t j = 0; j < V; ++j) out[j] = row[j] - lse;
}

struct Run {
  std::vector<float> logits;  // [n_chunks * n_ctx][V]
  double prefill_s = 0, decode_tps = 0;
};

Run run_model(Model& m, const std::vector<std::vector<int32_t>>& chunks, int decode_tokens) {
  Run r;
  const int n_ctx = static_cast<int>(chunks[0].size());
  KvCache cache = m.make_cache(n_ctx + decode_tokens + 1);
  std::vector<float> logits;
  for (size_t c = 0; c < chunks.size(); ++c) {
    cache.add_sequence(0);
    const double t0 = now_s();
    prefill(m, cache, 0, chunks[c], n_ctx, true, logits);
    r.prefill_s += now_s() - t0;
    r.logits.insert(r.logits.end(), logits.begin(), logits.end());
    if (c == 0 && decode_tokens > 0) {  // greedy decode after the first chunk
      const int64_t V = m.n_vocab();
      int32_t t = static_cast<int32_t>(std::max_element(logits.end() - V, logits.end()) - (logits.end() - V));
      std::vector<float> step;
      const double t1 = now_s();
      for (int i = 0; i < decode_tokens; ++i) {
        const BatchToken bt{t, n_ctx + i, 0, true};
        m.step(std::span<const BatchToken>(&bt, 1), cache, step);
        t = static_cast<int32_t>(std::max_element(step.begin(), step.end()) - step.begin());
      }
      r.decode_tps = decode_tokens / std::max(1e-9, now_s() - t1);
    }
    cache.remove_sequence(0);
  }
  return r;
}

}  // namespace

PruneEval evaluate_pruned(const std::string& base, const std::string& pruned, const std::string& text_file,
                          const PruneEvalOptions& opts) {
  std::ifstream in(text_file, std::ios::binary);
  if (!in) fail("prune", text_file + ": cannot open evaluation text");
  const std::string text{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  ModelOptions mo;
  mo.n_threads = opts.n_threads;
  PruneEval e;
  e.bytes_base = std::filesystem::file_size(base);
  e.bytes_pruned = std::filesystem::file_size(pruned);

  std::vector<std::vector<int32_t>> chunks;
  Run rb, rp;
  int64_t V = 0;
  {
    std::unique_ptr<Model> mb = Model::load(base, mo);
    const std::unique_ptr<Tokenizer> tok = Tokenizer::from_gguf(mb->file());
    const std::vector<int32_t> toks = tok->encode(text, false, false);
    const int n_ctx = std::max(8, opts.n_ctx);
    for (size_t b = 0; b + static_cast<size_t>(n_ctx) <= toks.size() &&
                       static_cast<int>(chunks.size()) < opts.max_chunks; b += static_cast<size_t>(n_ctx)) {
      chunks.emplace_back(toks.begin() + static_cast<std::ptrdiff_t>(b),
                          toks.begin() + static_cast<std::ptrdiff_t>(b) + n_ctx);
      if (tok->add_bos() && tok->bos() >= 0) chunks.back()[0] = tok->bos();
    }
    if (chunks.empty())
      fail("prune", text_file + ": " + std::to_string(toks.size()) + " tokens, fewer than one chunk of " +
                        std::to_string(n_ctx));
    V = mb->n_vocab();
    rb = run_model(*mb, chunks, opts.decode_tokens);
  }
  {
    std::unique_ptr<Model> mp = Model::load(pruned, mo);
    if (mp->n_vocab() != V)
      fail("prune", pruned + ": vocabulary of " + std::to_string(mp->n_vocab()) + ", the base has " + std::to_string(V));
    rp = run_model(*mp, chunks, opts.decode_tokens);
  }

  const int n_ctx = static_cast<int>(chunks[0].size());
  double nll_b = 0, nll_p = 0, kl = 0;
  int64_t agree = 0;
  std::vector<double> lb, lp;
  for (size_t c = 0; c < chunks.size(); ++c) {
    for (int i = n_ctx / 2; i < n_ctx - 1; ++i) {
      const size_t row = (c * static_cast<size_t>(n_ctx) + static_cast<size_t>(i)) * static_cast<size_t>(V);
      log_softmax(rb.logits.data() + row, V, lb);
      log_softmax(rp.logits.data() + row, V, lp);
      const int32_t next = chunks[c][static_cast<size_t>(i) + 1];
      nll_b -= lb[next];
      nll_p -= lp[next];
      double k = 0;
      for (int64_t j = 0; j < V; ++j) k += std::exp(lb[j]) * (lb[j] - lp[j]);
      kl += k;
      agree += std::max_element(lb.begin(), lb.end()) - lb.begin() == std::max_element(lp.begin(), lp.end()) - lp.begin();
      ++e.n_scored;
    }
  }
  const double n = static_cast<double>(std::max<int64_t>(1, e.n_scored));
  e.ppl_base = std::exp(nll_b / n);
  e.ppl_pruned = std::exp(nll_p / n);
  e.mean_kl = kl / n;
  e.top1_agree = static_cast<double>(agree) / n;
  const double toks = static_cast<double>(chunks.size()) * n_ctx;
  e.prefill_tps_base = toks / std::max(1e-9, rb.prefill_s);
  e.prefill_tps_pruned = toks / std::max(1e-9, rp.prefill_s);
  e.decode_tps_base = rb.decode_tps;
  e.decode_tps_pruned = rp.decode_tps;
  return e;
}

}  // namespace coppice
