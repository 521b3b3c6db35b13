// WordPiece ("bert"): BERT's basic tokenizer (drop control chars, NFD + strip accents,
// lowercase, split on whitespace, punctuation and CJK characters), then greedy
// longest-match-first per word. GGUF stores word-initial pieces with a U+2581 prefix and
// continuations bare (the converter's form of "##"); a word with no full cover is [UNK].
#include "tokenizer/unicode.h"
#include "tokenizer/vocab.h"

namespace coppice::tok {
namespace {

// HF BertTokenizer's max_input_chars_per_word.
constexpr size_t kMaxWordChars = 100;

class WordPiece final : public Model {
 public:
  explicit WordPiece(const Vocab& v) : v_(v) {}

  void encode(std::string_view text, std::vector<int32_t>& out) const override {
    for (const auto& word : basic_split(text)) encode_word(word, out);
  }

 private:
  static std::vector<std::vector<uint32_t>> basic_split(std::string_view text) {
    std::vector<std::vector<uint32_t>> words(1);
    std::vector<uint32_t> decomposed;
    auto finish = [&words] {
      if (!words.back().empty()) words.emplace_back();
    };
    for (size_t i = 0; i < text.size();) {
      const uint32_t cp = next_cp(text, i);
      if (cp == 0 || cp == 0xFFFD || is_bert_control(cp)) continue;
      if (is_bert_whitespace(cp)) {
        finish();
        continue;
      }
      decomposed.clear();
      nfd_append(cp, decomposed);
      for (uint32_t d : decomposed) {
        if (is_mark_nonspacing(d)) continue;  // strip accents
        const uint32_t lc = to_lower(d);
        if (is_punctuation(lc) || (lc < 0x7F && !((lc >= '0' && lc <= '9') || (lc >= 'a' && lc <= 'z'))) ||
            is_cjk(lc)) {
          // Punctuation (BERT counts all non-alphanumeric ASCII) and CJK stand alone.
          finish();
          words.back().push_back(lc);
          words.emplace_back();
        } else {
          words.back().push_back(lc);
        }
      }
    }
    if (words.back().empty()) words.pop_back();
    return words;
  }

  void encode_word(const std::vector<uint32_t>& cps, std::vector<int32_t>& out) const {
    if (cps.size() > kMaxWordChars) {
      out.push_back(v_.unk);
      return;
    }
    // Byte offsets of character boundaries, so matches never split a character.
    std::string word = "\xE2\x96\x81";
    std::vector<size_t> bounds{0};
    for (uint32_t cp : cps) {
      append_utf8(word, cp);
      bounds.push_back(word.size());
    }
    const size_t first = out.size();
    size_t i = 0;  // index into bounds
    while (i + 1 < bounds.size()) {
      bool found = false;
      for (size_t j = bounds.size() - 1; j > i; --j) {
        if (bounds[j] - bounds[i] > v_.max_token_len) continue;
        const int32_t id = v_.find(std::string_view(word).substr(bounds[i], bounds[j] - bounds[i]));
        if (id >= 0) {
          out.push_back(id);
          i = j;
          found = true;
          break;
        }
      }
      if (!found) {
        out.resize(first);
        out.push_back(v_.unk);
        return;
      }
    }
  }

  const Vocab& v_;
};

}  // namespace

std::unique_ptr<Model> make_wordpiece(const Vocab& v) { return std::make_unique<WordPiece>(v); }

}  // namespace coppice::tok
