// Helpers that write GBNF text (used by the JSON Schema and regex converters).
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace coppice::grammar {

using Ranges = std::vector<std::pair<uint32_t, uint32_t>>;

// A GBNF string literal for these bytes (UTF-8 kept, quotes/backslashes/controls escaped).
std::string gbnf_literal(std::string_view s);
// A GBNF character class: [..] or [^..].
std::string gbnf_class(const Ranges& r, bool negated);
// Repetition suffix: "" for {1,1}, "?" "*" "+" or "{m,n}" (max kUnbounded: "{m,}").
std::string gbnf_repeat(uint32_t min, uint32_t max);

}  // namespace coppice::grammar
