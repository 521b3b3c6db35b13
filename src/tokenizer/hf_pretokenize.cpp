// tokenizer.json pre-tokenizers: each splits the pieces produced by the previous one.
#include <nlohmann/json.hpp>

#include "tokenizer/hf_components.h"
#include "tokenizer/unicode.h"
#include "util/error.h"

namespace coppice::tok::hf {
namespace {

[[noreturn]] void bad(const std::string& what) { fail("tokenizer", "tokenizer.json: " + what); }


Json regex(const char* rx) { return Json{{"Regex", rx}}; }

// Applies a per-piece split to every piece.
template <typename F>
void each(std::vector<std::string>& pieces, F&& f) {
  std::vector<std::string> out;
  out.reserve(pieces.size());
  for (const std::string& p : pieces) f(p, out);
  pieces = std::move(out);
}

class SplitPre final : public PreTokenizer {
 public:
  SplitPre(const Json& pattern, SplitBehavior b, bool invert) : p_(pattern), b_(b), invert_(invert) {}
  void split(std::vector<std::string>& pieces, bool) const override {
    each(pieces, [&](const std::string& s, std::vector<std::string>& out) { split_by(s, p_, b_, invert_, out); });
  }

 private:
  Pattern p_;
  SplitBehavior b_;
  bool invert_;
};

constexpr const char* kGpt2 = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

class ByteLevelPre final : public PreTokenizer {
 public:
  explicit ByteLevelPre(const Json& j)
      : prefix_(bool_or(j, "add_prefix_space", true)), use_regex_(bool_or(j, "use_regex", true)),
        rx_(regex(kGpt2)) {}
  void split(std::vector<std::string>& pieces, bool) const override {
    each(pieces, [&](const std::string& s0, std::vector<std::string>& out) {
      const std::string s = prefix_ && (s0.empty() || s0[0] != ' ') ? " " + s0 : s0;
      std::vector<std::string> parts;
      if (use_regex_) split_by(s, rx_, SplitBehavior::Isolated, false, parts); else parts.push_back(s);
      for (const std::string& p : parts) {
        std::string w;
        w.reserve(p.size() * 2);
        for (char c : p) append_utf8(w, byte_to_unicode(static_cast<uint8_t>(c)));
        out.push_back(std::move(w));
      }
    });
  }

 private:
  bool prefix_, use_regex_;
  Pattern rx_;
};

class MetaspacePre final : public PreTokenizer {
 public:
  explicit MetaspacePre(const Json& j) : rep_(str_or(j, "replacement", "\xE2\x96\x81")), split_(bool_or(j, "split", true)),
        split_rx_(Json{{"String", rep_}}) {
    scheme_ = str_or(j, "prepend_scheme", bool_or(j, "add_prefix_space", true) ? "always" : "never");
  }
  void split(std::vector<std::string>& pieces, bool at_start) const override {
    bool first = true;
    each(pieces, [&](const std::string& s, std::vector<std::string>& out) {
      std::string r;
      for (char c : s) if (c == ' ') r += rep_; else r += c;
      const bool prepend = scheme_ == "always" || (scheme_ == "first" && at_start && first);
      first = false;
      if (prepend && r.compare(0, rep_.size(), rep_) != 0) r = rep_ + r;
      if (split_) split_by(r, split_rx_, SplitBehavior::MergedWithNext, false, out);
      else out.push_back(std::move(r));
    });
  }

 private:
  std::string rep_, scheme_;
  bool split_;
  Pattern split_rx_;
};

class SeqPre final : public PreTokenizer {
 public:
  explicit SeqPre(const Json& list) {
    for (const Json& p : list)
      if (auto q = make_pre_tokenizer(p)) parts_.push_back(std::move(q));
  }
  void split(std::vector<std::string>& pieces, bool at_start) const override {
    for (const auto& p : parts_) p->split(pieces, at_start);
  }

 private:
  std::vector<std::unique_ptr<PreTokenizer>> parts_;
};

}  // namespace

SplitBehavior split_behavior(const std::string& n) {
  if (n == "Removed") return SplitBehavior::Removed;
  if (n == "Isolated") return SplitBehavior::Isolated;
  if (n == "MergedWithPrevious") return SplitBehavior::MergedWithPrevious;
  if (n == "MergedWithNext") return SplitBehavior::MergedWithNext;
  if (n == "Contiguous") return SplitBehavior::Contiguous;
  bad("unknown split behavior '" + n + "'");
}

void split_by(std::string_view s, const Pattern& p, SplitBehavior b, bool invert, std::vector<std::string>& out) {
  // Segments covering s: (begin, end, is_match).
  struct Seg { size_t b, e; bool m; };
  std::vector<Seg> segs;
  size_t last = 0;
  for (const auto& [mb, me] : p.find_all(s)) {
    if (mb > last) segs.push_back({last, mb, invert});
    segs.push_back({mb, me, !invert});
    last = me;
  }
  if (last < s.size()) segs.push_back({last, s.size(), invert});
  std::vector<std::pair<size_t, size_t>> r;
  for (size_t i = 0; i < segs.size(); ++i) {
    const Seg& g = segs[i];
    switch (b) {
      case SplitBehavior::Removed:
        if (!g.m) r.emplace_back(g.b, g.e);
        break;
      case SplitBehavior::Isolated:
        r.emplace_back(g.b, g.e);
        break;
      case SplitBehavior::MergedWithPrevious:
        if (g.m && !r.empty() && i > 0) r.back().second = g.e; else r.emplace_back(g.b, g.e);
        break;
      case SplitBehavior::MergedWithNext:
        if (i > 0 && segs[i - 1].m) r.back().second = g.e; else r.emplace_back(g.b, g.e);
        break;
      case SplitBehavior::Contiguous:
        if (i > 0 && g.m && segs[i - 1].m) r.back().second = g.e; else r.emplace_back(g.b, g.e);
        break;
    }
  }
  for (const auto& [x, y] : r)
    if (y > x) out.emplace_back(s.substr(x, y - x));
}

std::unique_ptr<PreTokenizer> make_pre_tokenizer(const Json& j) {
  if (j.is_null()) return nullptr;
  const std::string t = str_or(j, "type", "");
  if (t == "Sequence") return std::make_unique<SeqPre>(j.at("pretokenizers"));
  if (t == "Split") {
    return std::make_unique<SplitPre>(j.at("pattern"), split_behavior(str_or(j, "behavior", "Isolated")),
                                      bool_or(j, "invert", false));
  }
  if (t == "ByteLevel") return std::make_unique<ByteLevelPre>(j);
  if (t == "Metaspace") return std::make_unique<MetaspacePre>(j);
  if (t == "Digits") {
    return std::make_unique<SplitPre>(regex(bool_or(j, "individual_digits", false) ? R"(\p{N})" : R"(\p{N}+)"),
                                      SplitBehavior::Isolated, false);
  }
  if (t == "Whitespace") return std::make_unique<SplitPre>(regex(R"(\w+|[^\w\s]+)"), SplitBehavior::Removed, true);
  if (t == "WhitespaceSplit") return std::make_unique<SplitPre>(regex(R"(\s+)"), SplitBehavior::Removed, false);
  if (t == "Punctuation") {
    return std::make_unique<SplitPre>(regex(R"([\p{P}!-/:-@\[-`{-~])"),
                                      split_behavior(str_or(j, "behavior", "Isolated")), false);
  }
  if (t == "BertPreTokenizer") {
    auto seq = Json{{"type", "Sequence"},
                    {"pretokenizers", Json::array({Json{{"type", "WhitespaceSplit"}}, Json{{"type", "Punctuation"}}})}};
    return make_pre_tokenizer(seq);
  }
  bad("unsupported pre_tokenizer type '" + t + "'");
}

}  // namespace coppice::tok::hf
