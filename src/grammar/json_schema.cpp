// Walks a schema and writes one GBNF rule per named piece ($ref targets become rules, so
// recursive schemas work). Paths in errors are JSON pointers into the schema.
#include "grammar/json_schema.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <functional>
#include <map>
#include <optional>
#include <set>

#include "grammar/gbnf_text.h"
#include "grammar/grammar.h"
#include "grammar/regex.h"
#include "util/error.h"

namespace coppice::grammar {
namespace {
using json = nlohmann::ordered_json;

const std::set<std::string> kAnnotations = {"title", "description", "$schema", "$id", "default", "examples",
                                            "$comment", "deprecated", "readOnly", "writeOnly", "$defs", "definitions"};
const std::set<std::string> kKeywords = {
    "type", "properties", "required", "additionalProperties", "items", "prefixItems", "minItems", "maxItems",
    "minLength", "maxLength", "pattern", "format", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
    "enum", "const", "anyOf", "oneOf", "allOf", "$ref"};

// The primitives every converted grammar may use.
const char* kPrimitives = R"(ws ::= [ ]?
char ::= [^"\\\x00-\x1F\U00010000-\U0010FFFF] | "\\" (["\\/bfnrt] | "u" [0-9a-fA-F]{4})
string ::= "\"" char* "\""
int ::= "-"? ("0" | [1-9] [0-9]{0,15})
number ::= int ("." [0-9]{1,15})? ([eE] [-+]? [0-9]{1,3})?
integer ::= int
boolean ::= "true" | "false"
null ::= "null"
value ::= object | array | string | number | boolean | null
object ::= "{" ws (string ws ":" ws value ("," ws string ws ":" ws value)*)? ws "}"
array ::= "[" ws (value ("," ws value)*)? ws "]"
)";

const std::map<std::string, std::string> kFormats = {
    {"date", R"(date ::= [0-9]{4} "-" (("0" [13578] | "1" [02]) "-" ("0" [1-9] | [12] [0-9] | "3" [01]) | ("0" [469] | "11") "-" ("0" [1-9] | [12] [0-9] | "30") | "02-" ("0" [1-9] | "1" [0-9] | "2" [0-8])))"},
    {"time", R"(time ::= ([01] [0-9] | "2" [0-3]) ":" [0-5] [0-9] ":" [0-5] [0-9] ("." [0-9]{1,6})? ("Z" | [+-] ([01] [0-9] | "2" [0-3]) ":" [0-5] [0-9]))"},
    {"date-time", R"(date-time ::= date "T" time)"},
    {"uuid", R"(uuid ::= [0-9a-f]{8} "-" [0-9a-f]{4} "-" [0-9a-f]{4} "-" [0-9a-f]{4} "-" [0-9a-f]{12})"},
    {"email", R"(email ::= [a-zA-Z0-9_+-]{1,16} ("." [a-zA-Z0-9_+-]{1,16}){0,2} "@" email-label ("." email-label){1,3}
email-label ::= [a-zA-Z0-9] ([a-zA-Z0-9-]{0,20} [a-zA-Z0-9])?)"},
};

std::string alts(const std::vector<std::string>& xs) {
  if (xs.size() == 1) return xs[0];
  std::string out = "(";
  for (size_t k = 0; k < xs.size(); ++k) out += (k ? " | " : "") + xs[k];
  return out + ")";
}

class Converter {
 public:
  explicit Converter(const json& root) : root_(root) {}

  std::string run() {
    const std::string body = visit(root_, "");
    std::string out = "root ::= " + body + "\n" + kPrimitives;
    for (const std::string& f : formats_) out += kFormats.at(f) + "\n";
    for (const auto& [name, rule] : rules_) out += name + " ::= " + rule + "\n";
    return out;
  }

 private:
  [[noreturn]] static void error(const std::string& path, const std::string& what) {
    fail("json-schema", (path.empty() ? "/" : path) + ": " + what);
  }

  static std::string child(const std::string& path, const std::string& key) {
    std::string k;
    for (char c : key) k += c == '~' ? "~0" : c == '/' ? "~1" : std::string(1, c);
    return path + "/" + k;
  }

  std::string new_rule(const std::string& hint) {
    std::string n;
    for (char c : hint) n += std::isalnum(static_cast<unsigned char>(c)) ? c : '-';
    if (n.empty() || n.size() > 40) n = "r";
    return "s-" + n + "-" + std::to_string(++counter_);
  }

  static uint32_t count(const json& s, const char* key, const std::string& path) {
    const json& v = s[key];
    if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() > 1000000)
      error(child(path, key), "must be an integer in [0, 1000000]");
    return static_cast<uint32_t>(v.get<int64_t>());
  }

  std::string visit(const json& s, const std::string& path) {
    if (s.is_boolean()) {
      if (s.get<bool>()) return "value";
      error(path, "the schema 'false' accepts nothing");
    }
    if (!s.is_object()) error(path, "a schema must be an object or a boolean");
    for (const auto& [k, v] : s.items())
      if (!kKeywords.count(k) && !kAnnotations.count(k)) error(child(path, k), "unsupported keyword '" + k + "'");
    if (s.contains("$ref")) {
      for (const auto& [k, v] : s.items())
        if (k != "$ref" && kKeywords.count(k)) error(child(path, k), "keyword '" + k + "' beside $ref is not supported");
      return ref(s["$ref"], path);
    }
    if (s.contains("const")) return gbnf_literal(s["const"].dump());
    if (s.contains("enum")) {
      if (!s["enum"].is_array() || s["enum"].empty()) error(child(path, "enum"), "must be a non-empty array");
      std::vector<std::string> xs;
      for (const json& v : s["enum"]) xs.push_back(gbnf_literal(v.dump()));
      return alts(xs);
    }
    for (const char* k : {"anyOf", "oneOf"}) {
      if (!s.contains(k)) continue;
      const json& list = s[k];
      if (!list.is_array() || list.empty()) error(child(path, k), "must be a non-empty array");
      // oneOf = anyOf only when no value can match two branches; that is proven here from the
      // branches' types, consts / enums or a required const tag property, else it is an error.
      if (std::string(k) == "oneOf") {
        for (size_t i = 0; i < list.size(); ++i)
          for (size_t j = i + 1; j < list.size(); ++j)
            if (!disjoint(list[i], list[j]))
              error(child(path, k), "branches " + std::to_string(i) + " and " + std::to_string(j) +
                                        " may both match, so 'exactly one' cannot be enforced (give them different "
                                        "types, consts or a required const tag property, or use anyOf)");
      }
      std::vector<std::string> xs;
      for (size_t i = 0; i < list.size(); ++i) xs.push_back(visit(list[i], child(child(path, k), std::to_string(i))));
      return alts(xs);
    }
    if (s.contains("allOf")) return visit(merge_all_of(s, path), path);
    std::vector<std::string> types;
    if (s.contains("type")) {
      const json& t = s["type"];
      if (t.is_string()) types.push_back(t.get<std::string>());
      else if (t.is_array())
        for (const json& x : t) types.push_back(x.is_string() ? x.get<std::string>() : "?");
      else error(child(path, "type"), "must be a string or an array of strings");
    } else {
      types.push_back(infer_type(s));
    }
    std::vector<std::string> xs;
    for (const std::string& t : types) xs.push_back(typed(s, t, path));
    return alts(xs);
  }

  // The JSON types a branch admits ("integer" counts as "number"); empty when unconstrained.
  static std::set<std::string> type_set(const json& s) {
    std::set<std::string> out;
    if (!s.is_object() || !s.contains("type")) return out;
    const json& t = s["type"];
    auto add = [&](const json& x) {
      if (x.is_string()) out.insert(x.get<std::string>() == "integer" ? "number" : x.get<std::string>());
    };
    if (t.is_array()) for (const json& x : t) add(x);
    else add(t);
    return out;
  }
  // The finite set of values a branch admits (const / enum), or nullopt when not finite.
  static std::optional<std::vector<json>> values(const json& s) {
    if (!s.is_object()) return std::nullopt;
    if (s.contains("const")) return std::vector<json>{s["const"]};
    if (s.contains("enum") && s["enum"].is_array()) return s["enum"].get<std::vector<json>>();
    return std::nullopt;
  }
  static bool disjoint_values(const json& a, const json& b) {
    const auto va = values(a), vb = values(b);
    if (!va || !vb) return false;
    for (const json& x : *va)
      for (const json& y : *vb)
        if (x == y) return false;
    return true;
  }
  // True when no JSON value can satisfy both schemas (a sound, incomplete check).
  static bool disjoint(const json& a, const json& b) {
    const auto ta = type_set(a), tb = type_set(b);
    if (!ta.empty() && !tb.empty()) {
      bool common = false;
      for (const std::string& t : ta) common = common || tb.count(t) > 0;
      if (!common) return true;
    }
    if (disjoint_values(a, b)) return true;
    // Objects tagged by a property that both require, with disjoint const / enum values.
    if (a.is_object() && b.is_object() && a.contains("required") && b.contains("required") &&
        a.contains("properties") && b.contains("properties") && a["required"].is_array() &&
        b["required"].is_array() && a["properties"].is_object() && b["properties"].is_object()) {
      for (const json& r : a["required"]) {
        if (!r.is_string()) continue;
        const std::string key = r.get<std::string>();
        const bool both = std::find(b["required"].begin(), b["required"].end(), r) != b["required"].end();
        if (both && a["properties"].contains(key) && b["properties"].contains(key) &&
            disjoint_values(a["properties"][key], b["properties"][key]))
          return true;
      }
    }
    return false;
  }

  static std::string infer_type(const json& s) {
    if (s.contains("properties") || s.contains("additionalProperties") || s.contains("required")) return "object";
    if (s.contains("items") || s.contains("prefixItems") || s.contains("minItems") || s.contains("maxItems")) return "array";
    if (s.contains("minLength") || s.contains("maxLength") || s.contains("pattern") || s.contains("format")) return "string";
    if (s.contains("minimum") || s.contains("maximum") || s.contains("exclusiveMinimum") || s.contains("exclusiveMaximum"))
      return "number";
    return "any";
  }

  std::string typed(const json& s, const std::string& t, const std::string& path) {
    if (t == "any") return "value";
    if (t == "object") return object(s, path);
    if (t == "array") return array(s, path);
    if (t == "string") return string(s, path);
    if (t == "integer") return numeric(s, path, true);
    if (t == "number") return numeric(s, path, false);
    if (t == "boolean") return "boolean";
    if (t == "null") return "null";
    error(child(path, "type"), "unknown type '" + t + "'");
  }

  std::string ref(const json& r, const std::string& path) {
    if (!r.is_string()) error(child(path, "$ref"), "must be a string");
    const std::string target = r.get<std::string>();
    if (auto it = ref_rules_.find(target); it != ref_rules_.end()) return it->second;
    if (target.empty() || target[0] != '#') error(child(path, "$ref"), "only local references (#/...) are supported: '" + target + "'");
    json::json_pointer ptr;
    try {
      ptr = json::json_pointer(target.substr(1));
    } catch (const std::exception&) {
      error(child(path, "$ref"), "malformed JSON pointer '" + target + "'");
    }
    if (!root_.contains(ptr)) error(child(path, "$ref"), "reference '" + target + "' points nowhere");
    const std::string name = new_rule(target.substr(target.rfind('/') + 1));
    ref_rules_[target] = name;  // before visiting: recursive schemas refer back to the rule
    rules_[name] = visit(root_.at(ptr), target.substr(1));
    return name;
  }

  const json& resolve(const json& s, const std::string& path, int depth = 0) {
    if (depth > 32) error(path, "$ref chain too deep");
    if (s.is_object() && s.contains("$ref") && s["$ref"].is_string()) {
      const std::string t = s["$ref"].get<std::string>();
      if (t.empty() || t[0] != '#') error(child(path, "$ref"), "only local references are supported");
      const json::json_pointer ptr(t.substr(1));
      if (!root_.contains(ptr)) error(child(path, "$ref"), "reference '" + t + "' points nowhere");
      return resolve(root_.at(ptr), path, depth + 1);
    }
    return s;
  }

  json merge_all_of(const json& s, const std::string& path) {
    const json& list = s["allOf"];
    if (!list.is_array() || list.empty()) error(child(path, "allOf"), "must be a non-empty array");
    json merged = s;
    merged.erase("allOf");
    for (size_t i = 0; i < list.size(); ++i) {
      const std::string p = child(child(path, "allOf"), std::to_string(i));
      const json& part = resolve(list[i], p);
      if (!part.is_object()) error(p, "allOf entries must be schemas");
      for (const auto& [k, v] : part.items()) {
        if (kAnnotations.count(k)) continue;
        if (k == "properties") {
          for (const auto& [pk, pv] : v.items()) {
            if (merged["properties"].contains(pk)) error(child(p, "properties/" + pk), "property defined in two allOf branches");
            merged["properties"][pk] = pv;
          }
        } else if (k == "required") {
          for (const json& x : v) merged["required"].push_back(x);
        } else if (k == "type") {
          if (merged.contains("type") && merged["type"] != v) error(child(p, "type"), "allOf branches with different types");
          merged["type"] = v;
        } else if (k == "additionalProperties") {
          if (merged.contains(k) && merged[k] != v) error(child(p, k), "conflicting additionalProperties in allOf");
          merged[k] = v;
        } else {
          error(child(p, k), "allOf can merge only object schemas (type, properties, required, additionalProperties); '" + k + "' is not supported there");
        }
      }
    }
    return merged;
  }

  std::string object(const json& s, const std::string& path);
  std::string array(const json& s, const std::string& path);
  std::string string(const json& s, const std::string& path);
  std::string numeric(const json& s, const std::string& path, bool integer);
  std::string key_not_in(const std::vector<std::string>& names);

  const json& root_;
  int counter_ = 0;
  std::map<std::string, std::string> rules_;
  std::map<std::string, std::string> ref_rules_;  // $ref target -> rule name
  std::set<std::string> formats_;
};

// Required and optional properties in declared order, then extras. `first` chains are the
// only nesting: after the first emitted member every later one is ("," ws kv) or optional.
std::string Converter::object(const json& s, const std::string& path) {
  std::vector<std::pair<std::string, bool>> slots;  // (kv expression, required)
  std::vector<std::string> names;
  std::set<std::string> required;
  if (s.contains("required")) {
    if (!s["required"].is_array()) error(child(path, "required"), "must be an array of strings");
    for (const json& r : s["required"]) {
      if (!r.is_string()) error(child(path, "required"), "must be an array of strings");
      required.insert(r.get<std::string>());
    }
  }
  std::string extra_value;  // "" = no additional properties
  if (s.contains("additionalProperties")) {
    const json& a = s["additionalProperties"];
    if (a.is_boolean()) extra_value = a.get<bool>() ? "value" : "";
    else extra_value = visit(a, child(path, "additionalProperties"));
  }
  if (s.contains("properties")) {
    if (!s["properties"].is_object()) error(child(path, "properties"), "must be an object");
    for (const auto& [k, v] : s["properties"].items()) {
      const std::string pp = child(child(path, "properties"), k);
      slots.push_back({gbnf_literal(json(k).dump()) + " ws \":\" ws " + visit(v, pp), required.count(k) > 0});
      names.push_back(k);
    }
  }
  for (const std::string& r : required)
    if (std::find(names.begin(), names.end(), r) == names.end()) {
      if (s.contains("additionalProperties") && extra_value.empty())
        error(child(path, "required"), "'" + r + "' is required but not allowed (additionalProperties: false)");
      slots.push_back({gbnf_literal(json(r).dump()) + " ws \":\" ws " + (extra_value.empty() ? "value" : extra_value), true});
      names.push_back(r);
    }
  std::string extra;
  if (!extra_value.empty()) extra = key_not_in(names) + " ws \":\" ws " + extra_value;
  auto rest = [&](size_t from) {  // members after the first emitted one
    std::string out;
    for (size_t j = from; j < slots.size(); ++j)
      out += slots[j].second ? " \",\" ws " + slots[j].first : " (\",\" ws " + slots[j].first + ")?";
    if (!extra.empty()) out += " (\",\" ws " + extra + ")*";
    return out;
  };
  std::string first = extra.empty() ? "" : "(" + extra + rest(slots.size()) + ")?";
  for (size_t i = slots.size(); i-- > 0;) {
    const std::string take = slots[i].first + rest(i + 1);
    if (slots[i].second) first = take;
    else first = "(" + take + (first.empty() ? ")?" : " | " + first + ")");
  }
  const std::string name = new_rule(path.empty() ? "root-object" : path.substr(path.rfind('/') + 1));
  rules_[name] = "\"{\" ws " + (first.empty() ? "" : first + " ") + "ws \"}\"";
  return name;
}

// A JSON string (quoted) other than the given ones: a character trie whose every node may
// branch off to any other character (then anything) or close unless it ends a name.
std::string Converter::key_not_in(const std::vector<std::string>& names) {
  std::function<std::string(const std::string&)> node = [&](const std::string& prefix) {
    std::set<uint32_t> next;
    bool terminal = false;
    for (const std::string& n : names) {
      if (n.compare(0, prefix.size(), prefix) != 0) continue;
      if (n.size() == prefix.size()) terminal = true;
      else next.insert(static_cast<uint8_t>(n[prefix.size()]));
    }
    std::vector<std::string> xs;
    if (!terminal) xs.push_back("\"\\\"\"");
    Ranges other = {{'"', '"'}, {'\\', '\\'}, {0, 0x1F}};
    for (uint32_t c : next) other.push_back({c, c});
    xs.push_back("(" + gbnf_class(other, true) + " | \"\\\\\" ([\"\\\\/bfnrt] | \"u\" [0-9a-fA-F]{4})) char{0,31} \"\\\"\"");
    for (uint32_t c : next) xs.push_back(gbnf_literal(std::string(1, static_cast<char>(c))) + " " + node(prefix + static_cast<char>(c)));
    return alts(xs);
  };
  // Additional property names are generated at most 32 characters long (a subset of what the
  // schema allows): an unbounded free key lets a model ramble until max_tokens.
  const std::string name = new_rule("key");
  rules_[name] = "\"\\\"\" " + node("");
  return name;
}

std::string Converter::array(const json& s, const std::string& path) {
  const uint32_t lo = s.contains("minItems") ? count(s, "minItems", path) : 0;
  const uint32_t hi = s.contains("maxItems") ? count(s, "maxItems", path) : kUnbounded;
  if (hi < lo) error(child(path, "maxItems"), "maxItems is below minItems");
  std::vector<std::string> prefix;
  if (s.contains("prefixItems")) {
    if (!s["prefixItems"].is_array()) error(child(path, "prefixItems"), "must be an array of schemas");
    for (size_t i = 0; i < s["prefixItems"].size(); ++i)
      prefix.push_back(visit(s["prefixItems"][i], child(child(path, "prefixItems"), std::to_string(i))));
  }
  std::string item = "value";  // "" = no items beyond the prefix
  if (s.contains("items")) {
    const json& it = s["items"];
    if (it.is_boolean() && !it.get<bool>()) item = "";
    else if (it.is_array()) error(child(path, "items"), "the array form of items is draft-07; use prefixItems");
    else item = visit(it, child(path, "items"));
  }
  const uint32_t P = static_cast<uint32_t>(prefix.size());
  if (item.empty() && lo > P) error(child(path, "minItems"), "minItems exceeds the prefixItems allowed (items: false)");
  // Element i (0-based) with its separator; elements at index >= lo are optional.
  std::function<std::string(uint32_t)> from = [&](uint32_t i) -> std::string {
    if (i >= hi) return "";
    const std::string sep = i == 0 ? "" : "\",\" ws ";
    if (i >= P) {
      if (item.empty()) return "";
      const uint32_t need = lo > i ? lo - i : 0;
      const uint32_t cap = hi == kUnbounded ? kUnbounded : hi - i;
      if (i == 0) {  // first element without a separator, the rest with one
        const std::string more = "(\",\" ws " + item + ")" + gbnf_repeat(need ? need - 1 : 0, cap == kUnbounded ? kUnbounded : cap - 1);
        const std::string seq = item + " " + more;
        return need ? seq : "(" + seq + ")?";
      }
      return "(\",\" ws " + item + ")" + gbnf_repeat(need, cap);
    }
    const std::string tail = from(i + 1);
    const std::string seq = sep + prefix[i] + (tail.empty() ? "" : " " + tail);
    return i < lo ? seq : "(" + seq + ")?";
  };
  const std::string body = from(0);
  const std::string name = new_rule(path.empty() ? "root-array" : path.substr(path.rfind('/') + 1));
  rules_[name] = "\"[\" ws " + (body.empty() ? "" : body + " ") + "ws \"]\"";
  return name;
}

std::string Converter::string(const json& s, const std::string& path) {
  const bool has_len = s.contains("minLength") || s.contains("maxLength");
  const uint32_t lo = s.contains("minLength") ? count(s, "minLength", path) : 0;
  const uint32_t hi = s.contains("maxLength") ? count(s, "maxLength", path) : kUnbounded;
  if (hi < lo) error(child(path, "maxLength"), "maxLength is below minLength");
  // pattern / format with a length: the body is bounded by JSON string characters (%j{m,n},
  // an escape counts as one), which is what minLength/maxLength count.
  auto bounded = [&](const std::string& body) {
    if (!has_len) return "\"\\\"\" " + body + " \"\\\"\"";
    if ((hi != kUnbounded && hi > kBoundMax) || lo > kBoundMax)
      error(path, "minLength/maxLength above " + std::to_string(kBoundMax) + " with pattern or format are not supported");
    const std::string b = "(" + body + ")%j{" + std::to_string(lo) + "," + (hi == kUnbounded ? "" : std::to_string(hi)) + "}";
    return "\"\\\"\" " + b + " \"\\\"\"";
  };
  if (s.contains("format")) {
    if (!s["format"].is_string()) error(child(path, "format"), "must be a string");
    const std::string f = s["format"].get<std::string>();
    if (!kFormats.count(f))
      error(child(path, "format"), "unsupported format '" + f + "' (supported: date, time, date-time, uuid, email)");
    if (s.contains("pattern")) error(path, "format together with pattern is not supported");
    formats_.insert(f);
    if (f == "date-time") formats_.insert("date"), formats_.insert("time");
    return bounded(f);
  }
  if (s.contains("pattern")) {
    if (!s["pattern"].is_string()) error(child(path, "pattern"), "must be a string");
    try {
      return bounded(regex_to_gbnf_expr(s["pattern"].get<std::string>(), RegexMode::JsonString));
    } catch (const Error& e) {
      error(child(path, "pattern"), e.what());
    }
  }
  if (!has_len) return "string";
  return "\"\\\"\" char" + gbnf_repeat(lo, hi) + " \"\\\"\"";
}

// Integers: exact ranges. Numbers: bounds must be integers; then the value is an integer in
// range, or t.F (F ending in a non-zero digit, so t < x < t+1) with the open interval inside
// the bounds, which makes the whole construction exact.
std::string Converter::numeric(const json& s, const std::string& path, bool integer) {
  std::optional<int64_t> lo, hi;
  bool lo_excl = false, hi_excl = false;
  auto bound = [&](const char* key, bool lower, bool excl) {
    if (!s.contains(key)) return;
    const json& v = s[key];
    if (!v.is_number()) error(child(path, key), "must be a number");
    const double d = v.get<double>();
    if (!std::isfinite(d) || std::fabs(d) > 1e18) error(child(path, key), "bound out of range");
    double r = d;
    if (integer) {  // exact on integers: x >= 1.5 <=> x >= 2
      r = lower ? std::ceil(d) : std::floor(d);
      if (r != d) excl = false;
    } else if (std::floor(d) != d) {
      error(child(path, key), std::string(key) + " " + v.dump() + " is not an integer; bounds on non-integer numbers are enforced only when they are integers");
    }
    int64_t b = static_cast<int64_t>(r);
    if (integer && excl) b += lower ? 1 : -1, excl = false;
    auto& slot = lower ? lo : hi;
    bool& ex = lower ? lo_excl : hi_excl;
    const bool tighter = !slot || (lower ? (b > *slot || (b == *slot && excl)) : (b < *slot || (b == *slot && excl)));
    if (tighter) slot = b, ex = excl;
  };
  bound("minimum", true, false);
  bound("exclusiveMinimum", true, true);
  bound("maximum", false, false);
  bound("exclusiveMaximum", false, true);
  if (!lo && !hi) return integer ? "integer" : "number";
  // Integer values in range.
  int64_t ilo = lo ? *lo + (lo_excl ? 1 : 0) : 0, ihi = hi ? *hi - (hi_excl ? 1 : 0) : 0;
  std::vector<std::string> parts;
  const std::string ints = int_range_gbnf(lo ? &ilo : nullptr, hi ? &ihi : nullptr);
  if (!ints.empty()) parts.push_back(ints);
  if (!integer) {
    const std::string frac = " \".\" [0-9]{0,14} [1-9]";
    int64_t tlo = lo ? std::max<int64_t>(*lo, 0) : 0, thi = hi ? *hi - 1 : 0;  // t.F, t >= 0
    if (!hi || thi >= tlo) {
      const std::string t = int_range_gbnf(&tlo, hi ? &thi : nullptr);
      if (!t.empty()) parts.push_back(t + frac);
    }
    int64_t klo = hi ? std::max<int64_t>(1, -*hi) : 1, khi = lo ? -*lo - 1 : 0;  // -K.F
    if (!lo || khi >= klo) {
      const std::string k = int_range_gbnf(&klo, lo ? &khi : nullptr);
      if (!k.empty()) parts.push_back("\"-\" " + k + frac);
    }
    if ((!lo || *lo <= -1) && (!hi || *hi >= 0)) parts.push_back("\"-0\"" + frac);
  }
  if (parts.empty()) error(path, "the bounds leave no value");
  return alts(parts);
}

}  // namespace

std::string json_schema_to_gbnf(const nlohmann::ordered_json& schema) { return Converter(schema).run(); }

std::string json_object_gbnf() { return std::string("root ::= object\n") + kPrimitives; }

}  // namespace coppice::grammar
