// GGUF arches `qwen2`, `qwen3`, `qwen2moe`, `qwen3moe` (Qwen2/2.5, Qwen3 and their MoE forms).
//  - NeoX RoPE (rotate halves) on Q and K; Q and K are stored unpermuted.
//  - qwen2 / qwen2moe: biases on the Q, K and V projections (attn_{q,k,v}.bias).
//  - qwen3 / qwen3moe: RMSNorm over each head of Q and K (attn_q_norm, attn_k_norm: [head_dim])
//    before RoPE; no biases.
//  - qwen2moe: softmax routing, top-k WITHOUT renormalization, plus a shared expert
//    (ffn_{gate,up,down}_shexp) scaled by sigmoid(ffn_gate_inp_shexp . x).
//  - qwen3moe: softmax routing, top-k renormalized (norm_topk_prob), no shared expert.
#include "model/arch.h"

namespace coppice {
namespace {

void bind_layers(const WeightBinder& b, ModelConfig& c, ModelWeights& w) {
  w.layers.resize(static_cast<size_t>(c.n_layer));
  for (int64_t il = 0; il < c.n_layer; ++il) {
    bind_attention(b, c, il, w.layers[il]);
    bind_ffn(b, c, il, w.layers[il]);
  }
}

void need_moe(const gguf::File& f, const ModelConfig& c, bool is_moe) {
  if (is_moe && c.n_expert == 0) config_error(f, c, "missing metadata '" + c.arch + ".expert_count'");
  if (!is_moe && c.n_expert > 0)
    config_error(f, c, "expert_count " + std::to_string(c.n_expert) + " in a dense architecture");
}

void configure_qwen2(const gguf::File& f, ModelConfig& c) {
  need_moe(f, c, false);
  c.rope_style = RopeStyle::NeoX;
  c.qkv_bias = true;
}

void configure_qwen3(const gguf::File& f, ModelConfig& c) {
  need_moe(f, c, false);
  c.rope_style = RopeStyle::NeoX;
  c.qk_norm = true;
}

void configure_qwen2moe(const gguf::File& f, ModelConfig& c) {
  need_moe(f, c, true);
  c.rope_style = RopeStyle::NeoX;
  c.qkv_bias = true;
  c.moe_norm_topk = false;
}

void configure_qwen3moe(const gguf::File& f, ModelConfig& c) {
  need_moe(f, c, true);
  c.rope_style = RopeStyle::NeoX;
  c.qk_norm = true;
  c.moe_norm_topk = true;
  c.n_ff_shexp = 0;
}

}  // namespace

const ArchOps kArchQwen2 = {"qwen2", configure_qwen2, bind_layers};
const ArchOps kArchQwen3 = {"qwen3", configure_qwen3, bind_layers};
const ArchOps kArchQwen2Moe = {"qwen2moe", configure_qwen2moe, bind_layers};
const ArchOps kArchQwen3Moe = {"qwen3moe", configure_qwen3moe, bind_layers};

}  // namespace coppice
