// Pieces of a Hugging Face tokenizer.json pipeline (normalizers, pre-tokenizers, models,
// decoders), each built from its JSON object. Semantics follow the `tokenizers` library;
// every unsupported "type" is an error naming it.
#pragma once
#include <cstdint>
#include <memory>
#include <nlohmann/json_fwd.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "tokenizer/vocab.h"

namespace coppice::tok::hf {

using Json = nlohmann::json;

// j[key] when it is a string / boolean, else def (tokenizer.json fields are often optional).
std::string str_or(const Json& j, const char* key, const std::string& def);
bool bool_or(const Json& j, const char* key, bool def);

// A "pattern": {"String": "..."} (literal) or {"Regex": "..."} (PCRE2, UTF + UCP).
class Pattern {
 public:
  explicit Pattern(const Json& j);
  ~Pattern();
  Pattern(const Pattern&) = delete;
  Pattern& operator=(const Pattern&) = delete;
  // Non-overlapping matches as [begin, end) byte ranges, left to right.
  std::vector<std::pair<size_t, size_t>> find_all(std::string_view s) const;

 private:
  std::string literal_;
  void* code_ = nullptr;  // pcre2_code* when a regex
};

class Normalizer {
 public:
  virtual ~Normalizer() = default;
  virtual std::string apply(std::string s) const = 0;
};
std::unique_ptr<Normalizer> make_normalizer(const Json& j);  // nullptr for JSON null

class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  // Splits every piece further (in place). at_start: the section begins the input text.
  virtual void split(std::vector<std::string>& pieces, bool at_start) const = 0;
};
std::unique_ptr<PreTokenizer> make_pre_tokenizer(const Json& j);

// Split behaviours of the `tokenizers` library.
enum class SplitBehavior { Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous };
SplitBehavior split_behavior(const std::string& name);
// Splits s at the pattern's matches (or the text between them when invert).
void split_by(std::string_view s, const Pattern& p, SplitBehavior b, bool invert, std::vector<std::string>& out);

// The tokenization model: vocabulary plus the algorithm over one pre-tokenized piece.
class TokenModel {
 public:
  virtual ~TokenModel() = default;
  virtual void encode(std::string_view piece, std::vector<int32_t>& out) const = 0;
  std::vector<std::string> vocab;  // id -> token text (model vocabulary only)
  StringIndex index;               // text -> id
  int32_t unk = -1;
  bool byte_fallback = false;
};
std::unique_ptr<TokenModel> make_model(const Json& j);

// Decoders are applied to one token at a time (the streaming detokenizer needs per-token
// bytes); steps after a Fuse that act on the whole text (Strip of the first character) are
// reported as strips_leading_space.
class Decoder {
 public:
  explicit Decoder(const Json& j);
  std::string decode_token(std::string s) const;
  bool strips_leading_space() const { return strip_leading_; }

 private:
  void add(const Json& j, bool& fused);
  struct Step {
    enum Kind { ByteLevel, Metaspace, ByteFallback, Replace, Strip, WordPiece } kind;
    std::string a, b;  // Replace: literal from/to; Metaspace: replacement; WordPiece: prefix
    int start = 0, stop = 0;
  };
  std::vector<Step> steps_;
  bool strip_leading_ = false;
};

}  // namespace coppice::tok::hf
