// `coppice quantize`: GGUF -> GGUF in another weight type, one type for every 2-D weight or a
// llama.cpp preset (Q4_K_M, ...) whose per-tensor mix follows llama.cpp's
// llama_tensor_get_type (src/llama-quant.cpp). Tensors are processed one at a time and streamed
// to PATH.tmp, renamed at the end, so memory stays at about one tensor.
#pragma once
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kernels/types.h"

namespace coppice {

// A --type / TYPE argument: a base tensor type and the llama.cpp file type it stands for.
enum class QuantPreset { None, Q2_K, Q3_K_S, Q3_K_M, Q3_K_L, Q4_K_S, Q4_K_M, Q5_K_S, Q5_K_M, Q6_K };
struct QuantTarget {
  std::string name;       // canonical spelling, e.g. "Q4_K_M" or "q8_0"
  DType base;             // type of ordinary weights
  QuantPreset preset;     // which mixing rules apply (None: only output.weight's, as llama.cpp)
  uint32_t file_type;     // general.file_type (LLAMA_FTYPE numbering)
};
// Case-insensitive; q3_k, q4_k, q5_k are aliases of Q3_K_M, Q4_K_M, Q5_K_M (as llama-quantize).
std::optional<QuantTarget> parse_quant_target(std::string_view name);
std::string quant_target_list();  // "f32, f16, ..., Q6_K" for error messages

// What the mixing rules need to know about the model (llama.cpp's quantize_state).
struct MixContext {
  int n_attn_v = 0;     // number of attn_v tensors (= layers for llama)
  int n_ffn_down = 0;
  int n_gqa = 1;        // head_count / head_count_kv
  bool has_output = true;  // false: tied embeddings, token_embd gets output.weight's type
};
MixContext mix_context(const std::vector<std::string>& tensor_names, int64_t n_head, int64_t n_head_kv);

// True for tensors llama.cpp quantizes: 2-D+ "*weight", not norms or MoE gates.
bool is_quantizable(const std::string& name, size_t n_dims);

// The type for one quantizable tensor with rows of `row_len`. `pure`: the base type for all
// (llama.cpp --pure). A row length the chosen type cannot hold falls back (q4_k->q5_0,
// q5_k->q5_1, q6_k->q8_0, q2_k/q3_k->q4_0, else f16) and `note` says so.
DType choose_tensor_type(const QuantTarget& t, bool pure, const MixContext& ctx,
                         const std::string& name, int64_t row_len, std::string* note);

struct QuantizeOptions {
  QuantTarget target;
  bool pure = false;
  int n_threads = 0;  // 0: physical cores
  // After each tensor: index (1-based), count, name, output bytes so far, seconds so far.
  std::function<void(size_t, size_t, const std::string&, uint64_t, double)> on_progress;
  std::function<void(const std::string&)> on_note;  // fallbacks, requantization warning
};

struct QuantizeReport {
  uint64_t in_bytes = 0, out_bytes = 0;  // tensor data only
  uint64_t in_file_bytes = 0, out_file_bytes = 0;
  size_t n_tensors = 0;
  std::map<std::string, int> type_counts;  // output tensor type name -> count
  double seconds = 0;
};

// Throws coppice::Error: unreadable input, IN == OUT, write failure (OUT then untouched).
QuantizeReport quantize_file(const std::string& in, const std::string& out, const QuantizeOptions& opts);

}  // namespace coppice
