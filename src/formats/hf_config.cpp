// config.json -> GGUF-convention metadata (`<arch>.embedding_length`, ...), per family, with
// the keys llama.cpp's converter writes. A config field coppice cannot honour (a RoPE scaling
// type it does not implement, Qwen2's per-layer sliding windows, a Gemma 3 layer pattern
// other than 5 local : 1 global) is an error naming it, never silently dropped.
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "formats/hf_internal.h"
#include "util/error.h"

namespace coppice::hf::detail {
namespace {

namespace fs = std::filesystem;

constexpr ArchSpec kArchs[] = {
    {"LlamaForCausalLM", "llama", Family::Llama},
    {"MistralForCausalLM", "llama", Family::Llama},
    {"MixtralForCausalLM", "llama", Family::Mixtral},
    {"Qwen2ForCausalLM", "qwen2", Family::Qwen2},
    {"Qwen3ForCausalLM", "qwen3", Family::Qwen3},
    {"Qwen2MoeForCausalLM", "qwen2moe", Family::Qwen2Moe},
    {"Qwen3MoeForCausalLM", "qwen3moe", Family::Qwen3Moe},
    {"Gemma2ForCausalLM", "gemma2", Family::Gemma2},
    {"Gemma3ForCausalLM", "gemma3", Family::Gemma3},
    {"Gemma3ForConditionalGeneration", "gemma3", Family::Gemma3},  // text weights only
    {"Phi3ForCausalLM", "phi3", Family::Phi3},
};

// Reads config.json fields with the errors naming the file and key.
struct Reader {
  const Json& c;
  const std::string& file;

  bool has(const char* key) const { return c.contains(key) && !c[key].is_null(); }
  int64_t need_int(const char* key) const {
    const auto it = c.find(key);
    if (it == c.end() || !it->is_number_integer() || it->get<int64_t>() <= 0)
      fail("hf", file + ": '" + key + "' missing or not a positive integer");
    return it->get<int64_t>();
  }
  int64_t opt_int(const char* key, int64_t dflt) const { return has(key) ? need_int(key) : dflt; }
  double opt_float(const char* key, double dflt) const {
    if (!has(key)) return dflt;
    if (!c[key].is_number()) fail("hf", file + ": '" + key + "' is not a number");
    return c[key].get<double>();
  }
  bool opt_bool(const char* key, bool dflt) const {
    if (!has(key)) return dflt;
    if (!c[key].is_boolean()) fail("hf", file + ": '" + key + "' is not a boolean");
    return c[key].get<bool>();
  }
};

struct Meta {
  std::vector<gguf::KV>& kvs;
  std::string prefix;  // "<arch>."
  void u32(const std::string& key, int64_t v) { kvs.push_back({prefix + key, gguf::Value::make_u32(static_cast<uint32_t>(v))}); }
  void f32(const std::string& key, double v) { kvs.push_back({prefix + key, gguf::Value::make_f32(static_cast<float>(v))}); }
  void str(const std::string& key, std::string v) { kvs.push_back({prefix + key, gguf::Value::make_string(std::move(v))}); }
};

std::shared_ptr<std::vector<float>> float_list(const Reader& r, const Json& rs, const char* key, int64_t n) {
  if (!rs.contains(key) || !rs[key].is_array() || static_cast<int64_t>(rs[key].size()) != n)
    fail("hf", r.file + ": rope_scaling." + key + " must be a list of " + std::to_string(n) + " numbers (rope dimensions / 2)");
  auto v = std::make_shared<std::vector<float>>();
  for (const Json& x : rs[key]) {
    if (!x.is_number()) fail("hf", r.file + ": rope_scaling." + key + " holds a non-number");
    v->push_back(x.get<float>());
  }
  return v;
}

// rope_scaling: linear and llama3 for every family, LongRoPE (factor lists) for Phi-3.
void rope_scaling(const Reader& r, HfConfig& h, Meta& m, std::vector<gguf::TensorInfo>& extra,
                  std::vector<std::shared_ptr<const void>>& owners) {
  if (!r.has("rope_scaling")) return;
  const Json& rs = r.c["rope_scaling"];
  if (!rs.is_object()) fail("hf", r.file + ": rope_scaling is not an object");
  const std::string type = rs.value("rope_type", rs.value("type", std::string("default")));
  auto factor = [&] {
    if (!rs.contains("factor") || !rs["factor"].is_number() || !(rs["factor"].get<double>() > 0))
      fail("hf", r.file + ": rope_scaling.factor missing or not a positive number");
    return rs["factor"].get<double>();
  };
  if (type == "default") return;
  if (type == "linear") {
    m.str("rope.scaling.type", "linear");
    m.f32("rope.scaling.factor", factor());
  } else if (type == "llama3" && h.arch->family == Family::Llama) {
    m.str("rope.scaling.type", "llama3");
    m.f32("rope.scaling.factor", factor());
    m.f32("rope.scaling.low_freq_factor", rs.value("low_freq_factor", 1.0));
    m.f32("rope.scaling.high_freq_factor", rs.value("high_freq_factor", 4.0));
    if (!rs.contains("original_max_position_embeddings") || !rs["original_max_position_embeddings"].is_number_integer())
      fail("hf", r.file + ": rope_scaling.original_max_position_embeddings missing (llama3 scaling)");
    m.u32("rope.scaling.original_context_length", rs["original_max_position_embeddings"].get<int64_t>());
  } else if ((type == "longrope" || type == "su") && h.arch->family == Family::Phi3) {
    const int64_t max_pos = r.need_int("max_position_embeddings"), orig = r.need_int("original_max_position_embeddings");
    const double scale = static_cast<double>(max_pos) / static_cast<double>(orig);
    m.f32("rope.scaling.attn_factor", scale > 1 ? std::sqrt(1 + std::log(scale) / std::log(static_cast<double>(orig))) : 1.0);
    for (const auto& [key, name] : {std::pair{"long_factor", "rope_factors_long.weight"}, std::pair{"short_factor", "rope_factors_short.weight"}}) {
      auto v = float_list(r, rs, key, h.rope_dim / 2);
      gguf::TensorInfo t;
      t.name = name;
      t.type = DType::F32;
      t.dims = {h.rope_dim / 2};
      t.size = v->size() * sizeof(float);
      t.data = reinterpret_cast<const uint8_t*>(v->data());
      owners.push_back(v);
      extra.push_back(std::move(t));
    }
  } else {
    fail("hf", r.file + ": rope_scaling type '" + type + "' is not supported for " + h.arch->hf);
  }
}

void family_keys(const Reader& r, HfConfig& h, Meta& m) {
  const Family f = h.arch->family;
  if (f == Family::Llama || f == Family::Mixtral || f == Family::Phi3) {
    if (r.has("sliding_window")) m.u32("attention.sliding_window", r.need_int("sliding_window"));
  }
  if ((f == Family::Qwen2 || f == Family::Qwen3 || is_moe(*h.arch)) && r.opt_bool("use_sliding_window", false))
    fail("hf", r.file + ": use_sliding_window (Qwen2 per-layer windows) is not supported");
  if (f == Family::Mixtral) {
    m.u32("expert_count", r.need_int("num_local_experts"));
    m.u32("expert_used_count", r.need_int("num_experts_per_tok"));
  }
  if (f == Family::Qwen2Moe || f == Family::Qwen3Moe) {
    m.u32("expert_count", r.need_int("num_experts"));
    m.u32("expert_used_count", r.need_int("num_experts_per_tok"));
    m.u32("expert_feed_forward_length", r.need_int("moe_intermediate_size"));
    if (f == Family::Qwen2Moe) m.u32("expert_shared_feed_forward_length", r.need_int("shared_expert_intermediate_size"));
    if (r.opt_int("decoder_sparse_step", 1) != 1)
      fail("hf", r.file + ": decoder_sparse_step != 1 (dense layers between MoE layers) is not supported");
    if (r.has("mlp_only_layers") && !(r.c["mlp_only_layers"].is_array() && r.c["mlp_only_layers"].empty()))
      fail("hf", r.file + ": mlp_only_layers (dense layers between MoE layers) is not supported");
    const bool norm = r.opt_bool("norm_topk_prob", f == Family::Qwen3Moe);
    if (norm != (f == Family::Qwen3Moe))
      fail("hf", r.file + ": norm_topk_prob = " + (norm ? "true" : "false") + " differs from " + h.arch->hf + "'s routing rule");
  }
  if (f == Family::Gemma2 || f == Family::Gemma3) {
    m.u32("attention.sliding_window", r.opt_int("sliding_window", 4096));
    m.f32("attention.scale", 1.0 / std::sqrt(r.opt_float("query_pre_attn_scalar", static_cast<double>(h.head_dim))));
  }
  if (f == Family::Gemma2) {
    m.f32("attn_logit_softcapping", r.opt_float("attn_logit_softcapping", 0.0));
    m.f32("final_logit_softcapping", r.opt_float("final_logit_softcapping", 0.0));
  }
  if (f == Family::Gemma3) {
    m.f32("rope.freq_base_swa", r.opt_float("rope_local_base_freq", 10000.0));
    if (r.has("attn_logit_softcapping")) fail("hf", r.file + ": attn_logit_softcapping is not supported for Gemma 3");
    if (r.has("final_logit_softcapping")) m.f32("final_logit_softcapping", r.opt_float("final_logit_softcapping", 0.0));
    if (r.opt_int("sliding_window_pattern", 6) != 6)
      fail("hf", r.file + ": sliding_window_pattern other than 6 (5 local : 1 global) is not supported");
    if (r.has("layer_types")) {
      const Json& lt = r.c["layer_types"];
      for (size_t i = 0; lt.is_array() && i < lt.size(); ++i)
        if (lt[i] != (i % 6 < 5 ? "sliding_attention" : "full_attention"))
          fail("hf", r.file + ": layer_types[" + std::to_string(i) + "] breaks the 5 local : 1 global pattern");
    }
  }
}

}  // namespace

std::string read_text(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) fail("hf", p.string() + ": cannot read file");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

bool is_gemma(const ArchSpec& a) { return a.family == Family::Gemma2 || a.family == Family::Gemma3; }
bool is_moe(const ArchSpec& a) {
  return a.family == Family::Mixtral || a.family == Family::Qwen2Moe || a.family == Family::Qwen3Moe;
}

const ArchSpec* find_arch(const std::string& hf_name) {
  for (const ArchSpec& a : kArchs)
    if (hf_name == a.hf) return &a;
  return nullptr;
}

std::string supported_list() {
  std::string list;
  for (const ArchSpec& a : kArchs) list += (list.empty() ? "" : ", ") + std::string(a.hf);
  return list;
}

HfConfig read_config(const std::string& dir, std::vector<gguf::KV>& kvs, std::vector<gguf::TensorInfo>& extra,
                     std::vector<std::shared_ptr<const void>>& owners) {
  HfConfig h;
  h.path = (fs::path(dir) / "config.json").string();
  Json top;
  try {
    top = Json::parse(read_text(h.path));
  } catch (const Json::exception& e) {
    fail("hf", h.path + ": not valid JSON: " + std::string(e.what()));
  }
  if (!top.is_object()) fail("hf", h.path + ": not a JSON object");
  std::string hf_arch;
  if (top.contains("architectures") && top["architectures"].is_array() && !top["architectures"].empty() &&
      top["architectures"][0].is_string())
    hf_arch = top["architectures"][0].get<std::string>();
  h.arch = find_arch(hf_arch);
  if (!h.arch) fail("hf", h.path + ": unsupported architectures '" + hf_arch + "' (supported: " + supported_list() + ")");
  h.c = top;
  if (top.contains("text_config")) {  // multimodal wrapper: the language model's config
    if (!top["text_config"].is_object()) fail("hf", h.path + ": text_config is not an object");
    h.c = top["text_config"];
  }
  const Reader r{h.c, h.path};
  h.n_embd = r.need_int("hidden_size");
  h.n_layer = r.need_int("num_hidden_layers");
  h.n_head = r.need_int("num_attention_heads");
  h.n_head_kv = r.opt_int("num_key_value_heads", h.n_head);
  h.head_dim = r.opt_int("head_dim", h.n_embd / h.n_head);
  const double partial = r.opt_float("partial_rotary_factor", 1.0);
  if (!(partial > 0 && partial <= 1)) fail("hf", h.path + ": partial_rotary_factor must be in (0, 1]");
  h.rope_dim = static_cast<int64_t>(std::llround(static_cast<double>(h.head_dim) * partial));
  if (h.rope_dim % 2 != 0) fail("hf", h.path + ": partial_rotary_factor gives an odd rotary dimension");
  h.tied = r.opt_bool("tie_word_embeddings", is_gemma(*h.arch));

  Meta m{kvs, std::string(h.arch->gguf) + "."};
  kvs.push_back({"general.architecture", gguf::Value::make_string(h.arch->gguf)});
  kvs.push_back({"general.name", gguf::Value::make_string(fs::absolute(fs::path(dir)).lexically_normal().filename().string())});
  m.u32("context_length", r.opt_int("max_position_embeddings", 2048));
  m.u32("embedding_length", h.n_embd);
  m.u32("block_count", h.n_layer);
  m.u32("feed_forward_length", r.need_int("intermediate_size"));
  m.u32("attention.head_count", h.n_head);
  m.u32("attention.head_count_kv", h.n_head_kv);
  m.u32("attention.key_length", h.head_dim);
  m.u32("attention.value_length", h.head_dim);
  m.u32("rope.dimension_count", h.rope_dim);
  m.f32("attention.layer_norm_rms_epsilon", r.opt_float("rms_norm_eps", 1e-6));
  m.f32("rope.freq_base", r.opt_float("rope_theta", 10000.0));
  if (r.has("vocab_size")) m.u32("vocab_size", r.need_int("vocab_size"));
  if (h.arch->family == Family::Phi3 && r.has("original_max_position_embeddings"))
    m.u32("rope.scaling.original_context_length", r.need_int("original_max_position_embeddings"));
  rope_scaling(r, h, m, extra, owners);
  family_keys(r, h, m);
  return h;
}

}  // namespace coppice::hf::detail
