// Splits a template into text and tag tokens, applying jinja2's whitespace control exactly as
// jinja2/lexer.py does with trim_blocks=True, lstrip_blocks=True (Hugging Face's settings).
#include <cctype>
#include <cstring>

#include "chat/jinja_ast.h"
#include "util/utf8.h"
#include "util/error.h"

namespace coppice::chat::jinja {

void template_error(int line, const std::string& what) {
  coppice::fail("template", "line " + std::to_string(line) + ": " + what);
}

namespace {

bool is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

int count_newlines(const std::string& s, size_t b, size_t e) {
  int n = 0;
  for (size_t i = b; i < e && i < s.size(); ++i) n += s[i] == '\n';
  return n;
}

// Text before a tag: `-` strips trailing whitespace; otherwise lstrip_blocks removes the
// indentation before a block/comment tag that starts its line.
std::string strip_before_tag(std::string text, char sign, bool is_var, bool line_starting) {
  if (sign == '-') return py_strip(text, false, true, nullptr);
  if (sign == '+' || is_var) return text;
  size_t nl = text.rfind('\n');
  size_t l_pos = nl == std::string::npos ? 0 : nl + 1;
  if (l_pos == 0 && !line_starting) return text;
  if (l_pos == text.size()) return text;
  for (size_t i = l_pos; i < text.size(); ++i)
    if (!is_ws(text[i])) return text;
  text.resize(l_pos);
  return text;
}

// Python "unicode-escape" decoding of a string literal's body, as jinja2 applies it.
std::string decode_string(const std::string& body, int line) {
  std::string out;
  for (size_t i = 0; i < body.size(); ++i) {
    char c = body[i];
    if (c != '\\' || i + 1 >= body.size()) { out += c; continue; }
    char e = body[++i];
    auto hex = [&](int digits) -> uint32_t {
      if (i + static_cast<size_t>(digits) >= body.size())
        template_error(line, "truncated \\x/\\u escape in string literal");
      uint32_t v = 0;
      for (int k = 1; k <= digits; ++k) {
        char h = body[i + static_cast<size_t>(k)];
        if (!std::isxdigit(static_cast<unsigned char>(h))) template_error(line, "bad escape in string literal");
        v = v * 16 + static_cast<uint32_t>(std::isdigit(static_cast<unsigned char>(h)) ? h - '0' : (std::tolower(h) - 'a' + 10));
      }
      i += static_cast<size_t>(digits);
      return v;
    };
    switch (e) {
      case '\n': break;
      case '\\': out += '\\'; break;
      case '\'': out += '\''; break;
      case '"': out += '"'; break;
      case 'a': out += '\a'; break;
      case 'b': out += '\b'; break;
      case 'f': out += '\f'; break;
      case 'n': out += '\n'; break;
      case 'r': out += '\r'; break;
      case 't': out += '\t'; break;
      case 'v': out += '\v'; break;
      case 'x': append_utf8(out, hex(2)); break;
      case 'u': append_utf8(out, hex(4)); break;
      case 'U': {
        uint32_t cp = hex(8);
        if (cp > 0x10FFFF) template_error(line, "illegal Unicode character in string literal");
        append_utf8(out, cp);
        break;
      }
      default:
        if (e >= '0' && e <= '7') {
          uint32_t v = static_cast<uint32_t>(e - '0');
          for (int k = 0; k < 2 && i + 1 < body.size() && body[i + 1] >= '0' && body[i + 1] <= '7'; ++k)
            v = v * 8 + static_cast<uint32_t>(body[++i] - '0');
          append_utf8(out, v);
        } else {
          out += '\\';
          out += e;
        }
    }
  }
  return out;
}

class Lexer {
 public:
  explicit Lexer(std::string src) : s_(std::move(src)) {}

  std::vector<Token> run() {
    size_t n = s_.size();
    while (pos_ < n) {
      size_t t = find_tag(pos_);
      if (t == std::string::npos) {
        emit_data(s_.substr(pos_), line_);
        line_ += count_newlines(s_, pos_, n);
        break;
      }
      char kind = s_[t + 1];
      size_t p = t + 2;
      char sign = (p < n && (s_[p] == '-' || s_[p] == '+')) ? s_[p] : 0;
      bool line_starting = pos_ == 0 || s_[pos_ - 1] == '\n';
      int text_line = line_;
      std::string text = strip_before_tag(s_.substr(pos_, t - pos_), sign, kind == '{', line_starting);
      emit_data(std::move(text), text_line);
      line_ += count_newlines(s_, pos_, t);
      pos_ = p + (sign ? 1 : 0);
      if (kind == '#') lex_comment();
      else if (kind == '%' && try_raw()) continue;
      else lex_tag(kind);
    }
    toks_.push_back({Tok::Eof, "", line_});
    return std::move(toks_);
  }

 private:
  size_t find_tag(size_t from) const {
    for (size_t i = s_.find('{', from); i != std::string::npos; i = s_.find('{', i + 1)) {
      if (i + 1 < s_.size() && (s_[i + 1] == '{' || s_[i + 1] == '%' || s_[i + 1] == '#')) return i;
    }
    return std::string::npos;
  }

  void emit_data(std::string text, int line) {
    if (!text.empty()) toks_.push_back({Tok::Data, std::move(text), line});
  }

  // After a tag end: `-` eats all following whitespace, plain ends of blocks/comments eat one
  // newline (trim_blocks), `+` keeps everything.
  void after_end(size_t end_pos, char sign, bool block_like) {
    size_t p = end_pos;
    if (sign == '-') {
      while (p < s_.size() && is_ws(s_[p])) ++p;
    } else if (sign != '+' && block_like && p < s_.size() && s_[p] == '\n') {
      ++p;
    }
    line_ += count_newlines(s_, pos_, p);
    pos_ = p;
  }

  void lex_comment() {
    size_t q = s_.find("#}", pos_);
    if (q == std::string::npos) template_error(line_, "missing end of comment tag");
    char sign = (q > pos_ && (s_[q - 1] == '-' || s_[q - 1] == '+')) ? s_[q - 1] : 0;
    after_end(q + 2, sign, true);
  }

  // {% raw %}...{% endraw %}: body copied verbatim (its own whitespace rules apply at the ends).
  bool try_raw() {
    size_t p = pos_;
    while (p < s_.size() && is_ws(s_[p])) ++p;
    if (s_.compare(p, 3, "raw") != 0) return false;
    p += 3;
    while (p < s_.size() && is_ws(s_[p])) ++p;
    size_t body;
    if (s_.compare(p, 3, "-%}") == 0) {
      body = p + 3;
      while (body < s_.size() && is_ws(s_[body])) ++body;
    } else if (s_.compare(p, 2, "%}") == 0) {
      body = p + 2;
    } else {
      return false;
    }
    for (size_t q = s_.find("{%", body); q != std::string::npos; q = s_.find("{%", q + 1)) {
      size_t r = q + 2;
      char sign = (r < s_.size() && (s_[r] == '-' || s_[r] == '+')) ? s_[r] : 0;
      if (sign) ++r;
      while (r < s_.size() && is_ws(s_[r])) ++r;
      if (s_.compare(r, 6, "endraw") != 0) continue;
      r += 6;
      while (r < s_.size() && is_ws(s_[r])) ++r;
      char esign = 0;
      if (r < s_.size() && (s_[r] == '-' || s_[r] == '+')) esign = s_[r++];
      if (s_.compare(r, 2, "%}") != 0) continue;
      bool line_starting = body > 0 && s_[body - 1] == '\n';
      line_ += count_newlines(s_, pos_, body);
      emit_data(strip_before_tag(s_.substr(body, q - body), sign, false, line_starting), line_);
      pos_ = body;
      after_end(r + 2, esign, true);
      return true;
    }
    template_error(line_, "missing end of raw directive");
  }

  void lex_tag(char kind) {
    toks_.push_back({kind == '{' ? Tok::VarBegin : Tok::BlockBegin, "", line_});
    std::vector<char> stack;
    size_t n = s_.size();
    for (;;) {
      while (pos_ < n && is_ws(s_[pos_])) line_ += s_[pos_++] == '\n';
      if (pos_ >= n) template_error(line_, "unexpected end of template, tag not closed");
      if (stack.empty()) {
        const char* close = kind == '{' ? "}}" : "%}";
        char sign = 0;
        size_t q = pos_;
        if (s_[q] == '-' || s_[q] == '+') { sign = s_[q]; ++q; }
        if (s_.compare(q, 2, close) == 0 && !(kind == '{' && sign == '+')) {
          toks_.push_back({kind == '{' ? Tok::VarEnd : Tok::BlockEnd, "", line_});
          after_end(q + 2, sign, kind == '%');
          return;
        }
      }
      lex_token(stack);
    }
  }

  void lex_token(std::vector<char>& stack) {
    size_t n = s_.size();
    char c = s_[pos_];
    int line = line_;
    if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
      size_t b = pos_;
      while (pos_ < n && (std::isalnum(static_cast<unsigned char>(s_[pos_])) || s_[pos_] == '_')) ++pos_;
      toks_.push_back({Tok::Name, s_.substr(b, pos_ - b), line});
      return;
    }
    if (std::isdigit(static_cast<unsigned char>(c))) {
      lex_number();
      return;
    }
    if (c == '\'' || c == '"') {
      size_t b = ++pos_;
      while (pos_ < n && s_[pos_] != c) pos_ += s_[pos_] == '\\' ? 2 : 1;
      if (pos_ >= n) template_error(line, "unterminated string literal");
      std::string body = s_.substr(b, pos_ - b);
      ++pos_;
      line_ += count_newlines(body, 0, body.size());
      toks_.push_back({Tok::String, decode_string(body, line), line});
      return;
    }
    static const char* ops2[] = {"//", "**", "==", "!=", ">=", "<="};
    for (const char* op : ops2) {
      if (s_.compare(pos_, 2, op) == 0) {
        toks_.push_back({Tok::Op, op, line});
        pos_ += 2;
        return;
      }
    }
    if (std::strchr("+-/*%~[](){}><=.:|,;", c) == nullptr)
      template_error(line, std::string("unexpected char '") + c + "'");
    if (c == '(' || c == '[' || c == '{') stack.push_back(c);
    if (c == ')' || c == ']' || c == '}') {
      char open = c == ')' ? '(' : c == ']' ? '[' : '{';
      if (stack.empty() || stack.back() != open) template_error(line, std::string("unexpected '") + c + "'");
      stack.pop_back();
    }
    toks_.push_back({Tok::Op, std::string(1, c), line});
    ++pos_;
  }

  void lex_number() {
    size_t n = s_.size(), b = pos_;
    auto digits = [&] {
      while (pos_ < n && (std::isdigit(static_cast<unsigned char>(s_[pos_])) ||
                          (s_[pos_] == '_' && pos_ + 1 < n && std::isdigit(static_cast<unsigned char>(s_[pos_ + 1])))))
        ++pos_;
    };
    digits();
    bool is_float = false;
    bool after_dot = !toks_.empty() && toks_.back().type == Tok::Op && toks_.back().text == ".";
    if (!after_dot) {
      if (pos_ + 1 < n && s_[pos_] == '.' && std::isdigit(static_cast<unsigned char>(s_[pos_ + 1]))) {
        ++pos_;
        digits();
        is_float = true;
      }
      if (pos_ < n && (s_[pos_] == 'e' || s_[pos_] == 'E')) {
        size_t q = pos_ + 1;
        if (q < n && (s_[q] == '+' || s_[q] == '-')) ++q;
        if (q < n && std::isdigit(static_cast<unsigned char>(s_[q]))) {
          pos_ = q;
          digits();
          is_float = true;
        }
      }
    }
    std::string text;
    for (size_t i = b; i < pos_; ++i) if (s_[i] != '_') text += s_[i];
    Token t{is_float ? Tok::Float : Tok::Int, text, line_};
    try {
      if (is_float) t.fval = std::stod(text);
      else t.ival = std::stoll(text);
    } catch (const std::exception&) {
      template_error(line_, "number literal out of range: " + text);
    }
    toks_.push_back(std::move(t));
  }

  std::string s_;
  size_t pos_ = 0;
  int line_ = 1;
  std::vector<Token> toks_;
};

}  // namespace

std::vector<Token> lex_template(const std::string& source) {
  // jinja2 normalizes newlines and drops a single trailing newline (keep_trailing_newline=False).
  std::string s;
  s.reserve(source.size());
  for (size_t i = 0; i < source.size(); ++i) {
    if (source[i] == '\r') {
      s += '\n';
      if (i + 1 < source.size() && source[i + 1] == '\n') ++i;
    } else {
      s += source[i];
    }
  }
  if (!s.empty() && s.back() == '\n') s.pop_back();
  return Lexer(std::move(s)).run();
}

}  // namespace coppice::chat::jinja
