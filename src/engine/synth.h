// `coppice synth`: a random-weight GGUF of any supported architecture and shape, so benchmarks
// and tests need no download (llama, qwen2, qwen3, qwen2moe, qwen3moe, gemma2, gemma3, phi3;
// llama with experts is Mixtral, with a sliding window Mistral).
// Weights ~ N(0, std) from a counter-based PRNG keyed by (seed, tensor, row): the same options
// give a byte-identical file whatever the thread count. Each row is generated in f32 and
// quantized straight to its type; tensors stream to disk one at a time.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <string>

#include "engine/quantize.h"

namespace coppice {

struct SynthOptions {
  std::string arch = "llama";  // general.architecture
  int64_t dim = 2048;
  int64_t layers = 16;
  int64_t heads = 32;
  int64_t kv_heads = 8;
  int64_t ffn = 8192;
  int64_t vocab = 32000;
  int64_t ctx = 4096;
  float rope_base = 500000.0f;
  std::string type = "f16";  // any quantize TYPE: a tensor type or a preset
  bool pure = false;         // every 2-D tensor in the base type (no preset mix)
  uint64_t seed = 1;
  float std_dev = 0.02f;
  bool tied = false;         // no output.weight: the output reuses token_embd (always for gemma)
  int64_t head_dim = 0;      // 0: dim / heads (else attention.key_length)
  // Mixture of experts (llama = Mixtral, qwen2moe, qwen3moe).
  int64_t experts = 0;       // expert_count (required > 0 for the *moe arches)
  int64_t experts_used = 2;  // expert_used_count
  int64_t ffn_exp = 0;       // expert_feed_forward_length, 0: ffn
  int64_t ffn_shexp = 0;     // qwen2moe shared expert size, 0: ffn
  int64_t sliding_window = 0;  // attention.sliding_window (gemma: required > 0)
  // RoPE scaling: "none", "linear", "llama3" (rope_freqs.weight + metadata), "longrope"
  // (phi3: rope_factors_long/short.weight + attn_factor).
  std::string rope_scaling = "none";
  float rope_factor = 8.0f;
  int64_t rope_orig_ctx = 0;       // original_context_length, 0: ctx / 4
  bool rope_freqs_tensor = true;   // llama3: also write rope_freqs.weight
  float rope_base_swa = 10000.0f;  // gemma3 local layers
  float attn_softcap = 50.0f, final_softcap = 30.0f;  // gemma2
  float attn_scale = 0.0f;   // attention.scale, 0: not written
  float norm_std = 0.0f;     // norms = 1 + N(0, norm_std); biases ~ N(0, std)
  float rms_eps = 1e-5f;
  int n_threads = 0;         // 0: physical cores
  std::function<void(size_t, size_t, const std::string&, uint64_t, double)> on_progress;
  std::function<void(const std::string&)> on_note;
};

struct SynthReport {
  uint64_t file_bytes = 0;
  int64_t n_params = 0;
  size_t n_tensors = 0;
  std::map<std::string, int> type_counts;
  double seconds = 0;
};

// Throws coppice::Error for impossible shapes or an unknown type; OUT is never half-written.
SynthReport synth_model(const std::string& out, const SynthOptions& opts);

// The synthetic SentencePiece vocabulary: <unk>, <s>, </s>, <0x00>..<0xFF>, then "▁tokN".
std::vector<std::string> synth_vocab(int64_t n);

}  // namespace coppice
