// Tokenizer: vocabulary set-up from GGUF metadata, special-token partitioning, dispatch to
// the model, and detokenization.
#include "tokenizer/tokenizer.h"

#include <algorithm>
#include <cstdio>

#include "tokenizer/hf_tokenizer.h"
#include "tokenizer/unicode.h"
#include "util/error.h"

namespace coppice {
namespace {

using tok::TokenType;

[[noreturn]] void meta_fail(const tok::Metadata& m, const std::string& what) {
  fail("tokenizer", (m.source.empty() ? std::string("metadata") : m.source) + ": " + what);
}

void check_len(const tok::Metadata& m, const char* key, size_t n) {
  if (n != m.tokens.size()) {
    meta_fail(m, std::string(key) + " has " + std::to_string(n) + " entries but tokenizer.ggml.tokens has " +
                     std::to_string(m.tokens.size()));
  }
}

// Special ids: a key outside the vocabulary (e.g. 0xFFFFFFFF for "none") keeps the default.
void set_id(int32_t& dst, const std::optional<int64_t>& v, size_t n) {
  if (v && *v >= 0 && *v < static_cast<int64_t>(n)) dst = static_cast<int32_t>(*v);
}

// End-of-turn tokens that converters often leave unlabelled (llama.cpp finds them by text),
// then the end-of-generation set.
void find_eog(tok::Vocab& v) {
  if (v.eot < 0) {
    for (const char* name : {"<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>",
                             "<|end_of_text|>", "<EOT>", "_<EOT>", "<｜end▁of▁sentence｜>", "<end_of_utterance>"}) {
      const int32_t id = v.find(name);
      if (id >= 0) {
        v.eot = id;
        if (v.type[id] != TokenType::Control && v.type[id] != TokenType::UserDefined) v.type[id] = TokenType::Control;
        break;
      }
    }
  }
  if (v.eom < 0) v.eom = v.find("<|eom_id|>");
  for (int32_t id : {v.eos, v.eot, v.eom}) {
    if (id >= 0 && std::find(v.eog.begin(), v.eog.end(), id) == v.eog.end()) v.eog.push_back(id);
  }
}

}  // namespace

Tokenizer::Tokenizer(tok::Vocab vocab) : vocab_(std::move(vocab)) {}
Tokenizer::~Tokenizer() = default;

std::unique_ptr<Tokenizer> Tokenizer::from_gguf(const gguf::File& f) {
  if (const auto json = f.get_string("tokenizer.huggingface.json")) {
    return from_hf_json(*json, f.get_string("tokenizer.huggingface.config").value_or(""), f.path());
  }
  tok::Metadata m;
  m.source = f.path();
  const auto model = f.get_string("tokenizer.ggml.model");
  if (!model) meta_fail(m, "no tokenizer metadata: key 'tokenizer.ggml.model' is missing");
  m.model = *model;
  m.pre = f.get_string("tokenizer.ggml.pre").value_or("");
  const auto* tokens = f.get_string_array("tokenizer.ggml.tokens");
  if (!tokens) meta_fail(m, "key 'tokenizer.ggml.tokens' is missing or not a string array");
  m.tokens = *tokens;
  m.scores = f.get_f32_array("tokenizer.ggml.scores");
  m.token_types = f.get_i32_array("tokenizer.ggml.token_type");
  if (const auto* merges = f.get_string_array("tokenizer.ggml.merges")) m.merges = *merges;
  m.bos = f.get_int("tokenizer.ggml.bos_token_id");
  m.eos = f.get_int("tokenizer.ggml.eos_token_id");
  m.unk = f.get_int("tokenizer.ggml.unknown_token_id");
  m.sep = f.get_int("tokenizer.ggml.seperator_token_id");
  m.pad = f.get_int("tokenizer.ggml.padding_token_id");
  m.eot = f.get_int("tokenizer.ggml.eot_token_id");
  m.eom = f.get_int("tokenizer.ggml.eom_token_id");
  m.cls = f.get_int("tokenizer.ggml.cls_token_id");
  m.mask = f.get_int("tokenizer.ggml.mask_token_id");
  m.add_bos = f.get_bool("tokenizer.ggml.add_bos_token");
  m.add_eos = f.get_bool("tokenizer.ggml.add_eos_token");
  m.add_sep = f.get_bool("tokenizer.ggml.add_sep_token");
  m.add_space_prefix = f.get_bool("tokenizer.ggml.add_space_prefix");
  return from_metadata(std::move(m));
}

std::unique_ptr<Tokenizer> Tokenizer::from_hf_json(std::string_view tokenizer_json, std::string_view tokenizer_config,
                                                   const std::string& source) {
  tok::Vocab v;
  std::unique_ptr<tok::HfPipeline> hf;
  try {
    hf = std::make_unique<tok::HfPipeline>(tokenizer_json, tokenizer_config, v);
  } catch (const Error& e) {
    std::string msg = e.what();
    if (msg.rfind("[tokenizer] ", 0) == 0) msg.erase(0, 12);
    fail("tokenizer", source + ": " + msg);
  }
  v.source = source;
  find_eog(v);
  std::unique_ptr<Tokenizer> t(new Tokenizer(std::move(v)));
  t->hf_ = std::move(hf);
  for (int32_t id = 0; id < t->n_vocab(); ++id) {
    const TokenType ty = t->vocab_.type[id];
    if (ty == TokenType::Control || ty == TokenType::UserDefined) t->special_by_len_.push_back(id);
  }
  return t;
}

std::unique_ptr<Tokenizer> Tokenizer::from_metadata(tok::Metadata m) {
  if (m.tokens.empty()) meta_fail(m, "tokenizer.ggml.tokens is empty");
  const size_t n = m.tokens.size();
  if (n > static_cast<size_t>(INT32_MAX)) meta_fail(m, "tokenizer.ggml.tokens too large");
  if (m.scores) check_len(m, "tokenizer.ggml.scores", m.scores->size());
  if (m.token_types) check_len(m, "tokenizer.ggml.token_type", m.token_types->size());

  tok::Vocab v;
  v.model = m.model;
  v.pre = m.pre;
  v.source = m.source.empty() ? "metadata" : m.source;
  v.text = std::move(m.tokens);
  v.score = m.scores ? std::move(*m.scores) : std::vector<float>(n, 0.0f);
  v.type.resize(n, TokenType::Normal);
  if (m.token_types) {
    for (size_t i = 0; i < n; ++i) {
      const int32_t t = (*m.token_types)[i];
      v.type[i] = (t >= 0 && t <= 6) ? static_cast<TokenType>(t) : TokenType::Undefined;
    }
  }
  v.index.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    if (v.text[i].empty()) v.text[i] = "[EMPTY_" + std::to_string(i) + "]";  // as llama.cpp
    v.index.emplace(v.text[i], static_cast<int32_t>(i));
    v.max_token_len = std::max(v.max_token_len, v.text[i].size());
  }

  // Per-model defaults (llama.cpp's), then the file's keys.
  if (v.model == "llama") {
    v.bos = 1; v.eos = 2; v.unk = 0;
    v.add_bos = true;
    v.add_space_prefix = true;
  } else if (v.model == "gpt2") {
    if (!m.merges) meta_fail(m, "tokenizer.ggml.model is 'gpt2' but key 'tokenizer.ggml.merges' is missing");
    v.merges = std::move(*m.merges);
    v.bos = v.eos = 11;
    if (v.pre.empty()) {
      std::fprintf(stderr, "[tokenizer] %s: no tokenizer.ggml.pre, using the 'default' pre-tokenizer\n",
                   v.source.c_str());
    }
    v.add_bos = tok::bpe_default_add_bos(v.pre);
  } else if (v.model == "bert") {
    v.bos = 101; v.unk = 100; v.sep = 102; v.pad = 0;
    v.add_bos = v.add_eos = true;
  } else {
    meta_fail(m, "unsupported tokenizer.ggml.model '" + v.model + "' (supported: llama, gpt2, bert)");
  }
  set_id(v.bos, m.bos, n);
  set_id(v.eos, m.eos, n);
  set_id(v.unk, m.unk, n);
  set_id(v.sep, m.sep, n);
  set_id(v.pad, m.pad, n);
  set_id(v.eot, m.eot, n);
  set_id(v.eom, m.eom, n);
  if (v.model == "bert") {
    set_id(v.bos, m.cls, n);
    if (v.eos < 0) v.eos = v.sep;  // [SEP] closes the sequence
    if (m.add_sep) v.add_eos = *m.add_sep; else if (m.add_eos) v.add_eos = *m.add_eos;
    if (m.add_bos) v.add_bos = *m.add_bos;
  } else {
    if (m.add_bos) v.add_bos = *m.add_bos;
    if (m.add_eos) v.add_eos = *m.add_eos;
  }
  if (m.add_space_prefix && v.model == "llama") v.add_space_prefix = *m.add_space_prefix;

  find_eog(v);

  std::unique_ptr<Tokenizer> t(new Tokenizer(std::move(v)));
  const tok::Vocab& vv = t->vocab_;
  if (vv.model == "llama") t->impl_ = tok::make_spm(vv);
  else if (vv.model == "gpt2") t->impl_ = tok::make_bpe(vv);
  else t->impl_ = tok::make_wordpiece(vv);

  for (int32_t id = 0; id < static_cast<int32_t>(n); ++id) {
    const TokenType ty = vv.type[id];
    if (ty == TokenType::Control || ty == TokenType::UserDefined || ty == TokenType::Unknown) {
      t->special_by_len_.push_back(id);
    }
  }
  std::stable_sort(t->special_by_len_.begin(), t->special_by_len_.end(), [&vv](int32_t a, int32_t b) {
    return vv.text[a].size() > vv.text[b].size();
  });
  return t;
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_special, bool parse_special) const {
  if (hf_) {
    std::vector<int32_t> out;
    hf_->encode(text, add_special, parse_special, out);
    return out;
  }
  // Fragments: raw text ranges (token < 0) or one special token. Each special token, longest
  // first, splits every remaining raw fragment (llama.cpp's tokenizer_st_partition).
  struct Frag {
    size_t begin, len;
    int32_t token;
  };
  std::vector<Frag> frags;
  if (!text.empty()) frags.push_back({0, text.size(), -1});
  for (int32_t id : special_by_len_) {
    const TokenType ty = vocab_.type[id];
    if (!parse_special && ty != TokenType::UserDefined) continue;
    const std::string& s = vocab_.text[id];
    if (s.empty()) continue;
    std::vector<Frag> next;
    bool changed = false;
    for (const Frag& f : frags) {
      if (f.token >= 0 || f.len < s.size()) {
        next.push_back(f);
        continue;
      }
      const std::string_view body = text.substr(f.begin, f.len);
      size_t pos = 0;
      for (size_t hit; (hit = body.find(s, pos)) != std::string_view::npos; pos = hit + s.size()) {
        if (hit > pos) next.push_back({f.begin + pos, hit - pos, -1});
        next.push_back({f.begin + hit, s.size(), id});
        changed = true;
      }
      if (pos < f.len) next.push_back({f.begin + pos, f.len - pos, -1});
    }
    if (changed) frags = std::move(next);
  }

  std::vector<int32_t> out;
  if (add_special && vocab_.add_bos && vocab_.bos >= 0) out.push_back(vocab_.bos);
  bool prev_special = true;  // SPM: a space is prefixed to text at the start or after a special token
  std::string buf;
  for (const Frag& f : frags) {
    if (f.token >= 0) {
      out.push_back(f.token);
      prev_special = true;
      continue;
    }
    const std::string_view s = text.substr(f.begin, f.len);
    if (vocab_.model == "llama" && vocab_.add_space_prefix && prev_special) {
      buf.assign(1, ' ');
      buf += s;
      impl_->encode(buf, out);
    } else {
      impl_->encode(s, out);
    }
    prev_special = false;
  }
  if (add_special && vocab_.add_eos && vocab_.eos >= 0) out.push_back(vocab_.eos);
  return out;
}

std::string Tokenizer::token_to_piece(int32_t id, bool render_special) const {
  if (id < 0 || id >= n_vocab()) return {};
  const std::string& t = vocab_.text[id];
  if (hf_) {
    const TokenType ty = vocab_.type[id];
    if (ty == TokenType::Control || ty == TokenType::Unknown || ty == TokenType::Unused) return render_special ? t : std::string();
    return hf_->piece(id);
  }
  switch (vocab_.type[id]) {
    case TokenType::Control:
    case TokenType::Unknown:
      return render_special ? t : std::string();
    case TokenType::UserDefined:
      return t;
    case TokenType::Byte:
      if (vocab_.model != "gpt2" && t.size() == 6 && t.compare(0, 3, "<0x") == 0) {
        return std::string(1, static_cast<char>(std::stoi(t.substr(3, 2), nullptr, 16)));
      }
      break;
    case TokenType::Normal:
      break;
    default:  // unused / undefined: suppressed like control tokens
      return render_special ? t : std::string();
  }
  std::string out;
  if (vocab_.model == "gpt2") {
    for (size_t i = 0; i < t.size();) {
      const size_t start = i;
      const int b = tok::unicode_to_byte(tok::next_cp(t, i));
      if (b >= 0) out += static_cast<char>(b); else out.append(t, start, i - start);
    }
    return out;
  }
  // SentencePiece / WordPiece: U+2581 stands for a space.
  out.reserve(t.size());
  for (size_t i = 0; i < t.size();) {
    if (t.compare(i, 3, "\xE2\x96\x81") == 0) {
      out += ' ';
      i += 3;
    } else {
      out += t[i++];
    }
  }
  return out;
}

bool Tokenizer::strips_leading_space() const {
  if (hf_) return hf_->strips_leading_space();
  return (vocab_.model == "llama" && vocab_.add_space_prefix) || vocab_.model == "bert";
}

std::string Tokenizer::decode(std::span<const int32_t> ids, bool render_special) const {
  StreamDecoder d(*this, render_special);
  std::string out;
  for (int32_t id : ids) out += d.push(id);
  out += d.flush();
  return out;
}

bool Tokenizer::is_eog(int32_t id) const {
  return id >= 0 && std::find(vocab_.eog.begin(), vocab_.eog.end(), id) != vocab_.eog.end();
}

bool Tokenizer::is_control(int32_t id) const {
  return id >= 0 && id < n_vocab() && vocab_.type[id] == TokenType::Control;
}

tok::TokenType Tokenizer::token_type(int32_t id) const {
  return (id >= 0 && id < n_vocab()) ? vocab_.type[id] : TokenType::Undefined;
}

const std::string& Tokenizer::token_text(int32_t id) const {
  if (id < 0 || id >= n_vocab()) {
    fail("tokenizer", "token id " + std::to_string(id) + " out of range [0, " + std::to_string(n_vocab()) + ")");
  }
  return vocab_.text[id];
}

std::string StreamDecoder::push(int32_t id) {
  std::string piece = tok_.token_to_piece(id, render_special_);
  if (piece.empty()) return {};
  if (!started_) {
    started_ = true;
    if (tok_.strips_leading_space() && piece[0] == ' ') piece.erase(0, 1);
  }
  pending_ += piece;
  const size_t hold = tok::incomplete_utf8_tail(pending_);
  std::string out = pending_.substr(0, pending_.size() - hold);
  pending_.erase(0, pending_.size() - hold);
  return out;
}

std::string StreamDecoder::flush() {
  std::string out;
  out.swap(pending_);
  return out;
}

void StreamDecoder::reset() {
  started_ = false;
  pending_.clear();
}

}  // namespace coppice
