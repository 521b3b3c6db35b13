// Internals of the Hugging Face folder reader, shared by hf_folder.cpp (files, tokenizer),
// hf_config.cpp (config.json -> GGUF metadata) and hf_tensors.cpp (tensor names and the few
// tensors that must be rewritten). Conventions follow llama.cpp's convert_hf_to_gguf.py.
#pragma once
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "formats/gguf.h"
#include "formats/safetensors.h"

namespace coppice::hf::detail {

using Json = nlohmann::json;

enum class Family { Llama, Mixtral, Qwen2, Qwen3, Qwen2Moe, Qwen3Moe, Gemma2, Gemma3, Phi3 };

struct ArchSpec {
  const char* hf;    // config.json "architectures"[0]
  const char* gguf;  // general.architecture
  Family family;
};

// nullptr when unsupported; supported_list() names them all for the error.
const ArchSpec* find_arch(const std::string& hf_name);
std::string supported_list();

// What the tensor mapper needs to know about the model, read from config.json.
struct HfConfig {
  const ArchSpec* arch = nullptr;
  std::string path;  // config.json, for errors
  Json c;            // the (text) config: text_config for multimodal wrappers
  int64_t n_embd = 0, n_layer = 0, n_head = 0, n_head_kv = 0, head_dim = 0, rope_dim = 0;
  bool tied = false;
};

// Reads and validates config.json; fills `kvs` with GGUF-convention metadata and `extra`
// with tensors that live in config.json (Phi-3 LongRoPE factor lists).
HfConfig read_config(const std::string& dir, std::vector<gguf::KV>& kvs, std::vector<gguf::TensorInfo>& extra,
                     std::vector<std::shared_ptr<const void>>& owners);

// Maps every safetensors tensor to its GGUF name; rewrites what GGUF stores differently
// (llama q/k row order, Gemma's 1 + w norms, MoE experts stacked into one tensor each).
void map_tensors(const HfConfig& cfg, const safetensors::Folder& folder, const std::string& dir,
                 std::vector<gguf::TensorInfo>& out, std::vector<std::shared_ptr<const void>>& owners);

// A whole file as text; coppice::Error naming it when it cannot be read.
std::string read_text(const std::filesystem::path& p);

bool is_gemma(const ArchSpec& a);
bool is_moe(const ArchSpec& a);

}  // namespace coppice::hf::detail
