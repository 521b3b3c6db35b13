#include "engine/synth.h"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <vector>

#include "formats/gguf.h"
#include "formats/gguf_stream.h"
#include "util/error.h"
#include "util/threadpool.h"

namespace coppice {
namespace {

// splitmix64 (Steele, Lea, Flood 2014): a counter-based generator, so any row can be
// generated independently of the others.
inline uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// One row of N(0, std) values: Box-Muller on pairs of 32-bit uniforms from one 64-bit draw.
void normal_row(uint64_t key, float std_dev, float* out, int64_t n) {
  constexpr float kTwoPi = 6.283185307179586f;
  constexpr float kInv32 = 1.0f / 4294967296.0f;
  uint64_t ctr = splitmix64(key);
  for (int64_t i = 0; i < n; i += 2) {
    const uint64_t r = splitmix64(ctr++);
    const float u1 = (static_cast<float>(static_cast<uint32_t>(r >> 32)) + 0.5f) * kInv32;  // (0, 1)
    const float u2 = static_cast<float>(static_cast<uint32_t>(r)) * kInv32;
    const float m = std_dev * std::sqrt(-2.0f * std::log(u1));
    out[i] = m * std::cos(kTwoPi * u2);
    if (i + 1 < n) out[i + 1] = m * std::sin(kTwoPi * u2);
  }
}

double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

void check(bool ok, const std::string& msg) {
  if (!ok) fail("synth", msg);
}

struct Planned {
  std::string name;
  std::vector<int64_t> dims;
  DType type;
  bool is_norm;
};

}  // namespace

std::vector<std::string> synth_vocab(int64_t n) {
  std::vector<std::string> v = {"<unk>", "<s>", "</s>"};
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof name, "<0x%02X>", b);
    v.push_back(name);
  }
  for (int64_t i = 0; static_cast<int64_t>(v.size()) < n; ++i) v.push_back("\xE2\x96\x81tok" + std::to_string(i));
  v.resize(static_cast<size_t>(n));
  return v;
}

SynthReport synth_model(const std::string& out, const SynthOptions& o) {
  const double t0 = now_s();
  const auto target = parse_quant_target(o.type);
  check(target.has_value(), "unknown type '" + o.type + "' (valid: " + quant_target_list() + ")");
  check(o.dim > 0 && o.layers > 0 && o.heads > 0 && o.kv_heads > 0 && o.ffn > 0 && o.ctx > 0,
        "--dim, --layers, --heads, --kv-heads, --ffn, --ctx must be positive");
  check(o.dim % o.heads == 0, "--dim " + std::to_string(o.dim) + " is not a multiple of --heads " +
                                  std::to_string(o.heads));
  check(o.heads % o.kv_heads == 0, "--heads " + std::to_string(o.heads) +
                                       " is not a multiple of --kv-heads " + std::to_string(o.kv_heads));
  check((o.dim / o.heads) % 2 == 0, "head size " + std::to_string(o.dim / o.heads) + " must be even (RoPE)");
  check(o.vocab >= 259 && o.vocab <= INT32_MAX,
        "--vocab " + std::to_string(o.vocab) + " must hold the 3 special and 256 byte tokens (>= 259)");
  check(o.std_dev >= 0 && std::isfinite(o.std_dev), "--std must be a finite value >= 0");
  check(o.rope_base > 0, "--rope-base must be positive");

  const int64_t hd = o.dim / o.heads, kv_dim = o.kv_heads * hd;
  std::vector<Planned> ts;
  auto w2 = [&](std::string name, int64_t n_in, int64_t n_out) { ts.push_back({std::move(name), {n_in, n_out}, DType::F32, false}); };
  auto w1 = [&](std::string name) { ts.push_back({std::move(name), {o.dim}, DType::F32, true}); };
  w2("token_embd.weight", o.dim, o.vocab);
  w1("output_norm.weight");
  if (!o.tied) w2("output.weight", o.dim, o.vocab);
  for (int64_t l = 0; l < o.layers; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    w1(p + "attn_norm.weight");
    w2(p + "attn_q.weight", o.dim, o.dim);
    w2(p + "attn_k.weight", o.dim, kv_dim);
    w2(p + "attn_v.weight", o.dim, kv_dim);
    w2(p + "attn_output.weight", o.dim, o.dim);
    w1(p + "ffn_norm.weight");
    w2(p + "ffn_gate.weight", o.dim, o.ffn);
    w2(p + "ffn_up.weight", o.dim, o.ffn);
    w2(p + "ffn_down.weight", o.ffn, o.dim);
  }
  std::vector<std::string> names;
  for (const Planned& t : ts) names.push_back(t.name);
  const MixContext mix = mix_context(names, o.heads, o.kv_heads);
  SynthReport rep;
  std::vector<gguf::StreamTensor> plan;
  for (Planned& t : ts) {
    if (!t.is_norm) {
      std::string why;
      t.type = choose_tensor_type(*target, o.pure, mix, t.name, t.dims[0], &why);
      if (!why.empty() && o.on_note) o.on_note("note: " + why);
    }
    const int64_t rows = t.dims.size() > 1 ? t.dims[1] : 1;
    plan.push_back({t.name, t.dims, t.type, row_size(*type_traits(t.type), t.dims[0]) * static_cast<uint64_t>(rows)});
    rep.n_params += t.dims[0] * rows;
    ++rep.type_counts[dtype_name(t.type)];
  }
  rep.n_tensors = plan.size();

  using gguf::Value;
  std::vector<gguf::KV> kvs;
  auto kv = [&](std::string k, Value v) { kvs.push_back({std::move(k), std::move(v)}); };
  auto u32 = [](int64_t v) { return Value::make_u32(static_cast<uint32_t>(v)); };
  kv("general.architecture", Value::make_string("llama"));
  kv("general.name", Value::make_string("synth-llama-d" + std::to_string(o.dim) + "-l" + std::to_string(o.layers)));
  kv("general.file_type", u32(target->file_type));
  kv("general.quantization_version", u32(2));
  kv("llama.context_length", u32(o.ctx));
  kv("llama.embedding_length", u32(o.dim));
  kv("llama.block_count", u32(o.layers));
  kv("llama.feed_forward_length", u32(o.ffn));
  kv("llama.attention.head_count", u32(o.heads));
  kv("llama.attention.head_count_kv", u32(o.kv_heads));
  kv("llama.rope.dimension_count", u32(hd));
  kv("llama.rope.freq_base", Value::make_f32(o.rope_base));
  kv("llama.attention.layer_norm_rms_epsilon", Value::make_f32(1e-5f));
  kv("llama.vocab_size", u32(o.vocab));
  std::vector<std::string> vocab = synth_vocab(o.vocab);
  std::vector<float> scores(vocab.size(), 0.0f);
  std::vector<int32_t> types(vocab.size(), 1);
  types[0] = 2;             // unknown
  types[1] = types[2] = 3;  // control
  for (size_t i = 3; i < 259; ++i) types[i] = 6;  // byte
  for (size_t i = 259; i < vocab.size(); ++i) scores[i] = -static_cast<float>(i - 259);
  kv("tokenizer.ggml.model", Value::make_string("llama"));
  kv("tokenizer.ggml.tokens", Value::make_string_array(std::move(vocab)));
  kv("tokenizer.ggml.scores", Value::make_f32_array(scores));
  kv("tokenizer.ggml.token_type", Value::make_i32_array(types));
  kv("tokenizer.ggml.unknown_token_id", u32(0));
  kv("tokenizer.ggml.bos_token_id", u32(1));
  kv("tokenizer.ggml.eos_token_id", u32(2));
  kv("tokenizer.ggml.add_bos_token", Value::make_bool(true));
  kv("tokenizer.ggml.add_eos_token", Value::make_bool(false));

  ThreadPool pool(o.n_threads > 0 ? o.n_threads : ThreadPool::default_threads());
  gguf::StreamWriter w(out, kvs, plan);
  std::vector<uint8_t> buf;
  std::vector<std::vector<float>> scratch(static_cast<size_t>(pool.size()));
  for (size_t i = 0; i < plan.size(); ++i) {
    const gguf::StreamTensor& t = plan[i];
    const int64_t n = t.dims[0], rows = t.dims.size() > 1 ? t.dims[1] : 1;
    const TypeTraits& tt = *type_traits(t.type);
    const size_t out_row = row_size(tt, n);
    buf.resize(t.size);
    const uint64_t tensor_key = splitmix64(o.seed ^ splitmix64(i + 1));
    const bool norm = ts[i].is_norm;
    pool.run([&](int ith, int nth) {
      std::vector<float>& row = scratch[static_cast<size_t>(ith)];
      row.resize(static_cast<size_t>(n));
      for (int64_t r = rows * ith / nth; r < rows * (ith + 1) / nth; ++r) {
        if (norm) std::fill(row.begin(), row.end(), 1.0f);
        else normal_row(tensor_key + static_cast<uint64_t>(r) * 0xD1B54A32D192ED03ull, o.std_dev, row.data(), n);
        tt.from_float(row.data(), buf.data() + static_cast<size_t>(r) * out_row, n);
      }
    });
    w.write_tensor(buf.data(), t.size);
    if (o.on_progress) o.on_progress(i + 1, plan.size(), t.name, w.bytes_written(), now_s() - t0);
  }
  rep.file_bytes = w.bytes_written();
  w.finish();
  rep.seconds = now_s() - t0;
  return rep;
}

}  // namespace coppice
