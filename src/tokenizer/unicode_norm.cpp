// UAX #15 normalization: full decomposition (table lookup, Hangul by formula), canonical
// ordering by combining class, then canonical composition for the C forms.
#include "tokenizer/unicode_norm.h"

#include <algorithm>
#include <unordered_map>
#include <vector>

#include "tokenizer/unicode.h"

namespace coppice::tok {
namespace {

constexpr uint32_t kSBase = 0xAC00, kLBase = 0x1100, kVBase = 0x1161, kTBase = 0x11A7;
constexpr uint32_t kLCount = 19, kVCount = 21, kTCount = 28, kNCount = kVCount * kTCount;
constexpr uint32_t kSCount = kLCount * kNCount;

// cp -> (offset of its decomposition, length) in the flat record table.
struct DecompIndex {
  std::unordered_map<uint32_t, std::pair<uint32_t, uint32_t>> at;
  const uint32_t* data;
  DecompIndex(const uint32_t* d, size_t n) : data(d) {
    for (size_t i = 0; i + 1 < n;) {
      at.emplace(d[i], std::make_pair(static_cast<uint32_t>(i + 2), d[i + 1]));
      i += 2 + d[i + 1];
    }
  }
};

const DecompIndex& decomp(bool compat) {
  static const DecompIndex nfd(tables::kNfd, tables::kNfd_n);  // (unicode_tables.cpp)
  static const DecompIndex nfkd(norm_tables::kNfkd, norm_tables::kNfkd_n);
  return compat ? nfkd : nfd;
}

uint8_t ccc(uint32_t cp) {
  static const std::unordered_map<uint32_t, uint8_t> t = [] {
    std::unordered_map<uint32_t, uint8_t> m;
    for (size_t i = 0; i + 1 < norm_tables::kCcc_n; i += 2)
      m.emplace(norm_tables::kCcc[i], static_cast<uint8_t>(norm_tables::kCcc[i + 1]));
    return m;
  }();
  if (cp < 0x300) return 0;
  const auto it = t.find(cp);
  return it == t.end() ? 0 : it->second;
}

uint32_t compose_pair(uint32_t a, uint32_t b) {
  static const std::unordered_map<uint64_t, uint32_t> t = [] {
    std::unordered_map<uint64_t, uint32_t> m;
    for (size_t i = 0; i + 2 < norm_tables::kCompose_n; i += 3)
      m.emplace((uint64_t{norm_tables::kCompose[i]} << 32) | norm_tables::kCompose[i + 1],
                norm_tables::kCompose[i + 2]);
    return m;
  }();
  if (a >= kLBase && a < kLBase + kLCount && b >= kVBase && b < kVBase + kVCount)
    return kSBase + ((a - kLBase) * kVCount + (b - kVBase)) * kTCount;
  if (a >= kSBase && a < kSBase + kSCount && (a - kSBase) % kTCount == 0 && b > kTBase &&
      b < kTBase + kTCount)
    return a + (b - kTBase);
  const auto it = t.find((uint64_t{a} << 32) | b);
  return it == t.end() ? 0 : it->second;
}

}  // namespace

std::string unicode_normalize(std::string_view s, NormForm form) {
  if (std::all_of(s.begin(), s.end(), [](char c) { return static_cast<uint8_t>(c) < 0x80; }))
    return std::string(s);
  const bool compat = form == NormForm::NFKC || form == NormForm::NFKD;
  const bool compose = form == NormForm::NFC || form == NormForm::NFKC;
  const DecompIndex& dx = decomp(compat);
  std::vector<uint32_t> cps;
  cps.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    const uint32_t cp = next_cp(s, i);
    if (cp >= kSBase && cp < kSBase + kSCount) {
      const uint32_t si = cp - kSBase;
      cps.push_back(kLBase + si / kNCount);
      cps.push_back(kVBase + (si % kNCount) / kTCount);
      if (si % kTCount) cps.push_back(kTBase + si % kTCount);
      continue;
    }
    const auto it = dx.at.find(cp);
    if (it == dx.at.end()) {
      cps.push_back(cp);
    } else {
      cps.insert(cps.end(), dx.data + it->second.first, dx.data + it->second.first + it->second.second);
    }
  }
  // Canonical ordering: stable sort of each run of non-starters by combining class.
  for (size_t i = 0; i < cps.size();) {
    if (ccc(cps[i]) == 0) { ++i; continue; }
    size_t j = i;
    while (j < cps.size() && ccc(cps[j]) != 0) ++j;
    std::stable_sort(cps.begin() + static_cast<std::ptrdiff_t>(i), cps.begin() + static_cast<std::ptrdiff_t>(j),
                     [](uint32_t a, uint32_t b) { return ccc(a) < ccc(b); });
    i = j;
  }
  if (compose && !cps.empty()) {
    std::vector<uint32_t> out;
    out.reserve(cps.size());
    ptrdiff_t starter = -1;
    int last_ccc = -1;
    for (uint32_t cp : cps) {
      const int c = ccc(cp);
      if (starter >= 0) {
        // Blocked when a character in between has a class >= this one (or is a starter).
        const bool blocked = last_ccc != -1 && (last_ccc == 0 || last_ccc >= c);
        if (!blocked || (last_ccc == -1)) {
          const uint32_t comp = compose_pair(out[static_cast<size_t>(starter)], cp);
          if (comp) {
            out[static_cast<size_t>(starter)] = comp;
            continue;
          }
        }
      }
      if (c == 0) {
        starter = static_cast<ptrdiff_t>(out.size());
        last_ccc = -1;
      } else {
        last_ccc = c;
      }
      out.push_back(cp);
    }
    cps = std::move(out);
  }
  std::string r;
  r.reserve(s.size() + 8);
  for (uint32_t cp : cps) append_utf8(r, cp);
  return r;
}

}  // namespace coppice::tok
