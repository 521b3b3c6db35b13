// The weights of a model as views into the mapped GGUF (no copies), with every tensor's
// presence, type and shape checked at load. Small 1-D tensors (norms, biases, RoPE factors)
// are dequantized once into owned f32 buffers.
#pragma once
#include <string>
#include <vector>

#include "formats/gguf.h"
#include "model/config.h"
#include "ops/tensor.h"

namespace coppice {

// A 3-D expert tensor [n_expert][n_out][n_in]: expert e is a WeightView `stride` bytes on.
struct ExpertsView {
  WeightView first;   // expert 0: [n_out][n_in]
  size_t stride = 0;  // bytes between experts
  int64_t n_expert = 0;
  WeightView at(int64_t e) const {
    WeightView w = first;
    w.data = static_cast<const uint8_t*>(first.data) + static_cast<size_t>(e) * stride;
    return w;
  }
};

struct LayerWeights {
  std::vector<float> attn_norm;       // [n_embd]
  WeightView wq;                      // [n_head * head_dim][n_embd]
  WeightView wk;                      // [n_head_kv * head_dim][n_embd]
  WeightView wv;                      // [n_head_kv * head_dim][n_embd]
  WeightView wqkv;                    // [(n_head + 2 n_head_kv) * head_dim][n_embd] (fused_qkv)
  std::vector<float> bq, bk, bv;      // [q_dim], [kv_dim], [kv_dim] (qkv_bias)
  std::vector<float> q_norm, k_norm;  // [head_dim] (qk_norm)
  WeightView wo;                      // [n_embd][n_head * head_dim]
  std::vector<float> bo;              // [n_embd] attn_output.bias, optional (empty: none)
  std::vector<float> attn_post_norm;  // [n_embd] (post_norms)
  std::vector<float> ffn_norm;        // [n_embd]
  WeightView w_gate;                  // [n_ff][n_embd] (absent with fused_gate_up)
  WeightView w_up;                    // [n_ff][n_embd], or [2 n_ff][n_embd] = [gate; up] fused
  WeightView w_down;                  // [n_embd][n_ff]
  std::vector<float> b_down;          // [n_embd] ffn_down.bias, optional (empty: none)
  std::vector<float> ffn_post_norm;   // [n_embd] (post_norms)
  // Mixture of experts.
  WeightView gate_inp;                // router: [n_expert][n_embd]
  ExpertsView gate_exps, up_exps;     // [n_expert][n_ff_exp][n_embd]
  ExpertsView down_exps;              // [n_expert][n_embd][n_ff_exp]
  WeightView gate_shexp, up_shexp;    // [n_ff_shexp][n_embd] shared expert
  WeightView down_shexp;              // [n_embd][n_ff_shexp]
  std::vector<float> gate_inp_shexp;  // [n_embd]: sigmoid gate of the shared expert
};

struct ModelWeights {
  WeightView token_embd;           // [n_vocab][n_embd]
  std::vector<float> output_norm;  // [n_embd]
  WeightView output;               // [n_vocab][n_embd]; token_embd when tied
  bool tied_output = false;
  std::vector<float> rope_freqs;   // [rope_dim / 2] llama3 factors (tensor or metadata), or empty
  std::vector<float> rope_long, rope_short;  // [rope_dim / 2] LongRoPE factors, or empty
  std::vector<LayerWeights> layers;

  // Throws coppice::Error naming the architecture and tensor for a missing tensor or a wrong
  // shape, e.g. "[model] qwen2: missing tensor blk.3.attn_q.bias".
  static ModelWeights from_gguf(const gguf::File& f, ModelConfig& cfg);
};

// Looks tensors up by name and checks their shapes; errors name the architecture.
class WeightBinder {
 public:
  WeightBinder(const gguf::File& f, std::string arch) : f_(f), arch_(std::move(arch)) {}
  bool has(const std::string& name) const { return f_.tensor(name) != nullptr; }
  // 2-D [n_in (ne0), n_out (ne1)].
  WeightView mat(const std::string& name, int64_t n_in, int64_t n_out) const;
  // 3-D [n_in, n_out, n_expert].
  ExpertsView experts(const std::string& name, int64_t n_in, int64_t n_out, int64_t n_expert) const;
  std::vector<float> vec(const std::string& name, int64_t n) const;
  std::vector<float> opt_vec(const std::string& name, int64_t n) const {
    return has(name) ? vec(name, n) : std::vector<float>{};
  }
  std::vector<int64_t> dims(const std::string& name) const { return need(name).dims; }
  [[noreturn]] void error(const std::string& msg) const;  // "[model] ARCH: msg (path)"

 private:
  const gguf::TensorInfo& need(const std::string& name) const;
  const gguf::File& f_;
  std::string arch_;
};

// Common binding steps used by the architecture files.
// token_embd (sets cfg.n_vocab), output_norm, output (tied to token_embd when absent).
void bind_embeddings(const WeightBinder& b, ModelConfig& cfg, ModelWeights& w);
// attn_norm, Q/K/V (or fused QKV), biases and Q/K norms per cfg flags, attn_output,
// post_attention_norm when cfg.post_norms.
void bind_attention(const WeightBinder& b, const ModelConfig& cfg, int64_t il, LayerWeights& l);
// ffn_norm, dense gate/up/down (or fused up) or the MoE router, experts and shared expert,
// post_ffw_norm when cfg.post_norms.
void bind_ffn(const WeightBinder& b, const ModelConfig& cfg, int64_t il, LayerWeights& l);

// View of a 2-D tensor with shape [n_in (ne0), n_out (ne1)]; checks the shape.
WeightView weight_view(const gguf::File& f, const std::string& name, int64_t n_in, int64_t n_out);

}  // namespace coppice
