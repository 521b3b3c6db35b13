// `coppice synth`: a random-weight llama GGUF of any shape, so benchmarks need no download.
// Weights ~ N(0, std) from a counter-based PRNG keyed by (seed, tensor, row): the same options
// give a byte-identical file whatever the thread count. Each row is generated in f32 and
// quantized straight to its type; tensors stream to disk one at a time.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <string>

#include "engine/quantize.h"

namespace coppice {

struct SynthOptions {
  int64_t dim = 2048;
  int64_t layers = 16;
  int64_t heads = 32;
  int64_t kv_heads = 8;
  int64_t ffn = 8192;
  int64_t vocab = 32000;
  int64_t ctx = 4096;
  float rope_base = 500000.0f;
  std::string type = "f16";  // any quantize TYPE: a tensor type or a preset
  bool pure = false;         // every 2-D tensor in the base type (no preset mix)
  uint64_t seed = 1;
  float std_dev = 0.02f;
  bool tied = false;         // no output.weight: the output reuses token_embd
  int n_threads = 0;         // 0: physical cores
  std::function<void(size_t, size_t, const std::string&, uint64_t, double)> on_progress;
  std::function<void(const std::string&)> on_note;
};

struct SynthReport {
  uint64_t file_bytes = 0;
  int64_t n_params = 0;
  size_t n_tensors = 0;
  std::map<std::string, int> type_counts;
  double seconds = 0;
};

// Throws coppice::Error for impossible shapes or an unknown type; OUT is never half-written.
SynthReport synth_model(const std::string& out, const SynthOptions& opts);

// The synthetic SentencePiece vocabulary: <unk>, <s>, </s>, <0x00>..<0xFF>, then "▁tokN".
std::vector<std::string> synth_vocab(int64_t n);

}  // namespace coppice
