// Draft model: a smaller GGUF with the same vocabulary drafts a chain: the argmax under greedy
// decoding, else tokens sampled with the target's settings, whose distributions q go to the
// speculative sampling rule (engine/spec_accept.h). Each drafting sequence's KV follows its
// context: the common prefix with what it evaluated before is kept (its accepted drafts
// included), only the difference is evaluated.
#include "engine/spec_draft_model.h"

#include <algorithm>
#include <filesystem>

#include "engine/spec_accept.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"

namespace coppice {
namespace {

// The draft's logits index the target's vocabulary: same size and the same token texts.
void check_vocab(const std::string& path, const Model& draft, const Model& target) {
  if (draft.n_vocab() != target.n_vocab())
    fail("spec", "draft model " + path + " has " + std::to_string(draft.n_vocab()) + " tokens, the target has " +
                     std::to_string(target.n_vocab()) + " (the vocabularies must match)");
  const auto dt = Tokenizer::from_gguf(draft.file());
  const auto tt = Tokenizer::from_gguf(target.file());
  if (dt->n_vocab() != tt->n_vocab())
    fail("spec", "draft model " + path + ": its tokenizer has " + std::to_string(dt->n_vocab()) +
                     " tokens, the target's has " + std::to_string(tt->n_vocab()) + " (the vocabularies must match)");
  for (int32_t id = 0; id < tt->n_vocab(); ++id)
    if (dt->token_text(id) != tt->token_text(id))
      fail("spec", "draft model " + path + ": token " + std::to_string(id) + " is '" + dt->token_text(id) +
                       "', the target's is '" + tt->token_text(id) + "' (the vocabularies must match)");
  if (dt->bos() != tt->bos() || dt->eos() != tt->eos())
    fail("spec", "draft model " + path + ": BOS/EOS ids " + std::to_string(dt->bos()) + "/" + std::to_string(dt->eos()) +
                     ", the target's are " + std::to_string(tt->bos()) + "/" + std::to_string(tt->eos()));
}

class DraftModelDrafter final : public Drafter {
 public:
  explicit DraftModelDrafter(std::shared_ptr<DraftModelHost> host)
      : host_(std::move(host)), id_(host_->new_sequence()) {}
  ~DraftModelDrafter() override { host_->release(id_); }
  const char* name() const override { return "draft"; }

  void draft(const DraftRequest& req, DraftTree& out) override {
    sampler_.reset();
    if (req.sampling && req.sampling->temperature > 0) {
      // Own seed stream; the history (penalties) is the target's context.
      SamplingParams sp = *req.sampling;
      sp.seed = sp.seed * 0x9E3779B97F4A7C15ull + ++n_draws_;
      sampler_ = std::make_unique<Sampler>(sp);
      for (int32_t x : req.context) sampler_->accept_prompt(x);
    }
    host_->draft(id_, req.context, std::min(req.max_depth, req.max_nodes), sampler_.get(), out);
  }

 private:
  std::shared_ptr<DraftModelHost> host_;
  SeqId id_;
  std::unique_ptr<Sampler> sampler_;  // sampled drafts (non-greedy target), else null
  uint64_t n_draws_ = 0;
};

}  // namespace

DraftModelHost::DraftModelHost(const std::string& path, const Model& target, int n_threads, int64_t n_ctx,
                               int n_seqs)
    : path_(path) {
  ModelOptions mo;
  mo.n_threads = n_threads;
  mo.n_ctx = n_ctx;
  model_ = Model::load(path, mo);
  check_vocab(path, *model_, target);
  std::error_code ec;
  canonical_ = std::filesystem::weakly_canonical(path, ec).string();
  file_name_ = std::filesystem::path(path).filename().string();
  cache_ = std::make_unique<KvCache>(model_->make_cache(std::max(1, n_seqs) * (n_ctx + 64)));
}

bool DraftModelHost::names(const std::string& name) const {
  return !name.empty() && (name == path_ || name == canonical_ || name == file_name_);
}

void DraftModelHost::release(SeqId id) {
  if (slots_.erase(id) == 0) return;
  cache_->remove_sequence(id);
  update_usage();
}

bool DraftModelHost::make_room(SeqId id, int n_new) {
  while (cache_->blocks_needed(id, n_new) > cache_->blocks_free()) {
    auto victim = slots_.end();
    for (auto it = slots_.begin(); it != slots_.end(); ++it)
      if (it->first != id && (victim == slots_.end() || it->second.last_use < victim->second.last_use)) victim = it;
    if (victim == slots_.end()) return false;
    cache_->remove_sequence(victim->first);
    slots_.erase(victim);
  }
  return true;
}

void DraftModelHost::draft(SeqId id, std::span<const int32_t> ctx, int depth, Sampler* sampler, DraftTree& out) {
  const int N = static_cast<int>(ctx.size());
  if (N == 0 || depth <= 0) return;
  auto [it, fresh] = slots_.try_emplace(id);
  if (fresh) cache_->add_sequence(id);
  Slot& slot = it->second;
  slot.last_use = ++clock_;
  // Keep the common prefix, but re-evaluate at least the root to get its logits.
  size_t c = 0;
  while (c < slot.have.size() && c < ctx.size() && slot.have[c] == ctx[c]) ++c;
  c = std::min(c, static_cast<size_t>(N - 1));
  cache_->truncate(id, static_cast<int>(c));
  slot.have.resize(c);
  batch_.clear();
  for (int i = static_cast<int>(c); i < N; ++i) batch_.push_back({ctx[i], i, id, i == N - 1});
  const bool room = make_room(id, static_cast<int>(batch_.size()) + depth);
  update_usage();
  if (!room) return;
  const int64_t V = model_->n_vocab();
  int32_t pos = N;
  for (int d = 0; d < depth; ++d) {
    model_->step(batch_, *cache_, logits_);
    for (const BatchToken& b : batch_) slot.have.push_back(b.token);
    const std::span<const float> row(logits_.data() + logits_.size() - V, static_cast<size_t>(V));
    int32_t t;
    if (sampler) {
      t = sampler->sample(row);
      dense_probs(sampler->process(row), V, q_);
      out.q.push_back(q_);
      sampler->accept(t);
    } else {
      t = static_cast<int32_t>(std::max_element(row.begin(), row.end()) - row.begin());
    }
    out.add(t, d - 1);
    batch_.assign(1, BatchToken{t, pos++, id, true});
  }
  update_usage();
}

std::unique_ptr<Drafter> make_draft_model_drafter(std::shared_ptr<DraftModelHost> host) {
  return std::make_unique<DraftModelDrafter>(std::move(host));
}

std::unique_ptr<Drafter> make_draft_model_drafter(const std::string& path, const Model& target,
                                                  int n_threads, int64_t n_ctx) {
  return make_draft_model_drafter(std::make_shared<DraftModelHost>(path, target, n_threads, n_ctx, 1));
}

}  // namespace coppice
