// One speculative step: draft a tree after the pending token, verify it in one Model::step,
// walk the longest accepted path, keep its KV (moving at most depth rows), drop the rest.
#pragma once
#include <functional>
#include <memory>
#include <vector>

#include "engine/generate.h"
#include "engine/sampling.h"
#include "engine/spec.h"

namespace coppice {

struct SpecStats {
  int64_t spec_steps = 0;   // verify steps with a non-empty draft
  int64_t plain_steps = 0;  // steps decoded without a draft (nothing drafted, or fallback)
  int64_t drafted = 0;      // draft nodes verified
  int64_t accepted = 0;     // draft nodes accepted
  int64_t emitted = 0;      // tokens drawn (accepted drafts plus one per step)
  double spec_ms = 0, plain_ms = 0;
  double acceptance_rate() const { return drafted ? double(accepted) / drafted : 0.0; }
  // Tokens per verify step: 1 + accepted drafts on average.
  double mean_accepted() const { return spec_steps ? 1.0 + double(accepted) / spec_steps : 0.0; }
  void add(const SpecStats& o);
};

// Adaptive draft depth (SpecDec++ / PEARL idea: follow the observed accepted length) and
// fallback to plain decoding when measured speculative throughput does not beat plain decode.
class SpecController {
 public:
  SpecController(int max_nodes, bool adaptive);
  int max_nodes() const { return max_nodes_; }
  int max_depth() const { return depth_; }
  bool speculate();  // false: decode this step plainly
  void record_spec(int accepted, int n_tokens, double ms);
  void record_plain(double ms);

 private:
  int max_nodes_;
  bool adaptive_;
  int depth_;
  double ema_acc_ = -1;              // accepted drafts per verify step
  double spec_rate_ = 0, plain_rate_ = 0;  // EMA tokens per ms
  int n_plain_ = 0, n_spec_ = 0;
  int cooldown_ = 0, backoff_ = 16;  // plain steps left before probing again
};

class SpecDecoder {
 public:
  SpecDecoder(Model& model, KvCache& cache, SeqId seq, Sampler& sampler,
              std::unique_ptr<Drafter> drafter, const SpecConfig& cfg);

  // `context`: the sequence's tokens, ending with the pending token (drawn and accepted by the
  // sampler, not yet in the cache). Verifies a draft after it and appends to `out` the tokens
  // drawn this step (at most max_new, each accepted by the sampler); the last one is the new
  // pending token. Drawing stops after a token for which stop(token) is true.
  void step(std::span<const int32_t> context, int max_new, const std::function<bool(int32_t)>& stop,
            std::vector<int32_t>& out);
  const SpecStats& stats() const { return stats_; }
  Drafter& drafter() { return *drafter_; }

 private:
  int32_t draw(int node, const std::vector<int>& kids);  // returns the drawn token
  Model& model_;
  KvCache& cache_;
  SeqId seq_;
  Sampler& sampler_;
  std::unique_ptr<Drafter> drafter_;
  SpecController ctl_;
  Rng rng_;  // speculative acceptance draws (drafts with a distribution q)
  SpecStats stats_;
  DraftTree tree_;
  std::vector<BatchToken> batch_;
  std::vector<int32_t> step_tokens_;  // [1 + n] root then nodes
  std::vector<float> logits_;         // [1 + n][n_vocab]
  std::vector<float> p_;              // [n_vocab]
  int chosen_ = -1;                   // batch index of the child drawn last, or -1
};

// generate() with speculative decoding: same contract and same output (greedy: identical
// tokens; sampling: same distribution, and identical tokens for deterministic drafters).
GenerateStats generate_spec(Model& model, KvCache& cache, SeqId seq, const Tokenizer& tok,
                            Sampler& sampler, const std::vector<int32_t>& prompt,
                            const GenerateOptions& opts, SpecDecoder& spec,
                            const std::function<bool(int32_t)>& on_token);

}  // namespace coppice
