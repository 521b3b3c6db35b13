#include "model/config.h"

#include "util/error.h"

namespace coppice {
namespace {

int64_t need_int(const gguf::File& f, const std::string& key) {
  auto v = f.get_int(key);
  if (!v) fail("model", f.path() + ": missing metadata '" + key + "'");
  return *v;
}

void check_positive(const gguf::File& f, const std::string& key, int64_t v, int64_t max) {
  if (v <= 0 || v > max)
    fail("model", f.path() + ": metadata '" + key + "' = " + std::to_string(v) +
                      " is out of range (1.." + std::to_string(max) + ")");
}

}  // namespace

ModelConfig ModelConfig::from_gguf(const gguf::File& f) {
  ModelConfig c;
  auto arch = f.get_string("general.architecture");
  if (!arch) fail("model", f.path() + ": missing metadata 'general.architecture'");
  c.arch = *arch;
  if (c.arch != "llama")
    fail("model", f.path() + ": unsupported architecture '" + c.arch + "' (supported: llama)");
  c.name = f.get_string("general.name").value_or("");
  const std::string p = c.arch + ".";
  c.n_embd = need_int(f, p + "embedding_length");
  c.n_layer = need_int(f, p + "block_count");
  c.n_ff = need_int(f, p + "feed_forward_length");
  c.n_head = need_int(f, p + "attention.head_count");
  c.n_head_kv = f.get_int(p + "attention.head_count_kv").value_or(c.n_head);
  c.n_ctx_train = f.get_int(p + "context_length").value_or(2048);
  check_positive(f, p + "embedding_length", c.n_embd, 1 << 20);
  check_positive(f, p + "block_count", c.n_layer, 4096);
  check_positive(f, p + "feed_forward_length", c.n_ff, 1 << 22);
  check_positive(f, p + "attention.head_count", c.n_head, 4096);
  check_positive(f, p + "attention.head_count_kv", c.n_head_kv, c.n_head);
  check_positive(f, p + "context_length", c.n_ctx_train, int64_t{1} << 32);
  if (c.n_head % c.n_head_kv != 0)
    fail("model", f.path() + ": head_count " + std::to_string(c.n_head) +
                      " is not a multiple of head_count_kv " + std::to_string(c.n_head_kv));
  c.head_dim = f.get_int(p + "attention.key_length").value_or(c.n_embd / c.n_head);
  check_positive(f, p + "attention.key_length", c.head_dim, 1 << 16);
  if (auto vl = f.get_int(p + "attention.value_length"); vl && *vl != c.head_dim)
    fail("model", f.path() + ": value_length " + std::to_string(*vl) + " != key_length " +
                      std::to_string(c.head_dim) + " is not supported");
  c.rope_dim = f.get_int(p + "rope.dimension_count").value_or(c.head_dim);
  if (c.rope_dim <= 0 || c.rope_dim > c.head_dim || c.rope_dim % 2 != 0)
    fail("model", f.path() + ": rope.dimension_count " + std::to_string(c.rope_dim) +
                      " must be even and at most the head size " + std::to_string(c.head_dim));
  c.rms_eps = static_cast<float>(f.get_float(p + "attention.layer_norm_rms_epsilon").value_or(1e-5));
  c.rope_freq_base = static_cast<float>(f.get_float(p + "rope.freq_base").value_or(10000.0));
  if (!(c.rope_freq_base > 0))
    fail("model", f.path() + ": rope.freq_base must be positive");
  const std::string scaling = f.get_string(p + "rope.scaling.type").value_or("none");
  if (scaling == "linear") {
    const double factor = f.get_float(p + "rope.scaling.factor").value_or(1.0);
    if (!(factor > 0)) fail("model", f.path() + ": rope.scaling.factor must be positive");
    c.rope_freq_scale = static_cast<float>(1.0 / factor);
  } else if (scaling != "none") {
    fail("model", f.path() + ": unsupported rope.scaling.type '" + scaling + "'");
  }
  c.rope_style = RopeStyle::Normal;  // GGUF llama stores Q/K permuted for interleaved pairs
  return c;
}

}  // namespace coppice
