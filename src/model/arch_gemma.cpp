// GGUF arches `gemma2` and `gemma3`.
//  - token embeddings scaled by sqrt(n_embd); tied output (no output.weight).
//  - RMSNorm before AND after each branch: attn_norm, post_attention_norm, ffn_norm,
//    post_ffw_norm. Gemma's norm is x * (1 + w); llama.cpp's converter already stores 1 + w
//    in GGUF, so the weights are used as plain RMSNorm weights (as llama.cpp does).
//  - GeGLU feed-forward: gelu_tanh(gate) * up. NeoX RoPE.
//  - query scaling: attention.scale when present, else 1/sqrt(head_dim), except the 27B
//    models whose query_pre_attn_scalar is n_embd / n_head (llama.cpp picks it by size too).
//  - gemma2: attention-logit (default 50) and final-logit (default 30) soft-capping;
//    sliding window (default 4096) on even layers, global attention on odd layers.
//  - gemma3: per-head Q/K RMSNorm; 5 local (windowed) layers then 1 global; local layers use
//    RoPE base rope.freq_base_swa (default 10000) without the global layers' scaling.
#include <cmath>

#include "model/arch.h"

namespace coppice {
namespace {

void configure_common(const gguf::File& f, ModelConfig& c, int64_t n_layer_27b) {
  if (c.n_expert > 0) config_error(f, c, "expert_count in a dense architecture");
  c.rope_style = RopeStyle::NeoX;
  c.post_norms = true;
  c.ffn_act = FfnAct::GeluTanh;
  c.embd_scale = std::sqrt(static_cast<float>(c.n_embd));
  if (c.attn_scale <= 0 && c.n_layer == n_layer_27b)
    c.attn_scale = 1.0f / std::sqrt(static_cast<float>(c.n_embd / c.n_head));
  c.final_softcap = static_cast<float>(arch_float(f, c, "final_logit_softcapping").value_or(0.0));
}

void configure_gemma2(const gguf::File& f, ModelConfig& c) {
  configure_common(f, c, 46);
  c.attn_softcap = static_cast<float>(arch_float(f, c, "attn_logit_softcapping").value_or(50.0));
  c.final_softcap = static_cast<float>(arch_float(f, c, "final_logit_softcapping").value_or(30.0));
  if (c.n_swa == 0) c.n_swa = 4096;
  for (int64_t il = 0; il < c.n_layer; ++il) c.swa_layers[il] = il % 2 == 0;
}

void configure_gemma3(const gguf::File& f, ModelConfig& c) {
  configure_common(f, c, 62);
  c.qk_norm = true;
  if (c.n_swa == 0) config_error(f, c, "missing metadata '" + c.arch + ".attention.sliding_window'");
  for (int64_t il = 0; il < c.n_layer; ++il) c.swa_layers[il] = il % 6 < 5;
  c.rope_freq_base_swa = static_cast<float>(arch_float(f, c, "rope.freq_base_swa").value_or(10000.0));
  if (!(c.rope_freq_base_swa > 0)) config_error(f, c, "rope.freq_base_swa must be positive");
}

void bind(const WeightBinder& b, ModelConfig& c, ModelWeights& w) {
  w.layers.resize(static_cast<size_t>(c.n_layer));
  for (int64_t il = 0; il < c.n_layer; ++il) {
    bind_attention(b, c, il, w.layers[il]);
    bind_ffn(b, c, il, w.layers[il]);
  }
}

}  // namespace

const ArchOps kArchGemma2 = {"gemma2", configure_gemma2, bind};
const ArchOps kArchGemma3 = {"gemma3", configure_gemma3, bind};

}  // namespace coppice
