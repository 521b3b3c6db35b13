// Grammars over Unicode code points, in the GBNF syntax of the GGUF ecosystem:
//   root ::= "{" ws pair ("," ws pair)* "}"     # comments run to the end of the line
// Alternatives `|`, groups `( )`, `* + ?`, `{m}` `{m,}` `{m,n}`, literals with escapes
// (\n \t \r \\ \" \xHH \uHHHH \UHHHHHHHH), classes `[a-z]` `[^...]`, `.` (any code point).
// coppice extension: `x%{m,n}` (also `%{m}`, `%{m,}`) matches x only when the text it matches
// is m..n code points long; `x%j{m,n}` counts JSON string characters instead (an escape such
// as \" or \u00e9 is one character), which JSON Schema's minLength/maxLength need together
// with pattern or format.
// A parsed grammar is a flat program: each alternative is a run of elements ending in End.
// Repetition stays one element with counts (x{0,5000} is one element, not 5000 copies).
#pragma once
#include "util/utf8.h"
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace coppice::grammar {

inline constexpr uint32_t kUnbounded = 0xFFFFFFFFu;  // Repeat max: no upper bound

struct CharClass {
  std::vector<std::pair<uint32_t, uint32_t>> ranges;  // inclusive code point ranges
  bool negated = false;                               // `.` is a negated empty class
  bool contains(uint32_t cp) const;
  bool intersects(uint32_t lo, uint32_t hi) const;    // any code point of [lo, hi] matches
};

enum class Op : uint8_t {
  End,     // end of an alternative: return to the caller
  Chars,   // one code point in classes[arg]
  Ref,     // the rule `arg`
  Repeat,  // the rule `arg`, min..max times (max may be kUnbounded)
  Bounded,      // the rule `arg`, matching min..max code points in all
  BoundedJson,  // the rule `arg`, matching min..max JSON string characters (escape = 1)
};

// Bounded frames keep their progress in Frame::count: the low bits count what was matched,
// the top bits hold the JSON escape state (BoundedJson).
inline constexpr uint32_t kBoundMax = (1u << 27) - 1;  // largest finite bound

struct Element {
  Op op = Op::End;
  uint32_t arg = 0;
  uint32_t min = 0, max = 0;  // Repeat, Bounded, BoundedJson
};

struct Grammar {
  std::vector<std::string> names;               // [n_rules]; anonymous rules are "parent_N"
  std::vector<std::vector<uint32_t>> alts;      // [n_rules][n_alts] start index into elements
  std::vector<Element> elements;                // alternatives, each terminated by End
  std::vector<CharClass> classes;
  uint32_t root = 0;

  // Throws coppice::Error "[grammar] line L, col C: what" for syntax errors, undefined rules,
  // a missing root and left recursion (which the matcher cannot run).
  static Grammar parse(std::string_view text, std::string_view root_name = "root");
  size_t n_rules() const { return names.size(); }
};

using GrammarPtr = std::shared_ptr<const Grammar>;

// Decodes one UTF-8 sequence at s[i]; returns the code point and advances i, or kBadUtf8.
inline constexpr uint32_t kBadUtf8 = 0xFFFFFFFFu;
uint32_t decode_utf8(std::string_view s, size_t& i);
using coppice::append_utf8;  // util/utf8.h

}  // namespace coppice::grammar
