// Byte-level BPE ("gpt2"): regex pre-tokenization (bpe_pre.cpp), each piece's bytes shown as
// GPT-2's printable code points, then the lowest-rank merge from tokenizer.ggml.merges is
// applied repeatedly (ties: leftmost first).
#include <queue>

#include "tokenizer/unicode.h"
#include "tokenizer/vocab.h"
#include "util/error.h"

namespace coppice::tok {
namespace {

struct Symbol {
  int prev, next;
  size_t start, len;  // into the mapped word
};

struct Bigram {
  int left, right;
  int32_t rank;
  size_t len;
  bool operator<(const Bigram& o) const {  // priority_queue pops the "largest"
    return rank > o.rank || (rank == o.rank && left > o.left);
  }
};

class Bpe final : public Model {
 public:
  explicit Bpe(const Vocab& v) : v_(v), ignore_merges_(bpe_ignore_merges(v.pre)) {
    const std::string pre = v.pre.empty() ? "default" : v.pre;
    const auto* rx = bpe_pretokenizer_regexes(pre);
    if (!rx) {
      fail("tokenizer", v.source + ": unknown pre-tokenizer tokenizer.ggml.pre = '" + v.pre + "'");
    }
    splitter_ = std::make_unique<RegexSplitter>(*rx);
    ranks_.reserve(v.merges.size());
    for (size_t i = 0; i < v.merges.size(); ++i) {
      // "left right": the texts never hold a literal space (it is shown as U+0120).
      ranks_.emplace(v.merges[i], static_cast<int32_t>(i));
    }
  }

  void encode(std::string_view raw, std::vector<int32_t>& out) const override {
    const std::string text = sanitize_utf8(raw);
    std::string key;
    for (const std::string& piece : splitter_->split(text)) {
      std::string word;
      word.reserve(piece.size() * 2);
      for (char c : piece) append_utf8(word, byte_to_unicode(static_cast<uint8_t>(c)));
      if (ignore_merges_) {
        const int32_t id = v_.find(word);
        if (id >= 0) {
          out.push_back(id);
          continue;
        }
      }
      encode_word(word, key, out);
    }
  }

 private:
  void encode_word(const std::string& word, std::string& key, std::vector<int32_t>& out) const {
    std::vector<Symbol> sym;
    for (size_t i = 0; i < word.size();) {
      const size_t n = std::min(word.size() - i, utf8_len(static_cast<uint8_t>(word[i])));
      const int idx = static_cast<int>(sym.size());
      sym.push_back({idx - 1, i + n == word.size() ? -1 : idx + 1, i, n});
      i += n;
    }
    std::priority_queue<Bigram> queue;
    auto try_add = [&](int l, int r) {
      if (l < 0 || r < 0) return;
      key.assign(word, sym[l].start, sym[l].len);
      key += ' ';
      key.append(word, sym[r].start, sym[r].len);
      const auto it = ranks_.find(key);
      if (it == ranks_.end()) return;
      queue.push({l, r, it->second, sym[l].len + sym[r].len});
    };
    for (size_t i = 1; i < sym.size(); ++i) try_add(static_cast<int>(i) - 1, static_cast<int>(i));
    while (!queue.empty()) {
      const Bigram b = queue.top();
      queue.pop();
      Symbol& l = sym[b.left];
      Symbol& r = sym[b.right];
      if (l.len == 0 || r.len == 0 || l.next != b.right || l.len + r.len != b.len) continue;
      l.len += r.len;
      r.len = 0;
      l.next = r.next;
      if (r.next >= 0) sym[r.next].prev = b.left;
      try_add(l.prev, b.left);
      try_add(b.left, l.next);
    }
    for (int i = sym.empty() ? -1 : 0; i >= 0; i = sym[i].next) {
      const std::string_view s(word.data() + sym[i].start, sym[i].len);
      const int32_t id = v_.find(s);
      if (id >= 0) {
        out.push_back(id);
        continue;
      }
      // No token for the merged text: fall back to single-byte entries, as the reference does.
      for (char c : s) {
        const int32_t bt = v_.find(std::string_view(&c, 1));
        if (bt >= 0) out.push_back(bt);
      }
    }
  }

  const Vocab& v_;
  bool ignore_merges_;
  std::unique_ptr<RegexSplitter> splitter_;
  StringIndex ranks_;
};

}  // namespace

std::unique_ptr<Model> make_bpe(const Vocab& v) { return std::make_unique<Bpe>(v); }

}  // namespace coppice::tok
