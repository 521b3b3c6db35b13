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
  int64_t pruned = 0;       // draft nodes dropped before verification (the grammar rejects them)
  int64_t accepted = 0;     // draft nodes accepted
  int64_t emitted = 0;      // tokens drawn (accepted drafts plus one per step)
  double spec_ms = 0, plain_ms = 0;
  double acceptance_rate() const { return drafted ? double(accepted) / drafted : 0.0; }
  // Tokens per verify step: 1 + accepted drafts on average.
  double mean_accepted() const { return spec_steps ? 1.0 + double(accepted) / spec_steps : 0.0; }
  // Tokens per ms of verify steps over plain steps of the same run (0 when either is missing).
  double speedup() const {
    if (spec_steps == 0 || plain_steps == 0 || spec_ms <= 0 || plain_ms <= 0) return 0.0;
    return (double(emitted - plain_steps) / spec_ms) / (double(plain_steps) / plain_ms);
  }
  void add(const SpecStats& o);
};

// Adaptive draft size with fallback to plain decoding: the tree budget is chosen among
// {0 (plain), 1, 2, 4, ...} by measured throughput (tokens per ms, EMA) of each size in this
// run: each size is tried first, then mostly the best one, probing others now and then. This
// follows the acceptance length (SpecDec++, PEARL) and the machine's verify cost at once: a
// compute-bound model on a small CPU settles on plain decoding, a memory-bound one on a tree.
class SpecController {
 public:
  SpecController(int max_nodes, bool adaptive);
  int choose();  // the draft budget for this step; 0: decode plainly
  void record(int budget, int n_tokens, double ms);
  int best_budget() const { return arms_[best()]; }

 private:
  int best() const;
  std::vector<int> arms_;     // candidate budgets, ascending, arms_[0] = 0
  std::vector<double> rate_;  // [arms] EMA tokens per ms
  std::vector<int> n_;        // [arms] measurements
  std::vector<int64_t> last_; // [arms] step of the last measurement
  bool adaptive_;
  int64_t t_ = 0;
  int explore_dir_ = 1;
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
  // The target's logits ([n_vocab]) the j-th token of the last step was drawn from: the same
  // row plain decoding computes at that position (logprobs of accepted tokens).
  std::span<const float> drawn_logits(int j) const;

 private:
  int32_t draw(int node, const std::vector<int>& kids);
  int prune_by_constraint();  // drops draft nodes the sampler's constraint rejects; returns how many  // returns the drawn token
 public:
  const SpecController& controller() const { return ctl_; }
 private:
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
  std::vector<int> path_;             // batch indices of the last step's kept path (root first)
};

// generate() with speculative decoding: same contract and same output (greedy: identical
// tokens; sampling: same distribution, and identical tokens for deterministic drafters).
GenerateStats generate_spec(Model& model, KvCache& cache, SeqId seq, const Tokenizer& tok,
                            Sampler& sampler, const std::vector<int32_t>& prompt,
                            const GenerateOptions& opts, SpecDecoder& spec,
                            const std::function<bool(int32_t)>& on_token);

}  // namespace coppice
