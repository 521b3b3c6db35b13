// Value semantics follow CPython: str()/repr() text, ==, truthiness, json.dumps output.
#include "chat/jinja_value.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <stdexcept>

namespace coppice::chat::jinja {

const Value* DictData::find(const std::string& key) const {
  for (const auto& kv : items) {
    if (kv.first == key) return &kv.second;
  }
  return nullptr;
}

void DictData::set(const std::string& key, Value v) {
  for (auto& kv : items) {
    if (kv.first == key) { kv.second = std::move(v); return; }
  }
  items.emplace_back(key, std::move(v));
}

Value Value::list(std::vector<Value> items, ListFlavor flavor) {
  Value v;
  v.kind_ = Kind::List;
  v.list_ = std::make_shared<ListData>();
  v.list_->flavor = flavor;
  v.list_->items = std::move(items);
  return v;
}

Value Value::dict(DictFlavor flavor) {
  Value v;
  v.kind_ = Kind::Dict;
  v.dict_ = std::make_shared<DictData>();
  v.dict_->flavor = flavor;
  return v;
}

Value Value::callable(std::string name, std::function<Value(Interp&, CallArgs&)> fn, bool is_macro) {
  Value v;
  v.kind_ = Kind::Callable;
  auto d = std::make_shared<CallableData>();
  d->name = std::move(name);
  d->is_macro = is_macro;
  d->fn = std::move(fn);
  v.fn_ = std::move(d);
  return v;
}

Value Value::from_json(const nlohmann::ordered_json& j) {
  switch (j.type()) {
    case nlohmann::ordered_json::value_t::null: return none();
    case nlohmann::ordered_json::value_t::boolean: return boolean(j.get<bool>());
    case nlohmann::ordered_json::value_t::number_integer: return integer(j.get<int64_t>());
    case nlohmann::ordered_json::value_t::number_unsigned: {
      uint64_t u = j.get<uint64_t>();
      if (u > static_cast<uint64_t>(INT64_MAX)) return number(static_cast<double>(u));
      return integer(static_cast<int64_t>(u));
    }
    case nlohmann::ordered_json::value_t::number_float: return number(j.get<double>());
    case nlohmann::ordered_json::value_t::string: return string(j.get<std::string>());
    case nlohmann::ordered_json::value_t::array: {
      std::vector<Value> items;
      items.reserve(j.size());
      for (const auto& e : j) items.push_back(from_json(e));
      return list(std::move(items));
    }
    case nlohmann::ordered_json::value_t::object: {
      Value d = dict();
      for (auto it = j.begin(); it != j.end(); ++it) d.dict_->items.emplace_back(it.key(), from_json(it.value()));
      return d;
    }
    default: return none();  // binary / discarded: not produced by JSON text
  }
}

bool Value::same_object(const Value& o) const {
  if (kind_ != o.kind_) return false;
  switch (kind_) {
    case Kind::List: return list_ == o.list_;
    case Kind::Dict: return dict_ == o.dict_;
    case Kind::Callable: return fn_ == o.fn_;
    default: return equals(o);
  }
}

bool Value::truthy() const {
  switch (kind_) {
    case Kind::Undefined: case Kind::None: return false;
    case Kind::Bool: case Kind::Int: return i_ != 0;
    case Kind::Float: return f_ != 0.0;
    case Kind::String: return !str_.empty();
    case Kind::List: return list_->flavor == ListFlavor::Iterator || !list_->items.empty();
    case Kind::Dict: return dict_->flavor != DictFlavor::Dict || !dict_->items.empty();
    case Kind::Callable: return true;
  }
  return false;
}

const char* Value::type_name() const {
  switch (kind_) {
    case Kind::Undefined: return "Undefined";
    case Kind::None: return "NoneType";
    case Kind::Bool: return "bool";
    case Kind::Int: return "int";
    case Kind::Float: return "float";
    case Kind::String: return "str";
    case Kind::List:
      return list_->flavor == ListFlavor::List ? "list" : list_->flavor == ListFlavor::Tuple ? "tuple" : "generator";
    case Kind::Dict:
      return dict_->flavor == DictFlavor::Dict ? "dict" : dict_->flavor == DictFlavor::Namespace ? "Namespace" : "LoopContext";
    case Kind::Callable: return "function";
  }
  return "object";
}

std::string py_float_repr(double f) {
  if (std::isnan(f)) return "nan";
  if (std::isinf(f)) return f < 0 ? "-inf" : "inf";
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof buf, f, std::chars_format::scientific);
  std::string sci(buf, res.ptr);
  size_t epos = sci.find('e');
  std::string mant = sci.substr(0, epos);
  int exp = std::stoi(sci.substr(epos + 1));
  std::string sign;
  if (!mant.empty() && mant[0] == '-') { sign = "-"; mant.erase(0, 1); }
  std::string digits;
  for (char c : mant) if (c != '.') digits += c;
  if (exp < -4 || exp >= 16) {
    std::string out = sign + digits.substr(0, 1);
    if (digits.size() > 1) out += "." + digits.substr(1);
    char eb[16];
    std::snprintf(eb, sizeof eb, "e%c%02d", exp < 0 ? '-' : '+', exp < 0 ? -exp : exp);
    return out + eb;
  }
  std::string out;
  if (exp < 0) {
    out = "0." + std::string(static_cast<size_t>(-exp - 1), '0') + digits;
  } else {
    size_t ip = static_cast<size_t>(exp) + 1;
    if (digits.size() <= ip) {
      out = digits + std::string(ip - digits.size(), '0') + ".0";
    } else {
      out = digits.substr(0, ip) + "." + digits.substr(ip);
    }
  }
  return sign + out;
}

namespace {

// Decodes one code point at s[i], advancing i; invalid bytes decode as themselves.
uint32_t decode_utf8(const std::string& s, size_t& i) {
  auto b = static_cast<unsigned char>(s[i]);
  int n = b < 0x80 ? 0 : (b >> 5) == 0x6 ? 1 : (b >> 4) == 0xE ? 2 : (b >> 3) == 0x1E ? 3 : -1;
  if (n <= 0 || i + static_cast<size_t>(n) >= s.size()) { ++i; return b; }
  uint32_t cp = b & (0x3F >> n);
  for (int k = 1; k <= n; ++k) {
    auto c = static_cast<unsigned char>(s[i + static_cast<size_t>(k)]);
    if ((c & 0xC0) != 0x80) { ++i; return b; }
    cp = (cp << 6) | (c & 0x3F);
  }
  i += static_cast<size_t>(n) + 1;
  return cp;
}

std::string repr_string(const std::string& s) {
  bool has_sq = s.find('\'') != std::string::npos, has_dq = s.find('"') != std::string::npos;
  char q = (has_sq && !has_dq) ? '"' : '\'';
  std::string out(1, q);
  size_t i = 0;
  while (i < s.size()) {
    size_t start = i;
    uint32_t cp = decode_utf8(s, i);
    if (cp == '\\') out += "\\\\";
    else if (cp == static_cast<uint32_t>(q)) { out += '\\'; out += q; }
    else if (cp == '\n') out += "\\n";
    else if (cp == '\r') out += "\\r";
    else if (cp == '\t') out += "\\t";
    else if (cp < 0x20 || (cp >= 0x7F && cp <= 0xA0) || cp == 0xAD) {
      char b[8];
      std::snprintf(b, sizeof b, "\\x%02x", cp);
      out += b;
    } else {
      out.append(s, start, i - start);
    }
  }
  out += q;
  return out;
}

}  // namespace

std::string html_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&#34;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

std::vector<size_t> utf8_offsets(const std::string& s) {
  std::vector<size_t> offs;
  size_t i = 0;
  while (i < s.size()) {
    offs.push_back(i);
    decode_utf8(s, i);
  }
  offs.push_back(s.size());
  return offs;
}

size_t utf8_length(const std::string& s) { return utf8_offsets(s).size() - 1; }

bool py_is_space(uint32_t cp) {
  return (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x20) || cp == 0x85 || cp == 0xA0 ||
         cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 ||
         cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

std::string py_strip(const std::string& s, bool left, bool right, const std::string* chars) {
  std::vector<uint32_t> set;
  if (chars) {
    size_t k = 0;
    while (k < chars->size()) set.push_back(decode_utf8(*chars, k));
  }
  auto strip_me = [&](uint32_t cp) {
    return chars ? std::find(set.begin(), set.end(), cp) != set.end() : py_is_space(cp);
  };
  auto offs = utf8_offsets(s);
  size_t n = offs.size() - 1, b = 0, e = n;
  auto cp_at = [&](size_t idx) { size_t p = offs[idx]; return decode_utf8(s, p); };
  if (left) while (b < e && strip_me(cp_at(b))) ++b;
  if (right) while (e > b && strip_me(cp_at(e - 1))) --e;
  return s.substr(offs[b], offs[e] - offs[b]);
}

std::vector<std::string> py_splitlines(const std::string& s) {
  std::vector<std::string> lines;
  std::string cur;
  size_t i = 0;
  bool pending = false;
  while (i < s.size()) {
    size_t start = i;
    uint32_t cp = decode_utf8(s, i);
    bool brk = cp == '\n' || cp == '\r' || cp == 0x0B || cp == 0x0C || (cp >= 0x1C && cp <= 0x1E) ||
               cp == 0x85 || cp == 0x2028 || cp == 0x2029;
    if (brk) {
      if (cp == '\r' && i < s.size() && s[i] == '\n') ++i;
      lines.push_back(cur);
      cur.clear();
      pending = false;
    } else {
      cur.append(s, start, i - start);
      pending = true;
    }
  }
  if (pending) lines.push_back(cur);
  return lines;
}

std::string Value::repr() const {
  switch (kind_) {
    case Kind::String: return repr_string(str_);
    case Kind::Undefined: return "Undefined";
    default: return to_str();
  }
}

std::string Value::to_str() const {
  switch (kind_) {
    case Kind::Undefined: return "";
    case Kind::None: return "None";
    case Kind::Bool: return i_ ? "True" : "False";
    case Kind::Int: return std::to_string(i_);
    case Kind::Float: return py_float_repr(f_);
    case Kind::String: return str_;
    case Kind::List: {
      if (list_->flavor == ListFlavor::Iterator) return "<generator object>";
      bool tuple = list_->flavor == ListFlavor::Tuple;
      std::string out = tuple ? "(" : "[";
      for (size_t k = 0; k < list_->items.size(); ++k) {
        if (k) out += ", ";
        out += list_->items[k].repr();
      }
      if (tuple && list_->items.size() == 1) out += ",";
      return out + (tuple ? ")" : "]");
    }
    case Kind::Dict: {
      std::string out = "{";
      for (size_t k = 0; k < dict_->items.size(); ++k) {
        if (k) out += ", ";
        out += repr_string(dict_->items[k].first) + ": " + dict_->items[k].second.repr();
      }
      out += "}";
      if (dict_->flavor == DictFlavor::Namespace) return "<Namespace " + out + ">";
      if (dict_->flavor == DictFlavor::Loop) return "<LoopContext>";
      return out;
    }
    case Kind::Callable:
      return fn_->is_macro ? "<Macro '" + fn_->name + "'>" : "<function " + fn_->name + ">";
  }
  return "";
}

bool Value::equals(const Value& o) const {
  if (is_number() && o.is_number()) {
    if (kind_ == Kind::Float || o.kind_ == Kind::Float) return as_float() == o.as_float();
    return i_ == o.i_;
  }
  if (kind_ != o.kind_) return false;
  switch (kind_) {
    case Kind::Undefined: case Kind::None: return true;
    case Kind::String: return str_ == o.str_;
    case Kind::List: {
      if (list_ == o.list_) return true;
      if (list_->flavor != o.list_->flavor || list_->flavor == ListFlavor::Iterator) return false;
      if (list_->items.size() != o.list_->items.size()) return false;
      for (size_t k = 0; k < list_->items.size(); ++k)
        if (!list_->items[k].equals(o.list_->items[k])) return false;
      return true;
    }
    case Kind::Dict: {
      if (dict_ == o.dict_) return true;
      if (dict_->flavor != DictFlavor::Dict || o.dict_->flavor != DictFlavor::Dict) return false;
      if (dict_->items.size() != o.dict_->items.size()) return false;
      for (const auto& kv : dict_->items) {
        const Value* other = o.dict_->find(kv.first);
        if (!other || !kv.second.equals(*other)) return false;
      }
      return true;
    }
    case Kind::Callable: return fn_ == o.fn_;
    default: return false;
  }
}

namespace {

void json_string(std::string& out, const std::string& s, bool ensure_ascii) {
  out += '"';
  size_t i = 0;
  while (i < s.size()) {
    size_t start = i;
    uint32_t cp = decode_utf8(s, i);
    char b[16];
    switch (cp) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        if (cp < 0x20 || (ensure_ascii && cp >= 0x7F)) {
          if (cp >= 0x10000) {
            uint32_t v = cp - 0x10000;
            std::snprintf(b, sizeof b, "\\u%04x\\u%04x", 0xD800 + (v >> 10), 0xDC00 + (v & 0x3FF));
          } else {
            std::snprintf(b, sizeof b, "\\u%04x", cp);
          }
          out += b;
        } else {
          out.append(s, start, i - start);
        }
    }
  }
  out += '"';
}

void json_dump(std::string& out, const Value& v, const JsonDumpOptions& opt, int level) {
  auto newline = [&](int lvl) {
    if (opt.indent < 0) return;
    out += '\n';
    out.append(static_cast<size_t>(opt.indent) * static_cast<size_t>(lvl), ' ');
  };
  if (level > 512) throw std::runtime_error("json.dumps: nesting too deep");
  switch (v.kind()) {
    case Kind::None: out += "null"; return;
    case Kind::Bool: out += v.as_bool() ? "true" : "false"; return;
    case Kind::Int: out += std::to_string(v.as_int()); return;
    case Kind::Float: {
      double f = v.as_float();
      if (std::isnan(f)) out += "NaN";
      else if (std::isinf(f)) out += f < 0 ? "-Infinity" : "Infinity";
      else out += py_float_repr(f);
      return;
    }
    case Kind::String: json_string(out, v.str(), opt.ensure_ascii); return;
    case Kind::List: {
      if (v.list_data().flavor == ListFlavor::Iterator)
        throw std::runtime_error("Object of type generator is not JSON serializable");
      const auto& items = v.items();
      if (items.empty()) { out += "[]"; return; }
      out += '[';
      for (size_t k = 0; k < items.size(); ++k) {
        if (k) out += opt.item_sep;
        newline(level + 1);
        json_dump(out, items[k], opt, level + 1);
      }
      newline(level);
      out += ']';
      return;
    }
    case Kind::Dict: {
      if (v.dict_data().flavor != DictFlavor::Dict)
        throw std::runtime_error(std::string("Object of type ") + v.type_name() + " is not JSON serializable");
      std::vector<const std::pair<std::string, Value>*> kvs;
      for (const auto& kv : v.dict_data().items) kvs.push_back(&kv);
      if (kvs.empty()) { out += "{}"; return; }
      if (opt.sort_keys)
        std::stable_sort(kvs.begin(), kvs.end(), [](auto* a, auto* b) { return a->first < b->first; });
      out += '{';
      for (size_t k = 0; k < kvs.size(); ++k) {
        if (k) out += opt.item_sep;
        newline(level + 1);
        json_string(out, kvs[k]->first, opt.ensure_ascii);
        out += opt.key_sep;
        json_dump(out, kvs[k]->second, opt, level + 1);
      }
      newline(level);
      out += '}';
      return;
    }
    default:
      throw std::runtime_error(std::string("Object of type ") + v.type_name() + " is not JSON serializable");
  }
}

}  // namespace

std::string py_json_dumps(const Value& v, const JsonDumpOptions& opt) {
  std::string out;
  json_dump(out, v, opt, 0);
  return out;
}

}  // namespace coppice::chat::jinja
