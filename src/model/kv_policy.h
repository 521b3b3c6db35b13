// KV-cache eviction policies behind one interface, applied per sequence under a token budget.
// A policy observes attention (Model::set_attention_observer) when its rule needs scores, and
// `enforce` compacts a sequence that grew past the budget (KvCache::compact: kept cells move
// down with their original RoPE positions, emptied blocks return to the pool).
//   window  StreamingLLM (Xiao et al. 2023): the first `sinks` cells + the most recent ones.
//   h2o     H2O (Zhang et al. 2023): heavy hitters by attention accumulated over every query so
//           far + the `recent` most recent cells.
//   snapkv  SnapKV (Li et al. 2024): cells ranked by the attention of the last `obs_window`
//           queries, average-pooled over neighbouring cells; the window's own cells are kept.
// One kept set per sequence serves every layer (cells share blocks across layers), so scores
// are summed over layers and heads.
#pragma once
#include <deque>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "model/kv_cache.h"
#include "model/model.h"

namespace coppice {

enum class KvPolicyKind { None, Window, H2O, SnapKV };
std::optional<KvPolicyKind> kv_policy_from_name(std::string_view name);  // none|window|h2o|snapkv
const char* kv_policy_name(KvPolicyKind k);

struct KvPolicyOptions {
  KvPolicyKind kind = KvPolicyKind::None;
  int budget = 0;       // most cells a sequence keeps after enforce(); 0: unlimited
  int sinks = 4;        // window: leading cells always kept
  int recent = -1;      // h2o: most recent cells always kept (-1: budget / 2)
  int obs_window = -1;  // snapkv: observing queries, whose cells are kept (-1: min(32, budget / 4))
  int pool = 7;         // snapkv: average-pooling width over cells (odd)
};

// Throws coppice::Error when the options cannot work (e.g. sinks >= budget).
void validate(const KvPolicyOptions& o);

// The selection rules, on plain scores: each returns the kept cells of n, increasing.
std::vector<int> select_window(int n, int budget, int sinks);
std::vector<int> select_h2o(std::span<const float> acc, int budget, int recent);
std::vector<int> select_snapkv(std::span<const float> obs, int budget, int window, int pool);

class KvPolicy : public AttentionObserver {
 public:
  explicit KvPolicy(const KvPolicyOptions& o);
  const KvPolicyOptions& options() const { return o_; }
  bool needs_attention() const { return o_.budget > 0 && o_.kind != KvPolicyKind::Window &&
                                        o_.kind != KvPolicyKind::None; }
  // Call after each Model::step that grew `seq`: evicts down to the budget. Returns the number
  // of cells evicted (0 when within budget, or when the pool cannot copy a shared block).
  int enforce(KvCache& cache, SeqId seq);
  void forget(SeqId seq) { st_.erase(seq); }  // the sequence was removed from the cache
  void fork(SeqId src, SeqId dst) {           // after KvCache::fork_sequence
    auto it = st_.find(src);
    if (it != st_.end()) st_[dst] = it->second;
  }
  int64_t cells_evicted() const { return evicted_; }

  void on_attention(int layer, std::span<const BatchToken> batch, std::span<const int> cells,
                    const float* q, const ops::AttentionShape& shape, const KvCache& cache) override;

 private:
  struct SeqState {
    std::vector<float> acc;              // h2o: [n_cells] attention received so far
    std::deque<std::vector<float>> obs;  // snapkv: last queries' weights, each [n_cells]
  };
  int recent() const;
  int obs_window() const;
  KvPolicyOptions o_;
  std::map<SeqId, SeqState> st_;
  std::vector<float> w_;                   // [n_cells] one head's weights
  std::vector<ops::KvChunk> chunks_;
  int64_t evicted_ = 0;
};

}  // namespace coppice
