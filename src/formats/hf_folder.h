// Hugging Face model folders (config.json + safetensors + tokenizer.json) seen as a GGUF:
// config.json becomes GGUF-convention metadata, HF tensor names become GGUF names
// (model.layers.N.self_attn.q_proj.weight -> blk.N.attn_q.weight), and the tokenizer files
// are carried as text (tokenizer.huggingface.json / .config, tokenizer.chat_template), so the
// model loader, the tokenizer and `coppice convert` work on it unchanged.
#pragma once
#include <string>

#include "formats/gguf.h"

namespace coppice::hf {

// True for a directory holding config.json.
bool is_model_folder(const std::string& path);
// Throws coppice::Error naming the file and the key or tensor. Tensors stay views into the
// mapped safetensors, except what GGUF stores differently (llama q/k row order, Gemma 1 + w
// norms, stacked MoE experts: copies, see hf_tensors.cpp).
gguf::File open_folder(const std::string& dir);
// A folder via open_folder, anything else via gguf::File::open.
gguf::File open_model_file(const std::string& path);

}  // namespace coppice::hf
