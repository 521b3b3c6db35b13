// config.json -> GGUF metadata and HF -> GGUF tensor names, following llama.cpp's
// convert_hf_to_gguf.py conventions (including its q/k row permutation for llama).
#include "formats/hf_folder.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string_view>

#include "formats/safetensors.h"
#include "util/error.h"

namespace coppice::hf {
namespace {

// "model.layers.<digits>.<rest>" -> layer, rest (no std::regex: GCC 12 warns inside it at -O2
// with the sanitizers, and this is all the pattern needs).
bool split_layer_name(const std::string& n, std::string& layer, std::string& rest) {
  static constexpr std::string_view kPrefix = "model.layers.";
  if (n.rfind(kPrefix, 0) != 0) return false;
  size_t i = kPrefix.size(), j = i;
  while (j < n.size() && n[j] >= '0' && n[j] <= '9') ++j;
  if (j == i || j + 1 >= n.size() || n[j] != '.') return false;
  layer = n.substr(i, j - i);
  rest = n.substr(j + 1);
  return true;
}

namespace fs = std::filesystem;
using Json = nlohmann::json;

std::string read_text(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) fail("hf", p.string() + ": cannot read file");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

struct Arch {
  const char* hf;    // config.json "architectures"[0]
  const char* gguf;  // general.architecture
  bool permute_qk;   // HF stores llama q/k rows in rotate-half order; GGUF in interleaved pairs
};
constexpr Arch kArchs[] = {
    {"LlamaForCausalLM", "llama", true},
    {"MistralForCausalLM", "llama", true},
    {"Qwen2ForCausalLM", "qwen2", false},
    {"Qwen3ForCausalLM", "qwen3", false},
};

// HF per-layer tensor suffix -> GGUF suffix.
constexpr std::pair<const char*, const char*> kLayerNames[] = {
    {"input_layernorm.weight", "attn_norm.weight"},
    {"self_attn.q_proj.weight", "attn_q.weight"},
    {"self_attn.k_proj.weight", "attn_k.weight"},
    {"self_attn.v_proj.weight", "attn_v.weight"},
    {"self_attn.o_proj.weight", "attn_output.weight"},
    {"self_attn.q_proj.bias", "attn_q.bias"},
    {"self_attn.k_proj.bias", "attn_k.bias"},
    {"self_attn.v_proj.bias", "attn_v.bias"},
    {"self_attn.q_norm.weight", "attn_q_norm.weight"},
    {"self_attn.k_norm.weight", "attn_k_norm.weight"},
    {"post_attention_layernorm.weight", "ffn_norm.weight"},
    {"mlp.gate_proj.weight", "ffn_gate.weight"},
    {"mlp.up_proj.weight", "ffn_up.weight"},
    {"mlp.down_proj.weight", "ffn_down.weight"},
};

int64_t need_int(const Json& c, const char* key, const std::string& file) {
  const auto it = c.find(key);
  if (it == c.end() || !it->is_number_integer() || it->get<int64_t>() <= 0)
    fail("hf", file + ": '" + key + "' missing or not a positive integer");
  return it->get<int64_t>();
}

// Rows of a [rows][cols] matrix reordered as llama.cpp's permute(): within each head, row
// (j * hd/2 + i) moves to (2 * i + j).
std::shared_ptr<std::vector<uint8_t>> permute_rows(const safetensors::Tensor& t, int64_t n_head, const std::string& file) {
  const int64_t rows = t.shape[0];
  const size_t row_bytes = static_cast<size_t>(t.end - t.begin) / static_cast<size_t>(rows);
  if (n_head <= 0 || rows % (2 * n_head) != 0)
    fail("hf", file + ": tensor '" + t.name + "': " + std::to_string(rows) + " rows do not split into " +
                   std::to_string(n_head) + " heads of even size");
  const int64_t hd = rows / n_head, half = hd / 2;
  auto out = std::make_shared<std::vector<uint8_t>>(t.end - t.begin);
  for (int64_t h = 0; h < n_head; ++h)
    for (int64_t j = 0; j < 2; ++j)
      for (int64_t i = 0; i < half; ++i)
        std::memcpy(out->data() + static_cast<size_t>(h * hd + 2 * i + j) * row_bytes,
                    t.data + static_cast<size_t>(h * hd + j * half + i) * row_bytes, row_bytes);
  return out;
}

}  // namespace

bool is_model_folder(const std::string& path) {
  std::error_code ec;
  return fs::is_directory(path, ec) && fs::exists(fs::path(path) / "config.json", ec);
}

gguf::File open_model_file(const std::string& path) {
  return is_model_folder(path) ? open_folder(path) : gguf::File::open(path);
}

gguf::File open_folder(const std::string& dir) {
  const fs::path d(dir);
  const std::string cfg_path = (d / "config.json").string();
  Json c;
  try {
    c = Json::parse(read_text(d / "config.json"));
  } catch (const Json::exception& e) {
    fail("hf", cfg_path + ": not valid JSON: " + std::string(e.what()));
  }
  std::string hf_arch;
  if (c.contains("architectures") && c["architectures"].is_array() && !c["architectures"].empty() &&
      c["architectures"][0].is_string())
    hf_arch = c["architectures"][0].get<std::string>();
  const Arch* arch = nullptr;
  for (const Arch& a : kArchs)
    if (hf_arch == a.hf) arch = &a;
  if (!arch) {
    std::string list;
    for (const Arch& a : kArchs) list += (list.empty() ? "" : ", ") + std::string(a.hf);
    fail("hf", cfg_path + ": unsupported architectures '" + hf_arch + "' (supported: " + list + ")");
  }

  const int64_t n_embd = need_int(c, "hidden_size", cfg_path), n_layer = need_int(c, "num_hidden_layers", cfg_path);
  const int64_t n_head = need_int(c, "num_attention_heads", cfg_path), n_ff = need_int(c, "intermediate_size", cfg_path);
  const int64_t n_head_kv = c.contains("num_key_value_heads") ? need_int(c, "num_key_value_heads", cfg_path) : n_head;
  const int64_t head_dim = c.contains("head_dim") && c["head_dim"].is_number_integer() ? c["head_dim"].get<int64_t>() : n_embd / n_head;

  std::vector<gguf::KV> kvs;
  const std::string p = std::string(arch->gguf) + ".";
  auto add = [&](std::string key, gguf::Value v) { kvs.push_back({std::move(key), std::move(v)}); };
  add("general.architecture", gguf::Value::make_string(arch->gguf));
  add("general.name", gguf::Value::make_string(fs::absolute(d).lexically_normal().filename().string()));
  add(p + "context_length", gguf::Value::make_u32(static_cast<uint32_t>(c.value("max_position_embeddings", int64_t{2048}))));
  add(p + "embedding_length", gguf::Value::make_u32(static_cast<uint32_t>(n_embd)));
  add(p + "block_count", gguf::Value::make_u32(static_cast<uint32_t>(n_layer)));
  add(p + "feed_forward_length", gguf::Value::make_u32(static_cast<uint32_t>(n_ff)));
  add(p + "attention.head_count", gguf::Value::make_u32(static_cast<uint32_t>(n_head)));
  add(p + "attention.head_count_kv", gguf::Value::make_u32(static_cast<uint32_t>(n_head_kv)));
  add(p + "attention.key_length", gguf::Value::make_u32(static_cast<uint32_t>(head_dim)));
  add(p + "attention.value_length", gguf::Value::make_u32(static_cast<uint32_t>(head_dim)));
  add(p + "rope.dimension_count", gguf::Value::make_u32(static_cast<uint32_t>(head_dim)));
  add(p + "attention.layer_norm_rms_epsilon", gguf::Value::make_f32(c.value("rms_norm_eps", 1e-6f)));
  add(p + "rope.freq_base", gguf::Value::make_f32(c.value("rope_theta", 10000.0f)));
  if (c.contains("vocab_size") && c["vocab_size"].is_number_integer())
    add(p + "vocab_size", gguf::Value::make_u32(static_cast<uint32_t>(c["vocab_size"].get<int64_t>())));
  if (c.contains("rope_scaling") && c["rope_scaling"].is_object()) {
    const Json& rs = c["rope_scaling"];
    const std::string type = rs.value("rope_type", rs.value("type", std::string("none")));
    add(p + "rope.scaling.type", gguf::Value::make_string(type));
    if (rs.contains("factor") && rs["factor"].is_number()) add(p + "rope.scaling.factor", gguf::Value::make_f32(rs["factor"].get<float>()));
  }

  // Tokenizer files travel as text; Tokenizer::from_gguf builds the tokenizer.json pipeline.
  const fs::path tj = d / "tokenizer.json";
  if (!fs::exists(tj)) fail("hf", dir + ": no tokenizer.json (only tokenizer.json tokenizers are supported)");
  add("tokenizer.ggml.model", gguf::Value::make_string("huggingface"));
  add("tokenizer.huggingface.json", gguf::Value::make_string(read_text(tj)));
  if (fs::exists(d / "tokenizer_config.json")) {
    Json tc;
    try {
      tc = Json::parse(read_text(d / "tokenizer_config.json"));
    } catch (const Json::exception& e) {
      fail("hf", (d / "tokenizer_config.json").string() + ": not valid JSON: " + e.what());
    }
    if (tc.contains("chat_template") && tc["chat_template"].is_string())
      add("tokenizer.chat_template", gguf::Value::make_string(tc["chat_template"].get<std::string>()));
    tc.erase("chat_template");
    tc.erase("added_tokens_decoder");  // tokenizer.json has them
    add("tokenizer.huggingface.config", gguf::Value::make_string(tc.dump()));
  }
  if (fs::exists(d / "chat_template.jinja") && !std::any_of(kvs.begin(), kvs.end(), [](const gguf::KV& kv) { return kv.key == "tokenizer.chat_template"; }))
    add("tokenizer.chat_template", gguf::Value::make_string(read_text(d / "chat_template.jinja")));

  // Tensors.
  auto folder = std::make_shared<safetensors::Folder>(safetensors::Folder::open(dir));
  std::vector<std::shared_ptr<const void>> owners{folder};
  std::vector<gguf::TensorInfo> tensors;
  for (const safetensors::Tensor* t : folder->tensors()) {
    const std::string file = "tensor '" + t->name + "'";
    std::string name;
    std::string layer, rest;  // "model.layers.<layer>.<rest>"
    bool permute = false;
    int64_t perm_heads = 0;
    if (t->name == "model.embed_tokens.weight") name = "token_embd.weight";
    else if (t->name == "model.norm.weight") name = "output_norm.weight";
    else if (t->name == "lm_head.weight") name = "output.weight";
    else if (split_layer_name(t->name, layer, rest)) {
      for (const auto& [hf_name, gguf_name] : kLayerNames)
        if (rest == hf_name) name = "blk." + layer + "." + gguf_name;
      if (arch->permute_qk && rest == "self_attn.q_proj.weight") { permute = true; perm_heads = n_head; }
      if (arch->permute_qk && rest == "self_attn.k_proj.weight") { permute = true; perm_heads = n_head_kv; }
    }
    if (name.empty()) {
      if (t->name.find("rotary_emb.inv_freq") != std::string::npos) continue;  // recomputed from rope_theta
      fail("hf", dir + ": " + file + " has no GGUF name (unexpected for " + hf_arch + ")");
    }
    gguf::TensorInfo ti;
    ti.name = name;
    if (t->dtype == "F32") ti.type = DType::F32;
    else if (t->dtype == "F16") ti.type = DType::F16;
    else if (t->dtype == "BF16") ti.type = DType::BF16;
    else fail("hf", dir + ": " + file + ": dtype " + t->dtype + " is not supported (F32, F16, BF16)");
    if (t->shape.empty() || t->shape.size() > 4 || t->n_elements() == 0)
      fail("hf", dir + ": " + file + ": shape with " + std::to_string(t->shape.size()) + " dimensions or no elements");
    ti.dims.assign(t->shape.rbegin(), t->shape.rend());  // GGUF lists the contiguous dimension first
    ti.size = t->end - t->begin;
    ti.data = t->data;
    if (permute) {
      if (t->shape.size() != 2) fail("hf", dir + ": " + file + ": expected a matrix");
      auto buf = permute_rows(*t, perm_heads, dir);
      ti.data = buf->data();
      owners.push_back(buf);
    }
    tensors.push_back(std::move(ti));
  }
  if (c.value("tie_word_embeddings", false)) {
    tensors.erase(std::remove_if(tensors.begin(), tensors.end(), [](const gguf::TensorInfo& t) { return t.name == "output.weight"; }),
                  tensors.end());
  }
  return gguf::File::from_parts(dir, std::move(kvs), std::move(tensors), std::move(owners));
}

}  // namespace coppice::hf
