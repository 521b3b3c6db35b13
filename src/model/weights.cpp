#include "model/weights.h"

#include "model/arch.h"
#include "util/error.h"

namespace coppice {
namespace {

std::string shape_str(const std::vector<int64_t>& d) {
  std::string s = "[";
  for (size_t i = 0; i < d.size(); ++i) s += (i ? ", " : "") + std::to_string(d[i]);
  return s + "]";
}

std::string blk(int64_t il, const char* name) { return "blk." + std::to_string(il) + "." + name; }

}  // namespace

void WeightBinder::error(const std::string& msg) const {
  fail("model", arch_ + ": " + msg + " (" + f_.path() + ")");
}

const gguf::TensorInfo& WeightBinder::need(const std::string& name) const {
  const gguf::TensorInfo* t = f_.tensor(name);
  if (!t) error("missing tensor " + name);
  return *t;
}

WeightView WeightBinder::mat(const std::string& name, int64_t n_in, int64_t n_out) const {
  const gguf::TensorInfo& t = need(name);
  if (t.dims.size() != 2 || t.dims[0] != n_in || t.dims[1] != n_out)
    error("tensor " + name + " has shape " + shape_str(t.dims) + ", expected [" + std::to_string(n_in) +
                    ", " + std::to_string(n_out) + "]");
  WeightView w;
  w.type = t.type;
  w.data = t.data;
  w.n_in = n_in;
  w.n_out = n_out;
  w.row_bytes = row_size(*type_traits(t.type), n_in);
  return w;
}

ExpertsView WeightBinder::experts(const std::string& name, int64_t n_in, int64_t n_out,
                                  int64_t n_expert) const {
  const gguf::TensorInfo& t = need(name);
  if (t.dims.size() != 3 || t.dims[0] != n_in || t.dims[1] != n_out || t.dims[2] != n_expert)
    error("tensor " + name + " has shape " + shape_str(t.dims) + ", expected [" + std::to_string(n_in) +
                    ", " + std::to_string(n_out) + ", " + std::to_string(n_expert) + "]");
  ExpertsView e;
  e.first.type = t.type;
  e.first.data = t.data;
  e.first.n_in = n_in;
  e.first.n_out = n_out;
  e.first.row_bytes = row_size(*type_traits(t.type), n_in);
  e.stride = e.first.row_bytes * static_cast<size_t>(n_out);
  e.n_expert = n_expert;
  return e;
}

std::vector<float> WeightBinder::vec(const std::string& name, int64_t n) const {
  const gguf::TensorInfo& t = need(name);
  if (t.n_elements() != n || t.dims.size() != 1)
    error("tensor " + name + " has shape " + shape_str(t.dims) + ", expected [" + std::to_string(n) + "]");
  std::vector<float> out(static_cast<size_t>(n));
  type_traits(t.type)->to_float(t.data, out.data(), n);
  return out;
}

WeightView weight_view(const gguf::File& f, const std::string& name, int64_t n_in, int64_t n_out) {
  return WeightBinder(f, "model").mat(name, n_in, n_out);
}

void bind_embeddings(const WeightBinder& b, ModelConfig& cfg, ModelWeights& w) {
  const std::vector<int64_t> d = b.dims("token_embd.weight");
  if (d.size() != 2 || d[0] != cfg.n_embd)
    b.error("tensor token_embd.weight has shape " + shape_str(d) + ", expected [" +
                                     std::to_string(cfg.n_embd) + ", n_vocab]:");
  cfg.n_vocab = d[1];
  w.token_embd = b.mat("token_embd.weight", cfg.n_embd, cfg.n_vocab);
  w.output_norm = b.vec("output_norm.weight", cfg.n_embd);
  w.tied_output = !b.has("output.weight");
  w.output = w.tied_output ? w.token_embd : b.mat("output.weight", cfg.n_embd, cfg.n_vocab);
}

void bind_attention(const WeightBinder& b, const ModelConfig& cfg, int64_t il, LayerWeights& l) {
  const int64_t E = cfg.n_embd, qd = cfg.n_head * cfg.head_dim, kvd = cfg.n_head_kv * cfg.head_dim;
  l.attn_norm = b.vec(blk(il, "attn_norm.weight"), E);
  if (cfg.fused_qkv) {
    l.wqkv = b.mat(blk(il, "attn_qkv.weight"), E, qd + 2 * kvd);
  } else {
    l.wq = b.mat(blk(il, "attn_q.weight"), E, qd);
    l.wk = b.mat(blk(il, "attn_k.weight"), E, kvd);
    l.wv = b.mat(blk(il, "attn_v.weight"), E, kvd);
  }
  if (cfg.qkv_bias) {
    l.bq = b.vec(blk(il, "attn_q.bias"), qd);
    l.bk = b.vec(blk(il, "attn_k.bias"), kvd);
    l.bv = b.vec(blk(il, "attn_v.bias"), kvd);
  }
  if (cfg.qk_norm) {
    l.q_norm = b.vec(blk(il, "attn_q_norm.weight"), cfg.head_dim);
    l.k_norm = b.vec(blk(il, "attn_k_norm.weight"), cfg.head_dim);
  }
  l.wo = b.mat(blk(il, "attn_output.weight"), qd, E);
  if (b.has(blk(il, "attn_output.bias"))) l.bo = b.vec(blk(il, "attn_output.bias"), E);
  if (cfg.post_norms) l.attn_post_norm = b.vec(blk(il, "post_attention_norm.weight"), E);
}

void bind_ffn(const WeightBinder& b, const ModelConfig& cfg, int64_t il, LayerWeights& l) {
  const int64_t E = cfg.n_embd;
  l.ffn_norm = b.vec(blk(il, "ffn_norm.weight"), E);
  if (cfg.post_norms) l.ffn_post_norm = b.vec(blk(il, "post_ffw_norm.weight"), E);
  if (cfg.n_expert == 0) {
    if (cfg.fused_gate_up) {
      l.w_up = b.mat(blk(il, "ffn_up.weight"), E, 2 * cfg.ff(il));
    } else {
      l.w_gate = b.mat(blk(il, "ffn_gate.weight"), E, cfg.ff(il));
      l.w_up = b.mat(blk(il, "ffn_up.weight"), E, cfg.ff(il));
    }
    l.w_down = b.mat(blk(il, "ffn_down.weight"), cfg.ff(il), E);
    if (b.has(blk(il, "ffn_down.bias"))) l.b_down = b.vec(blk(il, "ffn_down.bias"), E);
    return;
  }
  const int64_t ne = cfg.n_expert, ff = cfg.n_ff_exp;
  l.gate_inp = b.mat(blk(il, "ffn_gate_inp.weight"), E, ne);
  l.gate_exps = b.experts(blk(il, "ffn_gate_exps.weight"), E, ff, ne);
  l.up_exps = b.experts(blk(il, "ffn_up_exps.weight"), E, ff, ne);
  l.down_exps = b.experts(blk(il, "ffn_down_exps.weight"), ff, E, ne);
  if (cfg.n_ff_shexp > 0) {
    l.gate_inp_shexp = b.vec(blk(il, "ffn_gate_inp_shexp.weight"), E);
    l.gate_shexp = b.mat(blk(il, "ffn_gate_shexp.weight"), E, cfg.n_ff_shexp);
    l.up_shexp = b.mat(blk(il, "ffn_up_shexp.weight"), E, cfg.n_ff_shexp);
    l.down_shexp = b.mat(blk(il, "ffn_down_shexp.weight"), cfg.n_ff_shexp, E);
  }
}

ModelWeights ModelWeights::from_gguf(const gguf::File& f, ModelConfig& cfg) {
  const ArchOps* ops = find_arch(cfg.arch);
  CP_ASSERT(ops != nullptr);  // ModelConfig::from_gguf rejected unknown architectures
  WeightBinder b(f, cfg.arch);
  ModelWeights w;
  bind_embeddings(b, cfg, w);
  ops->bind(b, cfg, w);
  for (const std::vector<float>* r : {&w.rope_freqs, &w.rope_long, &w.rope_short})
    for (float x : *r)
      if (!(x > 0)) b.error("RoPE frequency factors must be positive");
  return w;
}

}  // namespace coppice
