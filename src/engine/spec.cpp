#include "engine/spec.h"

#include <algorithm>

#include "util/error.h"

namespace coppice {

int DraftTree::child(int32_t par, int32_t token) const {
  for (int i = 0; i < size(); ++i)
    if (parent[i] == par && tokens[i] == token) return i;
  return -1;
}

int DraftTree::depth() const {
  std::vector<int> d(tokens.size(), 0);
  int best = 0;
  for (int i = 0; i < size(); ++i) {
    d[i] = parent[i] < 0 ? 1 : d[parent[i]] + 1;
    best = std::max(best, d[i]);
  }
  return best;
}

std::unique_ptr<Drafter> make_drafter(const SpecConfig& c, Model& model, KvCache& cache, SeqId seq,
                                      int n_threads, int64_t n_ctx) {
  switch (c.kind) {
    case SpecConfig::Kind::None: return nullptr;
    case SpecConfig::Kind::Ngram: return make_ngram_drafter(c.ngram_n);
    case SpecConfig::Kind::Recycle: return make_recycle_drafter(model.n_vocab(), c.recycle_k);
    case SpecConfig::Kind::LayerSkip: return make_layerskip_drafter(model, cache, seq, c.exit_layer);
    case SpecConfig::Kind::DraftModel: return make_draft_model_drafter(c.draft_path, model, n_threads, n_ctx);
  }
  return nullptr;
}

}  // namespace coppice
