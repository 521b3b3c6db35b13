// Exact decimal ranges as GBNF: integers in [lo, hi] without leading zeros, digit by digit.
#include <string>

#include "grammar/gbnf_text.h"
#include "grammar/grammar.h"
#include "grammar/json_schema.h"
#include "util/error.h"

namespace coppice::grammar {
namespace {

bool all_of(const std::string& s, char c) { return s.find_first_not_of(c) == std::string::npos; }

std::string digit_class(char a, char b) {
  if (a == b) return std::string("\"") + a + "\"";
  return std::string("[") + a + "-" + b + "]";
}

std::string any_digits(size_t n) { return n == 0 ? "" : " [0-9]" + gbnf_repeat(static_cast<uint32_t>(n), static_cast<uint32_t>(n)); }

// Digit strings of equal length n, A <= B.
std::string same_len(const std::string& A, const std::string& B) {
  const size_t n = A.size();
  if (n == 0) return "\"\"";
  if (A == B) return gbnf_literal(A);
  if (all_of(A, '0') && all_of(B, '9')) return "[0-9]" + gbnf_repeat(static_cast<uint32_t>(n), static_cast<uint32_t>(n));
  if (A[0] == B[0]) return digit_class(A[0], A[0]) + " " + same_len(A.substr(1), B.substr(1));
  const std::string ra = A.substr(1), rb = B.substr(1);
  std::vector<std::string> parts;
  const bool a_low = all_of(ra, '0'), b_high = all_of(rb, '9');
  if (!a_low) parts.push_back(digit_class(A[0], A[0]) + " " + same_len(ra, std::string(n - 1, '9')));
  const char mlo = a_low ? A[0] : static_cast<char>(A[0] + 1);
  const char mhi = b_high ? B[0] : static_cast<char>(B[0] - 1);
  if (mlo <= mhi) parts.push_back(digit_class(mlo, mhi) + any_digits(n - 1));
  if (!b_high) parts.push_back(digit_class(B[0], B[0]) + " " + same_len(std::string(n - 1, '0'), rb));
  if (parts.size() == 1) return parts[0];
  std::string out = "(";
  for (size_t k = 0; k < parts.size(); ++k) out += (k ? " | " : "") + parts[k];
  return out + ")";
}

// Non-negative integers in [lo, hi]; hi < 0 means unbounded (up to 16 digits). Empty when the
// range is empty.
std::string nonneg(int64_t lo, int64_t hi) {
  if (hi >= 0 && hi < lo) return "";
  const std::string sl = std::to_string(lo);
  std::vector<std::string> parts;
  if (hi < 0) {
    parts.push_back(same_len(sl, std::string(sl.size(), '9')));
    // Longer numbers: at most 16 digits in all, like the unbounded integer rule (a valid
    // subset that keeps a model from writing digits until max_tokens).
    const auto more = static_cast<uint32_t>(sl.size());
    if (more <= 15) parts.push_back("[1-9] [0-9]" + gbnf_repeat(more, 15));
  } else {
    const std::string sh = std::to_string(hi);
    for (size_t len = sl.size(); len <= sh.size(); ++len) {
      std::string a = sl;
      if (len != sl.size()) a = std::string(len, '0'), a[0] = '1';  // 10^(len-1)
      const std::string b = len == sh.size() ? sh : std::string(len, '9');
      parts.push_back(same_len(a, b));
    }
  }
  if (parts.size() == 1) return parts[0];
  std::string out = "(";
  for (size_t k = 0; k < parts.size(); ++k) out += (k ? " | " : "") + parts[k];
  return out + ")";
}

}  // namespace

std::string int_range_gbnf(const int64_t* lo, const int64_t* hi) {
  constexpr int64_t kMax = 1000000000000000000;  // 1e18: negation and +1 stay in range
  if ((lo && (*lo > kMax || *lo < -kMax)) || (hi && (*hi > kMax || *hi < -kMax)))
    fail("json-schema", "integer bound beyond +-1e18 is not supported");
  std::vector<std::string> parts;
  // Non-negative part: [max(lo, 0), hi].
  const int64_t a = lo ? std::max<int64_t>(*lo, 0) : 0;
  if (!hi || *hi >= a) {
    const std::string p = nonneg(a, hi ? *hi : -1);
    if (!p.empty()) parts.push_back(p);
  }
  // Negative part: -K with K in [max(1, -hi), -lo].
  const int64_t kmin = hi ? std::max<int64_t>(1, -*hi) : 1;
  if (!lo || -*lo >= kmin) {
    const std::string p = nonneg(kmin, lo ? -*lo : -1);
    if (!p.empty()) parts.push_back("\"-\" " + p);
  }
  if (parts.empty()) return "";
  if (parts.size() == 1) return parts[0];
  return "(" + parts[0] + " | " + parts[1] + ")";
}

}  // namespace coppice::grammar
