// The architectures coppice runs: each is a small file (model/arch_*.cpp) that reads its
// metadata into ModelConfig flags and binds its tensors; the forward pass is shared.
#pragma once
#include <cstdint>
#include <optional>
#include <string>

#include "formats/gguf.h"
#include "model/config.h"
#include "model/weights.h"

namespace coppice {

struct ArchOps {
  const char* name;  // general.architecture
  // After the common keys are read (read_common_config): flags and arch-specific keys.
  void (*configure)(const gguf::File& f, ModelConfig& c);
  // Binds every tensor but the embeddings (the common helpers in weights.h do most of it);
  // may set flags that depend on which tensors exist.
  void (*bind)(const WeightBinder& b, ModelConfig& c, ModelWeights& w);
};

// nullptr when the architecture is unknown.
const ArchOps* find_arch(const std::string& name);
std::string supported_archs();  // "llama, qwen2, ..."

// ---- Helpers shared by the architecture files ----
// Reads the common keys under "<arch>.": sizes, heads, eps, RoPE base, linear/llama3 scaling,
// sliding window (all layers by default), MoE counts.
void read_common_config(const gguf::File& f, ModelConfig& c);
// Metadata accessors with the "<arch>." prefix.
std::optional<int64_t> arch_int(const gguf::File& f, const ModelConfig& c, const std::string& key);
std::optional<double> arch_float(const gguf::File& f, const ModelConfig& c, const std::string& key);
[[noreturn]] void config_error(const gguf::File& f, const ModelConfig& c, const std::string& what);

// The architecture table (defined in each arch file).
extern const ArchOps kArchLlama;
extern const ArchOps kArchQwen2, kArchQwen3, kArchQwen2Moe, kArchQwen3Moe;
extern const ArchOps kArchGemma2, kArchGemma3;
extern const ArchOps kArchPhi3;

}  // namespace coppice
