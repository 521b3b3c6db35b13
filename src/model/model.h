// A loaded model and its one forward entry point: step(batch). Prefill chunks, decode tokens
// and (later) speculative trees and search branches are all entries of the same batch.
#pragma once
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "formats/gguf.h"
#include "model/config.h"
#include "model/kv_cache.h"
#include "model/pack.h"
#include "model/weights.h"
#include "util/threadpool.h"

namespace coppice {

struct BatchToken {
  int32_t token = 0;
  int32_t pos = 0;        // RoPE position
  SeqId seq = 0;
  bool want_logits = false;
  // Tree steps (speculative verification). A tree token sees the cells of its sequence before
  // its root's cell plus its ancestors among this step's tokens, not its siblings' branches.
  bool tree = false;
  int32_t parent = -1;  // batch index of the parent tree token (earlier, same sequence); -1: root
};

// Per-step switches for self-speculation drafts.
struct StepOptions {
  std::span<const uint8_t> skip_layers;  // [n_layer] or empty: 1 = layer skipped (x passes through)
  std::vector<float>* hidden = nullptr;  // out: [n_wanted][n_embd] final-normed rows (value heads)
};

// Sees the input of the weight matrices of each layer (pruning calibration: Wanda's
// activation norms). Called on the stepping thread; unset, it costs one branch per site.
enum class MatInput { AttnIn, AttnOut, FfnIn, FfnDown };  // q/k/v, attn_output, gate/up, down
struct ActivationObserver {
  virtual ~ActivationObserver() = default;
  virtual void observe(int il, MatInput site, const float* x, int n_tok, int64_t dim) = 0;  // x: [n_tok][dim]
  // MoE layers (expert pruning): router probabilities p [n_tok][n_expert] after the softmax;
  // then per expert that received m > 0 tokens, their gate weights w [m] and its unweighted
  // outputs y [m][dim]. Ignored by default.
  virtual void observe_router(int /*il*/, const float* /*p*/, int /*n_tok*/, int64_t /*n_expert*/) {}
  virtual void observe_expert(int /*il*/, int /*expert*/, int /*m*/, const float* /*w*/, const float* /*y*/,
                              int64_t /*dim*/) {}
};

// Sees every layer's attention right after it is computed (KV eviction policies rank cells by
// the attention they receive). q: [n_tok][n_head * head_dim], roped; cells: each token's cell.
class AttentionObserver {
 public:
  virtual ~AttentionObserver() = default;
  virtual void on_attention(int layer, std::span<const BatchToken> batch, std::span<const int> cells,
                            const float* q, const ops::AttentionShape& shape, const KvCache& cache) = 0;
};

struct ModelOptions {
  int n_threads = 0;  // 0: physical cores
  // Context length the model will be run at; picks LongRoPE's long factors when it exceeds
  // the original training context (Phi-3). 0: the original context (short factors).
  int64_t n_ctx = 0;
};

class Model {
 public:
  // Opens, validates metadata and every tensor; throws coppice::Error.
  static std::unique_ptr<Model> load(const std::string& path, const ModelOptions& opts = {});

  const ModelConfig& config() const { return cfg_; }
  const gguf::File& file() const { return file_; }
  ThreadPool& pool() { return *pool_; }
  int64_t n_vocab() const { return cfg_.n_vocab; }
  // Matrices rewritten at load into a packed layout and the memory they hold.
  const PackedStore& packed() const { return packed_; }
  const ModelWeights& weights() const { return w_; }  // the views, packed or in place (tests, tools)

  // A KV cache sized for n_ctx cells in total (all sequences together).
  KvCache make_cache(int64_t n_ctx, DType type = DType::F16, int block_size = 16) const;

  // Appends every token's K/V to its sequence (tokens of one sequence in order) and returns,
  // in `logits` ([n_wanted][n_vocab]), the rows of entries with want_logits, in batch order.
  // Each token attends to the cells of its sequence up to and including its own.
  // Not re-entrant: one thread steps a model at a time (it owns its scratch buffers).
  // Throws coppice::Error when the cache has no room (nothing is appended then) or a token
  // id is out of range.
  void step(std::span<const BatchToken> batch, KvCache& cache, std::vector<float>& logits);
  // As above; skipped layers neither write nor read their K/V cells (a layer-skip draft).
  void step(std::span<const BatchToken> batch, KvCache& cache, std::vector<float>& logits,
            const StepOptions& opts);
  // Dense matrices' inputs, MoE routing and expert outputs. nullptr removes it.
  void set_observer(ActivationObserver* o) { observer_ = o; }
  // Null (the default) costs nothing; the observer must outlive its use.
  void set_attention_observer(AttentionObserver* o) { attn_observer_ = o; }

 private:
  Model() = default;
  void forward_layer(int il, std::span<const BatchToken> batch, KvCache& cache,
                     std::span<const int> cells);
  void attention_qkv(int il, std::span<const BatchToken> batch);  // xn -> roped q, k; v
  // Feed-forward branch of layer il on xn: result in tmp ([n][n_embd]).
  void dense_ffn(const LayerWeights& L, int n, int il);
  void moe_ffn(const LayerWeights& L, int n, int il);  // model/moe.cpp
  void window_begins(std::span<const BatchToken> batch, const KvCache& cache,
                     std::span<const int> cells);
  void check_tree(std::span<const BatchToken> batch) const;  // model/tree_attention.cpp
  // A tree token's visible K/V as chunks: committed cells straight from the cache, then its
  // ancestors gathered into per-thread scratch (model/tree_attention.cpp).
  void tree_chunks(int il, int ith, int i, int begin, std::span<const BatchToken> batch,
                   KvCache& cache, std::span<const int> cells, std::vector<ops::KvChunk>& out);

  gguf::File file_;
  ModelConfig cfg_;
  ModelWeights w_;
  PackedStore packed_;  // owns the packed rows that some of w_'s views point into
  std::unique_ptr<ThreadPool> pool_;
  ActivationObserver* observer_ = nullptr;
  const float* rope_factors_ = nullptr;  // [rope_dim / 2] chosen at load (llama3 / LongRoPE)
  AttentionObserver* attn_observer_ = nullptr;

  // Scratch, grow-only: no allocation per token once warm.
  struct Scratch {
    std::vector<float> x;     // [n_tok][n_embd] residual stream
    std::vector<float> xn;    // [n_tok][n_embd] normed
    std::vector<float> q;     // [n_tok][n_head * head_dim]
    std::vector<float> k;     // [n_tok][n_head_kv * head_dim]
    std::vector<float> v;     // [n_tok][n_head_kv * head_dim]
    std::vector<float> att;   // [n_tok][n_head * head_dim]
    std::vector<float> gate;  // [n_tok][n_ff]
    std::vector<float> up;    // [n_tok][n_ff]
    std::vector<float> tmp;   // [n_tok][n_embd]
    std::vector<float> fused; // [n_tok][q_dim + 2 kv_dim] or [n_tok][2 n_ff] fused outputs
    std::vector<int> swa_begin;  // [n_tok] first cache cell inside the sliding window
    // Mixture of experts (model/moe.cpp).
    std::vector<float> router;      // [n_tok][n_expert] probabilities
    std::vector<int> sel;           // [n_tok][n_expert_used] chosen experts
    std::vector<float> sel_w;       // [n_tok][n_expert_used] their weights
    std::vector<int> by_expert;     // [n_tok * n_expert_used] (token, slot) grouped by expert
    std::vector<int> expert_start;  // [n_expert + 1] offsets into by_expert
    std::vector<int> expert_fill;   // [n_expert] next free slot while grouping
    std::vector<float> xe;          // [n_routed][n_embd] gathered inputs of one expert
    std::vector<float> ye;          // [n_routed][n_embd] its outputs
    std::vector<float> ge, ue;      // [n_routed][n_ff_exp]
    std::vector<uint8_t> act;  // quantized activations for matmul
    std::vector<int> cells;    // [n_tok] cache cell of each batch token
    std::vector<std::pair<SeqId, std::vector<int32_t>>> per_seq;  // new positions per sequence
    std::vector<std::vector<float>> att_scratch;          // per thread: [2 * n_head]
    std::vector<std::vector<ops::KvChunk>> chunks;        // per thread
    std::vector<std::vector<uint8_t>> tree_k, tree_v;     // per thread: [n_rows][kv row bytes]
    std::vector<std::vector<int>> tree_path;              // per thread: a token's ancestors
  } s_;
};

}  // namespace coppice
