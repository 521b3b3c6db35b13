#include "model/weights.h"

#include "util/error.h"

namespace coppice {
namespace {

std::string shape_str(const std::vector<int64_t>& d) {
  std::string s = "[";
  for (size_t i = 0; i < d.size(); ++i) s += (i ? ", " : "") + std::to_string(d[i]);
  return s + "]";
}

const gguf::TensorInfo& need(const gguf::File& f, const std::string& name) {
  const gguf::TensorInfo* t = f.tensor(name);
  if (!t) fail("model", f.path() + ": missing tensor '" + name + "'");
  return *t;
}

// 1-D tensors (norms) are dequantized once into owned f32 buffers.
std::vector<float> vector_f32(const gguf::File& f, const std::string& name, int64_t n) {
  const gguf::TensorInfo& t = need(f, name);
  if (t.n_elements() != n || t.dims.size() != 1)
    fail("model", f.path() + ": tensor '" + name + "' has shape " + shape_str(t.dims) +
                      ", expected [" + std::to_string(n) + "]");
  std::vector<float> out(static_cast<size_t>(n));
  type_traits(t.type)->to_float(t.data, out.data(), n);
  return out;
}

}  // namespace

WeightView weight_view(const gguf::File& f, const std::string& name, int64_t n_in, int64_t n_out) {
  const gguf::TensorInfo& t = need(f, name);
  if (t.dims.size() != 2 || t.dims[0] != n_in || t.dims[1] != n_out)
    fail("model", f.path() + ": tensor '" + name + "' has shape " + shape_str(t.dims) +
                      ", expected [" + std::to_string(n_in) + ", " + std::to_string(n_out) + "]");
  WeightView w;
  w.type = t.type;
  w.data = t.data;
  w.n_in = n_in;
  w.n_out = n_out;
  w.row_bytes = row_size(*type_traits(t.type), n_in);
  return w;
}

ModelWeights ModelWeights::from_gguf(const gguf::File& f, ModelConfig& cfg) {
  ModelWeights w;
  const gguf::TensorInfo& emb = need(f, "token_embd.weight");
  if (emb.dims.size() != 2 || emb.dims[0] != cfg.n_embd)
    fail("model", f.path() + ": tensor 'token_embd.weight' has shape " + shape_str(emb.dims) +
                      ", expected [" + std::to_string(cfg.n_embd) + ", n_vocab]");
  cfg.n_vocab = emb.dims[1];
  w.token_embd = weight_view(f, "token_embd.weight", cfg.n_embd, cfg.n_vocab);
  w.output_norm = vector_f32(f, "output_norm.weight", cfg.n_embd);
  if (f.tensor("output.weight")) {
    w.output = weight_view(f, "output.weight", cfg.n_embd, cfg.n_vocab);
  } else {
    w.output = w.token_embd;
    w.tied_output = true;
  }
  const int64_t q_dim = cfg.n_head * cfg.head_dim, kv_dim = cfg.n_head_kv * cfg.head_dim;
  for (int64_t i = 0; i < cfg.n_layer; ++i) {
    const std::string p = "blk." + std::to_string(i) + ".";
    LayerWeights l;
    l.attn_norm = vector_f32(f, p + "attn_norm.weight", cfg.n_embd);
    l.wq = weight_view(f, p + "attn_q.weight", cfg.n_embd, q_dim);
    l.wk = weight_view(f, p + "attn_k.weight", cfg.n_embd, kv_dim);
    l.wv = weight_view(f, p + "attn_v.weight", cfg.n_embd, kv_dim);
    l.wo = weight_view(f, p + "attn_output.weight", q_dim, cfg.n_embd);
    l.ffn_norm = vector_f32(f, p + "ffn_norm.weight", cfg.n_embd);
    l.w_gate = weight_view(f, p + "ffn_gate.weight", cfg.n_embd, cfg.n_ff);
    l.w_up = weight_view(f, p + "ffn_up.weight", cfg.n_embd, cfg.n_ff);
    l.w_down = weight_view(f, p + "ffn_down.weight", cfg.n_ff, cfg.n_embd);
    w.layers.push_back(std::move(l));
  }
  return w;
}

}  // namespace coppice
