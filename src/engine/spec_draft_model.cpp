// Draft model: a smaller GGUF with the same vocabulary drafts a chain: the argmax under greedy
// decoding, else tokens sampled with the target's settings, whose distributions q go to the
// speculative sampling rule (engine/spec_accept.h). Its own KV cache
// follows the target's context: the common prefix with what it evaluated before is kept (its
// accepted drafts included), only the difference is evaluated.
#include <algorithm>

#include "engine/spec.h"
#include "engine/spec_accept.h"
#include "util/error.h"

namespace coppice {
namespace {

class DraftModelDrafter final : public Drafter {
 public:
  DraftModelDrafter(const std::string& path, const Model& target, int n_threads, int64_t n_ctx) {
    ModelOptions mo;
    mo.n_threads = n_threads;
    mo.n_ctx = n_ctx;
    model_ = Model::load(path, mo);
    if (model_->n_vocab() != target.n_vocab())
      fail("spec", "draft model " + path + " has " + std::to_string(model_->n_vocab()) +
                       " tokens, the target has " + std::to_string(target.n_vocab()) +
                       " (the vocabularies must match)");
    cache_ = std::make_unique<KvCache>(model_->make_cache(n_ctx + 64));
    cache_->add_sequence(0);
  }
  const char* name() const override { return "draft"; }

  void draft(const DraftRequest& req, DraftTree& out) override {
    const std::span<const int32_t> ctx = req.context;
    const int N = static_cast<int>(ctx.size());
    // Keep the common prefix, but re-evaluate at least the root to get its logits.
    size_t c = 0;
    while (c < have_.size() && c < ctx.size() && have_[c] == ctx[c]) ++c;
    c = std::min(c, static_cast<size_t>(N - 1));
    cache_->truncate(0, static_cast<int>(c));
    have_.resize(c);
    batch_.clear();
    for (int i = static_cast<int>(c); i < N; ++i) batch_.push_back({ctx[i], i, 0, i == N - 1});
    if (cache_->blocks_needed(0, static_cast<int>(batch_.size()) + req.max_depth) > cache_->blocks_free()) return;
    const int64_t V = model_->n_vocab();
    int32_t pos = N;
    sampler_.reset();
    if (req.sampling && req.sampling->temperature > 0) {
      // Own seed stream; the history (penalties) is the target's context.
      SamplingParams sp = *req.sampling;
      sp.seed = sp.seed * 0x9E3779B97F4A7C15ull + ++n_draws_;
      sampler_ = std::make_unique<Sampler>(sp);
      for (int32_t x : ctx) sampler_->accept_prompt(x);
    }
    for (int d = 0; d < std::min(req.max_depth, req.max_nodes); ++d) {
      model_->step(batch_, *cache_, logits_);
      for (const BatchToken& b : batch_) have_.push_back(b.token);
      const std::span<const float> row(logits_.data() + logits_.size() - V, static_cast<size_t>(V));
      int32_t t;
      if (sampler_) {
        t = sampler_->sample(row);
        dense_probs(sampler_->process(row), V, q_);
        out.q.push_back(q_);
        sampler_->accept(t);
      } else {
        t = static_cast<int32_t>(std::max_element(row.begin(), row.end()) - row.begin());
      }
      out.add(t, d - 1);
      batch_.assign(1, BatchToken{t, pos++, 0, true});
    }
  }

 private:
  std::unique_ptr<Model> model_;
  std::unique_ptr<KvCache> cache_;
  std::vector<int32_t> have_;   // tokens whose K/V the draft cache holds, in order
  std::vector<BatchToken> batch_;
  std::vector<float> logits_;
  std::unique_ptr<Sampler> sampler_;  // sampled drafts (non-greedy target), else null
  std::vector<float> q_;              // [n_vocab]
  uint64_t n_draws_ = 0;
};

}  // namespace

std::unique_ptr<Drafter> make_draft_model_drafter(const std::string& path, const Model& target,
                                                  int n_threads, int64_t n_ctx) {
  return std::make_unique<DraftModelDrafter>(path, target, n_threads, n_ctx);
}

}  // namespace coppice
