// KV-cache eviction policies behind one interface, applied per sequence under a token budget.
// A policy observes attention (Model::set_attention_observer) when its rule needs scores, and
// `enforce` compacts a sequence that grew past the budget (KvCache::compact: kept cells move
// down with their original RoPE positions, emptied blocks return to the pool).
//   window  StreamingLLM (Xiao et al. 2023): the first `sinks` cells + the most recent ones.
//   h2o     H2O (Zhang et al. 2023): heavy hitters by attention accumulated over every query so
//           far + the `recent` most recent cells.
//   snapkv  SnapKV (Li et al. 2024): cells ranked by the attention of the last `obs_window`
//           queries, average-pooled over neighbouring cells; the window's own cells are kept.
// By default one kept set per sequence serves every layer, scores summed over layers and heads.
// With `cake` (CAKE, Qin et al. 2025, "cake slicing") the budget x n_layer cells are split across
// layers in proportion to each layer's preference H^(1/tau1) * V^(1/tau2) (H: entropy of its
// attention over the cells before the observation window, V: variance of that attention across
// the window's queries, both summed over heads), and each layer keeps its own top cells by the
// policy's score computed on that layer alone (KvCache::compact_layers: per-layer slots).
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
  bool cake = false;    // h2o / snapkv: per-layer budgets from attention dispersion (CAKE)
  double cake_tau1 = 1.0, cake_tau2 = 1.0;  // CAKE preference exponents 1/tau
};

// Throws coppice::Error when the options cannot work (e.g. sinks >= budget).
void validate(const KvPolicyOptions& o);

// The selection rules, on plain scores: each returns the kept cells of n, increasing.
std::vector<int> select_window(int n, int budget, int sinks);
std::vector<int> select_h2o(std::span<const float> acc, int budget, int recent);
std::vector<int> select_snapkv(std::span<const float> obs, int budget, int window, int pool);

// CAKE's layer statistics over an observation window. Each row is one query's attention over
// a layer's cells, [n_head][n] (n: the cells it saw); only cells [0, prefix) count (prefix <=
// every row's n; the window's own cells are left out, as in the paper).
struct AttnRow {
  int n = 0;
  std::vector<float> w;  // [n_head][n]
};
struct LayerDispersion {
  double entropy = 0;   // H: sum over rows and heads of -a log a (spatial dispersion)
  double variance = 0;  // V: sum over heads and cells of the variance across rows (temporal shift)
};
LayerDispersion layer_dispersion(const std::deque<AttnRow>& rows, int prefix);
double cake_preference(const LayerDispersion& d, double tau1, double tau2);  // H^(1/tau1) V^(1/tau2)
// Splits `total` cells across layers in proportion to pref (water-filling: layer l gets
// clamp(lambda * pref_l, min(floor, cap_l), cap_l), rounded by largest remainder), summing to
// total exactly when sum(min(floor, cap)) <= total <= sum(cap); all of cap when it fits.
// All-zero preferences split evenly.
std::vector<int> split_layer_budgets(std::span<const double> pref, int64_t total, std::span<const int> cap, int floor);

class KvPolicy : public AttentionObserver {
 public:
  explicit KvPolicy(const KvPolicyOptions& o);
  const KvPolicyOptions& options() const { return o_; }
  bool needs_attention() const { return o_.budget > 0 && o_.kind != KvPolicyKind::Window &&
                                        o_.kind != KvPolicyKind::None; }
  // Call after each Model::step that grew `seq`: evicts down to the budget. Returns the number
  // of cells evicted, summed over layers with cake (0 when within budget, or when the pool
  // cannot copy a shared block).
  int enforce(KvCache& cache, SeqId seq);
  void forget(SeqId seq) { st_.erase(seq); }  // the sequence was removed from the cache
  void fork(SeqId src, SeqId dst) {           // after KvCache::fork_sequence
    auto it = st_.find(src);
    if (it != st_.end()) st_[dst] = it->second;
  }
  // Cells evicted; with cake, cells of single layers count 1 / n_layer each.
  int64_t cells_evicted() const { return evicted_ + (n_layer_ > 0 ? layer_cells_evicted_ / n_layer_ : 0); }
  // CAKE: the per-layer budgets of the last eviction (empty before one).
  std::span<const int> last_layer_budgets() const { return layer_budgets_; }

  void on_attention(int layer, std::span<const BatchToken> batch, std::span<const int> cells,
                    const float* q, const ops::AttentionShape& shape, const KvCache& cache) override;

 private:
  struct LayerState {        // CAKE (model/kv_cake.cpp), in the layer's own cell indices
    std::vector<float> acc;   // h2o: [cells of the layer] attention received, summed over heads
    std::deque<AttnRow> win;  // the last obs_window() queries' attention
  };
  struct SeqState {
    std::vector<float> acc;              // h2o: [n_cells] attention received so far
    std::deque<std::vector<float>> obs;  // snapkv: last queries' weights, each [n_cells]
    std::vector<LayerState> layers;      // cake: [n_layer]
    std::vector<int> budgets;            // cake: [n_layer] the split in force
    int evictions_since_split = 0;       // cake: the split is recomputed every obs_window() evictions
  };
  int recent() const;
  int obs_window() const;
  void observe_layer(int layer, std::span<const BatchToken> batch, std::span<const int> cells, const float* q,
                     const ops::AttentionShape& shape, const KvCache& cache);
  int enforce_layers(KvCache& cache, SeqId seq);
  std::vector<int> layer_budgets_;
  int64_t layer_cells_evicted_ = 0;  // cake: summed over layers
  int n_layer_ = 0;
  KvPolicyOptions o_;
  std::map<SeqId, SeqState> st_;
  std::vector<float> w_;                   // [n_cells] one head's weights
  std::vector<ops::KvChunk> chunks_;
  std::vector<int> later_;                 // cake: [batch] tokens of the same sequence after each
  int64_t evicted_ = 0;
};

}  // namespace coppice
