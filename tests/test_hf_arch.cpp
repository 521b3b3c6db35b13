// Every architecture as a Hugging Face folder: a random-weight F32 model of each family
// written by `synth`, exported by tests/reference/export_hf.py with transformers' module
// names and config.json keys (q/k un-permuted for llama, Gemma norms as w - 1, one matrix per
// MoE expert, RoPE scaling as config.json rope_scaling), must give the GGUF's logits when
// loaded as a folder. The GGUF side is itself checked against a NumPy forward pass in
// test_arch.cpp, so agreement here means the folder reader maps every tensor and config key.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <tuple>

#include "engine/generate.h"
#include "engine/synth.h"
#include "model/model.h"
#include "test_util.h"
#include "util/error.h"

using namespace coppice;
namespace fs = std::filesystem;

namespace {

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
  o.pure = true;
  o.std_dev = 0.15f;
  o.norm_std = 0.2f;
  o.n_threads = 2;
  return o;
}

std::string python() {
  return fs::exists("/usr/bin/python3") ? "/usr/bin/python3" : "python3";
}

std::vector<float> logits(const std::string& path, int64_t n_ctx) {
  ModelOptions mo;
  mo.n_threads = 2;
  mo.n_ctx = n_ctx;
  auto m = Model::load(path, mo);
  KvCache cache = m->make_cache(64, DType::F32);
  cache.add_sequence(0);
  std::vector<int32_t> ids;
  for (int i = 0; i < 19; ++i) ids.push_back(3 + (i * 89 + 7) % 290);
  std::vector<float> out;
  prefill(*m, cache, 0, ids, 8, true, out);
  return out;
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

struct Case {
  const char* name;
  const char* hf_arch;  // what config.json must say
  std::function<void(SynthOptions&)> set;
  int64_t n_ctx = 0;  // > original context: Phi-3's long factors
};

const Case kCases[] = {
    {"llama3_rope_tied", "LlamaForCausalLM", [](SynthOptions& o) { o.rope_scaling = "llama3"; o.rope_orig_ctx = 64; o.tied = true; }},
    {"mistral_sliding_window", "MistralForCausalLM", [](SynthOptions& o) { o.sliding_window = 5; }},
    {"mixtral", "MixtralForCausalLM", [](SynthOptions& o) { o.experts = 4; o.experts_used = 2; }},
    {"qwen2", "Qwen2ForCausalLM", [](SynthOptions& o) { o.arch = "qwen2"; }},
    {"qwen3", "Qwen3ForCausalLM", [](SynthOptions& o) { o.arch = "qwen3"; o.head_dim = 32; }},
    {"qwen2moe", "Qwen2MoeForCausalLM", [](SynthOptions& o) { o.arch = "qwen2moe"; o.experts = 4; o.experts_used = 2; o.ffn_exp = 32; o.ffn_shexp = 48; }},
    {"qwen3moe", "Qwen3MoeForCausalLM", [](SynthOptions& o) { o.arch = "qwen3moe"; o.experts = 5; o.experts_used = 3; o.ffn_exp = 32; }},
    {"gemma2", "Gemma2ForCausalLM", [](SynthOptions& o) {
       o.arch = "gemma2"; o.sliding_window = 5; o.attn_softcap = 1.5f; o.final_softcap = 3.0f;
       o.attn_scale = 0.2f; o.rms_eps = 1e-6f; o.layers = 3;
     }},
    {"gemma3", "Gemma3ForCausalLM", [](SynthOptions& o) {
       o.arch = "gemma3"; o.sliding_window = 5; o.layers = 7; o.dim = 32; o.head_dim = 16;
       o.rope_base = 1000000.0f; o.rope_base_swa = 10000.0f; o.rope_scaling = "linear"; o.rope_factor = 8.0f;
     }},
    {"phi3_longrope", "Phi3ForCausalLM", [](SynthOptions& o) { o.arch = "phi3"; o.rope_scaling = "longrope"; o.rope_orig_ctx = 64; o.rope_factor = 4.0f; }, 256},
};

void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }

class HfArch : public ::testing::TestWithParam<Case> {};

TEST_P(HfArch, FolderGivesTheGgufLogits) {
  const Case& c = GetParam();
  SynthOptions o = base_options();
  c.set(o);
  const std::string gguf = testutil::temp_path(std::string("hfarch-") + c.name + ".gguf");
  const std::string dir = testutil::temp_path(std::string("hfarch-") + c.name);
  fs::remove_all(dir);
  synth_model(gguf, o);
  const std::string cmd = python() + " " + COPPICE_SOURCE_DIR + "/tests/reference/export_hf.py " + gguf + " " + dir;
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  std::ifstream cfg(dir + "/config.json");
  const std::string text((std::istreambuf_iterator<char>(cfg)), std::istreambuf_iterator<char>());
  ASSERT_NE(text.find(std::string("\"") + c.hf_arch + "\""), std::string::npos) << text;

  const auto want = logits(gguf, c.n_ctx), got = logits(dir, c.n_ctx);
  ASSERT_EQ(got.size(), want.size());
  const double err = rel_l2(got, want);
  std::printf("%s: folder vs GGUF rel_l2 %.2e\n", c.name, err);
  EXPECT_LT(err, 1e-5) << c.name;
}

INSTANTIATE_TEST_SUITE_P(Families, HfArch, ::testing::ValuesIn(kCases),
                         [](const auto& param_info) { return std::string(param_info.param.name); });

// config.json fields coppice cannot honour are named errors, not silently dropped.
TEST(HfArchConfig, UnsupportedFieldsAreNamed) {
  SynthOptions o = base_options();
  o.arch = "qwen2";
  const std::string gguf = testutil::temp_path("hfarch-bad.gguf"), dir = testutil::temp_path("hfarch-bad");
  fs::remove_all(dir);
  synth_model(gguf, o);
  ASSERT_EQ(std::system((python() + " " + COPPICE_SOURCE_DIR + "/tests/reference/export_hf.py " + gguf + " " + dir).c_str()), 0);
  std::ifstream in(dir + "/config.json");
  const nlohmann::json base = nlohmann::json::parse(in);
  using J = nlohmann::json;
  const std::tuple<const char*, J, std::string> cases[] = {
      {"use_sliding_window", true, "use_sliding_window"},
      {"rope_scaling", J{{"rope_type", "yarn"}, {"factor", 4.0}}, "rope_scaling type 'yarn' is not supported"},
      {"rope_scaling", J{{"rope_type", "llama3"}, {"factor", 4.0}}, "rope_scaling type 'llama3' is not supported for Qwen2ForCausalLM"},
      {"num_attention_heads", 0, "'num_attention_heads' missing or not a positive integer"},
      {"partial_rotary_factor", 1.5, "partial_rotary_factor must be in (0, 1]"},
      {"architectures", J::array({"FalconForCausalLM"}), "unsupported architectures 'FalconForCausalLM'"},
  };
  for (const auto& [key, value, message] : cases) {
    nlohmann::json c = base;
    c[key] = value;
    const std::string text = c.dump();
    testutil::write_bytes(dir + "/config.json", std::vector<uint8_t>(text.begin(), text.end()));
    try {
      Model::load(dir);
      ADD_FAILURE() << "accepted " << key << " = " << value.dump();
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(message), std::string::npos) << key << " -> " << e.what();
    }
  }
}

}  // namespace
