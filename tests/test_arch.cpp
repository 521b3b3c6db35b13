// Every architecture against an independent NumPy forward pass (tests/reference/forward.py):
// a tiny random-weight F32 model written by `synth`, a fixed token sequence prefilled in
// chunks (so the KV cache and sliding windows cross step boundaries), logits compared by
// relative L2. Plus the load errors: unknown architecture, missing tensor.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <functional>

#include "engine/generate.h"
#include "engine/synth.h"
#include "formats/gguf.h"
#include "model/model.h"
#include "test_util.h"
#include "util/error.h"

using namespace coppice;

namespace {

std::vector<int32_t> test_tokens() {
  std::vector<int32_t> t;
  for (int i = 0; i < 23; ++i) t.push_back(1 + (i * 97 + 13) % 299);
  return t;
}

SynthOptions base_options() {
  SynthOptions o;
  o.dim = 64;
  o.layers = 2;
  o.heads = 4;
  o.kv_heads = 2;
  o.ffn = 96;
  o.vocab = 300;
  o.ctx = 256;
  o.rope_base = 10000.0f;
  o.type = "f32";
  o.std_dev = 0.15f;
  o.norm_std = 0.2f;
  o.n_threads = 2;
  return o;
}

double rel_l2(const std::vector<float>& got, const std::vector<float>& ref) {
  double num = 0, den = 0;
  for (size_t i = 0; i < ref.size(); ++i) {
    const double d = static_cast<double>(got[i]) - ref[i];
    num += d * d;
    den += static_cast<double>(ref[i]) * ref[i];
  }
  return std::sqrt(num / den);
}

// The interpreter with NumPy: $COPPICE_PYTHON, else the system python3 (scripts/setup.sh
// installs python3-numpy there; a pyenv shim earlier in PATH may lack it).
std::string python() {
  if (const char* p = std::getenv("COPPICE_PYTHON")) return p;
  return std::filesystem::exists("/usr/bin/python3") ? "/usr/bin/python3" : "python3";
}

std::vector<float> reference_logits(const std::string& model, const std::vector<int32_t>& ids, int64_t n_ctx) {
  std::string toks;
  for (size_t i = 0; i < ids.size(); ++i) toks += (i ? "," : "") + std::to_string(ids[i]);
  const std::string out = model + ".ref.f32";
  const std::string cmd = python() + " " + std::string(COPPICE_SOURCE_DIR) + "/tests/reference/forward.py " +
                          model + " --tokens " + toks + " --out " + out + " --n-ctx " + std::to_string(n_ctx);
  EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
  return testutil::read_f32(out);
}

std::vector<float> coppice_logits(const std::string& model, const std::vector<int32_t>& ids, int n_batch, int64_t n_ctx) {
  ModelOptions mo;
  mo.n_threads = 2;
  mo.n_ctx = n_ctx;
  auto m = Model::load(model, mo);
  KvCache cache = m->make_cache(64, DType::F32);
  cache.add_sequence(0);
  std::vector<float> logits;
  prefill(*m, cache, 0, ids, n_batch, true, logits);
  return logits;
}

struct Case {
  const char* name;
  std::function<void(SynthOptions&)> set;
  int64_t n_ctx = 0;     // context the model runs at (> original: Phi-3's long factors)
  double tol = 1e-3;     // F32 weights: 1e-3 (the bound); Q8_0: activations are quantized too
};

const Case kCases[] = {
    {"llama3_rope_tied", [](SynthOptions& o) { o.rope_scaling = "llama3"; o.rope_orig_ctx = 64; o.tied = true; }},
    {"llama3_rope_metadata_only", [](SynthOptions& o) { o.rope_scaling = "llama3"; o.rope_orig_ctx = 64; o.rope_freqs_tensor = false; }},
    {"mistral_sliding_window", [](SynthOptions& o) { o.sliding_window = 5; }},
    {"qwen2", [](SynthOptions& o) { o.arch = "qwen2"; }},
    {"qwen3", [](SynthOptions& o) { o.arch = "qwen3"; o.head_dim = 32; }},
    {"gemma2", [](SynthOptions& o) {
       o.arch = "gemma2"; o.sliding_window = 5; o.attn_softcap = 1.5f; o.final_softcap = 3.0f;
       o.attn_scale = 0.2f; o.rms_eps = 1e-6f; o.layers = 3;
     }},
    {"gemma3", [](SynthOptions& o) {
       o.arch = "gemma3"; o.sliding_window = 5; o.layers = 7; o.dim = 32; o.head_dim = 16;
       o.rope_base = 1000000.0f; o.rope_base_swa = 10000.0f; o.rope_scaling = "linear"; o.rope_factor = 8.0f;
     }},
    {"phi3_longrope", [](SynthOptions& o) { o.arch = "phi3"; o.rope_scaling = "longrope"; o.rope_orig_ctx = 64; o.rope_factor = 4.0f; }},
    {"phi3_longrope_long_ctx", [](SynthOptions& o) { o.arch = "phi3"; o.rope_scaling = "longrope"; o.rope_orig_ctx = 64; o.rope_factor = 4.0f; }, 256},
    {"mixtral", [](SynthOptions& o) { o.experts = 4; o.experts_used = 2; }},
    {"qwen2moe", [](SynthOptions& o) { o.arch = "qwen2moe"; o.experts = 4; o.experts_used = 2; o.ffn_exp = 32; o.ffn_shexp = 48; }},
    {"qwen3moe", [](SynthOptions& o) { o.arch = "qwen3moe"; o.experts = 5; o.experts_used = 3; o.ffn_exp = 32; }},
    // Quantized experts: the reference dequantizes Q8_0 exactly; coppice also quantizes the
    // activations to 8 bits, hence the wider bound: the dense llama_q8_0 case measures that
    // cost alone (2.8e-2); the MoE cases land beside it (2.5e-2, 3.0e-2), a wrong expert
    // slice would be O(1).
    {"llama_q8_0", [](SynthOptions& o) { o.type = "q8_0"; o.pure = true; }, 0, 5e-2},
    {"mixtral_q8_0", [](SynthOptions& o) { o.experts = 4; o.experts_used = 2; o.type = "q8_0"; o.pure = true; }, 0, 5e-2},
    {"qwen2moe_q8_0", [](SynthOptions& o) { o.arch = "qwen2moe"; o.experts = 4; o.experts_used = 2; o.ffn_exp = 32; o.ffn_shexp = 64; o.type = "q8_0"; o.pure = true; }, 0, 5e-2},
};

void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }

class ArchLogits : public ::testing::TestWithParam<Case> {};

TEST_P(ArchLogits, MatchNumpyReference) {
  const Case& c = GetParam();
  SynthOptions o = base_options();
  c.set(o);
  const std::string path = testutil::temp_path(std::string("arch-") + c.name + ".gguf");
  synth_model(path, o);
  const auto ids = test_tokens();
  const auto ref = reference_logits(path, ids, c.n_ctx);
  ASSERT_EQ(ref.size(), ids.size() * 300u);
  const auto got = coppice_logits(path, ids, 7, c.n_ctx);
  ASSERT_EQ(got.size(), ref.size());
  const double err = rel_l2(got, ref);
  std::printf("%s: rel_l2 %.2e\n", c.name, err);
  EXPECT_LT(err, c.tol) << c.name;
  // Token by token (decode path) gives the same logits as chunked prefill.
  const auto one = coppice_logits(path, ids, 1, c.n_ctx);
  EXPECT_LT(rel_l2(one, got), 1e-5) << c.name;
}

INSTANTIATE_TEST_SUITE_P(All, ArchLogits, ::testing::ValuesIn(kCases),
                         [](const auto& param_info) { return std::string(param_info.param.name); });

// Rewrites a GGUF with one metadata value replaced or one tensor dropped.
void rewrite(const std::string& src, const std::string& dst, const std::string& key,
             const std::string& value, const std::string& drop_tensor) {
  gguf::File f = gguf::File::open(src);
  std::vector<gguf::KV> kvs = f.kvs();
  for (gguf::KV& kv : kvs)
    if (kv.key == key) kv.value = gguf::Value::make_string(value);
  std::vector<gguf::WriterTensor> ts;
  for (const gguf::TensorInfo& t : f.tensors())
    if (t.name != drop_tensor) ts.push_back({t.name, t.dims, t.type, t.data, t.size});
  gguf::write_file(dst, kvs, ts);
}

std::string load_error(const std::string& path) {
  try {
    Model::load(path);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(ArchErrors, UnknownArchitectureIsNamed) {
  SynthOptions o = base_options();
  o.layers = 1;
  const std::string a = testutil::temp_path("err-base.gguf"), b = testutil::temp_path("err-arch.gguf");
  synth_model(a, o);
  rewrite(a, b, "general.architecture", "mamba9", "");
  const std::string err = load_error(b);
  EXPECT_NE(err.find("[model] unsupported architecture 'mamba9'"), std::string::npos) << err;
  EXPECT_NE(err.find("qwen2"), std::string::npos) << err;  // lists what is supported
}

TEST(ArchErrors, MissingTensorIsNamed) {
  SynthOptions o = base_options();
  o.arch = "qwen2";
  const std::string a = testutil::temp_path("err-qwen2.gguf"), b = testutil::temp_path("err-qwen2-nobias.gguf");
  synth_model(a, o);
  rewrite(a, b, "", "", "blk.1.attn_q.bias");
  const std::string err = load_error(b);
  EXPECT_EQ(err.rfind("[model] qwen2: missing tensor blk.1.attn_q.bias", 0), 0u) << err;
}

TEST(ArchErrors, WrongExpertShapeIsNamed) {
  SynthOptions o = base_options();
  o.arch = "qwen3moe";
  o.experts = 4;
  const std::string a = testutil::temp_path("err-moe.gguf"), b = testutil::temp_path("err-moe-meta.gguf");
  synth_model(a, o);
  gguf::File f = gguf::File::open(a);
  std::vector<gguf::KV> kvs = f.kvs();
  for (gguf::KV& kv : kvs)
    if (kv.key == "qwen3moe.expert_count") kv.value = gguf::Value::make_u32(3);
  std::vector<gguf::WriterTensor> ts;
  for (const gguf::TensorInfo& t : f.tensors()) ts.push_back({t.name, t.dims, t.type, t.data, t.size});
  gguf::write_file(b, kvs, ts);
  const std::string err = load_error(b);
  EXPECT_NE(err.find("qwen3moe: tensor blk.0.ffn_gate_inp.weight has shape [64, 4], expected [64, 3]"),
            std::string::npos) << err;
}

TEST(ArchErrors, SynthRejectsUnknownArch) {
  SynthOptions o = base_options();
  o.arch = "mamba9";
  EXPECT_THROW(synth_model(testutil::temp_path("never.gguf"), o), Error);
}

}  // namespace
