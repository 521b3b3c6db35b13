// Minimum lengths for grammars with length bounds (x%{m,n}, x%j{m,n}): how many code points
// (and JSON string characters) the rest of an alternative needs at least. The matcher drops a
// parse whose bound could no longer fit what the grammar still requires, so every surviving
// state can complete: a length bound never leads sampling into a dead end.
#pragma once
#include <cstdint>
#include <vector>

#include "grammar/grammar.h"

namespace coppice::grammar {

struct MinLengths {
  static constexpr uint32_t kInf = 1u << 30;  // saturates: a rule that cannot finish
  std::vector<uint32_t> tail_cp, tail_js;  // [n_elements] from this element to its End
  std::vector<uint32_t> rule_cp, rule_js;  // [n_rules]
  // JSON units: a Chars element that can only match '\' costs 0 (the escape letter after it
  // counts), and so do the four characters after a literal "\u".
  static MinLengths compute(const Grammar& g);
};

bool has_length_bounds(const Grammar& g);

}  // namespace coppice::grammar
