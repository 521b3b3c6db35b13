#include "engine/generate.h"

#include <chrono>

#include "util/error.h"

namespace coppice {
namespace {
double ms_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}
}  // namespace

void prefill(Model& model, KvCache& cache, SeqId seq, const std::vector<int32_t>& tokens,
             int n_batch, bool all_logits, std::vector<float>& out, KvPolicy* policy) {
  const int64_t V = model.n_vocab();
  std::vector<BatchToken> batch;
  std::vector<float> logits;
  out.clear();
  const int n = static_cast<int>(tokens.size());
  for (int start = 0; start < n; start += n_batch) {
    const int end = std::min(n, start + n_batch);
    batch.clear();
    const int len = cache.length(seq);
    const int32_t base = len == 0 ? 0 : cache.position(seq, len - 1) + 1;
    for (int i = start; i < end; ++i)
      batch.push_back({tokens[i], base + (i - start), seq, all_logits || i == n - 1});
    model.step(batch, cache, logits);
    if (policy != nullptr) policy->enforce(cache, seq);
    if (all_logits) out.insert(out.end(), logits.begin(), logits.end());
    else if (end == n) out.assign(logits.end() - V, logits.end());
  }
}

GenerateStats generate(Model& model, KvCache& cache, SeqId seq, const Tokenizer& tok,
                       Sampler& sampler, const std::vector<int32_t>& prompt,
                       const GenerateOptions& opts, const std::function<bool(int32_t)>& on_token) {
  GenerateStats st;
  if (prompt.empty()) fail("generate", "empty prompt (nothing to condition on)");
  std::vector<float> logits;
  auto t0 = std::chrono::steady_clock::now();
  prefill(model, cache, seq, prompt, opts.n_batch, false, logits, opts.kv_policy);
  st.prompt_ms = ms_since(t0);
  st.n_prompt = static_cast<int>(prompt.size());
  for (int32_t t : prompt) sampler.accept_prompt(t);

  auto t1 = std::chrono::steady_clock::now();
  const int64_t cap = cache.block_size() * cache.n_blocks();
  BatchToken bt;
  bt.seq = seq;
  bt.want_logits = true;
  std::vector<BatchToken> one(1);
  while (opts.n_predict < 0 || st.n_generated < opts.n_predict) {
    const int32_t id = sampler.sample(logits);
    sampler.accept(id);
    ++st.n_generated;
    if (opts.stop_at_eog && tok.is_eog(id)) break;
    if (!on_token(id)) break;
    if (opts.n_predict >= 0 && st.n_generated >= opts.n_predict) break;
    if (cache.length(seq) >= cap || cache.blocks_needed(seq, 1) > cache.blocks_free()) break;
    bt.token = id;
    bt.pos = cache.length(seq) == 0 ? 0 : cache.position(seq, cache.length(seq) - 1) + 1;
    one[0] = bt;
    model.step(one, cache, logits);
    if (opts.kv_policy != nullptr) opts.kv_policy->enforce(cache, seq);
  }
  st.gen_ms = ms_since(t1);
  return st;
}

}  // namespace coppice
