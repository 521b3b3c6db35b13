// Shared helpers of the builtin filters, tests, methods and globals.
#pragma once
#include <string>
#include <vector>

#include "chat/jinja_eval.h"

namespace coppice::chat::jinja {

// Binds a builtin's positional/keyword arguments to its Python parameter list.
class ArgList {
 public:
  ArgList(const CallArgs& a, const std::string& fname, std::vector<const char*> names);
  bool has(size_t i) const { return find(i) != nullptr; }
  Value get(size_t i, Value def = Value()) const {
    const Value* v = find(i);
    return v ? *v : def;
  }
  int line() const { return a_.line; }

 private:
  const Value* find(size_t i) const;
  const CallArgs& a_;
  std::vector<const char*> names_;
};

std::string ascii_lower(std::string s);
std::string ascii_upper(std::string s);
// Python str.capitalize(): first character upper, the rest lower.
std::string py_capitalize(const std::string& s);
// Python int(x) for strings, or false if x is not an integer literal.
bool py_parse_int(const std::string& s, int64_t* out);
bool py_parse_float(const std::string& s, double* out);
int64_t to_index(const Value& v, const char* what, int line);

}  // namespace coppice::chat::jinja
