// `coppice prune`: GGUF -> GGUF with the layer matrices sparsified (magnitude, Wanda, N:M). The
// output stays a standard dense GGUF (zeros stored in the file's own types), so it loads in any
// engine; coppice repacks 2:4 matrices at load (model/sparse_pack.cpp).
// Wanda needs per-input-channel activation norms: calibration text runs through the model with
// an ActivationObserver; without a text file the model samples its own calibration sequences.
#pragma once
#include <array>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "model/model.h"
#include "tokenizer/tokenizer.h"

namespace coppice {

enum class PruneMethod { Magnitude, Wanda, NM, Structured, Experts };

struct PruneOptions {
  PruneMethod method = PruneMethod::Wanda;
  double sparsity = 0.5;     // magnitude / wanda: fraction of each row zeroed; structured:
                             // fraction of FFN channels and of KV head groups removed;
                             // experts: fraction of each MoE layer's experts removed
  int experts_keep = 0;      // experts: keep this many per layer (overrides sparsity when > 0)
  int nm_n = 2, nm_m = 4;    // nm: keep n of every m consecutive inputs
  bool nm_magnitude = false; // nm: score by |W| only (no calibration)
  std::string calib_file;    // text; empty: sampled from the model itself
  int calib_tokens = 2048;   // at most this many calibration tokens
  int calib_ctx = 256;       // tokens per calibration sequence
  uint64_t seed = 42;        // self-generated calibration
  bool bias_compensation = true;  // structured: fold removed channels' mean output into a bias
  bool ffn_global = false;        // structured: FFN channels ranked across layers (FLAP's adaptive
                                  // structure; per-layer feed_forward_length) instead of per layer
  int n_threads = 0;
  // After each tensor: index (1-based), count, name.
  std::function<void(size_t, size_t, const std::string&)> on_progress;
  std::function<void(const std::string&)> on_note;
};

struct PruneReport {
  size_t n_tensors = 0, n_pruned = 0;   // tensors written / sparsified
  int64_t n_weights = 0, n_zeros = 0;   // over the sparsified tensors
  int64_t calib_tokens = 0;             // 0 without calibration
  uint64_t in_file_bytes = 0, out_file_bytes = 0;
  double seconds = 0;
  std::vector<int64_t> ffn_kept;  // structured: [n_layer] FFN channels kept per layer
  std::vector<std::vector<int>> experts_kept;  // experts: [n_layer] kept expert ids, ascending
  int64_t experts_before = 0, experts_after = 0, experts_used = 0;  // experts: the new metadata
};

// Which layer matrix a tensor name is ("blk.N.attn_q.weight" ...), and whose input it reads.
// False for everything else (embeddings, output, norms, MoE experts and router).
bool prunable_tensor(const std::string& name, int* layer, MatInput* site);

// Sum over calibration tokens of x_j^2 for the input of every layer's matrices.
class ActivationNorms : public ActivationObserver {
 public:
  explicit ActivationNorms(int n_layer)
      : sumsq_(static_cast<size_t>(n_layer)), sum_(static_cast<size_t>(n_layer)), count_(static_cast<size_t>(n_layer)) {}
  void observe(int il, MatInput site, const float* x, int n_tok, int64_t dim) override;
  // ||X_j||_2 for input j of (layer, site); empty if never observed.
  std::vector<float> norms(int il, MatInput site) const;
  // Per-channel variance over the observed tokens (FLAP's fluctuation); empty if never observed.
  std::vector<double> variances(int il, MatInput site) const;
  // Per-channel mean over the observed tokens (FLAP's bias compensation); empty if never observed.
  std::vector<double> means(int il, MatInput site) const;
  int64_t tokens() const { return tokens_; }

 private:
  std::vector<std::array<std::vector<double>, 4>> sumsq_;  // [n_layer][site][dim]
  std::vector<std::array<std::vector<double>, 4>> sum_;    // [n_layer][site][dim]
  std::vector<std::array<int64_t, 4>> count_;              // [n_layer][site] tokens
  int64_t tokens_ = 0;  // counted at the first layer's AttnIn
};

// Per MoE layer and expert, over calibration tokens: how often the router picks it (routing
// frequency), its mean router probability, and its output contribution: sum over the tokens
// routed to it of gate weight x ||expert output||_2, divided by all tokens of the layer
// (unrouted tokens count 0), the score of STUN / PreMoe-style expert pruning.
class ExpertStats : public ActivationObserver {
 public:
  ExpertStats(int n_layer, int n_expert);
  void observe(int, MatInput, const float*, int, int64_t) override {}
  void observe_router(int il, const float* p, int n_tok, int64_t n_expert) override;
  void observe_expert(int il, int expert, int m, const float* w, const float* y, int64_t dim) override;
  int n_expert() const { return n_expert_; }
  int64_t tokens(int il) const;                 // tokens that reached layer il's router
  int64_t routed(int il, int e) const;          // of them, routed to expert e (top-k)
  double frequency(int il, int e) const;        // routed / tokens
  double mean_prob(int il, int e) const;        // mean router probability
  double contribution(int il, int e) const;     // mean of gate weight x ||output|| (0 unrouted)
  // The n_keep experts of layer il to keep, ascending: ranked by contribution, then frequency,
  // then mean probability; remaining ties keep the lower id.
  std::vector<int> keep(int il, int n_keep) const;

 private:
  struct Acc { int64_t routed = 0; double prob = 0, contrib = 0; };
  int n_expert_;
  std::vector<int64_t> tokens_;  // [n_layer]
  std::vector<Acc> acc_;         // [n_layer][n_expert]
  size_t slot(int il, int e) const;  // checked index into acc_
  const Acc& at(int il, int e) const;
};

// Runs `tokens` through the model in sequences of n_ctx (each starting a fresh sequence).
void run_calibration(Model& model, const std::vector<int32_t>& tokens, int n_ctx, ActivationObserver& obs);

// n_tokens in all, sampled from the model (temperature 1) one token per step, in sequences of
// at most seq_len that start from BOS (and end early at end-of-generation).
std::vector<std::vector<int32_t>> self_generated_tokens(Model& model, const Tokenizer& tok, int n_tokens,
                                           int seq_len, uint64_t seed);

// FLAP-style structured pruning (An et al. 2024, "Fluctuation-based Adaptive Structured
// Pruning"; engine/prune_structured.cpp): per layer, the round(sparsity * n_ff) FFN channels
// and round(sparsity * n_head_kv) KV head groups (with their query heads) of lowest
// fluctuation (input variance x squared norm of the output-matrix column) are removed, the
// same count in every layer; with ffn_global the FFN channels are ranked across layers instead
// (standardized scores, FLAP's adaptive structure) and feed_forward_length becomes one value
// per layer. Bias compensation
// (FLAP; on unless PruneOptions::bias_compensation is false): a removed input channel j of
// ffn_down / attn_output is replaced by its calibration mean, folded into the matrix's bias,
// b += W[:, j] * mean_j, written as F32 blk.N.ffn_down.bias / attn_output.bias (optional
// tensors llama-family loaders add after the matrix). Separate Q/K/V and gate/up tensors,
// F32/F16/BF16 only. Called by prune_file.
PruneReport prune_structured(const gguf::File& f, const std::string& out, const PruneOptions& opts,
                             const ActivationNorms& stats);

// MoE expert pruning (engine/prune_experts.cpp): per layer the experts with the lowest
// ExpertStats ranking are removed, K = experts_keep or n_expert - round(sparsity * n_expert)
// kept in every layer (expert_count stays one value; expert_used_count becomes min(used, K)).
// The router's rows and the stacked *_exps tensors keep the kept experts' slices, byte for
// byte in their own types. Called by prune_file.
PruneReport prune_experts(const gguf::File& f, const std::string& out, const PruneOptions& opts,
                          const ExpertStats& stats);

// Throws coppice::Error: unreadable input, IN == OUT, rows not divisible by M, write failure.
PruneReport prune_file(const std::string& in, const std::string& out, const PruneOptions& opts);

}  // namespace coppice
