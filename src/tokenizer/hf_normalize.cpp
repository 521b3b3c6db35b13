// tokenizer.json normalizers and the Pattern type they share with the pre-tokenizers.
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <nlohmann/json.hpp>

#include "tokenizer/hf_components.h"
#include "tokenizer/unicode.h"
#include "tokenizer/unicode_norm.h"
#include "util/error.h"

namespace coppice::tok::hf {
namespace {

[[noreturn]] void bad(const std::string& what) { fail("tokenizer", "tokenizer.json: " + what); }


bool is_ws(uint32_t cp) { return cp == ' ' || (cp >= 9 && cp <= 13) || is_bert_whitespace(cp) || cp == 0x85 || cp == 0x2028 || cp == 0x2029; }

class Seq final : public Normalizer {
 public:
  explicit Seq(const Json& list) {
    for (const Json& n : list)
      if (auto p = make_normalizer(n)) parts_.push_back(std::move(p));
  }
  std::string apply(std::string s) const override {
    for (const auto& p : parts_) s = p->apply(std::move(s));
    return s;
  }

 private:
  std::vector<std::unique_ptr<Normalizer>> parts_;
};

class Unicode final : public Normalizer {
 public:
  explicit Unicode(NormForm f) : f_(f) {}
  std::string apply(std::string s) const override { return unicode_normalize(s, f_); }

 private:
  NormForm f_;
};

class Lower final : public Normalizer {
 public:
  std::string apply(std::string s) const override {
    std::string out;
    out.reserve(s.size());
    for (size_t i = 0; i < s.size();) append_utf8(out, to_lower(next_cp(s, i)));
    return out;
  }
};

class StripN final : public Normalizer {
 public:
  StripN(bool l, bool r) : l_(l), r_(r) {}
  std::string apply(std::string s) const override {
    size_t b = 0, e = s.size();
    if (l_) {
      for (size_t i = b; i < s.size();) {
        if (!is_ws(next_cp(s, i))) break;
        b = i;
      }
    }
    if (r_) {
      e = b;
      for (size_t i = b; i < s.size();)
        if (!is_ws(next_cp(s, i))) e = i;
    }
    return s.substr(b, e - b);
  }

 private:
  bool l_, r_;
};

class StripAccents final : public Normalizer {
 public:
  std::string apply(std::string s) const override {
    std::string out;
    for (size_t i = 0; i < s.size();) {
      const uint32_t cp = next_cp(s, i);
      if (!is_mark_nonspacing(cp)) append_utf8(out, cp);
    }
    return out;
  }
};

class ReplaceN final : public Normalizer {
 public:
  explicit ReplaceN(const Json& j) : p_(j.at("pattern")), content_(str_or(j, "content", "")) {}
  std::string apply(std::string s) const override {
    std::string out;
    size_t last = 0;
    for (const auto& [b, e] : p_.find_all(s)) {
      out.append(s, last, b - last);
      out += content_;
      last = e;
    }
    out.append(s, last, std::string::npos);
    return out;
  }

 private:
  Pattern p_;
  std::string content_;
};

class Prepend final : public Normalizer {
 public:
  explicit Prepend(std::string p) : p_(std::move(p)) {}
  std::string apply(std::string s) const override { return s.empty() ? s : p_ + s; }

 private:
  std::string p_;
};

// BertNormalizer: clean control characters, space around CJK, optional accents and case.
class Bert final : public Normalizer {
 public:
  explicit Bert(const Json& j)
      : clean_(bool_or(j, "clean_text", true)), cjk_(bool_or(j, "handle_chinese_chars", true)),
        lower_(bool_or(j, "lowercase", true)),
        strip_(j.contains("strip_accents") && j["strip_accents"].is_boolean() ? j["strip_accents"].get<bool>() : lower_) {}
  std::string apply(std::string s) const override {
    std::string out;
    for (size_t i = 0; i < s.size();) {
      const uint32_t cp = next_cp(s, i);
      if (clean_ && (cp == 0 || cp == 0xFFFD || is_bert_control(cp))) continue;
      if (clean_ && is_bert_whitespace(cp)) { out += ' '; continue; }
      if (cjk_ && is_cjk(cp)) { out += ' '; append_utf8(out, cp); out += ' '; continue; }
      append_utf8(out, cp);
    }
    if (strip_) out = StripAccents().apply(unicode_normalize(out, NormForm::NFD));
    if (lower_) out = Lower().apply(std::move(out));
    return out;
  }

 private:
  bool clean_, cjk_, lower_, strip_;
};

}  // namespace

Pattern::Pattern(const Json& j) {
  if (j.contains("String") && j["String"].is_string()) {
    literal_ = j["String"].get<std::string>();
    if (literal_.empty()) bad("empty String pattern");
    return;
  }
  if (!j.contains("Regex") || !j["Regex"].is_string()) bad("pattern must be {\"String\": ...} or {\"Regex\": ...}");
  const std::string rx = j["Regex"].get<std::string>();
  int err = 0;
  PCRE2_SIZE off = 0;
  code_ = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(rx.data()), rx.size(),
                        PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &err, &off, nullptr);
  if (!code_) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(err, msg, sizeof msg);
    bad("regex '" + rx + "': " + reinterpret_cast<char*>(msg) + " at offset " + std::to_string(off));
  }
  pcre2_jit_compile(static_cast<pcre2_code*>(code_), PCRE2_JIT_COMPLETE);
}

Pattern::~Pattern() {
  if (code_) pcre2_code_free(static_cast<pcre2_code*>(code_));
}

std::vector<std::pair<size_t, size_t>> Pattern::find_all(std::string_view s) const {
  std::vector<std::pair<size_t, size_t>> out;
  if (!code_) {
    for (size_t p = 0; (p = s.find(literal_, p)) != std::string_view::npos; p += literal_.size())
      out.emplace_back(p, p + literal_.size());
    return out;
  }
  const auto* code = static_cast<const pcre2_code*>(code_);
  pcre2_match_data* md = pcre2_match_data_create_from_pattern(code, nullptr);
  const auto* subj = reinterpret_cast<PCRE2_SPTR>(s.data());
  size_t pos = 0;
  while (pos <= s.size()) {
    int rc = pcre2_match(code, subj, s.size(), pos, 0, md, nullptr);
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT) rc = pcre2_match(code, subj, s.size(), pos, PCRE2_NO_JIT, md, nullptr);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) {
      pcre2_match_data_free(md);
      fail("tokenizer", "tokenizer.json: regex match failed (pcre2 error " + std::to_string(rc) + ")");
    }
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
    if (ov[1] > ov[0]) {
      out.emplace_back(ov[0], ov[1]);
      pos = ov[1];
    } else {  // empty match: no split, move one character on
      if (ov[0] >= s.size()) break;
      pos = ov[0] + 1;
      while (pos < s.size() && (static_cast<uint8_t>(s[pos]) & 0xC0) == 0x80) ++pos;
    }
  }
  pcre2_match_data_free(md);
  return out;
}

std::unique_ptr<Normalizer> make_normalizer(const Json& j) {
  if (j.is_null()) return nullptr;
  const std::string t = str_or(j, "type", "");
  if (t == "Sequence") return std::make_unique<Seq>(j.at("normalizers"));
  if (t == "NFC") return std::make_unique<Unicode>(NormForm::NFC);
  if (t == "NFD") return std::make_unique<Unicode>(NormForm::NFD);
  if (t == "NFKC") return std::make_unique<Unicode>(NormForm::NFKC);
  if (t == "NFKD") return std::make_unique<Unicode>(NormForm::NFKD);
  if (t == "Lowercase") return std::make_unique<Lower>();
  if (t == "Strip") return std::make_unique<StripN>(bool_or(j, "strip_left", true), bool_or(j, "strip_right", true));
  if (t == "StripAccents") return std::make_unique<StripAccents>();
  if (t == "Replace") return std::make_unique<ReplaceN>(j);
  if (t == "Prepend") return std::make_unique<Prepend>(str_or(j, "prepend", ""));
  if (t == "BertNormalizer") return std::make_unique<Bert>(j);
  bad("unsupported normalizer type '" + t + "'");
}

}  // namespace coppice::tok::hf
