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

enum class PruneMethod { Magnitude, Wanda, NM, Structured };

struct PruneOptions {
  PruneMethod method = PruneMethod::Wanda;
  double sparsity = 0.5;     // magnitude / wanda: fraction of each row zeroed; structured:
                             // fraction of FFN channels and of KV head groups removed
  int nm_n = 2, nm_m = 4;    // nm: keep n of every m consecutive inputs
  bool nm_magnitude = false; // nm: score by |W| only (no calibration)
  std::string calib_file;    // text; empty: sampled from the model itself
  int calib_tokens = 2048;   // at most this many calibration tokens
  int calib_ctx = 256;       // tokens per calibration sequence
  uint64_t seed = 42;        // self-generated calibration
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
  int64_t tokens() const { return tokens_; }

 private:
  std::vector<std::array<std::vector<double>, 4>> sumsq_;  // [n_layer][site][dim]
  std::vector<std::array<std::vector<double>, 4>> sum_;    // [n_layer][site][dim]
  std::vector<std::array<int64_t, 4>> count_;              // [n_layer][site] tokens
  int64_t tokens_ = 0;  // counted at the first layer's AttnIn
};

// Runs `tokens` through the model in sequences of n_ctx (each starting a fresh sequence).
void run_calibration(Model& model, const std::vector<int32_t>& tokens, int n_ctx, ActivationNorms& norms);

// n_tokens in all, sampled from the model (temperature 1) one token per step, in sequences of
// at most seq_len that start from BOS (and end early at end-of-generation).
std::vector<std::vector<int32_t>> self_generated_tokens(Model& model, const Tokenizer& tok, int n_tokens,
                                           int seq_len, uint64_t seed);

// FLAP-style structured pruning (An et al. 2024, "Fluctuation-based Adaptive Structured
// Pruning"; engine/prune_structured.cpp): per layer, the round(sparsity * n_ff) FFN channels
// and round(sparsity * n_head_kv) KV head groups (with their query heads) of lowest
// fluctuation (input variance x squared norm of the output-matrix column) are removed, the
// same count in every layer so the metadata stays one value per key. No bias compensation:
// the llama-family loader has no ffn_down / attn_output bias. Separate Q/K/V and gate/up
// tensors, F32/F16/BF16 only. Called by prune_file.
PruneReport prune_structured(const gguf::File& f, const std::string& out, const PruneOptions& opts,
                             const ActivationNorms& stats);

// Throws coppice::Error: unreadable input, IN == OUT, rows not divisible by M, write failure.
PruneReport prune_file(const std::string& in, const std::string& out, const PruneOptions& opts);

}  // namespace coppice
