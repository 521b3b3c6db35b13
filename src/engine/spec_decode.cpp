#include "engine/spec_decode.h"

#include <algorithm>
#include <chrono>
#include <climits>
#include <cmath>

#include "engine/spec_accept.h"
#include "util/error.h"

namespace coppice {
namespace {
double ms_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}
}  // namespace

void SpecStats::add(const SpecStats& o) {
  spec_steps += o.spec_steps, plain_steps += o.plain_steps, drafted += o.drafted, pruned += o.pruned;
  accepted += o.accepted, emitted += o.emitted, spec_ms += o.spec_ms, plain_ms += o.plain_ms;
}

SpecController::SpecController(int max_nodes, bool adaptive) : adaptive_(adaptive) {
  max_nodes = std::max(1, max_nodes);
  arms_.push_back(0);
  for (int b = 1; b < max_nodes; b *= 2) arms_.push_back(b);
  arms_.push_back(max_nodes);
  rate_.assign(arms_.size(), 0.0);
  n_.assign(arms_.size(), 0);
  last_.assign(arms_.size(), 0);
}

int SpecController::best() const {
  // A draft size must beat plain decoding by 5%: on a noisy machine a tie means plain.
  int b = 0;
  double r = rate_[0] * 1.05;
  for (size_t i = 1; i < arms_.size(); ++i)
    if (n_[i] > 0 && rate_[i] > r) b = static_cast<int>(i), r = rate_[i];
  return b;
}

int SpecController::choose() {
  if (!adaptive_) return arms_.back();
  ++t_;
  const int nb = static_cast<int>(arms_.size());
  // Start: plain twice, then sizes upward once each while they reach 60% of the best rate.
  // Then mostly the best, probing a neighbour every 32 steps and the stalest size within two
  // of the best every 256 (measurements drift with context length and acceptance).
  if (n_[0] < 2) return 0;
  const int b = best();
  for (int i = 1; i < nb; ++i) {
    if (n_[i] > 0) continue;
    if (rate_[i - 1] >= 0.6 * rate_[b]) return arms_[i];
    break;
  }
  if (t_ % 256 == 0) {
    int stale = b;
    for (int i = std::max(0, b - 2); i <= std::min(nb - 1, b + 2); ++i)
      if (last_[i] < last_[stale]) stale = i;
    return arms_[stale];
  }
  if (t_ % 32 == 0) {
    explore_dir_ = -explore_dir_;
    return arms_[std::clamp(b + explore_dir_, 0, nb - 1)];
  }
  return arms_[b];
}

void SpecController::record(int budget, int n_tokens, double ms) {
  const auto it = std::find(arms_.begin(), arms_.end(), budget);
  if (it == arms_.end()) return;  // clamped by the cache or the token limit: not comparable
  const size_t i = static_cast<size_t>(it - arms_.begin());
  const double rate = n_tokens / std::max(ms, 1e-3);
  // Running mean for the first measurements, then a slow EMA (timings are noisy).
  const double w = std::max(0.1, 1.0 / (n_[i] + 1));
  rate_[i] = (1 - w) * rate_[i] + w * rate;
  ++n_[i];
  last_[i] = t_;
}

SpecDecoder::SpecDecoder(Model& model, KvCache& cache, SeqId seq, Sampler& sampler,
                         std::unique_ptr<Drafter> drafter, const SpecConfig& cfg)
    : model_(model), cache_(cache), seq_(seq), sampler_(sampler), drafter_(std::move(drafter)),
      ctl_(cfg.max_nodes, cfg.adaptive), rng_(sampler.params().seed ^ 0x5bd1e995u) {
  CP_ASSERT(drafter_ != nullptr);
}

int32_t SpecDecoder::draw(int node, const std::vector<int>& kids) {
  const int64_t V = model_.n_vocab();
  const std::span<const float> row(logits_.data() + node * V, static_cast<size_t>(V));
  chosen_ = -1;
  if (tree_.q.empty() || kids.empty()) {
    // Point-mass drafts: drawing x ~ p and following the child equal to x accepts child c
    // with probability p(c), which is the speculative rule for q = delta(c); and it consumes
    // the sampler's PRNG exactly as plain decoding does.
    const int32_t x = sampler_.sample(row);
    for (int k : kids)
      if (step_tokens_[k] == x) chosen_ = k;
    return x;
  }
  dense_probs(sampler_.process(row), V, p_);
  std::vector<int32_t> cand;
  std::vector<const float*> q;
  for (int k : kids) {
    cand.push_back(step_tokens_[k]);
    q.push_back(tree_.q[k - 1].data());
  }
  const AcceptResult r = speculative_accept(p_, cand, q, rng_);
  if (r.chosen >= 0) chosen_ = kids[r.chosen];
  return r.token;
}

int SpecDecoder::prune_by_constraint() {
  const int n = tree_.size();
  std::vector<int32_t> remap(static_cast<size_t>(n), -1);  // old index -> new index, -1: dropped
  std::vector<int32_t> path;
  DraftTree kept;
  for (int i = 0; i < n; ++i) {
    const int32_t par = tree_.parent[i];
    if (par >= 0 && remap[par] < 0) continue;  // an ancestor is dropped (parents come first)
    path.clear();
    for (int32_t k = i; k >= 0; k = tree_.parent[k]) path.push_back(tree_.tokens[k]);
    std::reverse(path.begin(), path.end());
    if (!sampler_.allows_path(path)) continue;
    remap[i] = kept.add(tree_.tokens[i], par >= 0 ? remap[par] : -1);
  }
  const int dropped = n - kept.size();
  tree_ = std::move(kept);
  return dropped;
}

void SpecDecoder::step(std::span<const int32_t> context, int max_new,
                       const std::function<bool(int32_t)>& stop, std::vector<int32_t>& out) {
  CP_ASSERT(!context.empty() && max_new > 0);
  const auto t0 = std::chrono::steady_clock::now();
  const int64_t V = model_.n_vocab();
  const int L = cache_.length(seq_);
  const int32_t pos = L == 0 ? 0 : cache_.position(seq_, L - 1) + 1;
  const int64_t cap = static_cast<int64_t>(cache_.block_size()) * cache_.n_blocks();
  const int chosen = ctl_.choose();
  int budget = std::min(chosen, max_new - 1);
  budget = static_cast<int>(std::min<int64_t>(budget, cap - L - 1));
  while (budget > 0 && cache_.blocks_needed(seq_, 1 + budget) > cache_.blocks_free()) --budget;
  tree_.clear();
  if (budget > 0) {
    DraftRequest req{context, budget, budget, &sampler_.params()};
    drafter_->draft(req, tree_);
    if (tree_.size() > budget) {  // breadth-first: dropping the tail keeps a valid tree
      tree_.tokens.resize(static_cast<size_t>(budget));
      tree_.parent.resize(static_cast<size_t>(budget));
      if (!tree_.q.empty()) tree_.q.resize(static_cast<size_t>(budget));
    }
    // Point-mass drafts only: x ~ p never equals a token the constraint bans, so dropping it
    // changes nothing but the verify cost. (A sampled draft's acceptance depends on q over all
    // of its siblings, so those trees are verified whole.)
    if (sampler_.has_constraint() && tree_.q.empty()) stats_.pruned += prune_by_constraint();
  }
  const int n = tree_.size();

  // The root (pending token) and the tree in one batch; every node wants logits.
  batch_.clear();
  step_tokens_.assign(1, context.back());
  batch_.push_back({context.back(), pos, seq_, true, n > 0, -1});
  std::vector<int> depth(static_cast<size_t>(n) + 1, 0);
  std::vector<std::vector<int>> kids(static_cast<size_t>(n) + 1);
  for (int i = 0; i < n; ++i) {
    const int b = i + 1, par = tree_.parent[i] + 1;
    CP_ASSERT(par >= 0 && par < b);
    depth[b] = depth[par] + 1;
    kids[par].push_back(b);
    step_tokens_.push_back(tree_.tokens[i]);
    batch_.push_back({tree_.tokens[i], pos + depth[b], seq_, true, true, par});
  }
  model_.step(batch_, cache_, logits_);

  // Walk: draw at the current node; continue into the child equal to the drawn token.
  std::vector<int>& path = path_;
  path.assign(1, 0);
  int u = 0;
  const size_t out0 = out.size();
  for (;;) {
    const int32_t x = draw(u, kids[u]);
    sampler_.accept(x);
    out.push_back(x);
    if (chosen_ < 0 || stop(x) || static_cast<int>(out.size() - out0) >= max_new) break;
    u = chosen_;
    path.push_back(u);
  }
  // Keep the path's KV: move the (few) accepted rows into place, drop the rest.
  const int kept = static_cast<int>(path.size());
  for (int j = 0; j < kept; ++j)
    if (path[j] != j) cache_.move_cell(seq_, L + path[j], L + j);
  cache_.truncate(seq_, L + kept);

  const int drawn = static_cast<int>(out.size() - out0);
  stats_.emitted += drawn;
  drafter_->observe(step_tokens_, logits_, V, kept);
  if (n == 0) {
    ++stats_.plain_steps;
    const double ms = ms_since(t0);
    stats_.plain_ms += ms;
    // A budget whose drafter found nothing is measured as what it cost: a plain step.
    ctl_.record(budget == chosen ? chosen : -1, drawn, ms);
    return;
  }
  ++stats_.spec_steps;
  stats_.drafted += n;
  stats_.accepted += kept - 1;
  const double ms = ms_since(t0);
  stats_.spec_ms += ms;
  ctl_.record(budget == chosen ? chosen : -1, drawn, ms);
}

std::span<const float> SpecDecoder::drawn_logits(int j) const {
  CP_ASSERT(j >= 0 && j < static_cast<int>(path_.size()));
  const size_t V = static_cast<size_t>(model_.n_vocab());
  return {logits_.data() + static_cast<size_t>(path_[static_cast<size_t>(j)]) * V, V};
}

GenerateStats generate_spec(Model& model, KvCache& cache, SeqId seq, const Tokenizer& tok,
                            Sampler& sampler, const std::vector<int32_t>& prompt,
                            const GenerateOptions& opts, SpecDecoder& spec,
                            const std::function<bool(int32_t)>& on_token) {
  GenerateStats st;
  if (prompt.empty()) fail("generate", "empty prompt (nothing to condition on)");
  std::vector<float> logits;
  auto t0 = std::chrono::steady_clock::now();
  prefill(model, cache, seq, prompt, opts.n_batch, false, logits);
  st.prompt_ms = ms_since(t0);
  st.n_prompt = static_cast<int>(prompt.size());
  for (int32_t t : prompt) sampler.accept_prompt(t);

  auto t1 = std::chrono::steady_clock::now();
  if (opts.n_predict == 0) return st;
  const int64_t cap = cache.block_size() * cache.n_blocks();
  const auto eog = [&](int32_t id) { return opts.stop_at_eog && tok.is_eog(id); };
  // The first token comes from the prompt's logits, as in generate().
  std::vector<int32_t> drawn{sampler.sample(logits)};
  sampler.accept(drawn[0]);
  for (;;) {
    for (int32_t id : drawn) {
      ++st.n_generated;
      if (eog(id) || !on_token(id) || (opts.n_predict >= 0 && st.n_generated >= opts.n_predict)) {
        st.gen_ms = ms_since(t1);
        return st;
      }
    }
    if (cache.length(seq) >= cap || cache.blocks_needed(seq, 1) > cache.blocks_free()) break;
    drawn.clear();
    const int max_new = opts.n_predict < 0 ? INT_MAX : opts.n_predict - st.n_generated;
    spec.step(sampler.history(), max_new, eog, drawn);
  }
  st.gen_ms = ms_since(t1);
  return st;
}

}  // namespace coppice
