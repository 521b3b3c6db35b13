// Single-sequence generation on top of Model::step: prompt prefill in chunks, then sampled
// decode. The CLI uses it directly; the server's scheduler batches many of these.
#pragma once
#include <functional>
#include <vector>

#include "engine/sampling.h"
#include "model/kv_policy.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"

namespace coppice {

struct GenerateOptions {
  int n_predict = 128;   // < 0: until end of generation or context full
  int n_batch = 512;     // prompt tokens per forward step
  bool stop_at_eog = true;
  // Evicts after every step once the sequence passes its budget (null: never). Policies that
  // rank by attention must also be the model's attention observer.
  KvPolicy* kv_policy = nullptr;
};

struct GenerateStats {
  int n_prompt = 0;
  int n_generated = 0;
  double prompt_ms = 0;
  double gen_ms = 0;
};

// Evaluates `prompt` after whatever the sequence already holds, then samples up to n_predict
// tokens. on_token returns false to stop early. The sequence keeps its KV for the next turn.
GenerateStats generate(Model& model, KvCache& cache, SeqId seq, const Tokenizer& tok,
                       Sampler& sampler, const std::vector<int32_t>& prompt,
                       const GenerateOptions& opts, const std::function<bool(int32_t)>& on_token);

// Runs tokens through the model in chunks of n_batch; returns the last token's logits row
// (or all rows when all_logits, [n][n_vocab]). Positions continue after the sequence's last
// one (not its length: eviction makes them sparse). A policy evicts after each chunk.
void prefill(Model& model, KvCache& cache, SeqId seq, const std::vector<int32_t>& tokens,
             int n_batch, bool all_logits, std::vector<float>& out, KvPolicy* policy = nullptr);

}  // namespace coppice
