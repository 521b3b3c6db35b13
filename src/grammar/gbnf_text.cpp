#include "grammar/gbnf_text.h"

#include <cstdio>

#include "grammar/grammar.h"

namespace coppice::grammar {
namespace {
void escaped(std::string& out, uint32_t cp, bool in_class) {
  char buf[16];
  if (cp == '"' || cp == '\\' || (in_class && (cp == ']' || cp == '-' || cp == '^' || cp == '['))) {
    out += '\\';
    out += static_cast<char>(cp);
  } else if (cp == '\n') {
    out += "\\n";
  } else if (cp == '\t') {
    out += "\\t";
  } else if (cp == '\r') {
    out += "\\r";
  } else if (cp < 0x20 || cp == 0x7F) {
    std::snprintf(buf, sizeof buf, "\\x%02X", cp);
    out += buf;
  } else if (cp > 0xFFFF) {
    std::snprintf(buf, sizeof buf, "\\U%08X", cp);
    out += buf;
  } else if (cp >= 0x80) {
    std::snprintf(buf, sizeof buf, "\\u%04X", cp);
    out += buf;
  } else {
    out += static_cast<char>(cp);
  }
}
}  // namespace

std::string gbnf_literal(std::string_view s) {
  std::string out = "\"";
  for (size_t i = 0; i < s.size();) {
    uint32_t cp = decode_utf8(s, i);
    if (cp == kBadUtf8) cp = static_cast<uint8_t>(s[i++]);  // keep going: a byte as a code point
    escaped(out, cp, false);
  }
  return out + "\"";
}

std::string gbnf_class(const Ranges& r, bool negated) {
  std::string out = negated ? "[^" : "[";
  for (const auto& [lo, hi] : r) {
    escaped(out, lo, true);
    if (hi != lo) {
      out += '-';
      escaped(out, hi, true);
    }
  }
  return out + "]";
}

std::string gbnf_repeat(uint32_t min, uint32_t max) {
  if (min == 1 && max == 1) return "";
  if (min == 0 && max == 1) return "?";
  if (min == 0 && max == kUnbounded) return "*";
  if (min == 1 && max == kUnbounded) return "+";
  // Appends rather than "{" + ...: GCC 12 warns falsely (-Wrestrict) on that form.
  std::string out = "{";
  out += std::to_string(min);
  if (max != min) {
    out += ',';
    if (max != kUnbounded) out += std::to_string(max);
  }
  out += '}';
  return out;
}

}  // namespace coppice::grammar
