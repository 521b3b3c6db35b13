// SentencePiece BPE ("llama"): start from UTF-8 characters and repeatedly merge the adjacent
// pair whose concatenation is the highest-scoring vocabulary entry (ties: leftmost first).
// Characters left without a token fall back to <0xXX> byte tokens, else to <unk>.
#include <cstdio>
#include <queue>

#include "tokenizer/unicode.h"
#include "tokenizer/vocab.h"

namespace coppice::tok {
namespace {

struct Symbol {
  int prev, next;
  size_t start, len;  // into the escaped text
};

struct Bigram {
  int left, right;
  float score;
  size_t len;
  bool operator<(const Bigram& o) const {  // priority_queue pops the "largest"
    return score < o.score || (score == o.score && left > o.left);
  }
};

class Spm final : public Model {
 public:
  explicit Spm(const Vocab& v) : v_(v) {
    for (int b = 0; b < 256; ++b) {
      char name[8];
      std::snprintf(name, sizeof name, "<0x%02X>", b);
      byte_tok_[b] = v.find(name);
    }
  }

  void encode(std::string_view raw, std::vector<int32_t>& out) const override {
    // Spaces are written as U+2581 (the caller adds the prefix space).
    std::string text;
    text.reserve(raw.size() + raw.size() / 4);
    for (char c : raw) {
      if (c == ' ') text += "\xE2\x96\x81"; else text += c;
    }
    std::vector<Symbol> sym;
    for (size_t i = 0; i < text.size();) {
      const size_t n = std::min(text.size() - i, utf8_len(static_cast<uint8_t>(text[i])));
      const int idx = static_cast<int>(sym.size());
      sym.push_back({idx - 1, i + n == text.size() ? -1 : idx + 1, i, n});
      i += n;
    }
    std::priority_queue<Bigram> queue;
    auto try_add = [&](int l, int r) {
      if (l < 0 || r < 0) return;
      const std::string_view s(text.data() + sym[l].start, sym[l].len + sym[r].len);
      const int32_t id = v_.find(s);
      if (id < 0) return;
      queue.push({l, r, v_.score[id], s.size()});
    };
    for (size_t i = 1; i < sym.size(); ++i) try_add(static_cast<int>(i) - 1, static_cast<int>(i));

    while (!queue.empty()) {
      const Bigram b = queue.top();
      queue.pop();
      Symbol& l = sym[b.left];
      Symbol& r = sym[b.right];
      // Stale entry: one side was merged away since it was queued.
      if (l.len == 0 || r.len == 0 || l.len + r.len != b.len) continue;
      l.len += r.len;
      r.len = 0;
      l.next = r.next;
      if (r.next >= 0) sym[r.next].prev = b.left;
      try_add(l.prev, b.left);
      try_add(b.left, l.next);
    }

    for (int i = sym.empty() ? -1 : 0; i >= 0; i = sym[i].next) {
      const std::string_view s(text.data() + sym[i].start, sym[i].len);
      const int32_t id = v_.find(s);
      if (id >= 0) {
        out.push_back(id);
        continue;
      }
      for (char c : s) {
        const int32_t bt = byte_tok_[static_cast<uint8_t>(c)];
        if (bt >= 0) {
          out.push_back(bt);
        } else if (v_.unk >= 0) {
          out.push_back(v_.unk);
          break;  // one <unk> per unknown character
        }
      }
    }
  }

 private:
  const Vocab& v_;
  int32_t byte_tok_[256];
};

}  // namespace

std::unique_ptr<Model> make_spm(const Vocab& v) { return std::make_unique<Spm>(v); }

}  // namespace coppice::tok
