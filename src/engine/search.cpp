#include "engine/search.h"

#include <algorithm>
#include <map>

#include "util/error.h"

namespace coppice {

namespace {
bool better(const SearchCandidate& a, const SearchCandidate& b) {
  if (a.score != b.score) return a.score > b.score;
  return a.mean_logprob > b.mean_logprob;
}

// Majority vote over extracted answers: a finished candidate counts 1, one cut off by the
// budget 1/2; ties go to the answer whose best candidate scores higher (self-consistency,
// Wang et al. 2023). Sets each candidate's answer and the result's answer and votes.
void vote(SearchResult& r, const std::string& pattern) {
  const Regex rx(pattern);
  std::map<std::string, std::pair<double, double>> tally;  // answer -> (votes, best score)
  for (SearchCandidate& c : r.candidates) {
    if (!rx.extract_last(c.text, c.answer)) continue;
    auto [it, fresh] = tally.try_emplace(c.answer, 0.0, c.score);
    it->second.first += c.finished ? 1.0 : 0.5;
    it->second.second = std::max(it->second.second, c.score);
  }
  const std::pair<double, double>* best = nullptr;
  for (const auto& [ans, v] : tally) {
    if (!best || v > *best) {
      best = &v;
      r.answer = ans;
    }
  }
  r.answer_votes = 0;
  for (const SearchCandidate& c : r.candidates) r.answer_votes += best && c.answer == r.answer;
}
}  // namespace

uint64_t SearchContext::next_seed() {
  // splitmix64 of (seed, counter): distinct, reproducible streams per forked branch.
  uint64_t z = opts.sampling.seed + 0x9E3779B97F4A7C15ULL * (++seed_counter);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

double SearchContext::score(Branch& b) {
  ScoreInput in;
  in.prompt = prompt_text;
  in.text = b.text;
  in.tokens = b.tokens;
  in.logprob_sum = b.logprob_sum;
  in.finished = b.done;
  b.score = scorer.score(in);
  return b.score;
}

SearchCandidate SearchContext::candidate(const Branch& b) const {
  SearchCandidate c;
  c.tokens = b.tokens;
  c.text = b.text;
  c.score = b.score;
  const size_t n = b.tokens.size() + (b.eog ? 1 : 0);
  c.mean_logprob = n ? b.logprob_sum / static_cast<double>(n) : 0.0;
  c.finished = b.done;
  return c;
}

void SearchContext::report(const std::vector<int>& live) {
  if (!progress) return;
  SearchProgress p;
  p.tokens_spent = branches.tokens_spent();
  p.budget = opts.budget;
  p.live_branches = static_cast<int>(live.size());
  bool any = false;
  for (const SearchCandidate& c : finished)
    if (!any || c.score > p.best_score) p.best_score = c.score, p.best_text = c.text, any = true;
  for (int id : live) {
    const Branch& b = branches.at(id);
    if (!any || b.score > p.best_score) p.best_score = b.score, p.best_text = b.text, any = true;
  }
  progress(p);
}

SearchResult run_search(Model& model, KvCache& cache, const Tokenizer& tok, const std::vector<int32_t>& prompt,
                        const std::string& prompt_text, Scorer& scorer, const SearchOptions& opts,
                        const ProgressFn& progress) {
  if (opts.n < 1 || opts.n > 256) fail("search", "n must be in [1, 256], got " + std::to_string(opts.n));
  if (opts.budget < 1) fail("search", "budget must be >= 1 token, got " + std::to_string(opts.budget));
  if (opts.expand < 1 || opts.expand > 64) fail("search", "expand must be in [1, 64], got " + std::to_string(opts.expand));
  if (opts.kind == SearchKind::DiverseBeam && (opts.groups < 1 || opts.groups > opts.n))
    fail("search", "groups must be in [1, n=" + std::to_string(opts.n) + "], got " + std::to_string(opts.groups));
  if (!(opts.temperature > 0)) fail("search", "particle temperature must be > 0");
  if (!(opts.ess_threshold >= 0 && opts.ess_threshold <= 1)) fail("search", "ESS threshold must be in [0, 1]");
  const std::string err = validate(opts.sampling);
  if (!err.empty()) fail("search", err);
  if (opts.kind == SearchKind::SelfConsistency) Regex check(opts.answer_regex);  // fail before any compute

  BranchOptions bo = opts.branch;
  bo.max_tokens = opts.max_tokens;
  bo.max_steps = opts.max_steps;
  if (opts.max_steps < 0) fail("search", "max steps must be >= 0, got " + std::to_string(opts.max_steps));
  SearchResult r;
  {
    BranchSet set(model, cache, tok, bo);
    const int root = set.start(prompt, opts.sampling);
    SearchContext ctx{set, scorer, opts, prompt_text, progress, {}, 0};
    make_strategy(opts.kind)->run(ctx, root);
    r.candidates = std::move(ctx.finished);
    r.tokens_spent = set.tokens_spent();
    r.kv_blocks_peak = set.peak_blocks();
    r.kv_blocks_independent = set.peak_independent();
    r.forward_steps = set.steps_run();
  }
  if (opts.kind == SearchKind::SelfConsistency) vote(r, opts.answer_regex);  // every sample votes
  // Identical candidates (resampled particles, beams that met) are reported once.
  std::stable_sort(r.candidates.begin(), r.candidates.end(), better);
  std::vector<SearchCandidate> uniq;
  for (SearchCandidate& c : r.candidates) {
    bool dup = false;
    for (const SearchCandidate& u : uniq) dup = dup || u.tokens == c.tokens;
    if (!dup) uniq.push_back(std::move(c));
  }
  r.candidates = std::move(uniq);
  if (opts.kind == SearchKind::SelfConsistency) {  // the winning answer's candidates first
    const auto wins = [&](const SearchCandidate& c) { return !r.answer.empty() && c.answer == r.answer; };
    std::stable_sort(r.candidates.begin(), r.candidates.end(),
                     [&](const SearchCandidate& a, const SearchCandidate& b) { return wins(a) > wins(b); });
  }
  return r;
}

}  // namespace coppice
