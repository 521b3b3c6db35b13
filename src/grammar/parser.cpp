// GBNF text -> Grammar. Recursive descent that lowers while it parses: groups and quantified
// items become anonymous rules, quantifiers become one Repeat element.
#include <algorithm>
#include <cctype>
#include <functional>
#include <map>
#include <tuple>

#include "grammar/grammar.h"
#include "util/utf8.h"
#include "util/error.h"

namespace coppice::grammar {

bool CharClass::contains(uint32_t cp) const {
  bool in = false;
  for (const auto& [lo, hi] : ranges)
    if (cp >= lo && cp <= hi) {
      in = true;
      break;
    }
  return in != negated;
}

bool CharClass::intersects(uint32_t lo, uint32_t hi) const {
  if (!negated) {
    for (const auto& [a, b] : ranges)
      if (a <= hi && b >= lo) return true;
    return false;
  }
  // Negated: some code point of [lo, hi] lies outside every range.
  uint32_t cur = lo;
  for (;;) {
    bool moved = false;
    for (const auto& [a, b] : ranges)
      if (cur >= a && cur <= b) {
        if (b >= hi) return false;
        cur = b + 1;
        moved = true;
      }
    if (!moved) return true;
  }
}

uint32_t decode_utf8(std::string_view s, size_t& i) {
  const auto c = static_cast<uint8_t>(s[i]);
  const int n = c < 0x80 ? 0 : (c >> 5) == 6 ? 1 : (c >> 4) == 14 ? 2 : (c >> 3) == 30 ? 3 : -1;
  if (n < 0) return kBadUtf8;
  uint32_t cp = n == 0 ? c : c & (0x3Fu >> n);
  for (int k = 1; k <= n; ++k) {
    if (i + static_cast<size_t>(k) >= s.size()) return kBadUtf8;
    const auto d = static_cast<uint8_t>(s[i + static_cast<size_t>(k)]);
    if ((d >> 6) != 2) return kBadUtf8;
    cp = (cp << 6) | (d & 0x3F);
  }
  i += static_cast<size_t>(n) + 1;
  return cp;
}

namespace {

using Seq = std::vector<Element>;

class Parser {
 public:
  explicit Parser(std::string_view t) : s_(t) {}

  Grammar run(std::string_view root_name) {
    skip_space(true);
    while (i_ < s_.size()) {
      const size_t at = i_;
      const std::string name = ident();
      if (name.empty()) error(at, "expected a rule name");
      skip_space(false);
      if (s_.substr(i_, 3) != "::=") error(i_, "expected '::=' after rule name '" + name + "'");
      i_ += 3;
      const uint32_t r = rule_id(name, at);
      if (defined_[r]) error(at, "rule '" + name + "' is defined twice");
      defined_[r] = true;
      alts_[r] = alternatives(name, 0);
      skip_space(true);
    }
    for (size_t r = 0; r < names_.size(); ++r)
      if (!defined_[r]) error(first_use_[r], "undefined rule '" + names_[r] + "'");
    auto it = ids_.find(std::string(root_name));
    if (it == ids_.end()) fail("grammar", "no '" + std::string(root_name) + "' rule (the start symbol)");
    Grammar g;
    g.names = names_;
    g.classes = std::move(classes_);
    g.root = it->second;
    g.alts.resize(names_.size());
    for (size_t r = 0; r < names_.size(); ++r)
      for (const Seq& alt : alts_[r]) {
        g.alts[r].push_back(static_cast<uint32_t>(g.elements.size()));
        g.elements.insert(g.elements.end(), alt.begin(), alt.end());
        g.elements.push_back({Op::End, 0, 0, 0});
      }
    return g;
  }

 private:
  [[noreturn]] void error(size_t at, const std::string& what) const {
    size_t line = 1, col = 1;
    for (size_t k = 0; k < at && k < s_.size(); ++k) {
      if (s_[k] == '\n') ++line, col = 1;
      else ++col;
    }
    fail("grammar", "line " + std::to_string(line) + ", col " + std::to_string(col) + ": " + what);
  }

  void skip_space(bool newlines) {
    while (i_ < s_.size()) {
      const char c = s_[i_];
      if (c == '#') {
        while (i_ < s_.size() && s_[i_] != '\n') ++i_;
      } else if (c == ' ' || c == '\t' || c == '\r' || (newlines && c == '\n')) {
        ++i_;
      } else {
        break;
      }
    }
  }

  static bool word_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
  }

  std::string ident() {
    const size_t b = i_;
    while (i_ < s_.size() && word_char(s_[i_])) ++i_;
    return std::string(s_.substr(b, i_ - b));
  }

  // True when the text at i_ starts the next rule ("name ::="): ends the current one.
  bool at_rule_start() const {
    size_t k = i_;
    while (k < s_.size() && word_char(s_[k])) ++k;
    if (k == i_) return false;
    while (k < s_.size() && (s_[k] == ' ' || s_[k] == '\t')) ++k;
    return s_.substr(k, 3) == "::=";
  }

  uint32_t rule_id(const std::string& name, size_t at) {
    auto [it, fresh] = ids_.try_emplace(name, static_cast<uint32_t>(names_.size()));
    if (fresh) {
      names_.push_back(name);
      alts_.emplace_back();
      defined_.push_back(false);
      first_use_.push_back(at);
    }
    return it->second;
  }

  uint32_t anon_rule(const std::string& parent, std::vector<Seq> alts) {
    const std::string name = parent + "_" + std::to_string(++anon_);
    const uint32_t r = rule_id(name, i_);
    defined_[r] = true;
    alts_[r] = std::move(alts);
    return r;
  }

  std::vector<Seq> alternatives(const std::string& rule, int depth) {
    std::vector<Seq> alts;
    alts.push_back(sequence(rule, depth));
    for (;;) {
      skip_space(true);
      if (i_ < s_.size() && s_[i_] == '|') {
        ++i_;
        alts.push_back(sequence(rule, depth));
      } else {
        break;
      }
    }
    return alts;
  }

  Seq sequence(const std::string& rule, int depth) {
    Seq seq;
    for (;;) {
      skip_space(true);
      if (i_ >= s_.size()) break;
      const char c = s_[i_];
      if (c == '|' || c == ')') break;
      if (depth == 0 && at_rule_start()) break;
      Seq item = primary(rule, depth);
      postfix(rule, item);
      seq.insert(seq.end(), item.begin(), item.end());
    }
    return seq;
  }

  Seq primary(const std::string& rule, int depth) {
    const size_t at = i_;
    const char c = s_[i_];
    Seq out;
    if (c == '"') {
      ++i_;
      for (;;) {
        if (i_ >= s_.size() || s_[i_] == '\n') error(at, "unterminated string literal (expected '\"')");
        if (s_[i_] == '"') {
          ++i_;
          break;
        }
        const uint32_t cp = char_at();
        out.push_back(chars({{cp, cp}}, false));
      }
    } else if (c == '[') {
      ++i_;
      bool neg = false;
      if (i_ < s_.size() && s_[i_] == '^') neg = true, ++i_;
      std::vector<std::pair<uint32_t, uint32_t>> ranges;
      for (;;) {
        if (i_ >= s_.size() || s_[i_] == '\n') error(at, "expected ']' to close the character class");
        if (s_[i_] == ']') {
          ++i_;
          break;
        }
        const uint32_t lo = char_at();
        uint32_t hi = lo;
        if (i_ + 1 < s_.size() && s_[i_] == '-' && s_[i_ + 1] != ']') {
          ++i_;
          const size_t hat = i_;
          hi = char_at();
          if (hi < lo) error(hat, "character range end is below its start");
        }
        ranges.push_back({lo, hi});
      }
      out.push_back(chars(std::move(ranges), neg));
    } else if (c == '.') {
      ++i_;
      out.push_back(chars({}, true));
    } else if (c == '(') {
      ++i_;
      std::vector<Seq> alts = alternatives(rule, depth + 1);
      skip_space(true);
      if (i_ >= s_.size() || s_[i_] != ')') error(at, "expected ')' to close the group opened here");
      ++i_;
      out.push_back({Op::Ref, anon_rule(rule, std::move(alts)), 0, 0});
    } else if (word_char(c)) {
      const std::string name = ident();
      out.push_back({Op::Ref, rule_id(name, at), 0, 0});
    } else {
      error(at, std::string("unexpected character '") + c + "'");
    }
    return out;
  }

  // "{m}", "{m,}" or "{m,n}" at i_ (just past the '{'): the counts, checked; `what` names the
  // construct in errors ("repetition", "length bound").
  std::pair<uint32_t, uint32_t> counts(size_t at, const std::string& what) {
    const uint32_t lo = number(at);
    uint32_t hi = lo;
    if (i_ < s_.size() && s_[i_] == ',') {
      ++i_;
      skip_space(false);
      hi = i_ < s_.size() && s_[i_] == '}' ? kUnbounded : number(at);
    }
    skip_space(false);
    if (i_ >= s_.size() || s_[i_] != '}') error(at, "expected '}' to close the " + what);
    ++i_;
    if (hi < lo) error(at, what + " {" + std::to_string(lo) + "," + std::to_string(hi) + "}: max is below min");
    return {lo, hi};
  }

  void postfix(const std::string& rule, Seq& item) {
    for (;;) {
      if (i_ >= s_.size()) return;
      const size_t at = i_;
      uint32_t lo, hi;
      Op op = Op::Repeat;
      const char c = s_[i_];
      if (c == '*') lo = 0, hi = kUnbounded, ++i_;
      else if (c == '+') lo = 1, hi = kUnbounded, ++i_;
      else if (c == '?') lo = 0, hi = 1, ++i_;
      else if (c == '%') {  // length bound (coppice extension): x%{m,n}, x%j{m,n}
        ++i_;
        op = i_ < s_.size() && s_[i_] == 'j' ? Op::BoundedJson : Op::Bounded;
        if (op == Op::BoundedJson) ++i_;
        if (i_ >= s_.size() || s_[i_] != '{') error(at, "expected '{' after '%' (length bound x%{m,n})");
        ++i_;
        std::tie(lo, hi) = counts(at, "length bound");
        if ((hi != kUnbounded && hi > kBoundMax) || lo > kBoundMax)
          error(at, "length bound is too large (at most " + std::to_string(kBoundMax) + ")");
      } else if (c == '{') {
        ++i_;
        std::tie(lo, hi) = counts(at, "repetition");
      } else {
        return;
      }
      uint32_t r;
      if (item.size() == 1 && item[0].op == Op::Ref) r = item[0].arg;
      else r = anon_rule(rule, {item});
      item = {{op, r, lo, hi}};
    }
  }

  uint32_t number(size_t at) {
    skip_space(false);
    uint64_t v = 0;
    const size_t b = i_;
    while (i_ < s_.size() && s_[i_] >= '0' && s_[i_] <= '9') {
      v = v * 10 + static_cast<uint64_t>(s_[i_] - '0');
      if (v >= kUnbounded) error(at, "repetition count is too large");
      ++i_;
    }
    if (i_ == b) error(i_, "expected a number in the repetition count");
    skip_space(false);
    return static_cast<uint32_t>(v);
  }

  // One character of a literal or class: an escape or a UTF-8 code point.
  uint32_t char_at() {
    const size_t at = i_;
    if (s_[i_] != '\\') {
      const uint32_t cp = decode_utf8(s_, i_);
      if (cp == kBadUtf8) error(at, "invalid UTF-8 in the grammar text");
      return cp;
    }
    if (++i_ >= s_.size()) error(at, "unfinished escape at end of input");
    const char e = s_[i_++];
    switch (e) {
      case 'n': return '\n';
      case 't': return '\t';
      case 'r': return '\r';
      case '\\': return '\\';
      case '"': return '"';
      case '\'': return '\'';
      case '[': return '[';
      case ']': return ']';
      case '-': return '-';
      case '^': return '^';
      case '/': return '/';
      case 'x': return hex(2, at);
      case 'u': return hex(4, at);
      case 'U': return hex(8, at);
      default: error(at, std::string("unknown escape '\\") + e + "'");
    }
  }

  uint32_t hex(int n, size_t at) {
    uint32_t v = 0;
    for (int k = 0; k < n; ++k) {
      if (i_ >= s_.size() || !std::isxdigit(static_cast<unsigned char>(s_[i_])))
        error(at, "expected " + std::to_string(n) + " hex digits in the escape");
      const char h = s_[i_++];
      v = v * 16 + static_cast<uint32_t>(h <= '9' ? h - '0' : (h | 0x20) - 'a' + 10);
    }
    if (v > 0x10FFFF) error(at, "code point beyond U+10FFFF");
    return v;
  }

  Element chars(std::vector<std::pair<uint32_t, uint32_t>> ranges, bool neg) {
    CharClass cc{std::move(ranges), neg};
    const uint32_t id = static_cast<uint32_t>(classes_.size());
    classes_.push_back(std::move(cc));
    return {Op::Chars, id, 0, 0};
  }

  std::string_view s_;
  size_t i_ = 0;
  int anon_ = 0;
  std::map<std::string, uint32_t> ids_;
  std::vector<std::string> names_;
  std::vector<std::vector<Seq>> alts_;
  std::vector<bool> defined_;
  std::vector<size_t> first_use_;
  std::vector<CharClass> classes_;
};

// Rejects left recursion: a rule reachable from itself without consuming a code point would
// make the matcher's expansion loop forever.
void check_left_recursion(const Grammar& g) {
  const size_t n = g.n_rules();
  std::vector<bool> nullable(n, false);
  auto elem_nullable = [&](const Element& e) {
    return ((e.op == Op::Ref || e.op == Op::Bounded || e.op == Op::BoundedJson) && nullable[e.arg]) ||
           (e.op == Op::Repeat && (e.min == 0 || nullable[e.arg]));
  };
  for (bool changed = true; changed;) {
    changed = false;
    for (size_t r = 0; r < n; ++r) {
      if (nullable[r]) continue;
      for (uint32_t a : g.alts[r]) {
        size_t k = a;
        while (g.elements[k].op != Op::End && elem_nullable(g.elements[k])) ++k;
        if (g.elements[k].op == Op::End) {
          nullable[r] = changed = true;
          break;
        }
      }
    }
  }
  std::vector<std::vector<uint32_t>> left(n);  // rules reachable at the left edge
  for (size_t r = 0; r < n; ++r)
    for (uint32_t a : g.alts[r])
      for (size_t k = a; g.elements[k].op != Op::End; ++k) {
        const Element& e = g.elements[k];
        if (e.op != Op::Chars) left[r].push_back(e.arg);
        if (!elem_nullable(e)) break;
      }
  std::vector<int> color(n, 0);  // 0 new, 1 on the path, 2 done
  std::vector<uint32_t> path;
  std::function<void(uint32_t)> dfs = [&](uint32_t r) {
    color[r] = 1;
    path.push_back(r);
    for (uint32_t x : left[r]) {
      if (color[x] == 1) {
        std::string cyc;
        auto it = std::find(path.begin(), path.end(), x);
        for (; it != path.end(); ++it) cyc += g.names[*it] + " -> ";
        fail("grammar", "rule '" + g.names[x] + "' is left-recursive (" + cyc + g.names[x] +
                            "); rewrite it with repetition, e.g. x ::= y (\"op\" y)*");
      }
      if (color[x] == 0) dfs(x);
    }
    path.pop_back();
    color[r] = 2;
  };
  for (uint32_t r = 0; r < n; ++r)
    if (color[r] == 0) dfs(r);
}

}  // namespace

Grammar Grammar::parse(std::string_view text, std::string_view root_name) {
  Grammar g = Parser(text).run(root_name);
  check_left_recursion(g);
  return g;
}

}  // namespace coppice::grammar
