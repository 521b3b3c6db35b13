// tokenizer.json models: BPE (merges by rank over token ids, byte fallback, ignore_merges,
// continuing-subword prefix / end-of-word suffix) and Unigram (Viterbi over the piece lattice).
#include <cmath>
#include <cstdio>
#include <limits>
#include <nlohmann/json.hpp>
#include <queue>
#include <unordered_map>

#include "tokenizer/hf_components.h"
#include "tokenizer/unicode.h"
#include "util/error.h"

namespace coppice::tok::hf {
namespace {

[[noreturn]] void bad(const std::string& what) { fail("tokenizer", "tokenizer.json: model: " + what); }


std::string byte_token(uint8_t b) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "<0x%02X>", b);
  return buf;
}

void put(TokenModel& m, const std::string& text, int64_t id) {
  if (id < 0 || id > std::numeric_limits<int32_t>::max()) bad("token id " + std::to_string(id) + " out of range");
  if (m.vocab.size() <= static_cast<size_t>(id)) m.vocab.resize(static_cast<size_t>(id) + 1);
  m.vocab[static_cast<size_t>(id)] = text;
  m.index.emplace(text, static_cast<int32_t>(id));
}

class Bpe final : public TokenModel {
 public:
  explicit Bpe(const Json& j) {
    const Json& v = j.at("vocab");
    if (!v.is_object()) bad("BPE vocab must be an object");
    for (auto it = v.begin(); it != v.end(); ++it) put(*this, it.key(), it.value().get<int64_t>());
    const std::string unk_text = str_or(j, "unk_token", "");
    unk = unk_text.empty() ? -1 : find(unk_text);
    byte_fallback = bool_or(j, "byte_fallback", false);
    fuse_unk_ = bool_or(j, "fuse_unk", false);
    ignore_merges_ = bool_or(j, "ignore_merges", false);
    prefix_ = str_or(j, "continuing_subword_prefix", "");
    suffix_ = str_or(j, "end_of_word_suffix", "");
    const Json& merges = j.at("merges");
    merges_.reserve(merges.size());
    int32_t rank = 0;
    for (const Json& m : merges) {
      std::string a, b;
      if (m.is_string()) {
        const std::string s = m.get<std::string>();
        const size_t sp = s.find(' ');
        if (sp == std::string::npos) bad("merge '" + s + "' is not two tokens");
        a = s.substr(0, sp);
        b = s.substr(sp + 1);
        if (b.find(' ') != std::string::npos) b.resize(b.find(' '));
      } else if (m.is_array() && m.size() == 2) {
        a = m[0].get<std::string>();
        b = m[1].get<std::string>();
      } else {
        bad("merge #" + std::to_string(rank) + " is neither \"a b\" nor [\"a\", \"b\"]");
      }
      const int32_t ia = find(a), ib = find(b);
      std::string ab = a + (prefix_.empty() || b.compare(0, prefix_.size(), prefix_) != 0 ? b : b.substr(prefix_.size()));
      const int32_t iab = find(ab);
      if (ia < 0 || ib < 0 || iab < 0) bad("merge '" + a + " " + b + "' uses a token outside the vocabulary");
      merges_.emplace(key(ia, ib), std::make_pair(rank, iab));
      ++rank;
    }
  }

  void encode(std::string_view w, std::vector<int32_t>& out) const override {
    if (w.empty()) return;
    if (ignore_merges_) {
      const int32_t id = find(w);
      if (id >= 0) { out.push_back(id); return; }
    }
    // Initial symbols: one per character (with prefix/suffix), byte tokens or unk otherwise.
    std::vector<int32_t> sym;
    std::string c;
    for (size_t i = 0; i < w.size();) {
      const size_t st = i;
      next_cp(w, i);
      c.clear();
      if (st > 0) c += prefix_;
      c.append(w.substr(st, i - st));
      if (i == w.size()) c += suffix_;
      const int32_t id = find(c);
      if (id >= 0) { sym.push_back(id); continue; }
      bool ok = byte_fallback;
      std::vector<int32_t> bytes;
      for (size_t k = st; ok && k < i; ++k) {
        const int32_t b = find(byte_token(static_cast<uint8_t>(w[k])));
        if (b < 0) ok = false; else bytes.push_back(b);
      }
      if (ok) { sym.insert(sym.end(), bytes.begin(), bytes.end()); continue; }
      if (unk >= 0) {
        if (fuse_unk_ && !sym.empty() && sym.back() == unk) continue;
        sym.push_back(unk);
      }
    }
    merge(sym);
    out.insert(out.end(), sym.begin(), sym.end());
  }

 private:
  static uint64_t key(int32_t a, int32_t b) { return (uint64_t(uint32_t(a)) << 32) | uint32_t(b); }
  int32_t find(std::string_view s) const {
    const auto it = index.find(s);
    return it == index.end() ? -1 : it->second;
  }

  void merge(std::vector<int32_t>& sym) const {
    const int n = static_cast<int>(sym.size());
    if (n < 2) return;
    std::vector<int> prev(n), next(n);
    std::vector<bool> alive(n, true);
    for (int i = 0; i < n; ++i) { prev[i] = i - 1; next[i] = i + 1 < n ? i + 1 : -1; }
    struct Cand { int32_t rank; int left; int32_t l_id, r_id; };
    auto cmp = [](const Cand& a, const Cand& b) { return a.rank > b.rank || (a.rank == b.rank && a.left > b.left); };
    std::priority_queue<Cand, std::vector<Cand>, decltype(cmp)> q(cmp);
    auto push = [&](int l) {
      if (l < 0 || next[l] < 0) return;
      const auto it = merges_.find(key(sym[l], sym[next[l]]));
      if (it != merges_.end()) q.push({it->second.first, l, sym[l], sym[next[l]]});
    };
    for (int i = 0; i + 1 < n; ++i) push(i);
    while (!q.empty()) {
      const Cand c = q.top();
      q.pop();
      const int l = c.left, r = next[l];
      if (!alive[l] || r < 0 || sym[l] != c.l_id || sym[r] != c.r_id) continue;  // stale
      sym[l] = merges_.at(key(c.l_id, c.r_id)).second;
      alive[r] = false;
      next[l] = next[r];
      if (next[r] >= 0) prev[next[r]] = l;
      push(prev[l]);
      push(l);
    }
    std::vector<int32_t> out;
    for (int i = 0; i >= 0; i = next[i]) out.push_back(sym[i]);
    sym = std::move(out);
  }

  std::unordered_map<uint64_t, std::pair<int32_t, int32_t>> merges_;  // (left, right) -> (rank, merged)
  bool fuse_unk_ = false, ignore_merges_ = false;
  std::string prefix_, suffix_;
};

// Unigram: the segmentation with the highest total log-probability (Viterbi); characters
// no piece covers become unk (score min - 10), consecutive unks fuse, byte fallback if set.
class Unigram final : public TokenModel {
 public:
  explicit Unigram(const Json& j) {
    const Json& v = j.at("vocab");
    if (!v.is_array()) bad("Unigram vocab must be an array of [piece, score]");
    scores_.reserve(v.size());
    float min_score = std::numeric_limits<float>::max();
    for (size_t i = 0; i < v.size(); ++i) {
      if (!v[i].is_array() || v[i].size() != 2) bad("Unigram vocab entry #" + std::to_string(i) + " is not [piece, score]");
      put(*this, v[i][0].get<std::string>(), static_cast<int64_t>(i));
      scores_.push_back(v[i][1].get<float>());
      min_score = std::min(min_score, scores_.back());
      max_len_ = std::max(max_len_, vocab.back().size());
    }
    if (j.contains("unk_id") && j["unk_id"].is_number_integer()) {
      unk = j["unk_id"].get<int32_t>();
      if (unk < 0 || unk >= static_cast<int32_t>(v.size())) bad("unk_id out of range");
    }
    byte_fallback = bool_or(j, "byte_fallback", false);
    unk_score_ = min_score - 10.0f;
  }

  void encode(std::string_view s, std::vector<int32_t>& out) const override {
    if (s.empty()) return;
    const size_t n = s.size();
    std::vector<double> best(n + 1, -std::numeric_limits<double>::infinity());
    std::vector<int32_t> tok(n + 1, -1);
    std::vector<size_t> from(n + 1, 0);
    best[0] = 0;
    for (size_t i = 0; i < n;) {
      size_t j = i;
      next_cp(s, j);
      if (best[i] > -std::numeric_limits<double>::infinity()) {
        bool single = false;
        for (size_t e = i + 1; e <= n && e - i <= max_len_; ++e) {
          if (e < n && (static_cast<uint8_t>(s[e]) & 0xC0) == 0x80) continue;
          const auto it = index.find(s.substr(i, e - i));
          if (it == index.end()) continue;
          if (e == j) single = true;
          const double sc = best[i] + scores_[it->second];
          if (sc > best[e]) { best[e] = sc; tok[e] = it->second; from[e] = i; }
        }
        if (!single) {
          const double sc = best[i] + unk_score_;
          if (sc > best[j]) { best[j] = sc; tok[j] = -2; from[j] = i; }
        }
      }
      i = j;
    }
    std::vector<std::pair<size_t, size_t>> spans;
    std::vector<int32_t> ids;
    for (size_t e = n; e > 0; e = from[e]) { spans.emplace_back(from[e], e); ids.push_back(tok[e]); }
    bool prev_unk = false;
    for (size_t k = ids.size(); k-- > 0;) {
      const int32_t id = ids[k];
      if (id != -2 && id != unk) { out.push_back(id); prev_unk = false; continue; }
      if (byte_fallback) {
        bool ok = true;
        std::vector<int32_t> bytes;
        for (size_t b = spans[k].first; ok && b < spans[k].second; ++b) {
          const auto it = index.find(byte_token(static_cast<uint8_t>(s[b])));
          if (it == index.end()) ok = false; else bytes.push_back(it->second);
        }
        if (ok) { out.insert(out.end(), bytes.begin(), bytes.end()); prev_unk = false; continue; }
      }
      if (unk >= 0 && !prev_unk) out.push_back(unk);
      prev_unk = true;
    }
  }

 private:
  std::vector<float> scores_;
  float unk_score_ = 0;
  size_t max_len_ = 0;
};

}  // namespace

std::unique_ptr<TokenModel> make_model(const Json& j) {
  const std::string t = str_or(j, "type", "");
  if (t == "BPE" || (t.empty() && j.contains("merges"))) return std::make_unique<Bpe>(j);
  if (t == "Unigram" || (t.empty() && j.contains("vocab") && j["vocab"].is_array())) return std::make_unique<Unigram>(j);
  bad("unsupported model type '" + t + "' (supported: BPE, Unigram)");
}

}  // namespace coppice::tok::hf
