// GGUF arch `llama`: Llama 1/2/3/3.1/3.2, Mistral and Mixtral.
//  - Llama 3.1+ RoPE frequency scaling: the converter stores per-frequency factors as
//    rope_freqs.weight; GGUFs that carry only rope.scaling.type = llama3 and its parameters
//    get the same factors computed here (Meta's apply_scaling in the Llama 3.1 reference code).
//  - tied embeddings: no output.weight, the output projection reuses token_embd.
//  - Mistral: llama.attention.sliding_window applies a window on every layer.
//  - Mixtral: expert_count > 0 with ffn_{gate,up,down}_exps and router ffn_gate_inp;
//    softmax over the experts, top-k, weights renormalized to sum 1.
// Q and K are stored permuted by the converter for interleaved (2i, 2i+1) RoPE pairs.
#include <cmath>

#include "model/arch.h"

namespace coppice {
namespace {

void configure(const gguf::File& f, ModelConfig& c) {
  (void)f;
  c.rope_style = RopeStyle::Normal;
  c.moe_norm_topk = true;  // Mixtral renormalizes the top-k routing weights
  if (c.n_ff_shexp > 0) config_error(f, c, "shared experts are not part of this architecture");
}

// Llama 3.1 frequency factors: high frequencies unchanged, low ones divided by `factor`,
// a smooth ramp between (Meta llama-models, apply_scaling).
std::vector<float> llama3_factors(const ModelConfig& c) {
  std::vector<float> out;
  const double orig = static_cast<double>(c.n_ctx_orig);
  const double low_wavelen = orig / c.llama3_low_freq, high_wavelen = orig / c.llama3_high_freq;
  for (int64_t i = 0; i < c.rope_dim / 2; ++i) {
    const double freq = std::pow(static_cast<double>(c.rope_freq_base),
                                 -2.0 * static_cast<double>(i) / static_cast<double>(c.rope_dim));
    const double wavelen = 2 * M_PI / freq;
    double f = 1.0;
    if (wavelen > low_wavelen) {
      f = c.llama3_factor;
    } else if (wavelen >= high_wavelen) {
      const double smooth = (orig / wavelen - c.llama3_low_freq) / (c.llama3_high_freq - c.llama3_low_freq);
      f = 1.0 / ((1 - smooth) / c.llama3_factor + smooth);
    }
    out.push_back(static_cast<float>(f));
  }
  return out;
}

void bind(const WeightBinder& b, ModelConfig& c, ModelWeights& w) {
  if (b.has("rope_freqs.weight")) {
    w.rope_freqs = b.vec("rope_freqs.weight", c.rope_dim / 2);
  } else if (c.llama3_factor > 0) {
    w.rope_freqs = llama3_factors(c);
  }
  w.layers.resize(static_cast<size_t>(c.n_layer));
  for (int64_t il = 0; il < c.n_layer; ++il) {
    bind_attention(b, c, il, w.layers[il]);
    bind_ffn(b, c, il, w.layers[il]);
  }
}

}  // namespace

const ArchOps kArchLlama = {"llama", configure, bind};

}  // namespace coppice
