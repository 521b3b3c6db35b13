// tokenizer.json loading and the encode pipeline; per-token decoders.
#include "tokenizer/hf_tokenizer.h"

#include <algorithm>
#include <cctype>
#include <functional>
#include <nlohmann/json.hpp>
#include <unordered_map>

#include "tokenizer/hf_components.h"
#include "tokenizer/unicode.h"
#include "util/error.h"

namespace coppice::tok {
namespace {

using hf::bool_or;
using hf::str_or;

using hf::Json;

[[noreturn]] void bad(const std::string& what) { fail("tokenizer", "tokenizer.json: " + what); }


// Byte trie of added-token texts; match() finds the longest token starting at a position.
class Trie {
 public:
  void add(std::string_view s, int32_t id) {
    int32_t node = 0;
    for (char c : s) {
      const uint64_t k = (uint64_t(uint32_t(node)) << 8) | static_cast<uint8_t>(c);
      auto it = edges_.find(k);
      if (it == edges_.end()) {
        it = edges_.emplace(k, static_cast<int32_t>(term_.size())).first;
        term_.push_back(-1);
      }
      node = it->second;
    }
    if (term_[node] < 0) term_[node] = id;
  }
  bool empty() const { return term_.size() == 1; }
  // (length, id) of the longest match at s[i], or (0, -1).
  std::pair<size_t, int32_t> match(std::string_view s, size_t i) const {
    std::pair<size_t, int32_t> best{0, -1};
    int32_t node = 0;
    for (size_t j = i; j < s.size(); ++j) {
      const auto it = edges_.find((uint64_t(uint32_t(node)) << 8) | static_cast<uint8_t>(s[j]));
      if (it == edges_.end()) break;
      node = it->second;
      if (term_[node] >= 0) best = {j + 1 - i, term_[node]};
    }
    return best;
  }

 private:
  std::unordered_map<uint64_t, int32_t> edges_;
  std::vector<int32_t> term_{-1};
};

struct Added {
  std::string content;
  int32_t id;
  bool special, lstrip, rstrip, single_word, normalized;
};

struct Section {
  std::string text;
  int32_t token;  // -1: plain text
};

bool is_word_byte_cp(uint32_t cp) {
  return cp == '_' || (cp < 128 ? (std::isalnum(static_cast<int>(cp)) != 0) : !is_punctuation(cp) && !is_bert_whitespace(cp));
}

std::string trim_ws(std::string s, bool left, bool right) {
  auto ws = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; };
  size_t b = 0, e = s.size();
  if (left) while (b < e && ws(s[b])) ++b;
  if (right) while (e > b && ws(s[e - 1])) --e;
  return s.substr(b, e - b);
}

// Token id of a tokenizer_config.json special-token entry (string or {"content": ...}).
std::string config_token(const Json& c, const char* key) {
  const auto it = c.find(key);
  if (it == c.end()) return {};
  if (it->is_string()) return it->get<std::string>();
  if (it->is_object()) return str_or(*it, "content", "");
  return {};
}

}  // namespace

namespace hf {

Decoder::Decoder(const Json& j) {
  bool fused = false;
  if (!j.is_null()) add(j, fused);
}

void Decoder::add(const Json& j, bool& fused) {
  const std::string t = str_or(j, "type", "");
  if (t == "Sequence") {
    for (const Json& d : j.at("decoders")) add(d, fused);
  } else if (t == "ByteLevel") {
    steps_.push_back({Step::ByteLevel, "", "", 0, 0});
  } else if (t == "Metaspace") {
    steps_.push_back({Step::Metaspace, str_or(j, "replacement", "\xE2\x96\x81"), "", 0, 0});
    const std::string scheme = str_or(j, "prepend_scheme", bool_or(j, "add_prefix_space", true) ? "always" : "never");
    if (scheme != "never") strip_leading_ = true;
  } else if (t == "ByteFallback") {
    steps_.push_back({Step::ByteFallback, "", "", 0, 0});
  } else if (t == "Fuse") {
    fused = true;
  } else if (t == "Strip") {
    const std::string content = str_or(j, "content", " ");
    const int start = j.value("start", 0), stop = j.value("stop", 0);
    if (fused) {
      if (start > 0 && content == " ") strip_leading_ = true;
    } else {
      steps_.push_back({Step::Strip, content, "", start, stop});
    }
  } else if (t == "Replace") {
    const Json& p = j.at("pattern");
    if (!p.contains("String")) bad("decoder Replace supports only String patterns");
    steps_.push_back({Step::Replace, p["String"].get<std::string>(), str_or(j, "content", ""), 0, 0});
  } else if (t == "WordPiece") {
    steps_.push_back({Step::WordPiece, str_or(j, "prefix", "##"), "", 0, 0});
    strip_leading_ = true;
  } else {
    bad("unsupported decoder type '" + t + "'");
  }
}

std::string Decoder::decode_token(std::string s) const {
  for (const Step& st : steps_) {
    switch (st.kind) {
      case Step::ByteLevel: {
        std::string out;
        for (size_t i = 0; i < s.size();) {
          const size_t b = i;
          const int byte = unicode_to_byte(next_cp(s, i));
          if (byte >= 0) out += static_cast<char>(byte); else out.append(s, b, i - b);
        }
        s = std::move(out);
        break;
      }
      case Step::Metaspace:
      case Step::Replace: {
        const std::string& from = st.a;
        const std::string to = st.kind == Step::Metaspace ? " " : st.b;
        if (from.empty()) break;
        std::string out;
        size_t last = 0;
        for (size_t p; (p = s.find(from, last)) != std::string::npos; last = p + from.size()) {
          out.append(s, last, p - last);
          out += to;
        }
        out.append(s, last, std::string::npos);
        s = std::move(out);
        break;
      }
      case Step::ByteFallback:
        if (s.size() == 6 && s.compare(0, 3, "<0x") == 0 && s[5] == '>' && std::isxdigit(static_cast<uint8_t>(s[3])) &&
            std::isxdigit(static_cast<uint8_t>(s[4]))) {
          s = std::string(1, static_cast<char>(std::stoi(s.substr(3, 2), nullptr, 16)));
        }
        break;
      case Step::Strip: {
        int a = st.start, b = st.stop;
        size_t lo = 0, hi = s.size();
        while (a-- > 0 && hi - lo >= st.a.size() && s.compare(lo, st.a.size(), st.a) == 0) lo += st.a.size();
        while (b-- > 0 && hi - lo >= st.a.size() && s.compare(hi - st.a.size(), st.a.size(), st.a) == 0) hi -= st.a.size();
        s = s.substr(lo, hi - lo);
        break;
      }
      case Step::WordPiece:
        if (s.compare(0, st.a.size(), st.a) == 0) s.erase(0, st.a.size()); else s = " " + s;
        break;
    }
  }
  return s;
}

}  // namespace hf

struct HfPipeline::Impl {
  std::unique_ptr<hf::Normalizer> normalizer;
  std::unique_ptr<hf::PreTokenizer> pre;
  std::unique_ptr<hf::TokenModel> model;
  std::unique_ptr<hf::Decoder> decoder;
  std::vector<Added> added;
  std::unordered_map<int32_t, size_t> added_by_id;
  Trie raw_all, raw_plain, norm_all, norm_plain;  // *_plain: non-special tokens only
  std::vector<int32_t> prefix, suffix;             // post-processor ids around one sequence
  std::vector<std::string> text;                   // id -> text (model or added)

  void split_added(std::string_view s, const Trie& t, std::vector<Section>& out) const {
    size_t start = 0;
    for (size_t i = 0; i < s.size();) {
      auto [len, id] = t.match(s, i);
      if (len > 0) {
        const Added& a = added[added_by_id.at(id)];
        if (a.single_word) {
          size_t k = i;
          bool ok = true;
          if (i > 0) {
            size_t p = i - 1;
            while (p > 0 && (static_cast<uint8_t>(s[p]) & 0xC0) == 0x80) --p;
            size_t q = p;
            if (is_word_byte_cp(next_cp(s, q))) ok = false;
          }
          k = i + len;
          if (k < s.size() && is_word_byte_cp(next_cp(s, k))) ok = false;
          if (!ok) len = 0;
        }
      }
      if (len == 0) { ++i; continue; }
      if (i > start) out.push_back({std::string(s.substr(start, i - start)), -1});
      out.push_back({std::string(s.substr(i, len)), id});
      i += len;
      start = i;
    }
    if (start < s.size()) out.push_back({std::string(s.substr(start)), -1});
    for (size_t k = 0; k < out.size(); ++k) {
      if (out[k].token < 0) continue;
      const Added& a = added[added_by_id.at(out[k].token)];
      if (a.lstrip && k > 0 && out[k - 1].token < 0) out[k - 1].text = trim_ws(out[k - 1].text, false, true);
      if (a.rstrip && k + 1 < out.size() && out[k + 1].token < 0) out[k + 1].text = trim_ws(out[k + 1].text, true, false);
    }
  }
};

HfPipeline::~HfPipeline() = default;

HfPipeline::HfPipeline(std::string_view tokenizer_json, std::string_view tokenizer_config, Vocab& v)
    : impl_(std::make_unique<Impl>()) {
  Impl& m = *impl_;
  Json j, cfg = Json::object();
  try {
    j = Json::parse(tokenizer_json);
    if (!tokenizer_config.empty()) cfg = Json::parse(tokenizer_config);
  } catch (const Json::exception& e) {
    bad(std::string("not valid JSON: ") + e.what());
  }
  if (!j.is_object() || !j.contains("model")) bad("no \"model\" object");
  try {
    m.model = hf::make_model(j.at("model"));
    m.normalizer = hf::make_normalizer(j.value("normalizer", Json()));
    m.pre = hf::make_pre_tokenizer(j.value("pre_tokenizer", Json()));
    m.decoder = std::make_unique<hf::Decoder>(j.value("decoder", Json()));
    m.text = m.model->vocab;
    for (const Json& a : j.value("added_tokens", Json::array())) {
      Added t{a.at("content").get<std::string>(), a.at("id").get<int32_t>(), bool_or(a, "special", false),
              bool_or(a, "lstrip", false), bool_or(a, "rstrip", false), bool_or(a, "single_word", false), false};
      t.normalized = bool_or(a, "normalized", !t.special);
      if (t.id < 0 || t.content.empty()) bad("added token '" + t.content + "' has a bad id or empty text");
      if (m.text.size() <= static_cast<size_t>(t.id)) m.text.resize(static_cast<size_t>(t.id) + 1);
      m.text[static_cast<size_t>(t.id)] = t.content;
      m.added_by_id[t.id] = m.added.size();
      m.added.push_back(std::move(t));
    }
    for (const Added& a : m.added) {
      if (a.normalized && m.normalizer) {
        const std::string n = m.normalizer->apply(a.content);
        m.norm_all.add(n, a.id);
        if (!a.special) m.norm_plain.add(n, a.id);
      } else {
        m.raw_all.add(a.content, a.id);
        if (!a.special) m.raw_plain.add(a.content, a.id);
      }
    }
    // Post-processor: special ids before and after the single sequence.
    auto find_id = [&](const std::string& s) -> int32_t {
      for (const Added& a : m.added) if (a.content == s) return a.id;
      const auto it = m.model->index.find(s);
      return it == m.model->index.end() ? -1 : it->second;
    };
    std::function<void(const Json&)> post = [&](const Json& p) {
      if (p.is_null()) return;
      const std::string t = str_or(p, "type", "");
      if (t == "Sequence") {
        for (const Json& q : p.at("processors")) post(q);
      } else if (t == "TemplateProcessing") {
        bool after = false;
        for (const Json& item : p.at("single")) {
          if (item.contains("Sequence")) { after = true; continue; }
          const std::string name = item.at("SpecialToken").at("id").get<std::string>();
          const Json& st = p.at("special_tokens").at(name);
          for (const Json& id : st.at("ids")) (after ? m.suffix : m.prefix).push_back(id.get<int32_t>());
        }
      } else if (t == "BertProcessing" || t == "RobertaProcessing") {
        m.prefix.push_back(p.at("cls").at(1).get<int32_t>());
        m.suffix.push_back(p.at("sep").at(1).get<int32_t>());
      } else if (t != "ByteLevel") {
        bad("unsupported post_processor type '" + t + "'");
      }
    };
    post(j.value("post_processor", Json()));

    // Vocabulary for the Tokenizer facade.
    const size_t n = m.text.size();
    v.model = "hf";
    v.text.resize(n);
    v.score.assign(n, 0.0f);
    v.type.assign(n, TokenType::Normal);
    for (size_t i = 0; i < n; ++i) {
      v.text[i] = m.text[i].empty() ? "[UNUSED_" + std::to_string(i) + "]" : m.text[i];
      if (m.text[i].empty()) v.type[i] = TokenType::Unused;
      const std::string& s = v.text[i];
      if (m.model->byte_fallback && s.size() == 6 && s.compare(0, 3, "<0x") == 0 && s[5] == '>') v.type[i] = TokenType::Byte;
      v.index.emplace(s, static_cast<int32_t>(i));
      v.max_token_len = std::max(v.max_token_len, s.size());
    }
    for (const Added& a : m.added) v.type[a.id] = a.special ? TokenType::Control : TokenType::UserDefined;
    if (m.model->unk >= 0) { v.unk = m.model->unk; v.type[m.model->unk] = TokenType::Unknown; }

    const std::string bos = config_token(cfg, "bos_token"), eos = config_token(cfg, "eos_token");
    v.bos = bos.empty() ? (m.prefix.empty() ? -1 : m.prefix.front()) : find_id(bos);
    v.eos = eos.empty() ? -1 : find_id(eos);
    if (const std::string pad = config_token(cfg, "pad_token"); !pad.empty()) v.pad = find_id(pad);
    if (const std::string unk = config_token(cfg, "unk_token"); !unk.empty() && find_id(unk) >= 0) v.unk = find_id(unk);
    // Explicit add_bos_token / add_eos_token win over the post-processor (as transformers' fast
    // Llama/Gemma tokenizers rebuild it from them).
    auto force = [](std::vector<int32_t>& ids, int32_t id, bool on, bool front) {
      if (id < 0) return;
      const auto it = std::find(ids.begin(), ids.end(), id);
      if (on && it == ids.end()) ids.insert(front ? ids.begin() : ids.end(), id);
      if (!on && it != ids.end()) ids.erase(it);
    };
    if (cfg.contains("add_bos_token") && cfg["add_bos_token"].is_boolean()) force(m.prefix, v.bos, cfg["add_bos_token"].get<bool>(), true);
    if (cfg.contains("add_eos_token") && cfg["add_eos_token"].is_boolean()) force(m.suffix, v.eos, cfg["add_eos_token"].get<bool>(), false);
    v.add_bos = v.bos >= 0 && std::find(m.prefix.begin(), m.prefix.end(), v.bos) != m.prefix.end();
    v.add_eos = v.eos >= 0 && std::find(m.suffix.begin(), m.suffix.end(), v.eos) != m.suffix.end();
    for (int32_t id : m.prefix) if (id < 0 || static_cast<size_t>(id) >= n) bad("post_processor token id " + std::to_string(id) + " out of range");
    for (int32_t id : m.suffix) if (id < 0 || static_cast<size_t>(id) >= n) bad("post_processor token id " + std::to_string(id) + " out of range");
  } catch (const Json::exception& e) {
    bad(std::string("unexpected structure: ") + e.what());
  }
}

void HfPipeline::encode(std::string_view text, bool add_special, bool parse_special, std::vector<int32_t>& out) const {
  const Impl& m = *impl_;
  if (add_special) out.insert(out.end(), m.prefix.begin(), m.prefix.end());
  std::vector<Section> sections, subs;
  m.split_added(text, parse_special ? m.raw_all : m.raw_plain, sections);
  std::vector<std::string> pieces;
  for (size_t i = 0; i < sections.size(); ++i) {
    const Section& sec = sections[i];
    if (sec.token >= 0) { out.push_back(sec.token); continue; }
    if (sec.text.empty()) continue;
    std::string norm = m.normalizer ? m.normalizer->apply(sec.text) : sec.text;
    if (norm.empty()) continue;
    subs.clear();
    m.split_added(norm, parse_special ? m.norm_all : m.norm_plain, subs);
    for (const Section& sub : subs) {
      if (sub.token >= 0) { out.push_back(sub.token); continue; }
      if (sub.text.empty()) continue;
      pieces.assign(1, sub.text);
      if (m.pre) m.pre->split(pieces, i == 0);
      for (const std::string& p : pieces) m.model->encode(p, out);
    }
  }
  if (add_special) out.insert(out.end(), m.suffix.begin(), m.suffix.end());
}

std::string HfPipeline::piece(int32_t id) const {
  const Impl& m = *impl_;
  if (id < 0 || static_cast<size_t>(id) >= m.text.size()) return {};
  return m.decoder->decode_token(m.text[static_cast<size_t>(id)]);
}

bool HfPipeline::strips_leading_space() const { return impl_->decoder->strips_leading_space(); }

}  // namespace coppice::tok
