// Runtime values of the Jinja2 interpreter, modelled on the Python objects jinja2 sees when
// Hugging Face renders a chat template: lists and dicts are shared (reference semantics, as
// in Python), strings are UTF-8 and indexed by code point.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace coppice::chat::jinja {

class Value;
class Interp;

enum class Kind : uint8_t { Undefined, None, Bool, Int, Float, String, List, Dict, Callable };
// Python type behind a List: list, tuple, or a one-shot iterator (map/select/items results,
// which json.dumps rejects and which are always truthy).
enum class ListFlavor : uint8_t { List, Tuple, Iterator };
// Python type behind a Dict: dict, jinja2 Namespace, or the `loop` object.
enum class DictFlavor : uint8_t { Dict, Namespace, Loop };

struct ListData {
  ListFlavor flavor = ListFlavor::List;
  std::vector<Value> items;
};

struct DictData {
  DictFlavor flavor = DictFlavor::Dict;
  std::vector<std::pair<std::string, Value>> items;  // insertion order, as Python dicts
  const Value* find(const std::string& key) const;
  void set(const std::string& key, Value v);
};

// Arguments of a call: positional, then keyword, plus the template line for errors.
struct CallArgs {
  std::vector<Value> pos;
  std::vector<std::pair<std::string, Value>> kw;
  int line = 0;
};

struct CallableData {
  std::string name;
  bool is_macro = false;
  std::function<Value(Interp&, CallArgs&)> fn;
};

class Value {
 public:
  Value() = default;  // Undefined
  static Value undefined(std::string name = {}) { Value v; v.str_ = std::move(name); return v; }
  static Value none() { Value v; v.kind_ = Kind::None; return v; }
  static Value boolean(bool b) { Value v; v.kind_ = Kind::Bool; v.i_ = b; return v; }
  static Value integer(int64_t i) { Value v; v.kind_ = Kind::Int; v.i_ = i; return v; }
  static Value number(double f) { Value v; v.kind_ = Kind::Float; v.f_ = f; return v; }
  static Value string(std::string s) { Value v; v.kind_ = Kind::String; v.str_ = std::move(s); return v; }
  // markupsafe.Markup: a string marked safe; `+` with a plain string HTML-escapes the other side.
  static Value markup(std::string s) { Value v = string(std::move(s)); v.i_ = 1; return v; }
  static Value list(std::vector<Value> items = {}, ListFlavor flavor = ListFlavor::List);
  static Value dict(DictFlavor flavor = DictFlavor::Dict);
  static Value callable(std::string name, std::function<Value(Interp&, CallArgs&)> fn,
                        bool is_macro = false);
  static Value from_json(const nlohmann::ordered_json& j);

  Kind kind() const { return kind_; }
  bool is_undefined() const { return kind_ == Kind::Undefined; }
  bool is_none() const { return kind_ == Kind::None; }
  bool is_string() const { return kind_ == Kind::String; }
  bool is_markup() const { return kind_ == Kind::String && i_ != 0; }
  bool is_list() const { return kind_ == Kind::List; }
  bool is_dict() const { return kind_ == Kind::Dict; }
  bool is_int() const { return kind_ == Kind::Int || kind_ == Kind::Bool; }  // bool is an int
  bool is_number() const { return is_int() || kind_ == Kind::Float; }
  bool is_callable() const { return kind_ == Kind::Callable; }
  bool is_mapping() const { return kind_ == Kind::Dict && dict_->flavor == DictFlavor::Dict; }

  bool as_bool() const { return i_ != 0; }
  int64_t as_int() const { return i_; }
  double as_float() const { return kind_ == Kind::Float ? f_ : static_cast<double>(i_); }
  const std::string& str() const { return str_; }  // String payload, or Undefined's name
  ListData& list_data() const { return *list_; }
  DictData& dict_data() const { return *dict_; }
  const CallableData& fn() const { return *fn_; }
  std::vector<Value>& items() const { return list_->items; }
  bool same_object(const Value& o) const;

  bool truthy() const;
  // Python str(): what `{{ v }}` prints.
  std::string to_str() const;
  // Python repr(), used inside printed containers.
  std::string repr() const;
  // Python ==.
  bool equals(const Value& o) const;
  // Python type name, for error messages.
  const char* type_name() const;

 private:
  Kind kind_ = Kind::Undefined;
  int64_t i_ = 0;
  double f_ = 0;
  std::string str_;
  std::shared_ptr<ListData> list_;
  std::shared_ptr<DictData> dict_;
  std::shared_ptr<const CallableData> fn_;
};

// markupsafe.escape of plain text: & < > " ' as entities.
std::string html_escape(const std::string& s);
// Python's repr() of a float: shortest round-trip digits, exponent form outside [1e-4, 1e16).
std::string py_float_repr(double f);
// json.dumps(v, ensure_ascii, indent, separators, sort_keys); throws std::runtime_error for
// values json cannot serialize (Undefined, iterators, namespaces, callables).
struct JsonDumpOptions {
  bool ensure_ascii = false;
  int indent = -1;  // -1: None (single line)
  std::string item_sep = ", ";
  std::string key_sep = ": ";
  bool sort_keys = false;
};
std::string py_json_dumps(const Value& v, const JsonDumpOptions& opt);

// UTF-8 helpers: Python strings index code points.
std::vector<size_t> utf8_offsets(const std::string& s);  // start byte of each code point + end
size_t utf8_length(const std::string& s);
bool py_is_space(uint32_t cp);
std::string py_strip(const std::string& s, bool left, bool right, const std::string* chars);
std::vector<std::string> py_splitlines(const std::string& s);

}  // namespace coppice::chat::jinja
