// Tree-walking interpreter for parsed templates. One Interp renders one template once; it holds
// the variable scopes and the resource budget (output size, call depth, loop steps).
#pragma once
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "chat/jinja_ast.h"
#include "chat/jinja_value.h"

namespace coppice::chat::jinja {

struct RenderLimits {
  size_t max_output = size_t{64} << 20;   // bytes of any one output buffer or string value
  int max_call_depth = 100;               // nested macro calls
  int64_t max_steps = 5'000'000;          // loop iterations + macro calls
  int64_t now_unix = -1;                  // strftime_now's clock; -1: current local time
};

using Scope = std::unordered_map<std::string, Value>;
using ScopeChain = std::vector<std::shared_ptr<Scope>>;

class Interp {
 public:
  Interp(const RenderLimits& limits, Scope context);
  std::string render(const NodeList& root);

  Value eval(const Expr& e);
  Value call(const Value& fn, CallArgs& args);
  Value getattr(const Value& obj, const std::string& name, int line);
  Value getitem(const Value& obj, const Value& key, int line);
  // Python iter(): the items a for loop / filter sees (dict -> keys, str -> characters).
  std::vector<Value> iterate(const Value& v, int line);
  bool contains(const Value& container, const Value& item, int line);
  void check_size(size_t bytes, int line) const;
  const RenderLimits& limits() const { return limits_; }

 private:
  enum class Flow { Normal, Break, Continue };
  Flow exec(const NodeList& nodes, std::string& out);
  Flow exec_node(const Node& n, std::string& out);
  void exec_for(const Node& n, std::string& out);
  void exec_set(const Node& n);
  void assign(const std::vector<std::string>& targets, const Value& v, int line);
  Value lookup(const std::string& name) const;
  Value make_macro(const Node& n);
  Value invoke_macro(const Node& n, const ScopeChain& closure, CallArgs& args);
  Value eval_slice(const Value& obj, const Expr& slice, int line);
  Value eval_binary(const std::string& op, const Value& a, const Value& b, int line);
  void step(int line);

  RenderLimits limits_;
  ScopeChain scopes_;
  Scope builtins_;
  int depth_ = 0;
  int64_t steps_ = 0;
};

// Builtins (jinja_builtins.cpp). Filters and tests receive already-evaluated arguments.
Value call_filter(Interp& ip, const std::string& name, const Value& in, CallArgs& args);
bool call_test(Interp& ip, const std::string& name, const Value& v, CallArgs& args);
// A bound method of a str/dict/list (`s.split`, `d.items`), or Undefined if there is none.
Value bound_method(const Value& obj, const std::string& name);
void install_globals(Scope& g);
// Python's binary operators and comparisons (jinja_ops.cpp).
Value binary_op(const std::string& op, const Value& a, const Value& b, int line);
bool py_less(const Value& a, const Value& b, int line);
[[noreturn]] void undefined_error(const Value& u, int line);

}  // namespace coppice::chat::jinja
