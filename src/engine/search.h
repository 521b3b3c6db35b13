// Test-time search over a shared-prefix tree of branches (engine/search_branches.h): one
// SearchStrategy interface, a compute budget (total generated tokens over all branches), a
// step unit, and a pluggable Scorer (engine/search_scorer.h). Strategies:
//   best-of-n         n independent samples from one prefill; the best score wins
//   self-consistency  best-of-n, then a majority vote over a regex-extracted answer
//   beam              step-level beam search: each beam samples `expand` next steps with its
//                     Sampler (every sampler option applies), the best `n` survive
//   diverse-beam      beams in groups; a group's choices are penalized for repeating steps
//                     chosen by earlier groups (Vijayakumar et al. 2016, Hamming diversity)
//   tree              ETS-style (Hooper et al. 2025): expand the most promising step-nodes,
//                     keep a set that trades score against KV cost and semantic coverage
//   particles         particle filtering (Puri et al. 2025): weights from the scorer after
//                     each step, systematic resampling when the effective sample size drops
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "engine/sampling.h"
#include "engine/search_branches.h"
#include "engine/search_scorer.h"
#include "model/model.h"
#include "tokenizer/tokenizer.h"

namespace coppice {

enum class SearchKind { BestOfN, SelfConsistency, Beam, DiverseBeam, Tree, Particles };
// "best-of-n", "self-consistency", "beam", "diverse-beam", "tree", "particles"; throws.
SearchKind parse_search_kind(const std::string& s);
const char* search_kind_name(SearchKind k);

struct SearchOptions {
  SearchKind kind = SearchKind::BestOfN;
  int n = 4;                 // samples / beams / tree width / particles
  int64_t budget = 512;      // total generated tokens over all branches
  int max_tokens = 128;      // per candidate
  int max_steps = 0;         // per candidate, in step units (0: no limit)
  StepUnit step;             // default per strategy when kind is Whole (see run_search)
  SamplingParams sampling;   // every branch samples with these (seed varied per branch)
  int expand = 2;            // beam / tree: children sampled per expanded node
  int groups = 2;            // diverse-beam: groups (n is split between them)
  double diversity = 1.0;    // diverse-beam: penalty per earlier-group repeat of a step
  double ess_threshold = 0.5;  // particles: resample when ESS < threshold * n
  double temperature = 1.0;  // particles: weights = exp(score / temperature)
  double kv_weight = 0.05;   // tree: score cost of keeping a node with a new parent (KV)
  double coverage_weight = 0.5;  // tree: bonus for a node whose step text is new
  std::string answer_regex = "([0-9]+)";  // self-consistency: group 1 (or match) is the answer
  BranchOptions branch;      // max_tokens / max_steps are copied from the fields above
};

struct SearchCandidate {
  std::vector<int32_t> tokens;
  std::string text;
  double score = 0;
  double mean_logprob = 0;
  bool finished = false;  // ended by end-of-generation or max_tokens (not cut by the budget)
  std::string answer;     // self-consistency: the extracted answer ("" when none)
};

struct SearchResult {
  std::vector<SearchCandidate> candidates;  // best first
  int64_t tokens_spent = 0;
  int64_t kv_blocks_peak = 0;         // blocks held at the peak (shared counted once)
  int64_t kv_blocks_independent = 0;  // peak blocks if every branch were its own request
  int64_t forward_steps = 0;          // Model::step calls after the prompt
  std::string answer;                 // self-consistency: the majority answer
  int answer_votes = 0;
};

struct SearchProgress {
  int64_t tokens_spent = 0;
  int64_t budget = 0;
  int live_branches = 0;
  double best_score = 0;
  std::string best_text;  // best candidate (or partial) so far
};
using ProgressFn = std::function<void(const SearchProgress&)>;

// Everything a strategy drives: the branches, the scorer, the options, progress reports.
struct SearchContext {
  BranchSet& branches;
  Scorer& scorer;
  const SearchOptions& opts;
  const std::string& prompt_text;
  ProgressFn progress;                    // may be empty
  std::vector<SearchCandidate> finished;  // collected candidates
  uint64_t seed_counter = 0;

  uint64_t next_seed();  // distinct, deterministic per search
  double score(Branch& b);  // runs the scorer, stores b.score
  SearchCandidate candidate(const Branch& b) const;
  void report(const std::vector<int>& live);
  int64_t budget_left() const { return opts.budget - branches.tokens_spent(); }
};

class SearchStrategy {
 public:
  virtual ~SearchStrategy() = default;
  // Runs from the root branch (prompt prefilled) until the budget is spent or every branch
  // has finished; leaves candidates in ctx.finished.
  virtual void run(SearchContext& ctx, int root) = 0;
};
std::unique_ptr<SearchStrategy> make_strategy(SearchKind k);

// Prefills the prompt once and runs the strategy. The cache must be empty of the sequence
// ids the search uses (opts.branch.first_seq onward); every branch is freed on return.
SearchResult run_search(Model& model, KvCache& cache, const Tokenizer& tok, const std::vector<int32_t>& prompt,
                        const std::string& prompt_text, Scorer& scorer, const SearchOptions& opts,
                        const ProgressFn& progress = {});

}  // namespace coppice
