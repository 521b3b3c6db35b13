#include "tokenizer/unicode.h"

#include "util/utf8.h"

#include <algorithm>
#include <array>
#include <unordered_map>

namespace coppice::tok {

size_t utf8_len(uint8_t b) {
  if (b < 0x80) return 1;
  if ((b & 0xE0) == 0xC0) return 2;
  if ((b & 0xF0) == 0xE0) return 3;
  if ((b & 0xF8) == 0xF0) return 4;
  return 1;
}

uint32_t next_cp(std::string_view s, size_t& i) {
  const auto b0 = static_cast<uint8_t>(s[i]);
  const size_t n = utf8_len(b0);
  if (n == 1) {
    ++i;
    return b0 < 0x80 ? b0 : 0xFFFD;
  }
  if (i + n > s.size()) {
    ++i;
    return 0xFFFD;
  }
  uint32_t cp = b0 & (0x7F >> n);
  for (size_t k = 1; k < n; ++k) {
    const auto b = static_cast<uint8_t>(s[i + k]);
    if ((b & 0xC0) != 0x80) {
      ++i;
      return 0xFFFD;
    }
    cp = (cp << 6) | (b & 0x3F);
  }
  // Overlong forms, surrogates and out-of-range values are invalid.
  static constexpr uint32_t kMin[5] = {0, 0, 0x80, 0x800, 0x10000};
  if (cp < kMin[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
    ++i;
    return 0xFFFD;
  }
  i += n;
  return cp;
}

std::string sanitize_utf8(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    const size_t start = i;
    const uint32_t cp = next_cp(s, i);
    if (cp == 0xFFFD && !(i - start == 3 && s.substr(start, 3) == "\xEF\xBF\xBD")) {
      append_utf8(out, cp);
    } else {
      out.append(s.substr(start, i - start));
    }
  }
  return out;
}

size_t incomplete_utf8_tail(std::string_view s) {
  // Look back at most 3 bytes for the lead byte of the last character.
  const size_t max_back = std::min<size_t>(3, s.size());
  for (size_t back = 1; back <= max_back; ++back) {
    const auto b = static_cast<uint8_t>(s[s.size() - back]);
    if ((b & 0xC0) == 0x80) continue;  // continuation byte: keep looking
    const size_t need = utf8_len(b);
    return (need > 1 && need > back) ? back : 0;
  }
  return 0;
}

namespace {
struct ByteMap {
  std::array<uint32_t, 256> fwd{};
  std::unordered_map<uint32_t, int> inv;
  ByteMap() {
    // Printable bytes map to themselves, the rest to 256, 257, ... in byte order
    // (GPT-2's bytes_to_unicode).
    uint32_t next = 256;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
      fwd[b] = printable ? static_cast<uint32_t>(b) : next++;
      inv[fwd[b]] = b;
    }
  }
};
const ByteMap& byte_map() {
  static const ByteMap m;
  return m;
}

bool in_ranges(const CpRange* r, size_t n, uint32_t cp) {
  const CpRange* end = r + n;
  const CpRange* it = std::upper_bound(r, end, cp, [](uint32_t v, const CpRange& x) { return v < x.lo; });
  return it != r && cp <= (it - 1)->hi;
}
}  // namespace

uint32_t byte_to_unicode(uint8_t b) { return byte_map().fwd[b]; }

int unicode_to_byte(uint32_t cp) {
  const auto& inv = byte_map().inv;
  const auto it = inv.find(cp);
  return it == inv.end() ? -1 : it->second;
}

bool is_mark_nonspacing(uint32_t cp) {
  return in_ranges(tables::kMarkNonSpacing, tables::kMarkNonSpacing_n, cp);
}
bool is_punctuation(uint32_t cp) {
  return in_ranges(tables::kPunctuation, tables::kPunctuation_n, cp);
}
bool is_bert_whitespace(uint32_t cp) {
  return cp == ' ' || cp == '\t' || cp == '\n' || cp == '\r' ||
         in_ranges(tables::kSeparatorSpace, tables::kSeparatorSpace_n, cp);
}
bool is_bert_control(uint32_t cp) {
  if (cp == '\t' || cp == '\n' || cp == '\r') return false;
  return in_ranges(tables::kControlFormat, tables::kControlFormat_n, cp);
}
bool is_cjk(uint32_t cp) {
  // Ranges from BERT's tokenization.py (_is_chinese_char).
  return (cp >= 0x4E00 && cp <= 0x9FFF) || (cp >= 0x3400 && cp <= 0x4DBF) ||
         (cp >= 0x20000 && cp <= 0x2A6DF) || (cp >= 0x2A700 && cp <= 0x2B73F) ||
         (cp >= 0x2B740 && cp <= 0x2B81F) || (cp >= 0x2B820 && cp <= 0x2CEAF) ||
         (cp >= 0xF900 && cp <= 0xFAFF) || (cp >= 0x2F800 && cp <= 0x2FA1F);
}

uint32_t to_lower(uint32_t cp) {
  if (cp < 0x80) return (cp >= 'A' && cp <= 'Z') ? cp + 32 : cp;
  size_t lo = 0, hi = tables::kLower_n / 2;
  while (lo < hi) {
    const size_t mid = (lo + hi) / 2;
    if (tables::kLower[2 * mid] < cp) lo = mid + 1; else hi = mid;
  }
  return (lo < tables::kLower_n / 2 && tables::kLower[2 * lo] == cp) ? tables::kLower[2 * lo + 1] : cp;
}

void nfd_append(uint32_t cp, std::vector<uint32_t>& out) {
  if (cp >= 0xAC00 && cp <= 0xD7A3) {  // Hangul syllable (Unicode ch. 3.12)
    const uint32_t s = cp - 0xAC00;
    out.push_back(0x1100 + s / 588);
    out.push_back(0x1161 + (s % 588) / 28);
    if (s % 28) out.push_back(0x11A7 + s % 28);
    return;
  }
  if (cp < 0xC0) {
    out.push_back(cp);
    return;
  }
  // Records are variable length, so keep a lazily built index.
  static const std::unordered_map<uint32_t, size_t> index = [] {
    std::unordered_map<uint32_t, size_t> m;
    for (size_t i = 0; i < tables::kNfd_n; i += 2 + tables::kNfd[i + 1]) m[tables::kNfd[i]] = i;
    return m;
  }();
  const auto it = index.find(cp);
  if (it == index.end()) {
    out.push_back(cp);
    return;
  }
  const size_t n = tables::kNfd[it->second + 1];
  for (size_t k = 0; k < n; ++k) out.push_back(tables::kNfd[it->second + 2 + k]);
}

}  // namespace coppice::tok
