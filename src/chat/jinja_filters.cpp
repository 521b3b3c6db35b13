// jinja2's builtin filters and tests (jinja2/filters.py, jinja2/tests.py), with `tojson`
// replaced by Hugging Face's json.dumps(ensure_ascii=False) version.
#include <algorithm>
#include <cmath>
#include <set>

#include "chat/jinja_builtins.h"

namespace coppice::chat::jinja {

ArgList::ArgList(const CallArgs& a, const std::string& fname, std::vector<const char*> names)
    : a_(a), names_(std::move(names)) {
  if (a.pos.size() > names_.size())
    template_error(a.line, fname + "() takes at most " + std::to_string(names_.size()) + " argument(s), got " +
                               std::to_string(a.pos.size()));
  for (const auto& kw : a.kw) {
    bool ok = std::any_of(names_.begin(), names_.end(), [&](const char* n) { return kw.first == n; });
    if (!ok) template_error(a.line, fname + "() got an unexpected keyword argument '" + kw.first + "'");
  }
}

const Value* ArgList::find(size_t i) const {
  if (i < a_.pos.size()) return &a_.pos[i];
  if (i < names_.size()) {
    for (const auto& kw : a_.kw) if (kw.first == names_[i]) return &kw.second;
  }
  return nullptr;
}

int64_t to_index(const Value& v, const char* what, int line) {
  if (v.is_undefined()) undefined_error(v, line);
  if (!v.is_int()) template_error(line, std::string(what) + " must be an integer, not " + v.type_name());
  return v.as_int();
}

namespace {

const std::set<std::string, std::less<>>& filter_names() {
  static const std::set<std::string, std::less<>> names = {
      "abs", "attr", "capitalize", "count", "d", "default", "dictsort", "e", "escape", "first", "float",
      "indent", "int", "items", "join", "last", "length", "list", "lower", "map", "max", "min", "reject",
      "rejectattr", "replace", "reverse", "round", "safe", "select", "selectattr", "sort", "string", "sum",
      "title", "tojson", "trim", "unique", "upper", "wordcount", "center", "forceescape"};
  return names;
}

const std::set<std::string, std::less<>>& test_names() {
  static const std::set<std::string, std::less<>> names = {
      "boolean", "callable", "defined", "divisibleby", "eq", "equalto", "==", "escaped", "even", "false",
      "filter", "float", "ge", ">=", "gt", ">", "greaterthan", "in", "integer", "iterable", "le", "<=", "lt",
      "<", "lessthan", "lower", "mapping", "ne", "!=", "none", "number", "odd", "sameas", "sequence",
      "string", "test", "true", "undefined", "upper"};
  return names;
}

// jinja2's make_attrgetter: "a.b.0" walks getitem, digits become integer indices.
Value attr_path(Interp& ip, const Value& item, const std::string& path, int line) {
  Value v = item;
  size_t b = 0;
  for (;;) {
    size_t e = path.find('.', b);
    std::string part = path.substr(b, e == std::string::npos ? std::string::npos : e - b);
    bool digits = !part.empty() && std::all_of(part.begin(), part.end(), [](char c) { return c >= '0' && c <= '9'; });
    v = ip.getitem(v, digits ? Value::integer(std::stoll(part)) : Value::string(part), line);
    if (e == std::string::npos) return v;
    b = e + 1;
  }
}

Value sort_key(Interp& ip, const Value& v, const Value& attribute, bool case_sensitive, int line) {
  Value k = attribute.is_none() || attribute.is_undefined() ? v : attr_path(ip, v, attribute.to_str(), line);
  if (!case_sensitive && k.is_string()) return Value::string(ascii_lower(k.str()));
  return k;
}

// jinja2's do_title: capitalize each piece split on [-\s({\[<]+.
std::string jinja_title(const std::string& s) {
  std::string out, word;
  auto flush = [&] { out += py_capitalize(word); word.clear(); };
  for (char c : s) {
    bool sep = c == '-' || c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v' ||
               c == '(' || c == '{' || c == '[' || c == '<';
    if (sep) { flush(); out += c; } else { word += c; }
  }
  flush();
  return out;
}

Value select_like(Interp& ip, const std::string& name, const Value& in, CallArgs& args) {
  bool attr_mode = name == "selectattr" || name == "rejectattr";
  bool reject = name == "reject" || name == "rejectattr";
  size_t off = attr_mode ? 1 : 0;
  std::string attr;
  if (attr_mode) {
    if (args.pos.empty()) template_error(args.line, name + "() needs an attribute name");
    attr = args.pos[0].to_str();
  }
  std::string test;
  CallArgs test_args;
  test_args.line = args.line;
  if (args.pos.size() > off) {
    test = args.pos[off].to_str();
    if (!is_known_test(test)) template_error(args.line, "no test named '" + test + "'");
    test_args.pos.assign(args.pos.begin() + static_cast<std::ptrdiff_t>(off) + 1, args.pos.end());
    test_args.kw = args.kw;
  }
  std::vector<Value> out;
  if (!in.truthy()) return Value::list({}, ListFlavor::Iterator);  // jinja2: `if value:`
  for (const auto& item : ip.iterate(in, args.line)) {
    Value v = attr_mode ? attr_path(ip, item, attr, args.line) : item;
    bool ok = test.empty() ? v.truthy() : call_test(ip, test, v, test_args);
    if (ok != reject) out.push_back(item);
  }
  return Value::list(std::move(out), ListFlavor::Iterator);
}

Value do_map(Interp& ip, const Value& in, CallArgs& args) {
  std::vector<Value> out;
  if (!in.truthy()) return Value::list({}, ListFlavor::Iterator);  // jinja2: `if value:`
  const Value* attribute = nullptr;
  const Value* def = nullptr;
  for (const auto& kw : args.kw) {
    if (kw.first == "attribute") attribute = &kw.second;
    else if (kw.first == "default") def = &kw.second;
  }
  if (attribute) {
    for (const auto& item : ip.iterate(in, args.line)) {
      Value v = attr_path(ip, item, attribute->to_str(), args.line);
      out.push_back(v.is_undefined() && def ? *def : v);
    }
  } else {
    if (args.pos.empty()) template_error(args.line, "map() needs a filter name or attribute=");
    std::string f = args.pos[0].to_str();
    if (!is_known_filter(f)) template_error(args.line, "no filter named '" + f + "'");
    CallArgs fargs;
    fargs.line = args.line;
    fargs.pos.assign(args.pos.begin() + 1, args.pos.end());
    fargs.kw = args.kw;
    for (const auto& item : ip.iterate(in, args.line)) out.push_back(call_filter(ip, f, item, fargs));
  }
  return Value::list(std::move(out), ListFlavor::Iterator);
}

Value do_tojson(const Value& in, CallArgs& args) {
  ArgList a(args, "tojson", {"ensure_ascii", "indent", "separators", "sort_keys"});
  JsonDumpOptions opt;
  opt.ensure_ascii = a.get(0, Value::boolean(false)).truthy();
  Value indent = a.get(1, Value::none());
  if (!indent.is_none()) {
    opt.indent = static_cast<int>(std::clamp<int64_t>(to_index(indent, "indent", args.line), 0, 64));
    opt.item_sep = ",";
  }
  Value seps = a.get(2, Value::none());
  if (!seps.is_none()) {
    if (!seps.is_list() || seps.items().size() != 2) template_error(args.line, "tojson separators must be a pair");
    opt.item_sep = seps.items()[0].to_str();
    opt.key_sep = seps.items()[1].to_str();
  }
  opt.sort_keys = a.get(3, Value::boolean(false)).truthy();
  try {
    return Value::string(py_json_dumps(in, opt));
  } catch (const std::runtime_error& e) {
    template_error(args.line, e.what());
  }
}

Value do_indent(const Value& in, CallArgs& args) {
  ArgList a(args, "indent", {"width", "first", "blank"});
  if (!in.is_string()) template_error(args.line, std::string("indent() needs a string, got ") + in.type_name());
  Value w = a.get(0, Value::integer(4));
  std::string ind = w.is_string() ? w.str() : std::string(static_cast<size_t>(std::clamp<int64_t>(to_index(w, "width", args.line), 0, 1024)), ' ');
  bool first = a.get(1, Value::boolean(false)).truthy(), blank = a.get(2, Value::boolean(false)).truthy();
  std::vector<std::string> lines = py_splitlines(in.str() + "\n");
  std::string rv;
  for (size_t k = 0; k < lines.size(); ++k) {
    if (k) rv += "\n";
    if (k && (blank || !lines[k].empty())) rv += ind;
    rv += lines[k];
  }
  return Value::string(first ? ind + rv : rv);
}

Value do_round(const Value& in, CallArgs& args) {
  ArgList a(args, "round", {"precision", "method"});
  int64_t prec = to_index(a.get(0, Value::integer(0)), "precision", args.line);
  std::string method = a.get(1, Value::string("common")).to_str();
  if (!in.is_number()) template_error(args.line, std::string("round() needs a number, got ") + in.type_name());
  double x = in.as_float(), scale = std::pow(10.0, static_cast<double>(std::clamp<int64_t>(prec, -300, 300)));
  double y = x * scale;
  if (method == "common") y = std::nearbyint(y);
  else if (method == "ceil") y = std::ceil(y);
  else if (method == "floor") y = std::floor(y);
  else template_error(args.line, "method must be common, ceil or floor");
  return Value::number(y / scale);
}

Value min_max(Interp& ip, const Value& in, CallArgs& args, bool want_max) {
  ArgList a(args, want_max ? "max" : "min", {"case_sensitive", "attribute"});
  bool cs = a.get(0, Value::boolean(false)).truthy();
  Value attribute = a.get(1, Value::none());
  std::vector<Value> items = ip.iterate(in, args.line);
  if (items.empty()) return Value::undefined("no largest/smallest item, sequence was empty");
  size_t best = 0;
  for (size_t k = 1; k < items.size(); ++k) {
    bool less = py_less(sort_key(ip, items[k], attribute, cs, args.line), sort_key(ip, items[best], attribute, cs, args.line), args.line);
    bool greater = py_less(sort_key(ip, items[best], attribute, cs, args.line), sort_key(ip, items[k], attribute, cs, args.line), args.line);
    if (want_max ? greater : less) best = k;
  }
  return items[best];
}

}  // namespace

bool is_known_filter(const std::string& name) { return filter_names().count(name) != 0; }
bool is_known_test(const std::string& name) { return test_names().count(name) != 0; }

Value call_filter(Interp& ip, const std::string& name, const Value& in, CallArgs& args) {
  int line = args.line;
  if (name == "tojson") return do_tojson(in, args);
  if (name == "trim") {
    ArgList a(args, name, {"chars"});
    Value chars = a.get(0, Value::none());
    std::string c = chars.is_none() ? std::string() : chars.to_str();
    return Value::string(py_strip(in.to_str(), true, true, chars.is_none() ? nullptr : &c));
  }
  if (name == "length" || name == "count") {
    switch (in.kind()) {
      case Kind::Undefined: return Value::integer(0);
      case Kind::String: return Value::integer(static_cast<int64_t>(utf8_length(in.str())));
      case Kind::List:
        if (in.list_data().flavor != ListFlavor::Iterator) return Value::integer(static_cast<int64_t>(in.items().size()));
        break;
      case Kind::Dict:
        if (in.dict_data().flavor != DictFlavor::Namespace) return Value::integer(static_cast<int64_t>(in.dict_data().items.size()));
        break;
      default: break;
    }
    template_error(line, std::string("object of type '") + in.type_name() + "' has no len()");
  }
  if (name == "default" || name == "d") {
    ArgList a(args, name, {"default_value", "boolean"});
    bool boolean = a.get(1, Value::boolean(false)).truthy();
    if (in.is_undefined() || (boolean && !in.truthy())) return a.get(0, Value::string(""));
    return in;
  }
  if (name == "safe") return in.is_markup() ? in : Value::markup(in.to_str());
  if (name == "string") return in.is_string() ? in : Value::string(in.to_str());
  if (name == "escape" || name == "e") return in.is_markup() ? in : Value::markup(html_escape(in.to_str()));
  if (name == "forceescape") return Value::markup(html_escape(in.to_str()));
  if (name == "upper") return Value::string(ascii_upper(in.to_str()));
  if (name == "lower") return Value::string(ascii_lower(in.to_str()));
  if (name == "capitalize") return Value::string(py_capitalize(in.to_str()));
  if (name == "title") return Value::string(jinja_title(in.to_str()));
  if (name == "replace") {
    ArgList a(args, name, {"old", "new", "count"});
    Value fn = bound_method(Value::string(in.to_str()), "replace");
    CallArgs r;
    r.line = line;
    r.pos = {Value::string(a.get(0).to_str()), Value::string(a.get(1).to_str())};
    if (a.has(2) && !a.get(2).is_none()) r.pos.push_back(a.get(2));
    return ip.call(fn, r);
  }
  if (name == "indent") return do_indent(in, args);
  if (name == "center") {
    ArgList a(args, name, {"width"});
    int64_t w = std::clamp<int64_t>(to_index(a.get(0, Value::integer(80)), "width", line), 0, 1 << 20);
    std::string s = in.to_str();
    auto n = static_cast<int64_t>(utf8_length(s));
    if (w <= n) return Value::string(s);
    int64_t left = (w - n) / 2 + ((w - n) & w & 1);
    return Value::string(std::string(static_cast<size_t>(left), ' ') + s + std::string(static_cast<size_t>(w - n - left), ' '));
  }
  if (name == "first") {
    std::vector<Value> items = ip.iterate(in, line);
    return items.empty() ? Value::undefined("no first item, sequence was empty") : items.front();
  }
  if (name == "last") {
    if (in.is_list() && in.list_data().flavor == ListFlavor::Iterator)
      template_error(line, "'generator' object is not reversible");
    std::vector<Value> items = ip.iterate(in, line);
    return items.empty() ? Value::undefined("no last item, sequence was empty") : items.back();
  }
  if (name == "list") return Value::list(ip.iterate(in, line));
  if (name == "items") {
    if (in.is_undefined()) return Value::list({}, ListFlavor::Iterator);
    if (!in.is_mapping()) template_error(line, "Can only get item pairs from a mapping.");
    std::vector<Value> out;
    for (const auto& kv : in.dict_data().items)
      out.push_back(Value::list({Value::string(kv.first), kv.second}, ListFlavor::Tuple));
    return Value::list(std::move(out), ListFlavor::Iterator);
  }
  if (name == "join") {
    ArgList a(args, name, {"d", "attribute"});
    std::string sep = a.get(0, Value::string("")).to_str();
    Value attribute = a.get(1, Value::none());
    std::string out;
    bool first = true;
    for (const auto& item : ip.iterate(in, line)) {
      if (!first) out += sep;
      first = false;
      out += (attribute.is_none() ? item : attr_path(ip, item, attribute.to_str(), line)).to_str();
      ip.check_size(out.size(), line);
    }
    return Value::string(std::move(out));
  }
  if (name == "map") return do_map(ip, in, args);
  if (name == "select" || name == "reject" || name == "selectattr" || name == "rejectattr")
    return select_like(ip, name, in, args);
  if (name == "unique") {
    ArgList a(args, name, {"case_sensitive", "attribute"});
    bool cs = a.get(0, Value::boolean(false)).truthy();
    Value attribute = a.get(1, Value::none());
    std::vector<Value> out, seen;
    for (const auto& item : ip.iterate(in, line)) {
      Value k = sort_key(ip, item, attribute, cs, line);
      if (std::none_of(seen.begin(), seen.end(), [&](const Value& s) { return s.equals(k); })) {
        seen.push_back(k);
        out.push_back(item);
      }
    }
    return Value::list(std::move(out), ListFlavor::Iterator);
  }
  if (name == "sort") {
    ArgList a(args, name, {"reverse", "case_sensitive", "attribute"});
    bool rev = a.get(0, Value::boolean(false)).truthy(), cs = a.get(1, Value::boolean(false)).truthy();
    Value attribute = a.get(2, Value::none());
    std::vector<Value> items = ip.iterate(in, line);
    std::vector<std::pair<Value, Value>> keyed;
    for (auto& v : items) keyed.emplace_back(sort_key(ip, v, attribute, cs, line), v);
    std::stable_sort(keyed.begin(), keyed.end(), [&](const auto& x, const auto& y) {
      return rev ? py_less(y.first, x.first, line) : py_less(x.first, y.first, line);
    });
    std::vector<Value> out;
    for (auto& kv : keyed) out.push_back(kv.second);
    return Value::list(std::move(out));
  }
  if (name == "dictsort") {
    ArgList a(args, name, {"case_sensitive", "by", "reverse"});
    bool cs = a.get(0, Value::boolean(false)).truthy(), rev = a.get(2, Value::boolean(false)).truthy();
    std::string by = a.get(1, Value::string("key")).to_str();
    if (!in.is_mapping()) template_error(line, "dictsort needs a mapping");
    size_t pos = by == "value" ? 1 : 0;
    if (by != "key" && by != "value") template_error(line, "You can only sort by either \"key\" or \"value\"");
    std::vector<Value> out;
    for (const auto& kv : in.dict_data().items)
      out.push_back(Value::list({Value::string(kv.first), kv.second}, ListFlavor::Tuple));
    Value none = Value::none();
    std::stable_sort(out.begin(), out.end(), [&](const Value& x, const Value& y) {
      Value kx = sort_key(ip, x.items()[pos], none, cs, line), ky = sort_key(ip, y.items()[pos], none, cs, line);
      return rev ? py_less(ky, kx, line) : py_less(kx, ky, line);
    });
    return Value::list(std::move(out));
  }
  if (name == "reverse") {
    if (in.is_string()) {
      auto offs = utf8_offsets(in.str());
      std::string out;
      for (size_t k = offs.size() - 1; k > 0; --k) out.append(in.str(), offs[k - 1], offs[k] - offs[k - 1]);
      return Value::string(std::move(out));
    }
    if (in.is_list() && in.list_data().flavor == ListFlavor::Iterator)
      template_error(line, "argument to reversed() must be a sequence");
    std::vector<Value> items = ip.iterate(in, line);
    std::reverse(items.begin(), items.end());
    return Value::list(std::move(items), ListFlavor::Iterator);
  }
  if (name == "abs") {
    if (in.kind() == Kind::Float) return Value::number(std::fabs(in.as_float()));
    if (in.is_int()) {
      if (in.as_int() == INT64_MIN) template_error(line, "integer overflow");
      return Value::integer(in.as_int() < 0 ? -in.as_int() : in.as_int());
    }
    template_error(line, std::string("bad operand type for abs(): '") + in.type_name() + "'");
  }
  if (name == "int") {
    ArgList a(args, name, {"default", "base"});
    Value def = a.get(0, Value::integer(0));
    if (in.is_int()) return Value::integer(in.as_int());
    if (in.kind() == Kind::Float) {
      double t = std::trunc(in.as_float());
      if (!std::isfinite(t) || std::fabs(t) > 9.2e18) return def;
      return Value::integer(static_cast<int64_t>(t));
    }
    if (in.is_string()) {
      int64_t i;
      double f;
      if (py_parse_int(in.str(), &i)) return Value::integer(i);
      if (py_parse_float(in.str(), &f) && std::isfinite(f) && std::fabs(f) < 9.2e18)
        return Value::integer(static_cast<int64_t>(std::trunc(f)));
    }
    return def;
  }
  if (name == "float") {
    ArgList a(args, name, {"default"});
    if (in.is_number()) return Value::number(in.as_float());
    double f;
    if (in.is_string() && py_parse_float(in.str(), &f)) return Value::number(f);
    return a.get(0, Value::number(0.0));
  }
  if (name == "round") return do_round(in, args);
  if (name == "sum") {
    ArgList a(args, name, {"attribute", "start"});
    Value attribute = a.get(0, Value::none());
    Value acc = a.get(1, Value::integer(0));
    for (const auto& item : ip.iterate(in, line))
      acc = binary_op("+", acc, attribute.is_none() ? item : attr_path(ip, item, attribute.to_str(), line), line);
    return acc;
  }
  if (name == "min" || name == "max") return min_max(ip, in, args, name == "max");
  if (name == "attr") {
    ArgList a(args, name, {"name"});
    return ip.getattr(in, a.get(0).to_str(), line);
  }
  if (name == "wordcount") {
    int64_t n = 0;
    bool in_word = false;
    for (char c : in.to_str()) {
      bool w = std::isalnum(static_cast<unsigned char>(c)) || c == '_' || (static_cast<unsigned char>(c) >= 0x80);
      if (w && !in_word) ++n;
      in_word = w;
    }
    return Value::integer(n);
  }
  template_error(line, "no filter named '" + name + "'");
}

bool call_test(Interp& ip, const std::string& name, const Value& v, CallArgs& args) {
  int line = args.line;
  auto arg = [&](size_t i) -> const Value& {
    if (i >= args.pos.size()) template_error(line, "test '" + name + "' needs an argument");
    return args.pos[i];
  };
  if (name == "defined") return !v.is_undefined();
  if (name == "undefined") return v.is_undefined();
  if (name == "none") return v.is_none();
  if (name == "boolean") return v.kind() == Kind::Bool;
  if (name == "true") return v.kind() == Kind::Bool && v.as_bool();
  if (name == "false") return v.kind() == Kind::Bool && !v.as_bool();
  if (name == "integer") return v.kind() == Kind::Int;
  if (name == "float") return v.kind() == Kind::Float;
  if (name == "number") return v.is_number();
  if (name == "string") return v.is_string();
  if (name == "mapping") return v.is_mapping();
  if (name == "callable") return v.is_callable() || v.is_undefined();
  if (name == "iterable")
    return v.is_undefined() || v.is_string() || v.is_list() ||
           (v.is_dict() && v.dict_data().flavor != DictFlavor::Namespace);
  if (name == "sequence")
    return v.is_undefined() || v.is_string() || v.is_mapping() ||
           (v.is_list() && v.list_data().flavor != ListFlavor::Iterator);
  if (name == "escaped") return false;
  if (name == "even" || name == "odd" || name == "divisibleby") {
    Value d = name == "divisibleby" ? arg(0) : Value::integer(2);
    Value m = binary_op("%", v, d, line);
    bool zero = m.as_float() == 0.0;
    return name == "odd" ? !zero : zero;
  }
  if (name == "eq" || name == "equalto" || name == "==") return v.equals(arg(0));
  if (name == "ne" || name == "!=") return !v.equals(arg(0));
  if (name == "lt" || name == "<" || name == "lessthan") return py_less(v, arg(0), line);
  if (name == "gt" || name == ">" || name == "greaterthan") return py_less(arg(0), v, line);
  if (name == "le" || name == "<=") return !py_less(arg(0), v, line);
  if (name == "ge" || name == ">=") return !py_less(v, arg(0), line);
  if (name == "in") return ip.contains(arg(0), v, line);
  if (name == "sameas") return v.same_object(arg(0));
  if (name == "lower" || name == "upper") {
    std::string s = v.to_str();
    bool cased = false;
    for (char c : s) {
      if (std::isalpha(static_cast<unsigned char>(c))) {
        cased = true;
        if (name == "lower" ? std::isupper(static_cast<unsigned char>(c)) : std::islower(static_cast<unsigned char>(c))) return false;
      }
    }
    return cased;
  }
  if (name == "filter") return v.is_string() && is_known_filter(v.str());
  if (name == "test") return v.is_string() && is_known_test(v.str());
  template_error(line, "no test named '" + name + "'");
}

}  // namespace coppice::chat::jinja
