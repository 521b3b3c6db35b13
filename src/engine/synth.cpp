#include "engine/synth.h"

#include <chrono>
#include <cmath>
#include <algorithm>
#include <cstdio>
#include <string_view>
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

enum class Fill { Weight, Norm, Bias, Fixed };

struct Planned {
  std::string name;
  std::vector<int64_t> dims;
  DType type;
  Fill fill;
  std::vector<float> values;  // Fill::Fixed
};

const char* const kArches[] = {"llama", "qwen2", "qwen3", "qwen2moe", "qwen3moe", "gemma2", "gemma3", "phi3"};

bool has(std::string_view arch, std::initializer_list<std::string_view> set) {
  for (std::string_view a : set)
    if (a == arch) return true;
  return false;
}

// Llama 3.1 frequency factors (Meta's apply_scaling): used for rope_freqs.weight.
std::vector<float> llama3_factors(const SynthOptions& o, int64_t rope_dim, int64_t orig) {
  constexpr double kLow = 1.0, kHigh = 4.0;
  std::vector<float> f;
  for (int64_t i = 0; i < rope_dim / 2; ++i) {
    const double freq = std::pow(static_cast<double>(o.rope_base), -2.0 * static_cast<double>(i) / static_cast<double>(rope_dim));
    const double wl = 2 * M_PI / freq;
    double v = 1;
    if (wl > static_cast<double>(orig) / kLow) v = o.rope_factor;
    else if (wl >= static_cast<double>(orig) / kHigh) {
      const double sm = (static_cast<double>(orig) / wl - kLow) / (kHigh - kLow);
      v = 1 / ((1 - sm) / o.rope_factor + sm);
    }
    f.push_back(static_cast<float>(v));
  }
  return f;
}

// The tensors of one architecture, in the names and shapes llama.cpp's converter writes.
std::vector<Planned> plan_tensors(const SynthOptions& o, int64_t hd, int64_t orig_ctx) {
  const std::string& A = o.arch;
  const int64_t qd = o.heads * hd, kvd = o.kv_heads * hd;
  const bool gemma = has(A, {"gemma2", "gemma3"});
  const bool moe = o.experts > 0;
  const int64_t ffe = o.ffn_exp > 0 ? o.ffn_exp : o.ffn, ffs = o.ffn_shexp > 0 ? o.ffn_shexp : o.ffn;
  std::vector<Planned> ts;
  auto w = [&](std::string name, std::vector<int64_t> dims) { ts.push_back({std::move(name), std::move(dims), DType::F32, Fill::Weight, {}}); };
  auto norm = [&](std::string name, int64_t n) { ts.push_back({std::move(name), {n}, DType::F32, Fill::Norm, {}}); };
  auto bias = [&](std::string name, int64_t n) { ts.push_back({std::move(name), {n}, DType::F32, Fill::Bias, {}}); };
  auto fixed = [&](std::string name, std::vector<float> v) {
    const int64_t n = static_cast<int64_t>(v.size());
    ts.push_back({std::move(name), {n}, DType::F32, Fill::Fixed, std::move(v)});
  };
  w("token_embd.weight", {o.dim, o.vocab});
  norm("output_norm.weight", o.dim);
  if (!o.tied && !gemma) w("output.weight", {o.dim, o.vocab});
  if (o.rope_scaling == "llama3" && o.rope_freqs_tensor) fixed("rope_freqs.weight", llama3_factors(o, hd, orig_ctx));
  if (o.rope_scaling == "longrope") {  // smooth, distinct long and short factor sets
    std::vector<float> lf, sf;
    for (int64_t i = 0; i < hd / 2; ++i) {
      const float t = static_cast<float>(i) / static_cast<float>(hd / 2);
      lf.push_back(1.0f + (o.rope_factor - 1.0f) * t * t);
      sf.push_back(1.0f + 0.5f * t);
    }
    fixed("rope_factors_long.weight", lf);
    fixed("rope_factors_short.weight", sf);
  }
  for (int64_t l = 0; l < o.layers; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    norm(p + "attn_norm.weight", o.dim);
    if (A == "phi3") {
      w(p + "attn_qkv.weight", {o.dim, qd + 2 * kvd});
    } else {
      w(p + "attn_q.weight", {o.dim, qd});
      w(p + "attn_k.weight", {o.dim, kvd});
      w(p + "attn_v.weight", {o.dim, kvd});
    }
    if (has(A, {"qwen2", "qwen2moe"})) {
      bias(p + "attn_q.bias", qd);
      bias(p + "attn_k.bias", kvd);
      bias(p + "attn_v.bias", kvd);
    }
    if (has(A, {"qwen3", "qwen3moe", "gemma3"})) {
      norm(p + "attn_q_norm.weight", hd);
      norm(p + "attn_k_norm.weight", hd);
    }
    w(p + "attn_output.weight", {qd, o.dim});
    if (gemma) norm(p + "post_attention_norm.weight", o.dim);
    norm(p + "ffn_norm.weight", o.dim);
    if (moe) {
      w(p + "ffn_gate_inp.weight", {o.dim, o.experts});
      w(p + "ffn_gate_exps.weight", {o.dim, ffe, o.experts});
      w(p + "ffn_up_exps.weight", {o.dim, ffe, o.experts});
      w(p + "ffn_down_exps.weight", {ffe, o.dim, o.experts});
      if (A == "qwen2moe") {
        norm(p + "ffn_gate_inp_shexp.weight", o.dim);
        ts.back().fill = Fill::Bias;
        w(p + "ffn_gate_shexp.weight", {o.dim, ffs});
        w(p + "ffn_up_shexp.weight", {o.dim, ffs});
        w(p + "ffn_down_shexp.weight", {ffs, o.dim});
      }
    } else if (A == "phi3") {
      w(p + "ffn_up.weight", {o.dim, 2 * o.ffn});
      w(p + "ffn_down.weight", {o.ffn, o.dim});
    } else {
      w(p + "ffn_gate.weight", {o.dim, o.ffn});
      w(p + "ffn_up.weight", {o.dim, o.ffn});
      w(p + "ffn_down.weight", {o.ffn, o.dim});
    }
    if (gemma) norm(p + "post_ffw_norm.weight", o.dim);
  }
  return ts;
}

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
  const int64_t hd = o.head_dim > 0 ? o.head_dim : o.dim / o.heads;
  check(hd % 2 == 0, "head size " + std::to_string(hd) + " must be even (RoPE)");
  bool known = false;
  for (const char* a : kArches) known |= o.arch == a;
  check(known, "unknown --arch '" + o.arch + "' (llama, qwen2, qwen3, qwen2moe, qwen3moe, gemma2, gemma3, phi3)");
  const bool moe_arch = has(o.arch, {"qwen2moe", "qwen3moe"});
  check(!moe_arch || o.experts > 0, "--arch " + o.arch + " needs --experts > 0");
  check(o.experts == 0 || has(o.arch, {"llama", "qwen2moe", "qwen3moe"}), "--experts needs --arch llama, qwen2moe or qwen3moe");
  check(o.experts == 0 || (o.experts_used > 0 && o.experts_used <= o.experts), "--experts-used must be in 1..--experts");
  check(o.sliding_window >= 0, "--sliding-window must be >= 0");
  check(o.arch != "gemma3" || o.sliding_window > 0, "--arch gemma3 needs --sliding-window > 0");
  check(has(o.rope_scaling, {"none", "linear", "llama3", "longrope"}), "--rope-scaling must be none, linear, llama3 or longrope");
  check(o.rope_scaling != "llama3" || o.arch == "llama", "--rope-scaling llama3 needs --arch llama");
  check(o.rope_scaling != "longrope" || o.arch == "phi3", "--rope-scaling longrope needs --arch phi3");
  check(o.rope_factor > 0, "--rope-factor must be positive");
  check(o.vocab >= 259 && o.vocab <= INT32_MAX,
        "--vocab " + std::to_string(o.vocab) + " must hold the 3 special and 256 byte tokens (>= 259)");
  check(o.std_dev >= 0 && std::isfinite(o.std_dev), "--std must be a finite value >= 0");
  check(o.rope_base > 0, "--rope-base must be positive");

  const int64_t orig_ctx = o.rope_orig_ctx > 0 ? o.rope_orig_ctx : std::max<int64_t>(1, o.ctx / 4);
  std::vector<Planned> ts = plan_tensors(o, hd, orig_ctx);
  std::vector<std::string> names;
  for (const Planned& t : ts) names.push_back(t.name);
  const MixContext mix = mix_context(names, o.heads, o.kv_heads);
  SynthReport rep;
  std::vector<gguf::StreamTensor> plan;
  for (Planned& t : ts) {
    if (t.fill == Fill::Weight && t.name.find("ffn_gate_inp") == std::string::npos) {
      std::string why;
      t.type = choose_tensor_type(*target, o.pure, mix, t.name, t.dims[0], &why);
      if (!why.empty() && o.on_note) o.on_note("note: " + why);
    }
    int64_t rows = 1;
    for (size_t d = 1; d < t.dims.size(); ++d) rows *= t.dims[d];
    plan.push_back({t.name, t.dims, t.type, row_size(*type_traits(t.type), t.dims[0]) * static_cast<uint64_t>(rows)});
    rep.n_params += t.dims[0] * rows;
    ++rep.type_counts[dtype_name(t.type)];
  }
  rep.n_tensors = plan.size();

  using gguf::Value;
  std::vector<gguf::KV> kvs;
  auto kv = [&](std::string k, Value v) { kvs.push_back({std::move(k), std::move(v)}); };
  auto u32 = [](int64_t v) { return Value::make_u32(static_cast<uint32_t>(v)); };
  const std::string P = o.arch + ".";
  auto f32 = [](float v) { return Value::make_f32(v); };
  kv("general.architecture", Value::make_string(o.arch));
  kv("general.name", Value::make_string("synth-" + o.arch + "-d" + std::to_string(o.dim) + "-l" + std::to_string(o.layers)));
  kv("general.file_type", u32(target->file_type));
  kv("general.quantization_version", u32(2));
  kv(P + "context_length", u32(o.ctx));
  kv(P + "embedding_length", u32(o.dim));
  kv(P + "block_count", u32(o.layers));
  kv(P + "feed_forward_length", u32(o.ffn));
  kv(P + "attention.head_count", u32(o.heads));
  kv(P + "attention.head_count_kv", u32(o.kv_heads));
  if (hd != o.dim / o.heads) {
    kv(P + "attention.key_length", u32(hd));
    kv(P + "attention.value_length", u32(hd));
  }
  kv(P + "rope.dimension_count", u32(hd));
  kv(P + "rope.freq_base", f32(o.rope_base));
  kv(P + "attention.layer_norm_rms_epsilon", f32(o.rms_eps));
  kv(P + "vocab_size", u32(o.vocab));
  if (o.experts > 0) {
    kv(P + "expert_count", u32(o.experts));
    kv(P + "expert_used_count", u32(o.experts_used));
    if (o.arch != "llama") kv(P + "expert_feed_forward_length", u32(o.ffn_exp > 0 ? o.ffn_exp : o.ffn));
    if (o.arch == "qwen2moe") kv(P + "expert_shared_feed_forward_length", u32(o.ffn_shexp > 0 ? o.ffn_shexp : o.ffn));
  }
  if (o.sliding_window > 0) kv(P + "attention.sliding_window", u32(o.sliding_window));
  if (o.attn_scale > 0) kv(P + "attention.scale", f32(o.attn_scale));
  if (o.arch == "gemma2") {
    kv(P + "attn_logit_softcapping", f32(o.attn_softcap));
    kv(P + "final_logit_softcapping", f32(o.final_softcap));
  }
  if (o.arch == "gemma3") kv(P + "rope.freq_base_swa", f32(o.rope_base_swa));
  if (o.rope_scaling == "linear") {
    kv(P + "rope.scaling.type", Value::make_string("linear"));
    kv(P + "rope.scaling.factor", f32(o.rope_factor));
  } else if (o.rope_scaling == "llama3") {
    kv(P + "rope.scaling.type", Value::make_string("llama3"));
    kv(P + "rope.scaling.factor", f32(o.rope_factor));
    kv(P + "rope.scaling.low_freq_factor", f32(1.0f));
    kv(P + "rope.scaling.high_freq_factor", f32(4.0f));
    kv(P + "rope.scaling.original_context_length", u32(orig_ctx));
  } else if (o.rope_scaling == "longrope") {
    const double scale = static_cast<double>(o.ctx) / static_cast<double>(orig_ctx);
    const double attn_factor = scale > 1 ? std::sqrt(1 + std::log(scale) / std::log(static_cast<double>(orig_ctx))) : 1.0;
    kv(P + "rope.scaling.attn_factor", f32(static_cast<float>(attn_factor)));
    kv(P + "rope.scaling.original_context_length", u32(orig_ctx));
  }
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
    const int64_t n = t.dims[0];
    int64_t rows = 1;
    for (size_t d = 1; d < t.dims.size(); ++d) rows *= t.dims[d];
    const TypeTraits& tt = *type_traits(t.type);
    const size_t out_row = row_size(tt, n);
    buf.resize(t.size);
    const uint64_t tensor_key = splitmix64(o.seed ^ splitmix64(i + 1));
    const Planned& pt = ts[i];
    pool.run([&](int ith, int nth) {
      std::vector<float>& row = scratch[static_cast<size_t>(ith)];
      row.resize(static_cast<size_t>(n));
      for (int64_t r = rows * ith / nth; r < rows * (ith + 1) / nth; ++r) {
        const uint64_t key = tensor_key + static_cast<uint64_t>(r) * 0xD1B54A32D192ED03ull;
        if (pt.fill == Fill::Fixed) {
          std::copy(pt.values.begin(), pt.values.end(), row.begin());
        } else if (pt.fill == Fill::Norm) {
          std::fill(row.begin(), row.end(), 1.0f);
          if (o.norm_std > 0) {  // 1 + noise (default 0 keeps files byte-identical to before)
            normal_row(key, o.norm_std, row.data(), n);
            for (float& x : row) x += 1.0f;
          }
        } else {
          normal_row(key, o.std_dev, row.data(), n);
        }
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
