#include "engine/quantize.h"

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>

#include "formats/gguf.h"
#include "formats/gguf_stream.h"
#include "util/error.h"
#include "util/threadpool.h"

namespace coppice {
namespace {

struct TargetRow {
  const char* name;
  DType base;
  QuantPreset preset;
  uint32_t file_type;
};

// LLAMA_FTYPE numbering (llama.h). Aliases point at the preset llama-quantize gives them.
constexpr TargetRow kTargets[] = {
    {"f32", DType::F32, QuantPreset::None, 0},       {"f16", DType::F16, QuantPreset::None, 1},
    {"bf16", DType::BF16, QuantPreset::None, 32},    {"q8_0", DType::Q8_0, QuantPreset::None, 7},
    {"q4_0", DType::Q4_0, QuantPreset::None, 2},     {"q4_1", DType::Q4_1, QuantPreset::None, 3},
    {"q5_0", DType::Q5_0, QuantPreset::None, 8},     {"q5_1", DType::Q5_1, QuantPreset::None, 9},
    {"Q2_K", DType::Q2_K, QuantPreset::Q2_K, 10},    {"Q3_K_S", DType::Q3_K, QuantPreset::Q3_K_S, 11},
    {"Q3_K_M", DType::Q3_K, QuantPreset::Q3_K_M, 12}, {"Q3_K_L", DType::Q3_K, QuantPreset::Q3_K_L, 13},
    {"Q4_K_S", DType::Q4_K, QuantPreset::Q4_K_S, 14}, {"Q4_K_M", DType::Q4_K, QuantPreset::Q4_K_M, 15},
    {"Q5_K_S", DType::Q5_K, QuantPreset::Q5_K_S, 16}, {"Q5_K_M", DType::Q5_K, QuantPreset::Q5_K_M, 17},
    {"Q6_K", DType::Q6_K, QuantPreset::Q6_K, 18},
};
constexpr std::pair<const char*, const char*> kAliases[] = {
    {"q3_k", "Q3_K_M"}, {"q4_k", "Q4_K_M"}, {"q5_k", "Q5_K_M"}};

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(a[i])) != std::tolower(static_cast<unsigned char>(b[i])))
      return false;
  return true;
}

bool contains(const std::string& s, const char* part) { return s.find(part) != std::string::npos; }

int layer_of(const std::string& name) {
  int il = -1;
  if (std::sscanf(name.c_str(), "blk.%d.", &il) != 1) return -1;
  return il;
}

// llama.cpp's rule: the first and last eighth of the layers, and every third one between.
bool use_more_bits(int i_layer, int n_layer) {
  return i_layer < n_layer / 8 || i_layer >= 7 * n_layer / 8 || (i_layer - n_layer / 8) % 3 == 2;
}

// The mix of llama_tensor_get_type for the non-IQ file types (architecture llama, no MoE; the
// 70B-only attn_v bump is left out because it keys on the model-size label).
DType mixed_type(const QuantTarget& t, const MixContext& c, const std::string& name, int64_t row_len) {
  using P = QuantPreset;
  const P p = t.preset;
  DType ty = t.base;
  const int il = layer_of(name);
  if (name == "output.weight" || (!c.has_output && name == "token_embd.weight")) {
    if (row_len % type_traits(ty)->block_size != 0) return DType::Q8_0;
    return ty == DType::Q8_0 ? ty : DType::Q6_K;
  }
  if (name == "token_embd.weight") return ty;
  if (contains(name, "attn_v.weight")) {
    const int n = c.n_attn_v;
    if (p == P::Q2_K) ty = c.n_gqa >= 4 ? DType::Q4_K : DType::Q3_K;
    else if (p == P::Q3_K_M) ty = il < 2 ? DType::Q5_K : DType::Q4_K;
    else if (p == P::Q3_K_L) ty = DType::Q5_K;
    else if ((p == P::Q4_K_M || p == P::Q5_K_M) && use_more_bits(il, n)) ty = DType::Q6_K;
    else if (p == P::Q4_K_S && il < 4) ty = DType::Q5_K;
  } else if (contains(name, "ffn_down")) {
    const int n = c.n_ffn_down;
    if (p == P::Q2_K) ty = DType::Q3_K;
    else if (p == P::Q3_K_M) ty = il < n / 16 ? DType::Q5_K : DType::Q4_K;
    else if (p == P::Q3_K_L) ty = DType::Q5_K;
    else if (p == P::Q4_K_M && use_more_bits(il, n)) ty = DType::Q6_K;
    else if (p == P::Q5_K_M && use_more_bits(il, n)) ty = DType::Q6_K;
    else if (p == P::Q4_K_S && il < n / 8) ty = DType::Q5_K;
  } else if (contains(name, "attn_output.weight")) {
    if (p == P::Q2_K) ty = DType::Q3_K;
    else if (p == P::Q3_K_M) ty = DType::Q4_K;
    else if (p == P::Q3_K_L) ty = DType::Q5_K;
  } else if (contains(name, "attn_qkv.weight")) {
    if (p == P::Q3_K_M || p == P::Q3_K_L) ty = DType::Q4_K;
    else if (p == P::Q4_K_M) ty = DType::Q5_K;
    else if (p == P::Q5_K_M) ty = DType::Q6_K;
  }
  return ty;
}

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

gguf::Value u32(uint32_t v) { return gguf::Value::make_u32(v); }

void set_kv(std::vector<gguf::KV>& kvs, const std::string& key, gguf::Value v) {
  for (gguf::KV& kv : kvs)
    if (kv.key == key) { kv.value = std::move(v); return; }
  kvs.push_back({key, std::move(v)});
}

}  // namespace

std::optional<QuantTarget> parse_quant_target(std::string_view name) {
  for (const auto& [alias, real] : kAliases)
    if (iequals(name, alias)) name = real;
  for (const TargetRow& r : kTargets)
    if (iequals(name, r.name)) return QuantTarget{r.name, r.base, r.preset, r.file_type};
  return std::nullopt;
}

std::string quant_target_list() {
  std::string s;
  for (const TargetRow& r : kTargets) s += (s.empty() ? "" : ", ") + std::string(r.name);
  for (const auto& [alias, real] : kAliases) s += std::string(", ") + alias + " (= " + real + ")";
  return s;
}

MixContext mix_context(const std::vector<std::string>& names, int64_t n_head, int64_t n_head_kv) {
  MixContext c;
  c.has_output = false;
  for (const std::string& n : names) {
    c.n_attn_v += contains(n, "attn_v.weight");
    c.n_ffn_down += contains(n, "ffn_down");
    c.has_output |= n == "output.weight";
  }
  c.n_gqa = n_head_kv > 0 ? static_cast<int>(n_head / n_head_kv) : 1;
  return c;
}

bool is_quantizable(const std::string& name, size_t n_dims) {
  return n_dims >= 2 && name.size() >= 6 && name.compare(name.size() - 6, 6, "weight") == 0 &&
         !contains(name, "_norm.weight") && !contains(name, "ffn_gate_inp.weight");
}

DType choose_tensor_type(const QuantTarget& t, bool pure, const MixContext& ctx,
                         const std::string& name, int64_t row_len, std::string* note) {
  DType ty = t.base;
  if (!pure && type_traits(t.base)->quantized) ty = mixed_type(t, ctx, name, row_len);
  if (row_len % type_traits(ty)->block_size == 0) return ty;
  const DType wanted = ty;
  switch (ty) {
    case DType::Q4_K: ty = DType::Q5_0; break;
    case DType::Q5_K: ty = DType::Q5_1; break;
    case DType::Q6_K: ty = DType::Q8_0; break;
    case DType::Q2_K:
    case DType::Q3_K: ty = DType::Q4_0; break;
    default: ty = DType::F16; break;
  }
  if (row_len % type_traits(ty)->block_size != 0) ty = DType::F16;
  if (note)
    *note = name + ": rows of " + std::to_string(row_len) + " are not a multiple of " +
            std::to_string(type_traits(wanted)->block_size) + " (" + dtype_name(wanted) +
            "), using fallback " + dtype_name(ty);
  return ty;
}

QuantizeReport quantize_file(const std::string& in, const std::string& out, const QuantizeOptions& opts) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (in == out || (fs::exists(out, ec) && fs::equivalent(in, out, ec)))
    fail("quantize", "input and output are the same file (" + out + "); write to a new path");
  const double t0 = now_s();
  const gguf::File f = gguf::File::open(in);
  const QuantTarget& target = opts.target;
  auto note = [&](const std::string& s) { if (opts.on_note) opts.on_note(s); };

  const std::string arch = f.get_string("general.architecture").value_or("llama");
  const int64_t n_head = f.get_int(arch + ".attention.head_count").value_or(1);
  const int64_t n_head_kv = f.get_int(arch + ".attention.head_count_kv").value_or(n_head);
  std::vector<std::string> names;
  for (const auto& t : f.tensors()) names.push_back(t.name);
  const MixContext ctx = mix_context(names, n_head, n_head_kv);

  // Plan every tensor's type first: the header goes out before any data.
  std::vector<gguf::StreamTensor> plan;
  bool warned_requant = false;
  QuantizeReport rep;
  for (const auto& t : f.tensors()) {
    gguf::StreamTensor st{t.name, t.dims, t.type, t.size};
    if (is_quantizable(t.name, t.dims.size())) {
      std::string why;
      st.type = choose_tensor_type(target, opts.pure, ctx, t.name, t.dims[0], &why);
      if (!why.empty()) note("note: " + why);
      const bool src_float = t.type == DType::F32 || t.type == DType::F16 || t.type == DType::BF16;
      if (st.type != t.type && !src_float && !warned_requant) {
        note("warning: " + t.name + " is already " + dtype_name(t.type) +
             "; requantizing a quantized model loses quality (start from F32/F16/BF16 when you can)");
        warned_requant = true;
      }
      st.size = row_size(*type_traits(st.type), t.dims[0]) * static_cast<uint64_t>(t.n_elements() / t.dims[0]);
    }
    plan.push_back(st);
    rep.in_bytes += t.size;
    rep.out_bytes += st.size;
    ++rep.type_counts[dtype_name(st.type)];
  }
  rep.n_tensors = plan.size();

  std::vector<gguf::KV> kvs = f.kvs();
  set_kv(kvs, "general.quantization_version", u32(2));
  set_kv(kvs, "general.file_type", u32(target.file_type));
  for (const char* k : {"split.no", "split.count", "split.tensors.count"})
    std::erase_if(kvs, [&](const gguf::KV& kv) { return kv.key == k; });

  ThreadPool pool(opts.n_threads > 0 ? opts.n_threads : ThreadPool::default_threads());
  gguf::StreamWriter w(out, kvs, plan);
  std::vector<uint8_t> buf;
  std::vector<std::vector<float>> scratch(static_cast<size_t>(pool.size()));
  for (size_t i = 0; i < plan.size(); ++i) {
    const gguf::TensorInfo& t = f.tensors()[i];
    const gguf::StreamTensor& st = plan[i];
    if (st.type == t.type) {
      w.write_tensor(t.data, t.size);
    } else {
      const int64_t n = t.dims[0], rows = t.n_elements() / n;
      const TypeTraits& src = *type_traits(t.type);
      const TypeTraits& dst = *type_traits(st.type);
      const size_t in_row = row_size(src, n), out_row = row_size(dst, n);
      buf.resize(st.size);
      pool.run([&](int ith, int nth) {
        std::vector<float>& row = scratch[static_cast<size_t>(ith)];
        row.resize(static_cast<size_t>(n));
        for (int64_t r = rows * ith / nth; r < rows * (ith + 1) / nth; ++r) {
          src.to_float(t.data + static_cast<size_t>(r) * in_row, row.data(), n);
          dst.from_float(row.data(), buf.data() + static_cast<size_t>(r) * out_row, n);
        }
      });
      w.write_tensor(buf.data(), st.size);
    }
    if (opts.on_progress) opts.on_progress(i + 1, plan.size(), t.name, w.bytes_written(), now_s() - t0);
  }
  rep.out_file_bytes = w.bytes_written();
  w.finish();
  rep.in_file_bytes = f.mapping()->size();
  rep.seconds = now_s() - t0;
  return rep;
}

}  // namespace coppice
