#include "engine/search_branches.h"

#include <algorithm>

#include "engine/generate.h"
#include "util/error.h"

namespace coppice {

BranchSet::BranchSet(Model& model, KvCache& cache, const Tokenizer& tok, BranchOptions opts)
    : model_(model), cache_(cache), tok_(tok), opts_(opts), next_seq_(opts.first_seq) {
  if (opts_.max_tokens < 1) fail("search", "max tokens per branch must be >= 1, got " + std::to_string(opts_.max_tokens));
}

BranchSet::~BranchSet() {
  for (auto& b : branches_)
    if (b) cache_.remove_sequence(b->seq);
}

Branch& BranchSet::at(int id) {
  CP_ASSERT(id >= 0 && id < static_cast<int>(branches_.size()) && branches_[id]);
  return *branches_[id];
}

bool BranchSet::alive(int id) const {
  return id >= 0 && id < static_cast<int>(branches_.size()) && branches_[id] != nullptr;
}

std::vector<int> BranchSet::live() const {
  std::vector<int> out;
  for (const auto& b : branches_)
    if (b) out.push_back(b->id);
  return out;
}

int BranchSet::start(const std::vector<int32_t>& prompt, const SamplingParams& sp) {
  if (prompt.empty()) fail("search", "empty prompt (nothing to condition on)");
  if (!branches_.empty()) fail("search", "a branch set holds one prompt; start() was called twice");
  const int64_t cap = cache_.block_size() * cache_.n_blocks();
  if (static_cast<int64_t>(prompt.size()) >= cap)
    fail("search", "prompt is " + std::to_string(prompt.size()) + " tokens, the KV cache holds " + std::to_string(cap));
  prompt_ = prompt;
  sp_ = sp;
  auto b = std::make_unique<Branch>();
  b->id = 0;
  b->seq = next_seq_++;
  cache_.add_sequence(b->seq);
  b->sampler = std::make_unique<Sampler>(sp);
  for (int32_t t : prompt) b->sampler->accept_prompt(t);
  branches_.push_back(std::move(b));
  prefill(model_, cache_, branches_[0]->seq, prompt, opts_.n_batch, false, branches_[0]->logits);
  note_peaks();
  return 0;
}

int BranchSet::fork(int parent, uint64_t seed) {
  Branch& p = at(parent);
  auto b = std::make_unique<Branch>();
  b->id = static_cast<int>(branches_.size());
  b->parent = parent;
  b->seq = next_seq_++;
  cache_.fork_sequence(p.seq, b->seq);
  SamplingParams sp = sp_;
  sp.seed = seed;
  b->sampler = std::make_unique<Sampler>(sp);
  for (int32_t t : prompt_) b->sampler->accept_prompt(t);
  for (int32_t t : p.tokens) b->sampler->accept(t);
  b->tokens = p.tokens;
  b->text = p.text;
  b->logits = p.logits;
  b->logprob_sum = p.logprob_sum;
  b->step_text_begin = p.step_text_begin;
  b->last_step = p.last_step;
  b->steps = p.steps;
  b->done = p.done;
  b->eog = p.eog;
  b->score = p.score;
  branches_.push_back(std::move(b));
  return branches_.back()->id;
}

void BranchSet::kill(int id) {
  Branch& b = at(id);
  cache_.remove_sequence(b.seq);
  branches_[id].reset();
}

int64_t BranchSet::blocks_used() const {
  std::vector<int32_t> ids;
  for (const auto& b : branches_)
    if (b) ids.insert(ids.end(), cache_.block_table(b->seq).begin(), cache_.block_table(b->seq).end());
  std::sort(ids.begin(), ids.end());
  return std::unique(ids.begin(), ids.end()) - ids.begin();
}

int64_t BranchSet::blocks_independent() const {
  const int64_t bs = cache_.block_size();
  int64_t n = 0;
  for (const auto& b : branches_)
    if (b) n += (cache_.length(b->seq) + bs - 1) / bs;
  return n;
}

void BranchSet::note_peaks() {
  peak_blocks_ = std::max(peak_blocks_, blocks_used());
  peak_independent_ = std::max(peak_independent_, blocks_independent());
}

int BranchSet::advance(std::span<const int> ids, const StepUnit& unit, int64_t budget) {
  const int64_t V = model_.n_vocab();
  const int64_t cap = cache_.block_size() * cache_.n_blocks();
  std::vector<int> active;
  for (int id : ids)
    if (!at(id).done) active.push_back(id);
  int generated = 0;
  while (!active.empty() && generated < budget) {
    batch_.clear();
    rows_.clear();
    int64_t need_blocks = 0;
    std::vector<int> still;
    for (int id : active) {
      if (generated >= budget) {
        still.push_back(id);  // out of budget: left mid-step
        continue;
      }
      Branch& b = at(id);
      const int32_t t = b.sampler->sample(b.logits);
      b.sampler->accept(t);
      b.logprob_sum += Sampler::logprob_of(b.logits, t);
      ++generated;
      ++spent_;
      bool step_end = unit.kind == StepUnit::Kind::Token;
      if (opts_.stop_at_eog && tok_.is_eog(t)) {
        b.done = b.eog = true;
      } else {
        b.tokens.push_back(t);
        b.text = tok_.decode(b.tokens);
        if (!unit.delim.empty() && b.text.find(unit.delim, b.step_text_begin) != std::string::npos) step_end = true;
        const int len = cache_.length(b.seq);
        need_blocks += cache_.blocks_needed(b.seq, 1);
        if (static_cast<int>(b.tokens.size()) >= opts_.max_tokens || len + 1 >= cap ||
            need_blocks > cache_.blocks_free()) {
          b.done = true;  // nothing more will be sampled: no need to run the token
        } else {
          batch_.push_back({t, len == 0 ? 0 : cache_.position(b.seq, len - 1) + 1, b.seq, true});
          rows_.push_back(id);
        }
      }
      if (b.done || step_end) {
        b.last_step = b.text.substr(std::min(b.step_text_begin, b.text.size()));
        b.step_text_begin = b.text.size();
        ++b.steps;
        if (opts_.max_steps > 0 && b.steps >= opts_.max_steps) b.done = true;
      } else {
        still.push_back(id);
      }
    }
    if (!batch_.empty()) {
      model_.step(batch_, cache_, logits_);
      ++n_steps_;
      for (size_t r = 0; r < rows_.size(); ++r)
        at(rows_[r]).logits.assign(logits_.begin() + static_cast<int64_t>(r) * V,
                                   logits_.begin() + static_cast<int64_t>(r + 1) * V);
    }
    note_peaks();
    if (opts_.between_steps) opts_.between_steps();
    active.swap(still);
  }
  return generated;
}

}  // namespace coppice
