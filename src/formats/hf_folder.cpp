// Hugging Face folders as a GGUF: config.json (hf_config.cpp) and tensor names
// (hf_tensors.cpp) become GGUF conventions; the tokenizer files travel as metadata text.
#include "formats/hf_folder.h"

#include <algorithm>
#include <filesystem>

#include "formats/hf_internal.h"
#include "formats/safetensors.h"
#include "util/error.h"

namespace coppice::hf {
namespace {

namespace fs = std::filesystem;
using detail::Json;
using detail::read_text;

// tokenizer.json, tokenizer_config.json and the chat template as metadata text;
// Tokenizer::from_gguf builds the tokenizer.json pipeline from them.
void add_tokenizer(const fs::path& d, std::vector<gguf::KV>& kvs) {
  auto add = [&](std::string key, gguf::Value v) { kvs.push_back({std::move(key), std::move(v)}); };
  const fs::path tj = d / "tokenizer.json";
  if (!fs::exists(tj)) fail("hf", d.string() + ": no tokenizer.json (only tokenizer.json tokenizers are supported)");
  add("tokenizer.ggml.model", gguf::Value::make_string("huggingface"));
  add("tokenizer.huggingface.json", gguf::Value::make_string(read_text(tj)));
  if (fs::exists(d / "tokenizer_config.json")) {
    Json tc;
    try {
      tc = Json::parse(read_text(d / "tokenizer_config.json"));
    } catch (const Json::exception& e) {
      fail("hf", (d / "tokenizer_config.json").string() + ": not valid JSON: " + e.what());
    }
    if (!tc.is_object()) fail("hf", (d / "tokenizer_config.json").string() + ": not a JSON object");
    if (tc.contains("chat_template") && tc["chat_template"].is_string())
      add("tokenizer.chat_template", gguf::Value::make_string(tc["chat_template"].get<std::string>()));
    tc.erase("chat_template");
    tc.erase("added_tokens_decoder");  // tokenizer.json has them
    add("tokenizer.huggingface.config", gguf::Value::make_string(tc.dump()));
  }
  const bool has_template = std::any_of(kvs.begin(), kvs.end(), [](const gguf::KV& kv) { return kv.key == "tokenizer.chat_template"; });
  if (!has_template && fs::exists(d / "chat_template.jinja"))
    add("tokenizer.chat_template", gguf::Value::make_string(read_text(d / "chat_template.jinja")));
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
  std::vector<gguf::KV> kvs;
  std::vector<gguf::TensorInfo> tensors;
  std::vector<std::shared_ptr<const void>> owners;
  const detail::HfConfig cfg = detail::read_config(dir, kvs, tensors, owners);
  add_tokenizer(fs::path(dir), kvs);
  auto folder = std::make_shared<safetensors::Folder>(safetensors::Folder::open(dir));
  owners.push_back(folder);
  detail::map_tensors(cfg, *folder, dir, tensors, owners);
  return gguf::File::from_parts(dir, std::move(kvs), std::move(tensors), std::move(owners));
}

}  // namespace coppice::hf
