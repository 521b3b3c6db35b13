// Hyperparameters of a decoder-only transformer, read from GGUF metadata (arch-prefixed keys),
// and the variant flags of the one shared block (model/model.cpp) that each architecture file
// (model/arch_*.cpp) sets.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "formats/gguf.h"

namespace coppice {

enum class RopeStyle { Normal, NeoX };  // pairs (2i, 2i+1) vs (i, i + d/2)
enum class FfnAct { SiLU, GeluTanh };   // SwiGLU (llama) vs GeGLU (Gemma)

struct ModelConfig {
  std::string arch;       // general.architecture
  std::string name;       // general.name
  int64_t n_vocab = 0;
  int64_t n_embd = 0;
  int64_t n_layer = 0;
  int64_t n_head = 0;
  int64_t n_head_kv = 0;
  int64_t head_dim = 0;   // attention.key_length, default n_embd / n_head
  int64_t n_ff = 0;       // feed_forward_length (0 for MoE-only models); the largest layer's
                          // when the GGUF stores one value per layer
  std::vector<int64_t> n_ff_layer;  // [n_layer] per-layer feed_forward_length (an array in the
                                    // GGUF, e.g. FLAP-adaptive pruned models); empty: n_ff everywhere
  int64_t ff(int64_t il) const { return n_ff_layer.empty() ? n_ff : n_ff_layer[static_cast<size_t>(il)]; }
  int64_t n_ctx_train = 0;
  float rms_eps = 1e-5f;
  float rope_freq_base = 10000.0f;
  float rope_freq_scale = 1.0f;  // 1 / rope.scaling.factor for linear scaling
  int64_t rope_dim = 0;          // rope.dimension_count, default head_dim
  RopeStyle rope_style = RopeStyle::Normal;

  // ---- Block variant flags (set by the architecture file) ----
  bool qkv_bias = false;       // attn_{q,k,v}.bias (Qwen2, Qwen2-MoE)
  bool qk_norm = false;        // per-head RMSNorm of Q and K before RoPE (Qwen3, Gemma 3)
  bool fused_qkv = false;      // attn_qkv.weight = [Q; K; V] rows (Phi-3)
  bool fused_gate_up = false;  // ffn_up.weight = [gate; up] rows (Phi-3)
  bool post_norms = false;     // post_attention_norm and post_ffw_norm on branch outputs (Gemma)
  FfnAct ffn_act = FfnAct::SiLU;
  float embd_scale = 1.0f;     // token embeddings times this (Gemma: sqrt(n_embd))
  float attn_scale = 0.0f;     // query scaling; attention.scale or 1/sqrt(head_dim)
  float attn_softcap = 0.0f;   // attn_logit_softcapping (Gemma 2), 0 = off
  float final_softcap = 0.0f;  // final_logit_softcapping (Gemma 2), 0 = off

  // Sliding-window attention: on a layer with swa_layers[il], a query at position p sees
  // only keys at p' with p - p' < n_swa (llama.cpp's standard SWA mask).
  int64_t n_swa = 0;               // attention.sliding_window, 0 = none
  std::vector<uint8_t> swa_layers; // [n_layer]
  float rope_freq_base_swa = 0.0f; // RoPE base of windowed layers (Gemma 3); 0 = rope_freq_base
  // Per-frequency RoPE factors: llama3 (rope_freqs.weight or computed from metadata) and
  // LongRoPE (rope_factors_long/short.weight, chosen by context length).
  float rope_attn_factor = 1.0f;   // rope.scaling.attn_factor: multiplies cos and sin
  int64_t n_ctx_orig = 0;          // rope.scaling.original_context_length
  float llama3_factor = 0.0f;      // rope.scaling.type llama3 without a rope_freqs tensor
  float llama3_low_freq = 1.0f, llama3_high_freq = 4.0f;

  // Mixture of experts (0 experts: a dense FFN).
  int64_t n_expert = 0;         // expert_count
  int64_t n_expert_used = 0;    // expert_used_count (top-k)
  int64_t n_ff_exp = 0;         // expert_feed_forward_length, default n_ff
  int64_t n_ff_shexp = 0;       // expert_shared_feed_forward_length (Qwen2-MoE), 0 = none
  bool moe_norm_topk = false;   // renormalize the top-k weights to sum 1

  bool is_swa(int64_t il) const { return n_swa > 0 && swa_layers[static_cast<size_t>(il)] != 0; }

  // Reads and validates; throws coppice::Error naming the key and the value, or the
  // architecture when it is not supported.
  static ModelConfig from_gguf(const gguf::File& f);
};

}  // namespace coppice
