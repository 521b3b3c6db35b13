#include "model/config.h"

#include <algorithm>
#include <cmath>

#include "model/arch.h"
#include "util/error.h"

namespace coppice {
namespace {

void check_range(const gguf::File& f, const ModelConfig& c, const std::string& key, int64_t v,
                 int64_t lo, int64_t hi) {
  if (v < lo || v > hi)
    config_error(f, c, "metadata '" + c.arch + "." + key + "' = " + std::to_string(v) +
                           " is out of range (" + std::to_string(lo) + ".." + std::to_string(hi) + ")");
}

}  // namespace

[[noreturn]] void config_error(const gguf::File& f, const ModelConfig& c, const std::string& what) {
  fail("model", c.arch + ": " + what + " (" + f.path() + ")");
}

std::optional<int64_t> arch_int(const gguf::File& f, const ModelConfig& c, const std::string& key) {
  return f.get_int(c.arch + "." + key);
}

std::optional<double> arch_float(const gguf::File& f, const ModelConfig& c, const std::string& key) {
  return f.get_float(c.arch + "." + key);  // integers are numbers too
}

void read_common_config(const gguf::File& f, ModelConfig& c) {
  auto need = [&](const std::string& key) {
    auto v = arch_int(f, c, key);
    if (!v) config_error(f, c, "missing metadata '" + c.arch + "." + key + "'");
    return *v;
  };
  c.n_embd = need("embedding_length");
  c.n_layer = need("block_count");
  c.n_head = need("attention.head_count");
  c.n_head_kv = arch_int(f, c, "attention.head_count_kv").value_or(c.n_head);
  c.n_ctx_train = arch_int(f, c, "context_length").value_or(2048);
  check_range(f, c, "embedding_length", c.n_embd, 1, 1 << 20);
  check_range(f, c, "block_count", c.n_layer, 1, 4096);
  check_range(f, c, "attention.head_count", c.n_head, 1, 4096);
  check_range(f, c, "attention.head_count_kv", c.n_head_kv, 1, c.n_head);
  check_range(f, c, "context_length", c.n_ctx_train, 1, int64_t{1} << 32);
  if (c.n_head % c.n_head_kv != 0)
    config_error(f, c, "head_count " + std::to_string(c.n_head) +
                           " is not a multiple of head_count_kv " + std::to_string(c.n_head_kv));
  c.head_dim = arch_int(f, c, "attention.key_length").value_or(c.n_embd / c.n_head);
  check_range(f, c, "attention.key_length", c.head_dim, 1, 1 << 16);
  if (auto vl = arch_int(f, c, "attention.value_length"); vl && *vl != c.head_dim)
    config_error(f, c, "value_length " + std::to_string(*vl) + " != key_length " +
                           std::to_string(c.head_dim) + " is not supported");
  c.rope_dim = arch_int(f, c, "rope.dimension_count").value_or(c.head_dim);
  if (c.rope_dim <= 0 || c.rope_dim > c.head_dim || c.rope_dim % 2 != 0)
    config_error(f, c, "rope.dimension_count " + std::to_string(c.rope_dim) +
                           " must be even and at most the head size " + std::to_string(c.head_dim));
  c.rms_eps = static_cast<float>(arch_float(f, c, "attention.layer_norm_rms_epsilon").value_or(1e-5));
  c.rope_freq_base = static_cast<float>(arch_float(f, c, "rope.freq_base").value_or(10000.0));
  if (!(c.rope_freq_base > 0)) config_error(f, c, "rope.freq_base must be positive");
  c.attn_scale = static_cast<float>(arch_float(f, c, "attention.scale").value_or(0.0));

  // RoPE scaling: linear, llama3 (frequency factors), LongRoPE (factor tensors, Phi-3).
  c.n_ctx_orig = arch_int(f, c, "rope.scaling.original_context_length").value_or(c.n_ctx_train);
  c.rope_attn_factor = static_cast<float>(arch_float(f, c, "rope.scaling.attn_factor").value_or(1.0));
  const std::string scaling = f.get_string(c.arch + ".rope.scaling.type").value_or("none");
  const double factor = arch_float(f, c, "rope.scaling.factor").value_or(1.0);
  if (!(factor > 0)) config_error(f, c, "rope.scaling.factor must be positive");
  if (scaling == "linear") {
    c.rope_freq_scale = static_cast<float>(1.0 / factor);
  } else if (scaling == "llama3") {
    c.llama3_factor = static_cast<float>(factor);
    c.llama3_low_freq = static_cast<float>(arch_float(f, c, "rope.scaling.low_freq_factor").value_or(1.0));
    c.llama3_high_freq = static_cast<float>(arch_float(f, c, "rope.scaling.high_freq_factor").value_or(4.0));
    if (!(c.llama3_high_freq > c.llama3_low_freq))
      config_error(f, c, "llama3 rope scaling needs high_freq_factor > low_freq_factor");
  } else if (scaling != "none" && scaling != "longrope" && scaling != "su") {
    config_error(f, c, "unsupported rope.scaling.type '" + scaling + "'");
  }

  c.n_swa = arch_int(f, c, "attention.sliding_window").value_or(0);
  check_range(f, c, "attention.sliding_window", c.n_swa, 0, int64_t{1} << 32);
  c.swa_layers.assign(static_cast<size_t>(c.n_layer), 1);

  if (const gguf::Value* v = f.find(c.arch + ".feed_forward_length"); v != nullptr && v->type == gguf::ValueType::ARRAY) {
    // One value per layer (llama.cpp reads the same array form).
    if (v->elem_type == gguf::ValueType::STRING || v->elem_type == gguf::ValueType::ARRAY ||
        v->n != static_cast<uint64_t>(c.n_layer))
      config_error(f, c, "feed_forward_length is an array of " + std::to_string(v->n) +
                             " values; expected one number per layer (" + std::to_string(c.n_layer) + ")");
    for (uint64_t i = 0; i < v->n; ++i) {
      const double x = v->array_number(i);
      if (!(x >= 1 && x <= (1 << 22)) || x != static_cast<double>(static_cast<int64_t>(x)))
        config_error(f, c, "feed_forward_length[" + std::to_string(i) + "] = " + std::to_string(x) +
                               " is outside 1..4194304");
      c.n_ff_layer.push_back(static_cast<int64_t>(x));
    }
    c.n_ff = *std::max_element(c.n_ff_layer.begin(), c.n_ff_layer.end());
    if (std::all_of(c.n_ff_layer.begin(), c.n_ff_layer.end(), [&](int64_t x) { return x == c.n_ff; }))
      c.n_ff_layer.clear();
  } else {
    c.n_ff = arch_int(f, c, "feed_forward_length").value_or(0);
  }
  c.n_expert = arch_int(f, c, "expert_count").value_or(0);
  if (c.n_expert > 0) {
    check_range(f, c, "expert_count", c.n_expert, 1, 4096);
    c.n_expert_used = arch_int(f, c, "expert_used_count").value_or(0);
    check_range(f, c, "expert_used_count", c.n_expert_used, 1, c.n_expert);
    c.n_ff_exp = arch_int(f, c, "expert_feed_forward_length").value_or(c.n_ff);
    check_range(f, c, "expert_feed_forward_length", c.n_ff_exp, 1, 1 << 22);
    c.n_ff_shexp = arch_int(f, c, "expert_shared_feed_forward_length").value_or(0);
    check_range(f, c, "expert_shared_feed_forward_length", c.n_ff_shexp, 0, 1 << 22);
  } else {
    check_range(f, c, "feed_forward_length", c.n_ff, 1, 1 << 22);
  }
}

ModelConfig ModelConfig::from_gguf(const gguf::File& f) {
  ModelConfig c;
  auto arch = f.get_string("general.architecture");
  if (!arch) fail("model", f.path() + ": missing metadata 'general.architecture'");
  c.arch = *arch;
  const ArchOps* ops = find_arch(c.arch);
  if (!ops)
    fail("model", "unsupported architecture '" + c.arch + "' in " + f.path() +
                      " (supported: " + supported_archs() + ")");
  c.name = f.get_string("general.name").value_or("");
  read_common_config(f, c);
  ops->configure(f, c);
  if (c.attn_scale <= 0) c.attn_scale = 1.0f / std::sqrt(static_cast<float>(c.head_dim));
  return c;
}

const ArchOps* find_arch(const std::string& name) {
  static const ArchOps* const kAll[] = {&kArchLlama,    &kArchQwen2,  &kArchQwen3,
                                        &kArchQwen2Moe, &kArchQwen3Moe, &kArchGemma2,
                                        &kArchGemma3,   &kArchPhi3};
  for (const ArchOps* a : kAll)
    if (name == a->name) return a;
  return nullptr;
}

std::string supported_archs() {
  return "llama (incl. Mistral, Mixtral), qwen2, qwen3, qwen2moe, qwen3moe, gemma2, gemma3, phi3";
}

}  // namespace coppice
