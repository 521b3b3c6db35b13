// Self-speculation by layer skipping (Draft & Verify, Zhang et al. 2024; exit layer chosen
// from observed acceptance as in DEL): the same model runs only its first `exit` layers to
// draft a chain, writing K/V past the sequence's end, which is truncated before verification
// (the committed cells are never written). The exit is picked per step by the best measured
// tokens per unit of cost, (1 + accepted) / (1 + depth * exit / n_layer), after trying each.
#include <algorithm>

#include "engine/spec.h"
#include "util/error.h"

namespace coppice {
namespace {

class LayerSkipDrafter final : public Drafter {
 public:
  LayerSkipDrafter(Model& model, KvCache& cache, SeqId seq, int exit_layer)
      : model_(model), cache_(cache), seq_(seq) {
    const int nl = static_cast<int>(model.config().n_layer);
    if (exit_layer >= nl)
      fail("spec", "layerskip exit layer " + std::to_string(exit_layer) + " must be below the model's " +
                       std::to_string(nl) + " layers");
    if (exit_layer > 0) {
      exits_.push_back(exit_layer);
    } else {
      for (int l = std::max(1, nl / 4); l <= std::max(1, (3 * nl) / 4) && l < nl; ++l) exits_.push_back(l);
      if (exits_.empty()) exits_.push_back(std::max(1, nl - 1));
    }
    acc_.assign(exits_.size(), 0.0);
    tries_.assign(exits_.size(), 0);
    skip_.assign(static_cast<size_t>(nl), 0);
  }
  const char* name() const override { return "layerskip"; }

  void draft(const DraftRequest& req, DraftTree& out) override {
    pick_exit();
    const int nl = static_cast<int>(skip_.size());
    for (int l = 0; l < nl; ++l) skip_[l] = l >= exits_[cur_] ? 1 : 0;
    const int L = cache_.length(seq_);
    const int32_t pos = L == 0 ? 0 : cache_.position(seq_, L - 1) + 1;
    int32_t token = req.context.back();
    const int64_t V = model_.n_vocab();
    StepOptions so;
    so.skip_layers = skip_;
    for (int d = 0; d < std::min(req.max_depth, req.max_nodes); ++d) {
      if (cache_.blocks_needed(seq_, 1) > cache_.blocks_free()) break;
      BatchToken bt{token, pos + d, seq_, true};
      model_.step(std::span<const BatchToken>(&bt, 1), cache_, logits_, so);
      token = static_cast<int32_t>(std::max_element(logits_.begin(), logits_.begin() + V) - logits_.begin());
      out.add(token, d - 1);
    }
    cache_.truncate(seq_, L);
    drafted_ = out.size();
  }

  void observe(std::span<const int32_t>, std::span<const float>, int64_t, int accepted) override {
    if (drafted_ <= 0) return;
    const double a = accepted - 1;  // accepted draft tokens
    acc_[cur_] = tries_[cur_] == 0 ? a : 0.7 * acc_[cur_] + 0.3 * a;
    ++tries_[cur_];
    last_depth_ = drafted_;
    drafted_ = 0;  // plain steps (no draft) are observed too: credit each draft once
  }

 private:
  void pick_exit() {
    for (size_t i = 0; i < exits_.size(); ++i)
      if (tries_[i] < 3) {
        cur_ = i;
        return;
      }
    const double nl = static_cast<double>(skip_.size());
    double best = -1;
    for (size_t i = 0; i < exits_.size(); ++i) {
      const double score = (1 + acc_[i]) / (1 + last_depth_ * exits_[i] / nl);
      if (score > best) best = score, cur_ = i;
    }
    // Re-measure one other exit now and then, so stale estimates recover.
    if (++n_draft_ % 32 == 0) cur_ = (cur_ + 1) % exits_.size();
  }

  Model& model_;
  KvCache& cache_;
  SeqId seq_;
  std::vector<int> exits_;      // candidate exit layers
  std::vector<double> acc_;     // EMA accepted drafts per step, per exit
  std::vector<int> tries_;
  std::vector<uint8_t> skip_;   // [n_layer] 1 = skipped
  std::vector<float> logits_;   // [n_vocab]
  size_t cur_ = 0;
  int drafted_ = 0, last_depth_ = 4;
  int64_t n_draft_ = 0;
};

}  // namespace

std::unique_ptr<Drafter> make_layerskip_drafter(Model& model, KvCache& cache, SeqId seq, int exit_layer) {
  return std::make_unique<LayerSkipDrafter>(model, cache, seq, exit_layer);
}

}  // namespace coppice
