// Python methods templates call on values (str.split, dict.items, ...) and the globals HF
// provides (raise_exception, strftime_now) next to jinja2's (range, dict, namespace).
// Mutating list/dict methods raise, as in HF's ImmutableSandboxedEnvironment.
#include <algorithm>
#include <cctype>
#include <ctime>

#include "chat/jinja_builtins.h"

namespace coppice::chat::jinja {

std::string ascii_lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::string ascii_upper(std::string s) {
  for (char& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}

std::string py_capitalize(const std::string& s) {
  if (s.empty()) return s;
  return ascii_upper(s.substr(0, 1)) + ascii_lower(s.substr(1));
}

bool py_parse_int(const std::string& s, int64_t* out) {
  std::string t = py_strip(s, true, true, nullptr), digits;
  size_t i = 0;
  bool neg = false;
  if (i < t.size() && (t[i] == '+' || t[i] == '-')) neg = t[i++] == '-';
  for (; i < t.size(); ++i) {
    if (t[i] == '_' && !digits.empty() && i + 1 < t.size() && std::isdigit(static_cast<unsigned char>(t[i + 1]))) continue;
    if (!std::isdigit(static_cast<unsigned char>(t[i]))) return false;
    digits += t[i];
  }
  if (digits.empty()) return false;
  try {
    *out = std::stoll((neg ? "-" : "") + digits);
  } catch (const std::exception&) {
    return false;
  }
  return true;
}

bool py_parse_float(const std::string& s, double* out) {
  std::string t = py_strip(s, true, true, nullptr);
  if (t.empty()) return false;
  size_t used = 0;
  try {
    *out = std::stod(t, &used);
  } catch (const std::exception&) {
    return false;
  }
  return used == t.size() && t.find_first_of("xXpP") == std::string::npos;
}

namespace {

size_t cp_index(const std::string& s, size_t byte_pos) {
  size_t n = 0;
  for (size_t i = 0; i < byte_pos && i < s.size(); ++i) n += (static_cast<unsigned char>(s[i]) & 0xC0) != 0x80;
  return n;
}

std::vector<Value> split_ws(const std::string& s, int64_t maxsplit) {
  std::vector<Value> out;
  auto offs = utf8_offsets(s);
  size_t n = offs.size() - 1, k = 0;
  auto space = [&](size_t idx) {
    std::string ch = s.substr(offs[idx], offs[idx + 1] - offs[idx]);
    return py_strip(ch, true, false, nullptr).empty();
  };
  while (k < n) {
    while (k < n && space(k)) ++k;
    if (k >= n) break;
    if (maxsplit >= 0 && static_cast<int64_t>(out.size()) >= maxsplit) {
      out.push_back(Value::string(py_strip(s.substr(offs[k]), false, true, nullptr)));
      break;
    }
    size_t b = k;
    while (k < n && !space(k)) ++k;
    out.push_back(Value::string(s.substr(offs[b], offs[k] - offs[b])));
  }
  return out;
}

std::vector<Value> split_sep(const std::string& s, const std::string& sep, int64_t maxsplit, bool from_right, int line) {
  if (sep.empty()) template_error(line, "empty separator");
  std::vector<Value> out;
  if (!from_right) {
    size_t b = 0;
    for (size_t p = s.find(sep); p != std::string::npos && (maxsplit < 0 || static_cast<int64_t>(out.size()) < maxsplit);
         p = s.find(sep, b)) {
      out.push_back(Value::string(s.substr(b, p - b)));
      b = p + sep.size();
    }
    out.push_back(Value::string(s.substr(b)));
    return out;
  }
  size_t e = s.size();
  while (maxsplit < 0 || static_cast<int64_t>(out.size()) < maxsplit) {
    if (e < sep.size()) break;
    size_t p = s.rfind(sep, e - sep.size());
    if (p == std::string::npos) break;
    out.push_back(Value::string(s.substr(p + sep.size(), e - p - sep.size())));
    e = p;
  }
  out.push_back(Value::string(s.substr(0, e)));
  std::reverse(out.begin(), out.end());
  return out;
}

std::string py_replace(const std::string& s, const std::string& old, const std::string& rep, int64_t count) {
  std::string out;
  int64_t done = 0;
  if (old.empty()) {
    auto offs = utf8_offsets(s);
    for (size_t k = 0; k + 1 < offs.size(); ++k) {
      if (count < 0 || done < count) { out += rep; ++done; }
      out.append(s, offs[k], offs[k + 1] - offs[k]);
    }
    if (count < 0 || done < count) out += rep;
    return out;
  }
  size_t b = 0;
  for (size_t p = s.find(old); p != std::string::npos && (count < 0 || done < count); p = s.find(old, b)) {
    out.append(s, b, p - b);
    out += rep;
    b = p + old.size();
    ++done;
  }
  out.append(s, b, std::string::npos);
  return out;
}

// str.format with {}, {0}, {name} fields (format specs and conversions are not supported).
std::string py_format(const std::string& fmt, const CallArgs& a) {
  std::string out;
  size_t auto_idx = 0;
  for (size_t i = 0; i < fmt.size(); ++i) {
    char c = fmt[i];
    if (c == '}' ) {
      if (i + 1 < fmt.size() && fmt[i + 1] == '}') ++i;
      out += '}';
      continue;
    }
    if (c != '{') { out += c; continue; }
    if (i + 1 < fmt.size() && fmt[i + 1] == '{') { out += '{'; ++i; continue; }
    size_t e = fmt.find('}', i);
    if (e == std::string::npos) template_error(a.line, "single '{' encountered in format string");
    std::string field = fmt.substr(i + 1, e - i - 1);
    if (field.find_first_of(":!") != std::string::npos) template_error(a.line, "format specs are not supported");
    const Value* v = nullptr;
    if (field.empty()) {
      if (auto_idx < a.pos.size()) v = &a.pos[auto_idx++];
    } else if (std::all_of(field.begin(), field.end(), [](char d) { return std::isdigit(static_cast<unsigned char>(d)); })) {
      size_t k = static_cast<size_t>(std::stoul(field));
      if (k < a.pos.size()) v = &a.pos[k];
    } else {
      for (const auto& kw : a.kw) if (kw.first == field) v = &kw.second;
    }
    if (!v) template_error(a.line, "format field '" + field + "' has no value");
    out += v->to_str();
    i = e;
  }
  return out;
}

Value str_method(const std::string& s, const std::string& name, Interp& ip, CallArgs& args) {
  int line = args.line;
  if (name == "strip" || name == "lstrip" || name == "rstrip") {
    ArgList a(args, name, {"chars"});
    Value chars = a.get(0, Value::none());
    std::string c = chars.is_none() ? std::string() : chars.to_str();
    return Value::string(py_strip(s, name != "rstrip", name != "lstrip", chars.is_none() ? nullptr : &c));
  }
  if (name == "split" || name == "rsplit") {
    ArgList a(args, name, {"sep", "maxsplit"});
    Value sep = a.get(0, Value::none());
    int64_t maxsplit = to_index(a.get(1, Value::integer(-1)), "maxsplit", line);
    if (sep.is_none()) return Value::list(split_ws(s, name == "split" ? maxsplit : -1));
    if (!sep.is_string()) template_error(line, "must be str or None");
    return Value::list(split_sep(s, sep.str(), maxsplit, name == "rsplit", line));
  }
  if (name == "startswith" || name == "endswith") {
    ArgList a(args, name, {"prefix"});
    Value p = a.get(0);
    std::vector<Value> cands = p.is_list() ? p.items() : std::vector<Value>{p};
    for (const auto& c : cands) {
      if (!c.is_string()) template_error(line, name + " first arg must be str or a tuple of str");
      const std::string& x = c.str();
      bool hit = name == "startswith" ? s.compare(0, x.size(), x) == 0
                                      : s.size() >= x.size() && s.compare(s.size() - x.size(), x.size(), x) == 0;
      if (hit) return Value::boolean(true);
    }
    return Value::boolean(false);
  }
  if (name == "upper") return Value::string(ascii_upper(s));
  if (name == "lower") return Value::string(ascii_lower(s));
  if (name == "capitalize") return Value::string(py_capitalize(s));
  if (name == "title") {
    std::string out;
    bool prev_cased = false;
    for (char c : s) {
      bool alpha = std::isalpha(static_cast<unsigned char>(c));
      out += alpha ? static_cast<char>(prev_cased ? std::tolower(c) : std::toupper(c)) : c;
      prev_cased = alpha;
    }
    return Value::string(out);
  }
  if (name == "replace") {
    ArgList a(args, name, {"old", "new", "count"});
    if (!a.get(0).is_string() || !a.get(1).is_string()) template_error(line, "replace() arguments must be str");
    std::string out = py_replace(s, a.get(0).str(), a.get(1).str(), to_index(a.get(2, Value::integer(-1)), "count", line));
    ip.check_size(out.size(), line);
    return Value::string(std::move(out));
  }
  if (name == "find" || name == "rfind" || name == "index" || name == "count") {
    ArgList a(args, name, {"sub"});
    if (!a.get(0).is_string()) template_error(line, "must be str, not " + std::string(a.get(0).type_name()));
    const Value subv = a.get(0);
    const std::string& sub = subv.str();
    if (name == "count") {
      if (sub.empty()) return Value::integer(static_cast<int64_t>(utf8_length(s) + 1));
      int64_t n = 0;
      for (size_t p = s.find(sub); p != std::string::npos; p = s.find(sub, p + sub.size())) ++n;
      return Value::integer(n);
    }
    size_t p = name == "rfind" ? s.rfind(sub) : s.find(sub);
    if (p == std::string::npos) {
      if (name == "index") template_error(line, "substring not found");
      return Value::integer(-1);
    }
    return Value::integer(static_cast<int64_t>(cp_index(s, p)));
  }
  if (name == "join") {
    ArgList a(args, name, {"iterable"});
    std::string out;
    size_t k = 0;
    for (const auto& item : ip.iterate(a.get(0), line)) {
      if (!item.is_string())
        template_error(line, "sequence item " + std::to_string(k) + ": expected str instance, " + item.type_name() + " found");
      if (k++) out += s;
      out += item.str();
      ip.check_size(out.size(), line);
    }
    return Value::string(std::move(out));
  }
  if (name == "format") return Value::string(py_format(s, args));
  if (name == "splitlines") {
    std::vector<Value> out;
    for (auto& l : py_splitlines(s)) out.push_back(Value::string(l));
    return Value::list(std::move(out));
  }
  auto all_of = [&](int (*pred)(int)) {
    return !s.empty() && std::all_of(s.begin(), s.end(), [&](char c) { return pred(static_cast<unsigned char>(c)) != 0; });
  };
  if (name == "isdigit") return Value::boolean(all_of(::isdigit));
  if (name == "isalpha") return Value::boolean(all_of(::isalpha));
  if (name == "isalnum") return Value::boolean(all_of(::isalnum));
  if (name == "isspace") return Value::boolean(all_of(::isspace));
  template_error(line, "'str' object has no method '" + name + "'");
}

bool is_str_method(const std::string& n) {
  static const char* names[] = {"strip", "lstrip", "rstrip", "split", "rsplit", "startswith", "endswith",
                                "upper", "lower", "capitalize", "title", "replace", "find", "rfind", "index",
                                "count", "join", "format", "splitlines", "isdigit", "isalpha", "isalnum", "isspace"};
  return std::any_of(std::begin(names), std::end(names), [&](const char* x) { return n == x; });
}

bool is_unsafe_method(const Value& obj, const std::string& n) {
  static const char* list_names[] = {"append", "extend", "insert", "pop", "remove", "clear", "sort", "reverse"};
  static const char* dict_names[] = {"update", "pop", "popitem", "setdefault", "clear"};
  auto in = [&](const auto& arr) { return std::any_of(std::begin(arr), std::end(arr), [&](const char* x) { return n == x; }); };
  return obj.is_list() ? in(list_names) : in(dict_names);
}

}  // namespace

Value bound_method(const Value& obj, const std::string& name) {
  if (obj.is_string()) {
    if (!is_str_method(name)) return Value::undefined("'str object' has no attribute '" + name + "'");
    std::string s = obj.str();
    return Value::callable(name, [s, name](Interp& ip, CallArgs& a) { return str_method(s, name, ip, a); });
  }
  if (!obj.is_mapping() && !obj.is_list()) return Value::undefined();
  if (is_unsafe_method(obj, name)) {
    std::string type = obj.type_name();
    return Value::callable(name, [type, name](Interp&, CallArgs& a) -> Value {
      template_error(a.line, "access to attribute '" + name + "' of '" + type + "' object is unsafe");
    });
  }
  if (obj.is_list()) {
    if (name != "index" && name != "count") return Value::undefined();
    return Value::callable(name, [obj, name](Interp&, CallArgs& a) {
      ArgList args(a, name, {"value"});
      Value x = args.get(0);
      int64_t n = 0;
      for (size_t k = 0; k < obj.items().size(); ++k) {
        if (!obj.items()[k].equals(x)) continue;
        if (name == "index") return Value::integer(static_cast<int64_t>(k));
        ++n;
      }
      if (name == "index") template_error(a.line, x.repr() + " is not in list");
      return Value::integer(n);
    });
  }
  if (name == "items" || name == "keys" || name == "values") {
    return Value::callable(name, [obj, name](Interp&, CallArgs& a) {
      ArgList args(a, name, {});
      std::vector<Value> out;
      for (const auto& kv : obj.dict_data().items) {
        if (name == "keys") out.push_back(Value::string(kv.first));
        else if (name == "values") out.push_back(kv.second);
        else out.push_back(Value::list({Value::string(kv.first), kv.second}, ListFlavor::Tuple));
      }
      return Value::list(std::move(out));
    });
  }
  if (name == "get") {
    return Value::callable(name, [obj](Interp&, CallArgs& a) {
      ArgList args(a, "get", {"key", "default"});
      Value key = args.get(0);
      if (key.is_string()) {
        if (const Value* v = obj.dict_data().find(key.str())) return *v;
      }
      return args.get(1, Value::none());
    });
  }
  if (name == "copy") {
    return Value::callable(name, [obj](Interp&, CallArgs&) {
      Value d = Value::dict();
      d.dict_data().items = obj.dict_data().items;
      return d;
    });
  }
  return Value::undefined();
}

void install_globals(Scope& g) {
  g["range"] = Value::callable("range", [](Interp&, CallArgs& a) {
    ArgList args(a, "range", {"start", "stop", "step"});
    int64_t start = 0, stop, step = 1;
    if (a.pos.size() == 1) {
      stop = to_index(a.pos[0], "range() argument", a.line);
    } else {
      start = to_index(args.get(0), "range() argument", a.line);
      stop = to_index(args.get(1), "range() argument", a.line);
      if (args.has(2)) step = to_index(args.get(2), "range() argument", a.line);
    }
    if (step == 0) template_error(a.line, "range() arg 3 must not be zero");
    // Materialized as a list, so cap the length before allocating.
    int64_t span = 0;
    if (step > 0 ? __builtin_sub_overflow(stop, start, &span) : __builtin_sub_overflow(start, stop, &span))
      template_error(a.line, "range() too large");
    int64_t count = span <= 0 ? 0 : (span - 1) / (step > 0 ? step : -step) + 1;
    if (count > 1'000'000) template_error(a.line, "range() of " + std::to_string(count) + " items is too large");
    std::vector<Value> out;
    out.reserve(static_cast<size_t>(count));
    for (int64_t i = 0; i < count; ++i) out.push_back(Value::integer(start + i * step));
    return Value::list(std::move(out));
  });
  auto make_dict = [](DictFlavor flavor) {
    return [flavor](Interp&, CallArgs& a) {
      Value d = Value::dict(flavor);
      for (const auto& p : a.pos) {
        if (!p.is_mapping()) template_error(a.line, "dict()/namespace() positional argument must be a mapping");
        for (const auto& kv : p.dict_data().items) d.dict_data().set(kv.first, kv.second);
      }
      for (const auto& kw : a.kw) d.dict_data().set(kw.first, kw.second);
      return d;
    };
  };
  g["dict"] = Value::callable("dict", make_dict(DictFlavor::Dict));
  g["namespace"] = Value::callable("namespace", make_dict(DictFlavor::Namespace));
  g["raise_exception"] = Value::callable("raise_exception", [](Interp&, CallArgs& a) -> Value {
    template_error(a.line, a.pos.empty() ? std::string("raise_exception called") : a.pos[0].to_str());
  });
  g["strftime_now"] = Value::callable("strftime_now", [](Interp& ip, CallArgs& a) {
    ArgList args(a, "strftime_now", {"format"});
    std::string fmt = args.get(0).to_str();
    std::time_t t = ip.limits().now_unix >= 0 ? static_cast<std::time_t>(ip.limits().now_unix) : std::time(nullptr);
    std::tm tm{};
    if (ip.limits().now_unix >= 0) gmtime_r(&t, &tm);
    else localtime_r(&t, &tm);
    if (fmt.empty()) return Value::string("");
    std::string buf(fmt.size() * 8 + 64, '\0');
    size_t n = std::strftime(buf.data(), buf.size(), fmt.c_str(), &tm);
    buf.resize(n);
    return Value::string(buf);
  });
}

}  // namespace coppice::chat::jinja
