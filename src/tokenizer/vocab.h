// Vocabulary data shared by the tokenizer models, and the raw metadata it is built from.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace coppice::tok {

// tokenizer.ggml.token_type values.
enum class TokenType : int32_t {
  Undefined = 0, Normal = 1, Unknown = 2, Control = 3, UserDefined = 4, Unused = 5, Byte = 6,
};

struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
using StringIndex = std::unordered_map<std::string, int32_t, StringHash, std::equal_to<>>;

// What a GGUF's tokenizer.* keys say (absent optionals: key not present).
struct Metadata {
  std::string source;                      // file name, for error messages
  std::string model;                       // tokenizer.ggml.model
  std::string pre;                         // tokenizer.ggml.pre
  std::vector<std::string> tokens;         // tokenizer.ggml.tokens
  std::optional<std::vector<float>> scores;
  std::optional<std::vector<int32_t>> token_types;
  std::optional<std::vector<std::string>> merges;
  std::optional<int64_t> bos, eos, unk, sep, pad, eot, eom, cls, mask;
  std::optional<bool> add_bos, add_eos, add_sep, add_space_prefix;
};

struct Vocab {
  std::string model, pre, source;
  std::vector<std::string> text;   // [n_vocab]
  std::vector<float> score;        // [n_vocab]
  std::vector<TokenType> type;     // [n_vocab]
  StringIndex index;               // text -> id (first id wins on duplicates)
  std::vector<std::string> merges; // byte-level BPE only, rank = position
  int32_t bos = -1, eos = -1, unk = -1, sep = -1, pad = -1, eot = -1, eom = -1;
  bool add_bos = false, add_eos = false, add_space_prefix = false;
  std::vector<int32_t> eog;        // end-of-generation ids
  size_t max_token_len = 0;        // bytes

  size_t size() const { return text.size(); }
  int32_t find(std::string_view s) const {
    const auto it = index.find(s);
    return it == index.end() ? -1 : it->second;
  }
};

// One tokenization algorithm, run on a text fragment free of special tokens.
class Model {
 public:
  virtual ~Model() = default;
  virtual void encode(std::string_view text, std::vector<int32_t>& out) const = 0;
};

std::unique_ptr<Model> make_spm(const Vocab& v);
std::unique_ptr<Model> make_bpe(const Vocab& v);  // throws for an unknown pre-tokenizer
std::unique_ptr<Model> make_wordpiece(const Vocab& v);

// Regexes of a byte-level BPE pre-tokenizer name (tokenizer.ggml.pre); nullptr if unknown.
const std::vector<std::string>* bpe_pretokenizer_regexes(std::string_view pre);
// Whether the pre-tokenizer looks whole words up in the vocabulary before merging.
bool bpe_ignore_merges(std::string_view pre);
// add_bos default of a BPE pre-tokenizer (llama3, tekken, chameleon: true).
bool bpe_default_add_bos(std::string_view pre);
// Compiled pre-tokenizer regexes (PCRE2, UTF + UCP, JIT where available); immutable after
// construction, so split() may run on several threads at once.
class RegexSplitter {
 public:
  explicit RegexSplitter(const std::vector<std::string>& regexes);  // throws on a bad pattern
  ~RegexSplitter();
  RegexSplitter(const RegexSplitter&) = delete;
  RegexSplitter& operator=(const RegexSplitter&) = delete;
  // Each regex in turn splits every piece into its matches and the text between them.
  std::vector<std::string> split(std::string_view text) const;

 private:
  std::vector<void*> codes_;  // pcre2_code*
};
// One-shot split (compiles the regexes each call); for tests.
std::vector<std::string> bpe_pre_split(std::string_view text, const std::vector<std::string>& regexes);

}  // namespace coppice::tok
