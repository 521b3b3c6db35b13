// The weights of a llama-family model as views into the mapped GGUF (no copies), with
// every tensor's presence, type and shape checked at load.
#pragma once
#include <string>
#include <vector>

#include "formats/gguf.h"
#include "model/config.h"
#include "ops/tensor.h"

namespace coppice {

struct LayerWeights {
  std::vector<float> attn_norm;  // [n_embd]
  WeightView wq;                 // [n_head * head_dim][n_embd]
  WeightView wk;                 // [n_head_kv * head_dim][n_embd]
  WeightView wv;                 // [n_head_kv * head_dim][n_embd]
  WeightView wo;                 // [n_embd][n_head * head_dim]
  std::vector<float> ffn_norm;   // [n_embd]
  WeightView w_gate;             // [n_ff][n_embd]
  WeightView w_up;               // [n_ff][n_embd]
  WeightView w_down;             // [n_embd][n_ff]
};

struct ModelWeights {
  WeightView token_embd;           // [n_vocab][n_embd]
  std::vector<float> output_norm;  // [n_embd]
  WeightView output;               // [n_vocab][n_embd]; token_embd when tied
  bool tied_output = false;
  std::vector<LayerWeights> layers;

  // Throws coppice::Error naming the tensor for a missing tensor or a wrong shape.
  static ModelWeights from_gguf(const gguf::File& f, ModelConfig& cfg);
};

// View of a 2-D tensor with shape [n_in (ne0), n_out (ne1)]; checks the shape.
WeightView weight_view(const gguf::File& f, const std::string& name, int64_t n_in, int64_t n_out);

}  // namespace coppice
