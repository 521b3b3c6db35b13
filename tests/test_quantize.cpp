// coppice quantize and coppice synth: synthetic models load and run and are reproducible;
// legacy quantization is byte-identical to the reference quantizers and to llama.cpp's own
// files; presets follow llama.cpp's per-tensor mix; quality orders q8_0 < q4 < q2 by KL.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <cstring>
#include <filesystem>

#include "engine/generate.h"
#include "engine/quantize.h"
#include "engine/synth.h"
#include "formats/gguf.h"
#include "formats/gguf_stream.h"
#include "model/model.h"
#include "test_util.h"
#include "util/error.h"
#include "util/fp16.h"

using namespace coppice;
using testutil::run_cli;
using testutil::shared;
using testutil::temp_path;

namespace {

const std::string kF32 = shared("models/fixtures/llama-d256-f32.gguf");

// Prefills a few tokens and checks the last logits row is finite and not constant.
void expect_runs(const std::string& path) {
  auto m = Model::load(path, {2});
  KvCache cache = m->make_cache(64);
  cache.add_sequence(0);
  std::vector<float> logits;
  prefill(*m, cache, 0, {1, 5, 9, 42, 7}, 4, false, logits);
  ASSERT_EQ(static_cast<int64_t>(logits.size()), m->n_vocab());
  float lo = logits[0], hi = logits[0];
  for (float v : logits) {
    ASSERT_TRUE(std::isfinite(v));
    lo = std::min(lo, v);
    hi = std::max(hi, v);
  }
  EXPECT_LT(lo, hi);
}

SynthOptions small_shape() {
  SynthOptions o;
  o.dim = 64; o.layers = 3; o.heads = 4; o.kv_heads = 2; o.ffn = 96; o.vocab = 300; o.ctx = 256;
  o.rope_base = 10000.0f; o.type = "f32"; o.n_threads = 2;
  return o;
}

std::vector<float> dequant(const gguf::TensorInfo& t) {
  std::vector<float> v(static_cast<size_t>(t.n_elements()));
  const TypeTraits& tt = *type_traits(t.type);
  const int64_t n = t.dims[0];
  for (int64_t r = 0; r < t.n_elements() / n; ++r)
    tt.to_float(t.data + r * row_size(tt, n), v.data() + r * n, n);
  return v;
}

int64_t differing_blocks(const gguf::TensorInfo& a, const gguf::TensorInfo& b) {
  const size_t bs = type_traits(a.type)->type_size;
  int64_t diff = 0;
  for (size_t off = 0; off < a.size; off += bs) diff += std::memcmp(a.data + off, b.data + off, bs) != 0;
  return diff;
}

}  // namespace

TEST(GgufStream, SameBytesAsWriteFile) {
  const gguf::File src = gguf::File::open(kF32);
  std::vector<gguf::WriterTensor> wt;
  std::vector<gguf::StreamTensor> st;
  for (const auto& t : src.tensors()) {
    wt.push_back({t.name, t.dims, t.type, t.data, t.size});
    st.push_back({t.name, t.dims, t.type, t.size});
  }
  const std::string a = temp_path("stream-a.gguf"), b = temp_path("stream-b.gguf");
  gguf::write_file(a, src.kvs(), wt);
  {
    gguf::StreamWriter w(b, src.kvs(), st);
    for (const auto& t : src.tensors()) w.write_tensor(t.data, t.size);
    w.finish();
  }
  EXPECT_EQ(testutil::read_bytes(a), testutil::read_bytes(b));
  EXPECT_EQ(testutil::read_bytes(b), testutil::read_bytes(kF32));  // a round trip of llama.cpp's file
  // Abandoned before finish(): neither the file nor its .tmp is left behind.
  const std::string c = temp_path("stream-c.gguf");
  {
    gguf::StreamWriter w(c, src.kvs(), st);
    w.write_tensor(src.tensors()[0].data, src.tensors()[0].size);
  }
  EXPECT_FALSE(std::filesystem::exists(c));
  EXPECT_FALSE(std::filesystem::exists(c + ".tmp"));
}

TEST(Synth, WritesAModelThatLoadsAndRuns) {
  const std::string p = temp_path("synth-small.gguf");
  SynthOptions o = small_shape();
  const SynthReport r = synth_model(p, o);
  EXPECT_EQ(r.n_tensors, 3u + 9u * 3u);
  expect_runs(p);
  const gguf::File f = gguf::File::open(p);
  const ModelConfig c = ModelConfig::from_gguf(f);
  EXPECT_EQ(c.n_embd, 64);
  EXPECT_EQ(c.n_layer, 3);
  EXPECT_EQ(c.n_head, 4);
  EXPECT_EQ(c.n_head_kv, 2);
  EXPECT_EQ(c.n_ff, 96);
  EXPECT_EQ(c.n_ctx_train, 256);
  EXPECT_FLOAT_EQ(c.rope_freq_base, 10000.0f);
  EXPECT_EQ(f.tensor("token_embd.weight")->dims, (std::vector<int64_t>{64, 300}));
  ASSERT_NE(f.tensor("output.weight"), nullptr);
  const auto* toks = f.get_string_array("tokenizer.ggml.tokens");
  ASSERT_NE(toks, nullptr);
  EXPECT_EQ(toks->size(), 300u);
  EXPECT_EQ((*toks)[3], "<0x00>");
  EXPECT_EQ((*toks)[258], "<0xFF>");
  EXPECT_EQ(f.get_string("tokenizer.ggml.model"), "llama");
  EXPECT_EQ(f.get_int("general.file_type"), 0);
  // Weights ~ N(0, std), norms 1.
  const auto w = dequant(*f.tensor("blk.1.ffn_up.weight"));
  double s = 0, s2 = 0;
  for (float v : w) { s += v; s2 += double(v) * v; }
  const double mean = s / w.size(), sd = std::sqrt(s2 / w.size() - mean * mean);
  EXPECT_NEAR(mean, 0.0, 0.002);
  EXPECT_NEAR(sd, 0.02, 0.001);
  for (float v : dequant(*f.tensor("blk.2.attn_norm.weight"))) ASSERT_EQ(v, 1.0f);
  // The CLI loads it too (run, via its tokenizer).
  auto cli = run_cli("run -m " + p + " -p \"hello world\" -n 4 --temp 0 -t 1");
  EXPECT_EQ(cli.status, 0) << cli.err;
}

TEST(Synth, SameSeedSameBytesAnyThreadCount) {
  SynthOptions o = small_shape();
  o.type = "q8_0";
  o.dim = 128; o.heads = 4; o.ffn = 256;
  o.n_threads = 1;
  synth_model(temp_path("seed-a.gguf"), o);
  o.n_threads = 2;
  synth_model(temp_path("seed-b.gguf"), o);
  o.seed = 2;
  synth_model(temp_path("seed-c.gguf"), o);
  const auto a = testutil::read_bytes(temp_path("seed-a.gguf"));
  EXPECT_EQ(a, testutil::read_bytes(temp_path("seed-b.gguf")));
  EXPECT_NE(a, testutil::read_bytes(temp_path("seed-c.gguf")));
}

TEST(Synth, TiedAndPresetShapes) {
  SynthOptions o = small_shape();
  o.dim = 256; o.heads = 4; o.kv_heads = 1; o.ffn = 512; o.layers = 8; o.vocab = 512;
  o.tied = true;
  o.type = "Q4_K_M";
  const std::string p = temp_path("synth-q4km.gguf");
  synth_model(p, o);
  const gguf::File f = gguf::File::open(p);
  EXPECT_EQ(f.tensor("output.weight"), nullptr);
  // Tied: token_embd takes output.weight's type.
  EXPECT_EQ(f.tensor("token_embd.weight")->type, DType::Q6_K);
  EXPECT_EQ(f.tensor("blk.3.attn_q.weight")->type, DType::Q4_K);
  EXPECT_EQ(f.get_int("general.file_type"), 15);
  EXPECT_EQ(f.get_int("llama.attention.head_count_kv"), 1);
  expect_runs(p);
}

TEST(Quantize, LegacyTypesMatchReferenceQuantizersAndLlamaCpp) {
  const gguf::File src = gguf::File::open(kF32);
  for (const char* type : {"q8_0", "q4_0"}) {
    SCOPED_TRACE(type);
    const std::string out = temp_path(std::string("fix-") + type + ".gguf");
    QuantizeOptions o;
    o.target = *parse_quant_target(type);
    o.pure = true;
    o.n_threads = 2;
    const QuantizeReport rep = quantize_file(kF32, out, o);
    EXPECT_EQ(rep.n_tensors, src.tensors().size());
    expect_runs(out);
    const gguf::File q = gguf::File::open(out);
    const gguf::File ref = gguf::File::open(shared(std::string("models/fixtures/llama-d256-") + type + ".gguf"));
    EXPECT_EQ(q.get_int("general.quantization_version"), 2);
    EXPECT_EQ(q.get_int("general.file_type"), std::string(type) == "q8_0" ? 7 : 2);
    ASSERT_EQ(q.kvs().size(), src.kvs().size() + (src.find("general.quantization_version") ? 0 : 1) +
                                  (src.find("general.file_type") ? 0 : 1));
    for (size_t i = 0; i < src.kvs().size(); ++i) EXPECT_EQ(q.kvs()[i].key, src.kvs()[i].key);  // order kept
    const DType want = *dtype_from_name(type);
    int64_t diff_vs_llama = 0, blocks = 0;
    for (const auto& t : src.tensors()) {
      const gguf::TensorInfo* qt = q.tensor(t.name);
      ASSERT_NE(qt, nullptr) << t.name;
      if (t.dims.size() == 1) {
        EXPECT_EQ(qt->type, DType::F32);
        EXPECT_EQ(0, std::memcmp(qt->data, t.data, t.size));
        continue;
      }
      ASSERT_EQ(qt->type, want) << t.name;
      const TypeTraits& tt = *type_traits(want);
      const int64_t n = t.dims[0], rows = t.n_elements() / n;
      // Byte-identical to the reference quantizer row by row.
      std::vector<uint8_t> row(row_size(tt, n));
      for (int64_t r = 0; r < rows; ++r) {
        tt.from_float(reinterpret_cast<const float*>(t.data) + r * n, row.data(), n);
        ASSERT_EQ(0, std::memcmp(row.data(), qt->data + r * row.size(), row.size())) << t.name << " row " << r;
      }
      // Within the per-block bound: half a step for q8_0, one step for q4_0 (code 16 is clipped
      // to 15 on the side opposite the max), plus the f16 scale's rounding times the top code.
      const auto deq = dequant(*qt);
      const auto* x = reinterpret_cast<const float*>(t.data);
      for (int64_t b = 0; b < t.n_elements() / 32; ++b) {
        uint16_t dh;
        std::memcpy(&dh, qt->data + b * tt.type_size, 2);
        const float d = std::fabs(fp16_to_fp32(dh));
        const float bound = want == DType::Q8_0 ? d * (0.5f + 127.0f / 1024) : d * (1.0f + 8.0f / 1024);
        for (int64_t j = b * 32; j < b * 32 + 32; ++j) ASSERT_LE(std::fabs(deq[j] - x[j]), bound) << t.name;
      }
      // llama.cpp's llama-quantize --pure output of the same weights.
      const gguf::TensorInfo* rt = ref.tensor(t.name);
      ASSERT_NE(rt, nullptr);
      ASSERT_EQ(rt->type, want);
      ASSERT_EQ(rt->size, qt->size);
      diff_vs_llama += differing_blocks(*qt, *rt);
      blocks += static_cast<int64_t>(qt->size / tt.type_size);
    }
    EXPECT_EQ(diff_vs_llama, 0) << diff_vs_llama << " of " << blocks << " blocks differ from llama.cpp";
  }
}

TEST(Quantize, Q4KMFollowsLlamaCppMix) {
  const std::string out = temp_path("fix-q4km.gguf");
  QuantizeOptions o;
  o.target = *parse_quant_target("Q4_K_M");
  o.n_threads = 2;
  quantize_file(kF32, out, o);
  const gguf::File q = gguf::File::open(out);
  EXPECT_EQ(q.get_int("general.file_type"), 15);
  const int n_layer = static_cast<int>(*q.get_int("llama.block_count"));
  auto more_bits = [&](int i) { return i < n_layer / 8 || i >= 7 * n_layer / 8 || (i - n_layer / 8) % 3 == 2; };
  EXPECT_EQ(q.tensor("output.weight")->type, DType::Q6_K);
  EXPECT_EQ(q.tensor("token_embd.weight")->type, DType::Q4_K);
  EXPECT_EQ(q.tensor("output_norm.weight")->type, DType::F32);
  for (int i = 0; i < n_layer; ++i) {
    const std::string p = "blk." + std::to_string(i) + ".";
    const DType more = more_bits(i) ? DType::Q6_K : DType::Q4_K;
    EXPECT_EQ(q.tensor(p + "attn_v.weight")->type, more) << i;
    EXPECT_EQ(q.tensor(p + "ffn_down.weight")->type, more) << i;
    for (const char* n : {"attn_q", "attn_k", "attn_output", "ffn_gate", "ffn_up"})
      EXPECT_EQ(q.tensor(p + n + ".weight")->type, DType::Q4_K) << p << n;
    EXPECT_EQ(q.tensor(p + "attn_norm.weight")->type, DType::F32);
  }
  expect_runs(out);
  // The rule itself on a 32-layer model: layers 0-3 and 28-31, then every third from 6.
  MixContext c{32, 32, 4, true};
  const QuantTarget t = *parse_quant_target("q4_k_m");
  std::vector<int> six;
  for (int i = 0; i < 32; ++i)
    if (choose_tensor_type(t, false, c, "blk." + std::to_string(i) + ".ffn_down.weight", 4096, nullptr) == DType::Q6_K)
      six.push_back(i);
  EXPECT_EQ(six, (std::vector<int>{0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 28, 29, 30, 31}));
}

TEST(Quantize, PerplexityKlOrdersQ8Q4Q2) {
  const std::string model = shared("models/stories260K.gguf");
  std::string text;
  const char* sentences[] = {
      "Once upon a time, there was a little girl named Lily. ", "She loved to play outside in the park. ",
      "One day, she saw a big, red ball. ", "Tom and his dog went to the store to buy some milk. ",
      "The sun was shining and the birds were singing. ", "Mom said, \"Be careful, it is very hot!\" ",
      "The little bunny was sad because he lost his toy. ", "They played together all day and were very happy. "};
  for (int i = 0; i < 6; ++i)
    for (int j = 0; j < 8; ++j) text += sentences[(i * 3 + j) % 8];
  const std::string f = temp_path("q-ppl.txt");
  testutil::write_bytes(f, std::vector<uint8_t>(text.begin(), text.end()));
  const std::string base = temp_path("q-base.kl");
  std::filesystem::remove(base);
  auto b = run_cli("perplexity -m " + model + " -f " + f + " -c 128 -t 2 --json --kl-base " + base);
  ASSERT_EQ(b.status, 0) << b.err;
  std::map<std::string, double> kl;
  for (const char* type : {"q8_0", "q4_k", "q2_k"}) {
    const std::string out = temp_path(std::string("stories-") + type + ".gguf");
    auto q = run_cli("quantize " + model + " " + out + " " + type + " -t 2");
    ASSERT_EQ(q.status, 0) << q.err;
    EXPECT_NE(q.out.find("tensors:"), std::string::npos) << q.out;
    if (std::string(type) != "q8_0") {  // rows of 64: K-quants fall back, with a note
      EXPECT_NE(q.err.find("using fallback"), std::string::npos) << q.err;
    }
    auto p = run_cli("perplexity -m " + out + " -f " + f + " -c 128 -t 2 --json --kl-base " + base);
    ASSERT_EQ(p.status, 0) << p.err;
    kl[type] = nlohmann::json::parse(p.out)["kl"]["mean"].get<double>();
  }
  EXPECT_LT(kl["q8_0"], kl["q4_k"]);
  EXPECT_LT(kl["q4_k"], kl["q2_k"]);
  std::printf("KL vs f32: q8_0 %.6f, q4_k %.6f, q2_k %.6f\n", kl["q8_0"], kl["q4_k"], kl["q2_k"]);
}

TEST(Quantize, ClearErrors) {
  const std::string out = temp_path("err.gguf");
  auto a = run_cli("quantize " + kF32 + " " + out + " q9_9");
  EXPECT_NE(a.status, 0);
  EXPECT_NE(a.err.find("unknown type 'q9_9'"), std::string::npos) << a.err;
  EXPECT_NE(a.err.find("Q4_K_M"), std::string::npos) << a.err;
  auto b = run_cli("quantize " + kF32 + " " + kF32 + " q8_0");
  EXPECT_NE(b.status, 0);
  EXPECT_NE(b.err.find("same file"), std::string::npos) << b.err;
  auto c = run_cli("quantize /nonexistent/model.gguf " + out + " q8_0");
  EXPECT_NE(c.status, 0);
  EXPECT_NE(c.err.find("/nonexistent/model.gguf"), std::string::npos) << c.err;
  EXPECT_FALSE(std::filesystem::exists(out));
  EXPECT_FALSE(std::filesystem::exists(out + ".tmp"));
  QuantizeOptions o;
  o.target = *parse_quant_target("q8_0");
  EXPECT_THROW(quantize_file("/nonexistent/model.gguf", out, o), coppice::Error);
  auto d = run_cli("synth " + out + " --dim 100 --heads 3");
  EXPECT_NE(d.status, 0);
  EXPECT_NE(d.err.find("not a multiple of --heads"), std::string::npos) << d.err;
  auto e = run_cli("synth " + out + " --type q9_9 --dim 64 --heads 4 --kv-heads 2");
  EXPECT_NE(e.status, 0);
  EXPECT_NE(e.err.find("unknown type"), std::string::npos) << e.err;
}
