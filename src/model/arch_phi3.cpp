// GGUF arch `phi3` (Phi-3 / Phi-3.5 / Phi-4 mini).
//  - fused projections: attn_qkv.weight rows are [Q; K; V], ffn_up.weight rows are
//    [gate; up] (SwiGLU over the two halves). Separate attn_q/k/v are accepted too.
//  - NeoX RoPE; LongRoPE: rope_factors_long/short.weight divide each frequency, the long set
//    when the context exceeds rope.scaling.original_context_length; cos and sin are scaled
//    by rope.scaling.attn_factor (as llama.cpp's rope does with ext_factor 0).
//  - attention.sliding_window, when present, windows every layer.
#include "model/arch.h"

namespace coppice {
namespace {

void configure(const gguf::File& f, ModelConfig& c) {
  if (c.n_expert > 0) config_error(f, c, "expert_count in a dense architecture");
  c.rope_style = RopeStyle::NeoX;
  c.fused_gate_up = true;
}

void bind(const WeightBinder& b, ModelConfig& c, ModelWeights& w) {
  c.fused_qkv = !b.has("blk.0.attn_q.weight");
  const bool has_long = b.has("rope_factors_long.weight"), has_short = b.has("rope_factors_short.weight");
  if (has_long || has_short) {
    w.rope_long = b.vec("rope_factors_long.weight", c.rope_dim / 2);
    w.rope_short = b.vec("rope_factors_short.weight", c.rope_dim / 2);
  }
  w.layers.resize(static_cast<size_t>(c.n_layer));
  for (int64_t il = 0; il < c.n_layer; ++il) {
    bind_attention(b, c, il, w.layers[il]);
    bind_ffn(b, c, il, w.layers[il]);
  }
}

}  // namespace

const ArchOps kArchPhi3 = {"phi3", configure, bind};

}  // namespace coppice
