// Hyperparameters of a decoder-only transformer, read from GGUF metadata (arch-prefixed keys).
#pragma once
#include <cstdint>
#include <string>

#include "formats/gguf.h"

namespace coppice {

enum class RopeStyle { Normal, NeoX };  // pairs (2i, 2i+1) vs (i, i + d/2)

struct ModelConfig {
  std::string arch;       // general.architecture
  std::string name;       // general.name
  int64_t n_vocab = 0;
  int64_t n_embd = 0;
  int64_t n_layer = 0;
  int64_t n_head = 0;
  int64_t n_head_kv = 0;
  int64_t head_dim = 0;   // attention.key_length, default n_embd / n_head
  int64_t n_ff = 0;
  int64_t n_ctx_train = 0;
  float rms_eps = 1e-5f;
  float rope_freq_base = 10000.0f;
  float rope_freq_scale = 1.0f;  // 1 / rope.scaling.factor for linear scaling
  int64_t rope_dim = 0;          // rope.dimension_count, default head_dim
  RopeStyle rope_style = RopeStyle::Normal;

  // Reads and validates; throws coppice::Error naming the key and the value.
  static ModelConfig from_gguf(const gguf::File& f);
};

}  // namespace coppice
