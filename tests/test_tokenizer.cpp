// Tokenizers against the reference tokenizer's answers (../shared/conformance/tokenizer),
// plus stories260K, streaming decode, special-token parsing and metadata errors.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "tokenizer/tokenizer.h"
#include "tokenizer/unicode.h"
#include "util/error.h"

using coppice::Tokenizer;
using coppice::StreamDecoder;
namespace gguf = coppice::gguf;

namespace {

const std::string kShared = COPPICE_SHARED_DIR;
const std::string kConf = kShared + "/conformance/tokenizer/";

std::string read_all(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// .inp: every string is followed by "\n__ggml_vocab_test__\n" (llama.cpp's
// test-tokenizer-0 splits on that separator; the last piece is empty).
std::vector<std::string> read_inputs(const std::string& path) {
  const std::string all = read_all(path);
  const std::string sep = "\n__ggml_vocab_test__\n";
  std::vector<std::string> out;
  size_t pos = 0;
  for (size_t hit; (hit = all.find(sep, pos)) != std::string::npos; pos = hit + sep.size()) {
    out.push_back(all.substr(pos, hit - pos));
  }
  return out;
}

std::vector<std::vector<int32_t>> read_outputs(const std::string& path) {
  std::ifstream f(path);
  std::vector<std::vector<int32_t>> out;
  for (std::string line; std::getline(f, line);) {
    std::istringstream ls(line);
    std::vector<int32_t> ids;
    for (int32_t id; ls >> id;) ids.push_back(id);
    out.push_back(std::move(ids));
  }
  return out;
}

std::unique_ptr<Tokenizer> load(const std::string& path) {
  return Tokenizer::from_gguf(gguf::File::open(path));
}

std::string ids_str(const std::vector<int32_t>& ids) {
  std::string s;
  for (int32_t id : ids) {
    s += ' ';
    s += std::to_string(id);
  }
  return s;
}

struct ConfCase {
  const char* name;
  bool lossless;  // decode(encode(s)) == s
};

class Conformance : public ::testing::TestWithParam<ConfCase> {};

TEST_P(Conformance, MatchesReference) {
  const std::string base = kConf + "ggml-vocab-" + GetParam().name + ".gguf";
  if (!std::filesystem::exists(base)) GTEST_SKIP() << base << " missing";
  const auto tok = load(base);
  const auto inputs = read_inputs(base + ".inp");
  const auto expected = read_outputs(base + ".out");
  ASSERT_EQ(inputs.size(), expected.size());
  int pass = 0;
  for (size_t i = 0; i < inputs.size(); ++i) {
    const auto ids = tok->encode(inputs[i], /*add_special=*/false, /*parse_special=*/false);
    if (ids == expected[i]) {
      ++pass;
    } else {
      ADD_FAILURE() << GetParam().name << " case " << i << " '" << inputs[i] << "'\n  got: " << ids_str(ids)
                    << "\n  want:" << ids_str(expected[i]);
    }
    if (GetParam().lossless) {
      EXPECT_EQ(tok->decode(ids), inputs[i]) << "case " << i;
    }
  }
  std::printf("[conformance] %s: %d/%zu pass\n", GetParam().name, pass, inputs.size());
}

INSTANTIATE_TEST_SUITE_P(Vocabs, Conformance,
                         ::testing::Values(ConfCase{"llama-spm", false}, ConfCase{"phi-3", false},
                                           ConfCase{"gpt-2", true}, ConfCase{"deepseek-coder", true},
                                           ConfCase{"bert-bge", false}),
                         [](const auto& pinfo) {
                           std::string n = pinfo.param.name;
                           for (char& c : n) if (c == '-') c = '_';
                           return n;
                         });

TEST(Tokenizer, SpmRoundTripModuloLeadingSpace) {
  const auto tok = load(kConf + "ggml-vocab-llama-spm.gguf");
  for (const std::string& s : read_inputs(kConf + "ggml-vocab-llama-spm.gguf.inp")) {
    const auto ids = tok->encode(s, false, false);
    // SentencePiece keeps the text losslessly except that decode drops the prefix space.
    std::string want = s;
    EXPECT_EQ(tok->decode(ids), want) << "'" << s << "'";
  }
}

const char* kStoriesText =
    "Once upon a time, there was a little girl named Lily. She loved to play outside in the park. "
    "One day, she saw a big, red ball. She wanted to play with it, but it was too high.\nLily's mom said";

TEST(Tokenizer, Stories260K) {
  const auto tok = load(kShared + "/models/stories260K.gguf");
  EXPECT_EQ(tok->model(), "llama");
  EXPECT_EQ(tok->n_vocab(), 512);
  EXPECT_EQ(tok->bos(), 1);
  EXPECT_EQ(tok->eos(), 2);
  EXPECT_TRUE(tok->is_eog(2));
  EXPECT_TRUE(tok->is_control(1));
  const auto ids = tok->encode("Once upon a time", /*add_special=*/true, false);
  const std::vector<int32_t> want = {1, 403, 407, 261, 378};
  EXPECT_EQ(ids, want);
  // The README's reference ids (BOS first) are exactly the encoding of the greedy text prefix.
  const std::vector<int32_t> ref = {1,   403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317,
                                    426, 338, 401, 396, 267, 337, 410, 408, 419, 292, 411, 322, 265, 282, 295,
                                    433, 426, 385, 328, 432, 358, 394, 261, 370, 432, 352, 266, 268, 388, 426};
  const auto full = tok->encode(kStoriesText, true, false);
  ASSERT_GE(full.size(), ref.size());
  EXPECT_EQ(std::vector<int32_t>(full.begin(), full.begin() + ref.size()), ref);
  EXPECT_EQ(tok->decode(full), kStoriesText);
  EXPECT_EQ(tok->token_to_piece(1, false), "");
  EXPECT_EQ(tok->token_to_piece(1, true), "<s>");
  EXPECT_EQ(tok->token_to_piece(13, false), "\n");  // <0x0A>
}

TEST(Tokenizer, StreamDecoderHoldsPartialUtf8) {
  const auto tok = load(kShared + "/models/stories260K.gguf");
  // An emoji has no token in a 512-entry vocabulary: it is spelled with 4 byte tokens.
  const std::string text = "Hi 🦙 and é!";
  const auto ids = tok->encode(text, true, false);
  int byte_tokens = 0;
  for (int32_t id : ids) byte_tokens += tok->token_type(id) == coppice::tok::TokenType::Byte;
  EXPECT_GE(byte_tokens, 4);
  StreamDecoder sd(*tok);
  std::string all;
  for (int32_t id : ids) {
    const std::string piece = sd.push(id);
    EXPECT_EQ(coppice::tok::incomplete_utf8_tail(piece), 0u) << "partial character emitted";
    EXPECT_EQ(coppice::tok::sanitize_utf8(piece), piece) << "invalid UTF-8 emitted";
    all += piece;
  }
  all += sd.flush();
  EXPECT_EQ(all, tok->decode(ids));
  EXPECT_EQ(all, text);
}

TEST(Tokenizer, ParseSpecial) {
  const auto tok = load(kConf + "ggml-vocab-phi-3.gguf");
  const auto with = tok->encode("<s>hello", false, true);
  ASSERT_FALSE(with.empty());
  EXPECT_EQ(with[0], 1);
  const auto without = tok->encode("<s>hello", false, false);
  EXPECT_EQ(std::count(without.begin(), without.end(), 1), 0);
  EXPECT_EQ(tok->decode(without), "<s>hello");
  // A user-defined token is matched whole even without parse_special.
  int32_t user = -1;
  for (int32_t id = 0; id < tok->n_vocab(); ++id) {
    if (tok->token_type(id) == coppice::tok::TokenType::UserDefined) {
      user = id;
      break;
    }
  }
  ASSERT_GE(user, 0);
  std::string s = "a";
  s += tok->token_text(user);
  s += "b";
  const auto ids = tok->encode(s, false, false);
  EXPECT_EQ(std::count(ids.begin(), ids.end(), user), 1) << tok->token_text(user);
}

TEST(Tokenizer, SpecialIdsAndAddSpecial) {
  const auto bert = load(kConf + "ggml-vocab-bert-bge.gguf");
  EXPECT_EQ(bert->model(), "bert");
  const auto ids = bert->encode("hello world", true, false);
  ASSERT_GE(ids.size(), 2u);
  EXPECT_EQ(ids.front(), 101);
  EXPECT_EQ(ids.back(), 102);
  const auto ds = load(kConf + "ggml-vocab-deepseek-coder.gguf");
  EXPECT_EQ(ds->encode("hi", true, false).front(), 32013);
  EXPECT_TRUE(ds->is_eog(32014));
}

TEST(Tokenizer, LargeTextIsFast) {
  const auto tok = load(kConf + "ggml-vocab-gpt-2.gguf");
  const auto spm = load(kConf + "ggml-vocab-llama-spm.gguf");
  std::string text;
  while (text.size() < 100000) text += "The quick brown fox jumps over the lazy dog 12345, again! ";
  const auto t0 = std::chrono::steady_clock::now();
  const auto ids = tok->encode(text, false, false);
  const auto ids2 = spm->encode(text, false, false);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(tok->decode(ids), text);
  EXPECT_FALSE(ids2.empty());
  EXPECT_LT(s, 2.0);  // generous for sanitizer builds
}

// Copies the metadata of a vocab file, applying an edit, to a temporary GGUF.
std::string write_variant(const std::string& src, const std::string& name,
                          const std::function<void(std::vector<gguf::KV>&)>& edit) {
  const auto f = gguf::File::open(src);
  std::vector<gguf::KV> kvs = f.kvs();
  edit(kvs);
  const std::string path = (std::filesystem::temp_directory_path() / ("coppice_tok_" + name + ".gguf")).string();
  gguf::write_file(path, kvs, {});
  return path;
}

TEST(Tokenizer, MissingMetadataIsError) {
  const auto path = write_variant(kConf + "ggml-vocab-llama-spm.gguf", "notok", [](auto& kvs) {
    std::erase_if(kvs, [](const gguf::KV& kv) { return kv.key.rfind("tokenizer.", 0) == 0; });
  });
  try {
    load(path);
    FAIL() << "expected coppice::Error";
  } catch (const coppice::Error& e) {
    EXPECT_NE(std::string(e.what()).find("tokenizer.ggml.model"), std::string::npos) << e.what();
  }
  std::filesystem::remove(path);
}

TEST(Tokenizer, ScoresShorterThanTokensIsError) {
  const auto path = write_variant(kConf + "ggml-vocab-llama-spm.gguf", "shortscores", [](auto& kvs) {
    for (auto& kv : kvs) {
      if (kv.key == "tokenizer.ggml.scores") kv.value = gguf::Value::make_f32_array(std::vector<float>(10, 0.0f));
    }
  });
  try {
    load(path);
    FAIL() << "expected coppice::Error";
  } catch (const coppice::Error& e) {
    EXPECT_NE(std::string(e.what()).find("tokenizer.ggml.scores"), std::string::npos) << e.what();
  }
  std::filesystem::remove(path);
}

TEST(Tokenizer, UnknownPreTokenizerIsError) {
  coppice::tok::Metadata m;
  m.model = "gpt2";
  m.pre = "no-such-pre";
  m.tokens = {"a", "b", "ab"};
  m.merges = std::vector<std::string>{"a b"};
  try {
    Tokenizer::from_metadata(m);
    FAIL() << "expected coppice::Error";
  } catch (const coppice::Error& e) {
    EXPECT_NE(std::string(e.what()).find("no-such-pre"), std::string::npos) << e.what();
  }
}

TEST(Tokenizer, EveryPreTokenizerCompiles) {
  for (const char* pre : {"default", "llama3", "llama-bpe", "qwen2", "deepseek-llm", "deepseek-coder", "deepseek-v3",
                          "falcon", "starcoder", "refact", "mpt", "command-r", "smollm", "olmo", "dbrx",
                          "stablelm2", "jais", "tekken", "poro-chat", "chatglm-bpe", "viking", "bloom",
                          "gpt3-finnish", "exaone", "chameleon", "minerva-7b", "gpt-4o", "superbpe", "seed-coder",
                          "bailingmoe", "gpt-2"}) {
    const auto* rx = coppice::tok::bpe_pretokenizer_regexes(pre);
    ASSERT_NE(rx, nullptr) << pre;
    const auto pieces = coppice::tok::bpe_pre_split("Hello world 12345 I'm 你好 \n\n  x!!", *rx);
    std::string joined;
    for (const auto& p : pieces) joined += p;
    EXPECT_EQ(joined, "Hello world 12345 I'm 你好 \n\n  x!!") << pre;
  }
  // superbpe groups digits in threes from the right.
  const auto p = coppice::tok::bpe_pre_split("1234567", *coppice::tok::bpe_pretokenizer_regexes("superbpe"));
  EXPECT_EQ(p, (std::vector<std::string>{"1", "234", "567"}));
}

}  // namespace
