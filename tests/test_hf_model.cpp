// Hugging Face folders as models: a random-weight llama GGUF exported as safetensors +
// config.json + tokenizer.json (tests/reference/export_hf.py, q/k rows un-permuted) must give
// the GGUF's logits when loaded as a folder and after `coppice convert`; bad folders give
// named errors.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include "formats/hf_folder.h"
#include "model/model.h"
#include "test_util.h"
#include "tokenizer/tokenizer.h"
#include "util/error.h"

using namespace coppice;
namespace fs = std::filesystem;

namespace {

const std::vector<int32_t> kTokens = {1, 72, 101, 108, 257, 300, 5, 99, 200, 12, 256, 63};

std::vector<float> logits_of(Model& m) {
  KvCache cache = m.make_cache(64, DType::F32);
  cache.add_sequence(0);
  std::vector<BatchToken> batch;
  for (size_t i = 0; i < kTokens.size(); ++i) batch.push_back({kTokens[i], static_cast<int32_t>(i), 0, true});
  std::vector<float> out;
  m.step(batch, cache, out);
  return out;
}

double rel_l2(const std::vector<float>& a, const std::vector<float>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    num += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
    den += double(b[i]) * b[i];
  }
  return std::sqrt(num / den);
}

// One synth model exported once for all tests: {gguf, folder (2 shards), folder f16}.
struct Fixture {
  std::string gguf, folder, folder_bf16;
  bool ok = false;
};

const Fixture& fixture() {
  static const Fixture f = [] {
    Fixture x;
    x.gguf = testutil::temp_path("hf_synth.gguf");
    x.folder = testutil::temp_path("hf_folder");
    x.folder_bf16 = testutil::temp_path("hf_folder_bf16");
    const auto r = testutil::run_cli("synth " + x.gguf +
                                     " --dim 64 --layers 2 --heads 4 --kv-heads 2 --ffn 96 --vocab 320 --ctx 256 "
                                     "--type f32 --pure --seed 11 --std 0.08 -t 2 >/dev/null");
    if (r.status != 0) return x;
    // Debian's python3 carries python3-numpy (scripts/setup.sh); a pyenv shim may not.
    const std::string python = fs::exists("/usr/bin/python3") ? "/usr/bin/python3 " : "python3 ";
    const std::string py = python + std::string(COPPICE_SOURCE_DIR) + "/tests/reference/export_hf.py " + x.gguf + " ";
    if (std::system((py + x.folder + " --shards 2").c_str()) != 0) return x;
    if (std::system((py + x.folder_bf16 + " --dtype bf16").c_str()) != 0) return x;
    x.ok = true;
    return x;
  }();
  return f;
}

ModelOptions two_threads() {
  ModelOptions o;
  o.n_threads = 2;
  return o;
}

TEST(HfModel, FolderGivesTheGgufLogits) {
  const Fixture& f = fixture();
  ASSERT_TRUE(f.ok) << "synth or export_hf.py failed";
  ASSERT_TRUE(hf::is_model_folder(f.folder));
  auto g = Model::load(f.gguf, two_threads());
  auto h = Model::load(f.folder, two_threads());
  const auto lg = logits_of(*g), lh = logits_of(*h);
  ASSERT_EQ(lg.size(), lh.size());
  const double e = rel_l2(lh, lg);
  std::printf("[hf] folder (f32, 2 shards) vs GGUF: rel L2 %.3g\n", e);
  EXPECT_LT(e, 1e-5);
  // bf16 safetensors: rounding of the weights only.
  auto hb = Model::load(f.folder_bf16, two_threads());
  const double eb = rel_l2(logits_of(*hb), lg);
  std::printf("[hf] folder (bf16) vs GGUF: rel L2 %.3g\n", eb);
  EXPECT_LT(eb, 3e-2);

  const auto tok = Tokenizer::from_gguf(h->file());
  EXPECT_EQ(tok->encode("hi", true, true), (std::vector<int32_t>{256, 'h', 'i'}));
  EXPECT_EQ(tok->decode(std::vector<int32_t>{256, 'h', 'i', 257}), "hi");
  EXPECT_EQ(tok->eos(), 257);
  EXPECT_TRUE(h->file().get_string("tokenizer.chat_template").has_value());
}

TEST(HfModel, ConvertedGgufGivesTheSameLogits) {
  const Fixture& f = fixture();
  ASSERT_TRUE(f.ok);
  auto g = Model::load(f.gguf, two_threads());
  const auto lg = logits_of(*g);
  for (const auto& [type, tol] : std::vector<std::pair<std::string, double>>{{"f32", 1e-5}, {"f16", 5e-3}, {"bf16", 3e-2}, {"q8_0", 3e-2}}) {
    const std::string out = testutil::temp_path("hf_conv_" + type + ".gguf");
    const auto r = testutil::run_cli("convert " + f.folder + " " + out + " --type " + type);
    ASSERT_EQ(r.status, 0) << r.err;
    auto c = Model::load(out, two_threads());
    const double e = rel_l2(logits_of(*c), lg);
    std::printf("[hf] convert --type %s vs GGUF: rel L2 %.3g\n", type.c_str(), e);
    EXPECT_LT(e, tol) << type;
    const auto tok = Tokenizer::from_gguf(c->file());
    EXPECT_EQ(tok->encode("hi", true, true), (std::vector<int32_t>{256, 'h', 'i'}));
  }
}

TEST(HfModel, CliAcceptsAFolder) {
  const Fixture& f = fixture();
  ASSERT_TRUE(f.ok);
  const auto r = testutil::run_cli("tokenize -m " + f.folder + " -p hi");
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_NE(r.out.find("256"), std::string::npos) << r.out;
  const auto g = testutil::run_cli("run -m " + f.folder + " -p hello -n 4 --temp 0 -t 2");
  EXPECT_EQ(g.status, 0) << g.err;
}

TEST(HfModel, BadFoldersGiveNamedErrors) {
  const Fixture& f = fixture();
  ASSERT_TRUE(f.ok);
  const fs::path bad = testutil::temp_path("hf_bad");
  fs::remove_all(bad);
  fs::copy(f.folder_bf16, bad);
  // Truncate the safetensors file: the last tensor now runs past the end of the data.
  const fs::path st = bad / "model.safetensors";
  fs::resize_file(st, fs::file_size(st) - 10);
  try {
    Model::load(bad.string());
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("[safetensors] " + st.string() + ": tensor '"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("beyond end of data"), std::string::npos) << e.what();
  }
  fs::remove(st);
  try {
    Model::load(bad.string());
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("no model.safetensors"), std::string::npos) << e.what();
  }
  testutil::write_bytes((bad / "config.json").string(), {'{', '"', 'a', '"', ':', '1', '}'});
  try {
    Model::load(bad.string());
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("unsupported architectures ''"), std::string::npos) << e.what();
  }
}

}  // namespace
