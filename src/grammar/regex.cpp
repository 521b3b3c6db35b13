#include "grammar/regex.h"

#include <algorithm>
#include <cctype>
#include <cstdio>

#include "grammar/gbnf_text.h"
#include "grammar/grammar.h"
#include "util/error.h"

namespace coppice::grammar {
namespace {

const Ranges kDigit = {{'0', '9'}};
const Ranges kWord = {{'0', '9'}, {'A', 'Z'}, {'_', '_'}, {'a', 'z'}};
// ECMAScript WhiteSpace and LineTerminator code points (\s).
const Ranges kSpace = {{'\t', '\r'}, {' ', ' '}, {0xA0, 0xA0}, {0x1680, 0x1680}, {0x2000, 0x200A},
                       {0x2028, 0x2029}, {0x202F, 0x202F}, {0x205F, 0x205F}, {0x3000, 0x3000}, {0xFEFF, 0xFEFF}};
const Ranges kNewline = {{'\n', '\n'}, {'\r', '\r'}, {0x2028, 0x2029}};

class RegexParser {
 public:
  RegexParser(std::string_view re, RegexMode mode) : s_(re), mode_(mode) {}

  std::string run() {
    std::string out = alternation(true);
    if (i_ < s_.size()) error(i_, s_[i_] == ')' ? "unmatched ')'" : "unexpected character");
    return out;
  }

 private:
  [[noreturn]] void error(size_t at, const std::string& what) const {
    fail("regex", "col " + std::to_string(at + 1) + ": " + what + " in /" + std::string(s_) + "/");
  }

  bool json() const { return mode_ == RegexMode::JsonString; }

  // Any character of the JSON string content (one code point or one escape).
  std::string any_char() const {
    return json() ? "([^\"\\\\\\x00-\\x1F] | \"\\\\\" [\"\\\\/bfnrt])" : "[^\\x00]";
  }

  std::string alternation(bool top) {
    std::vector<std::string> alts;
    for (;;) {
      alts.push_back(sequence(top));
      if (i_ < s_.size() && s_[i_] == '|') {
        ++i_;
        continue;
      }
      break;
    }
    if (alts.size() == 1) return alts[0];
    std::string out = "(";
    for (size_t k = 0; k < alts.size(); ++k) out += (k ? " | " : "") + alts[k];
    return out + ")";
  }

  std::string sequence(bool top) {
    std::string out;
    bool anchored_start = false, anchored_end = false;
    if (i_ < s_.size() && s_[i_] == '^') {
      if (!top) error(i_, "'^' inside a group is not supported");
      anchored_start = true;
      ++i_;
    }
    while (i_ < s_.size() && s_[i_] != '|' && s_[i_] != ')') {
      if (s_[i_] == '$') {
        const size_t at = i_++;
        if (!top || (i_ < s_.size() && s_[i_] != '|')) error(at, "'$' is only supported at the end of the pattern");
        anchored_end = true;
        break;
      }
      if (s_[i_] == '^') error(i_, "'^' is only supported at the start of the pattern");
      std::string atom_text = atom();
      atom_text += quantifier();
      out += (out.empty() ? "" : " ") + atom_text;
    }
    if (out.empty()) out = "\"\"";
    if (json() && top) {  // search semantics: an unanchored end lets anything surround the match
      if (!anchored_start) out = any_char() + "* " + out;
      if (!anchored_end) {
        out += ' ';
        out += any_char();
        out += '*';
      }
    }
    return "(" + out + ")";
  }

  std::string quantifier() {
    if (i_ >= s_.size()) return "";
    const size_t at = i_;
    uint32_t lo, hi;
    const char c = s_[i_];
    if (c == '*') lo = 0, hi = kUnbounded, ++i_;
    else if (c == '+') lo = 1, hi = kUnbounded, ++i_;
    else if (c == '?') lo = 0, hi = 1, ++i_;
    else if (c == '{' && i_ + 1 < s_.size() && std::isdigit(static_cast<unsigned char>(s_[i_ + 1]))) {
      ++i_;
      lo = hi = number();
      if (i_ < s_.size() && s_[i_] == ',') {
        ++i_;
        hi = i_ < s_.size() && s_[i_] == '}' ? kUnbounded : number();
      }
      if (i_ >= s_.size() || s_[i_] != '}') error(at, "expected '}' to close the quantifier");
      ++i_;
      if (hi < lo) error(at, "quantifier max is below min");
    } else {
      return "";
    }
    if (i_ < s_.size() && s_[i_] == '?') ++i_;  // lazy: same language
    if (i_ < s_.size() && (s_[i_] == '*' || s_[i_] == '+' || s_[i_] == '?' || s_[i_] == '{'))
      error(i_, "nothing to repeat");
    return gbnf_repeat(lo, hi);
  }

  uint32_t number() {
    uint64_t v = 0;
    const size_t b = i_;
    while (i_ < s_.size() && std::isdigit(static_cast<unsigned char>(s_[i_]))) {
      v = v * 10 + static_cast<uint64_t>(s_[i_++] - '0');
      if (v > 100000) error(b, "repetition count above 100000");
    }
    if (i_ == b) error(b, "expected a number");
    return static_cast<uint32_t>(v);
  }

  std::string atom() {
    const size_t at = i_;
    const char c = s_[i_];
    if (c == '(') {
      ++i_;
      if (i_ < s_.size() && s_[i_] == '?') {
        if (i_ + 1 < s_.size() && s_[i_ + 1] == ':') i_ += 2;
        else error(at, "lookaround and named groups are not supported");
      }
      std::string inner = alternation(false);
      if (i_ >= s_.size() || s_[i_] != ')') error(at, "expected ')' to close the group");
      ++i_;
      return "(" + inner + ")";
    }
    if (c == '[') return char_class();
    if (c == '.') {
      ++i_;
      return emit_class(kNewline, true);
    }
    if (c == '*' || c == '+' || c == '?') error(at, "nothing to repeat");
    if (c == '\\') {
      Ranges r;
      bool neg = false;
      const uint32_t cp = escape(r, neg, false);
      if (!r.empty()) return emit_class(r, neg);
      return emit_char(cp);
    }
    size_t k = i_;
    const uint32_t cp = decode_utf8(s_, k);
    if (cp == kBadUtf8) error(at, "invalid UTF-8");
    i_ = k;
    return emit_char(cp);
  }

  // An escape at s_[i_] == '\\': a class (r filled) or one code point.
  uint32_t escape(Ranges& r, bool& neg, bool in_class) {
    const size_t at = i_++;
    if (i_ >= s_.size()) error(at, "pattern ends in a backslash");
    const char e = s_[i_++];
    switch (e) {
      case 'd': r = kDigit; return 0;
      case 'w': r = kWord; return 0;
      case 's': r = kSpace; return 0;
      case 'D': case 'W': case 'S':
        if (in_class) error(at, std::string("\\") + e + " inside a class is not supported");
        r = e == 'D' ? kDigit : e == 'W' ? kWord : kSpace;
        neg = true;
        return 0;
      case 'n': return '\n';
      case 't': return '\t';
      case 'r': return '\r';
      case 'f': return '\f';
      case 'v': return '\v';
      case '0': return 0;
      case 'x': return hex(2, at);
      case 'u': return hex(4, at);
      case 'b':
        if (in_class) return '\b';
        error(at, "word boundary \\b is not supported");
      case 'B': error(at, "\\B is not supported");
      default:
        if (std::isalnum(static_cast<unsigned char>(e)))
          error(at, std::string("escape \\") + e + " is not supported (backreferences, \\c, \\p are not)");
        return static_cast<uint8_t>(e);
    }
  }

  uint32_t hex(int n, size_t at) {
    uint32_t v = 0;
    for (int k = 0; k < n; ++k) {
      if (i_ >= s_.size() || !std::isxdigit(static_cast<unsigned char>(s_[i_]))) error(at, "bad hex escape");
      const char h = s_[i_++];
      v = v * 16 + static_cast<uint32_t>(h <= '9' ? h - '0' : (h | 0x20) - 'a' + 10);
    }
    return v;
  }

  std::string char_class() {
    const size_t at = i_++;
    bool neg = false;
    if (i_ < s_.size() && s_[i_] == '^') neg = true, ++i_;
    Ranges r;
    bool first = true;
    for (;;) {
      if (i_ >= s_.size()) error(at, "expected ']' to close the class");
      if (s_[i_] == ']' && !first) break;
      if (s_[i_] == ']' && first) {  // "[]" matches nothing in ECMAScript
        break;
      }
      first = false;
      uint32_t lo;
      Ranges cls;
      bool cneg = false;
      if (s_[i_] == '\\') {
        lo = escape(cls, cneg, true);
        if (!cls.empty()) {
          r.insert(r.end(), cls.begin(), cls.end());
          continue;
        }
      } else {
        size_t k = i_;
        lo = decode_utf8(s_, k);
        if (lo == kBadUtf8) error(i_, "invalid UTF-8");
        i_ = k;
      }
      uint32_t hi = lo;
      if (i_ + 1 < s_.size() && s_[i_] == '-' && s_[i_ + 1] != ']') {
        const size_t dash = i_++;
        if (s_[i_] == '\\') {
          hi = escape(cls, cneg, true);
          if (!cls.empty()) error(dash, "a class escape cannot end a range");
        } else {
          size_t k = i_;
          hi = decode_utf8(s_, k);
          i_ = k;
        }
        if (hi < lo) error(dash, "range out of order");
      }
      r.push_back({lo, hi});
    }
    ++i_;
    if (r.empty() && !neg) error(at, "an empty class [] matches nothing");
    return emit_class(r, neg);
  }

  std::string emit_char(uint32_t cp) const {
    if (json() && (cp == '"' || cp == '\\')) return gbnf_literal(std::string("\\") + static_cast<char>(cp));
    if (json() && cp < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", cp);
      return gbnf_literal(buf);
    }
    std::string s;
    append_utf8(s, cp);
    return gbnf_literal(s);
  }

  // In JSON mode a class can only produce raw characters other than " \ and controls; those
  // it includes are added as their JSON escapes.
  std::string emit_class(Ranges r, bool neg) const {
    if (!json()) return gbnf_class(r, neg);
    auto in = [&](uint32_t cp) {
      bool hit = false;
      for (const auto& [lo, hi] : r) hit = hit || (cp >= lo && cp <= hi);
      return hit != neg;
    };
    std::vector<std::string> alts;
    if (in('"')) alts.push_back("\"\\\\\\\"\"");
    if (in('\\')) alts.push_back("\"\\\\\\\\\"");
    if (in('\n')) alts.push_back("\"\\\\n\"");
    if (in('\t')) alts.push_back("\"\\\\t\"");
    if (in('\r')) alts.push_back("\"\\\\r\"");
    Ranges raw;
    if (neg) {
      raw = r;
      raw.push_back({'"', '"'});
      raw.push_back({'\\', '\\'});
      raw.push_back({0, 0x1F});
      alts.insert(alts.begin(), gbnf_class(raw, true));
    } else {
      for (auto [lo, hi] : r) {  // cut out controls, '"' and '\\'
        lo = std::max<uint32_t>(lo, 0x20);
        for (uint32_t cut : {uint32_t{'"'}, uint32_t{'\\'}}) {
          if (lo <= cut && cut <= hi) {
            if (lo < cut) raw.push_back({lo, cut - 1});
            lo = cut + 1;
          }
        }
        if (lo <= hi) raw.push_back({lo, hi});
      }
      if (!raw.empty()) alts.insert(alts.begin(), gbnf_class(raw, false));
    }
    if (alts.size() == 1) return alts[0];
    std::string out = "(";
    for (size_t k = 0; k < alts.size(); ++k) out += (k ? " | " : "") + alts[k];
    return out + ")";
  }

  std::string_view s_;
  RegexMode mode_;
  size_t i_ = 0;
};

}  // namespace

std::string regex_to_gbnf_expr(std::string_view re, RegexMode mode) { return RegexParser(re, mode).run(); }

std::string regex_to_gbnf(std::string_view re) { return "root ::= " + regex_to_gbnf_expr(re, RegexMode::Full) + "\n"; }

}  // namespace coppice::grammar
