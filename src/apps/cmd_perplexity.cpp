// `coppice perplexity`: text file -> perplexity over chunks of -c tokens. Like llama.cpp's,
// each chunk starts fresh with BOS and only its second half is scored, so every scored token
// sees at least n_ctx/2 tokens of context. `--kl-base FILE`: the first run saves the
// log-probabilities; later runs (quantized, pruned, other KV types) report KL and top-1 agreement.
#include <nlohmann/json.hpp>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <memory>

#include "apps/commands.h"
#include "apps/common.h"
#include "apps/kv_sweep.h"
#include "engine/generate.h"
#include "engine/kl_store.h"
#include "engine/kv_eval.h"
#include "util/error.h"

namespace coppice::cli {
namespace {

struct PplArgs {
  ModelArgs model;
  std::string file;
  std::string kl_base;
  int chunks = -1;
  bool json = false;
  bool kv_sweep = false;
};

int perplexity(PplArgs a) {
  if (a.file.empty()) fail("cli", "perplexity needs -f FILE");
  const std::string text = read_text(a.file);
  if (a.model.ctx == 0) a.model.ctx = 512;
  Loaded l = load(a.model);
  const int n_ctx = static_cast<int>(l.n_ctx);
  if (n_ctx < 8) fail("cli", "-c must be at least 8 for perplexity");
  std::vector<int32_t> tokens = l.tok->encode(text, false, false);
  std::unique_ptr<KlReader> base;
  std::unique_ptr<KlWriter> save;
  if (!a.kl_base.empty()) {
    if (std::filesystem::exists(a.kl_base)) {
      base = std::make_unique<KlReader>(a.kl_base);
      if (base->n_vocab() != l.model->n_vocab())
        fail("kl", a.kl_base + ": saved with a vocabulary of " + std::to_string(base->n_vocab()) +
                       ", this model has " + std::to_string(l.model->n_vocab()));
      if (base->tokens() != tokens || base->n_ctx() != n_ctx)
        fail("kl", a.kl_base + ": saved for a different text or -c (" + std::to_string(base->n_ctx()) + ")");
    }
  }
  int n_chunk = static_cast<int>(tokens.size()) / n_ctx;
  if (a.chunks >= 0 && a.chunks < n_chunk) n_chunk = a.chunks;
  if (n_chunk == 0)
    fail("cli", a.file + ": " + std::to_string(tokens.size()) + " tokens, fewer than one chunk of -c " +
                    std::to_string(n_ctx));
  if (a.kv_sweep) return kv_sweep(l, tokens, n_ctx, n_chunk, a.model.batch);
  if (!a.kl_base.empty() && !base) save = std::make_unique<KlWriter>(a.kl_base, l.model->n_vocab(), tokens, n_ctx);

  const int64_t V = l.model->n_vocab();
  const int first = n_ctx / 2;
  double nll = 0;
  int64_t count = 0, agree = 0;
  std::vector<double> kls;
  std::vector<float> logits;
  KvCache cache = make_kv_cache(l, n_ctx);
  const bool tty = isatty(2) && !a.json;
  int64_t peak_blocks = 0;
  size_t peak_bytes = 0;
  for (int c = 0; c < n_chunk; ++c) {
    std::vector<int32_t> chunk(tokens.begin() + static_cast<std::ptrdiff_t>(c) * n_ctx,
                               tokens.begin() + static_cast<std::ptrdiff_t>(c + 1) * n_ctx);
    if (l.tok->add_bos() && l.tok->bos() >= 0) chunk[0] = l.tok->bos();
    const ChunkEval ev = eval_chunk(*l.model, cache, l.policy.get(), chunk, first, a.model.batch);
    peak_blocks = std::max(peak_blocks, ev.peak_blocks);
    peak_bytes = std::max(peak_bytes, ev.peak_bytes);
    logits = ev.rows;
    for (int i = first; i < n_ctx - 1; ++i) {
      const float* row = logits.data() + static_cast<int64_t>(i - first) * V;
      float mx = row[0];
      for (int64_t j = 1; j < V; ++j) mx = std::max(mx, row[j]);
      double sum = 0;
      for (int64_t j = 0; j < V; ++j) sum += std::exp(static_cast<double>(row[j]) - mx);
      nll += (mx + std::log(sum)) - row[chunk[i + 1]];
      ++count;
      if (save) save->add(row);
      if (base) {
        bool same = false;
        kls.push_back(base->kl(count - 1, row, &same));
        agree += same;
      }
    }
    if (tty) std::fprintf(stderr, "\r[%d/%d] ppl %.4f", c + 1, n_chunk, std::exp(nll / count));
  }
  if (tty) std::fputc('\n', stderr);
  if (save) save->finish();
  const double ppl = std::exp(nll / count);
  const KlStats ks = summarize_kl(kls, agree);
  const double kv_mib = static_cast<double>(peak_bytes) / 1048576.0;
  if (a.json) {
    nlohmann::json j = {{"perplexity", ppl}, {"n_tokens_scored", count}, {"n_chunks", n_chunk},
                        {"n_ctx", n_ctx}, {"kv_peak_mib", kv_mib}};
    if (base)
      j["kl"] = {{"mean", ks.mean_kl}, {"median", ks.median_kl}, {"p90", ks.p90_kl},
                 {"p99", ks.p99_kl}, {"max", ks.max_kl}, {"top1_agreement", ks.top1_agree}};
    if (save) j["kl_base_saved"] = a.kl_base;
    std::cout << j.dump(2) << "\n";
  } else {
    std::printf("perplexity: %.4f over %lld tokens (%d chunks of %d)\n", ppl,
                static_cast<long long>(count), n_chunk, n_ctx);
    if (a.model.verbose || l.policy)
      std::printf("kv: peak %.3f MiB (%lld blocks); %s\n", kv_mib, static_cast<long long>(peak_blocks),
                  kv_usage(cache, l.policy.get()).c_str());
    if (save) std::printf("saved base log-probabilities to %s\n", a.kl_base.c_str());
    if (base)
      std::printf("KL divergence vs base: mean %.6f, median %.6f, p90 %.6f, p99 %.6f, max %.6f\n"
                  "top-1 agreement: %.2f%%\n",
                  ks.mean_kl, ks.median_kl, ks.p90_kl, ks.p99_kl, ks.max_kl, 100.0 * ks.top1_agree);
  }
  return 0;
}

}  // namespace

Action register_perplexity(CLI::App& app) {
  auto a = std::make_shared<PplArgs>();
  CLI::App* sub = app.add_subcommand("perplexity", "perplexity of a text file (and KL vs a base)");
  add_model_options(sub, a->model);
  sub->add_option("-f,--file", a->file, "text file")->required();
  sub->add_option("--kl-base", a->kl_base, "save base log-probs here (first run) or compare against them");
  sub->add_option("--chunks", a->chunks, "at most this many chunks");
  sub->add_flag("--json", a->json, "machine-readable output");
  sub->add_flag("--kv-sweep", a->kv_sweep, "table: every KV policy at 50/25/12.5% budgets vs the full KV (KV MiB, ppl, KL, top-1)");
  return [a] { return perplexity(*a); };
}

}  // namespace coppice::cli
