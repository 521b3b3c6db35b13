// The parts of search configuration that need no model: strategy names, step units and the
// pcre2 Regex. In their own file so the request-parser fuzzer (scripts/fuzz.sh) links them alone.
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "engine/search.h"
#include "util/error.h"

namespace coppice {

namespace {
constexpr std::pair<SearchKind, const char*> kKinds[] = {
    {SearchKind::BestOfN, "best-of-n"}, {SearchKind::SelfConsistency, "self-consistency"},
    {SearchKind::Beam, "beam"},         {SearchKind::DiverseBeam, "diverse-beam"},
    {SearchKind::Tree, "tree"},         {SearchKind::Particles, "particles"},
};

}  // namespace

SearchKind parse_search_kind(const std::string& s) {
  for (const auto& [k, name] : kKinds)
    if (s == name) return k;
  fail("search", "unknown strategy '" + s + "': expected best-of-n, self-consistency, beam, diverse-beam, tree or particles");
}

const char* search_kind_name(SearchKind k) {
  for (const auto& [kind, name] : kKinds)
    if (k == kind) return name;
  return "?";
}

StepUnit StepUnit::parse(const std::string& s) {
  StepUnit u;
  if (s == "token") {
    u.kind = Kind::Token;
  } else if (s == "line") {
    u.kind = Kind::Line;
    u.delim.push_back('\n');
  } else if (s == "whole") {
    u.kind = Kind::Whole;
  } else if (s.rfind("delim:", 0) == 0 && s.size() > 6) {
    u.kind = Kind::Delim;
    const std::string raw = s.substr(6);
    for (size_t i = 0; i < raw.size(); ++i) {  // "\n" and "\\" escapes (shells pass them raw)
      if (raw[i] == '\\' && i + 1 < raw.size() && (raw[i + 1] == 'n' || raw[i + 1] == '\\')) {
        u.delim += raw[i + 1] == 'n' ? '\n' : '\\';
        ++i;
      } else {
        u.delim += raw[i];
      }
    }
  } else {
    fail("search", "step unit '" + s + "': expected token, line, whole or delim:STR");
  }
  return u;
}

// ---- Regex ----

Regex::Regex(const std::string& pattern) : pattern_(pattern) {
  int err = 0;
  PCRE2_SIZE off = 0;
  code_ = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                        PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &err, &off, nullptr);
  if (!code_) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(err, msg, sizeof msg);
    fail("search", "regex '" + pattern + "': " + reinterpret_cast<char*>(msg) + " at offset " + std::to_string(off));
  }
}

Regex::~Regex() { pcre2_code_free(static_cast<pcre2_code*>(code_)); }

namespace {
// Calls f(match_data, rc) for every non-overlapping match; f returns false to stop.
template <typename F>
void for_each_match(const pcre2_code* code, std::string_view s, F&& f) {
  pcre2_match_data* md = pcre2_match_data_create_from_pattern(code, nullptr);
  const auto* subj = reinterpret_cast<PCRE2_SPTR>(s.data());
  size_t pos = 0;
  while (pos <= s.size()) {
    const int rc = pcre2_match(code, subj, s.size(), pos, 0, md, nullptr);
    if (rc < 0) break;  // no match (or a match error: treated as no further match)
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
    if (!f(ov, rc)) break;
    pos = ov[1] > ov[0] ? ov[1] : ov[0] + 1;
  }
  pcre2_match_data_free(md);
}
}  // namespace

bool Regex::matches(std::string_view s) const {
  bool hit = false;
  for_each_match(static_cast<const pcre2_code*>(code_), s, [&](const PCRE2_SIZE*, int) {
    hit = true;
    return false;
  });
  return hit;
}

bool Regex::extract_last(std::string_view s, std::string& out) const {
  bool hit = false;
  for_each_match(static_cast<const pcre2_code*>(code_), s, [&](const PCRE2_SIZE* ov, int rc) {
    const int g = rc > 1 && ov[2] != PCRE2_UNSET ? 1 : 0;
    out.assign(s.substr(ov[2 * g], ov[2 * g + 1] - ov[2 * g]));
    hit = true;
    return true;
  });
  return hit;
}

std::string keyword_pattern(const std::string& word) {
  std::string p;
  for (char c : word) {
    if (std::string_view("\\^$.|?*+()[]{}").find(c) != std::string_view::npos) p += '\\';
    p += c;
  }
  return p;
}

}  // namespace coppice
