// Statement execution and expression evaluation with jinja2's scoping: `for` bodies and macros
// get their own scope, `if` does not; macros close over the scopes live at their definition.
#include "chat/jinja_eval.h"

#include "util/error.h"

namespace coppice::chat::jinja {

void undefined_error(const Value& u, int line) {
  template_error(line, u.str().empty() ? "value is undefined" : u.str());
}

Interp::Interp(const RenderLimits& limits, Scope context) : limits_(limits) {
  install_globals(builtins_);
  scopes_.push_back(std::make_shared<Scope>(std::move(context)));
}

std::string Interp::render(const NodeList& root) {
  std::string out;
  exec(root, out);
  return out;
}

void Interp::check_size(size_t bytes, int line) const {
  if (bytes > limits_.max_output)
    template_error(line, "output exceeds " + std::to_string(limits_.max_output) + " bytes");
}

void Interp::step(int line) {
  if (++steps_ > limits_.max_steps)
    template_error(line, "template exceeded " + std::to_string(limits_.max_steps) + " loop/call steps");
}

Value Interp::lookup(const std::string& name) const {
  for (auto it = scopes_.rbegin(); it != scopes_.rend(); ++it) {
    auto f = (*it)->find(name);
    if (f != (*it)->end()) return f->second;
  }
  auto f = builtins_.find(name);
  if (f != builtins_.end()) return f->second;
  return Value::undefined("'" + name + "' is undefined");
}

Interp::Flow Interp::exec(const NodeList& nodes, std::string& out) {
  for (const auto& n : nodes) {
    Flow f = exec_node(*n, out);
    if (f != Flow::Normal) return f;
  }
  return Flow::Normal;
}

namespace {

struct ScopePush {
  ScopePush(ScopeChain& chain) : chain_(chain) { chain_.push_back(std::make_shared<Scope>()); }
  ~ScopePush() { chain_.pop_back(); }
  ScopeChain& chain_;
};

Value apply_filters(Interp& ip, const std::vector<ExprP>& filters, Value v) {
  for (const auto& f : filters) {
    CallArgs args;
    args.line = f->line;
    for (size_t k = 1; k < f->args.size(); ++k) args.pos.push_back(ip.eval(*f->args[k]));
    for (const auto& kw : f->kwargs) args.kw.emplace_back(kw.first, ip.eval(*kw.second));
    v = call_filter(ip, f->name, v, args);
  }
  return v;
}

}  // namespace

Interp::Flow Interp::exec_node(const Node& n, std::string& out) {
  switch (n.k) {
    case Node::K::Text:
      out += n.text;
      check_size(out.size(), n.line);
      return Flow::Normal;
    case Node::K::Output:
      out += eval(*n.expr).to_str();
      check_size(out.size(), n.line);
      return Flow::Normal;
    case Node::K::If:
      for (const auto& br : n.branches) {
        if (!br.first || eval(*br.first).truthy()) return exec(br.second, out);
      }
      return Flow::Normal;
    case Node::K::For: exec_for(n, out); return Flow::Normal;
    case Node::K::Set: exec_set(n); return Flow::Normal;
    case Node::K::SetBlock: {
      std::string buf;
      exec(n.body, buf);
      scopes_.back()->insert_or_assign(n.targets[0], apply_filters(*this, n.filters, Value::string(std::move(buf))));
      return Flow::Normal;
    }
    case Node::K::Macro: scopes_.back()->insert_or_assign(n.name, make_macro(n)); return Flow::Normal;
    case Node::K::CallBlock: {
      Value caller = make_macro(n);
      const Expr& c = *n.expr;
      Value fn = eval(*c.args[0]);
      CallArgs args;
      args.line = c.line;
      for (size_t k = 1; k < c.args.size(); ++k) args.pos.push_back(eval(*c.args[k]));
      for (const auto& kw : c.kwargs) args.kw.emplace_back(kw.first, eval(*kw.second));
      args.kw.emplace_back("caller", caller);
      out += call(fn, args).to_str();
      check_size(out.size(), n.line);
      return Flow::Normal;
    }
    case Node::K::FilterBlock: {
      std::string buf;
      exec(n.body, buf);
      out += apply_filters(*this, n.filters, Value::string(std::move(buf))).to_str();
      check_size(out.size(), n.line);
      return Flow::Normal;
    }
    case Node::K::Break: return Flow::Break;
    case Node::K::Continue: return Flow::Continue;
    case Node::K::Scope: {
      ScopePush push(scopes_);
      return exec(n.body, out);
    }
  }
  return Flow::Normal;
}

void Interp::assign(const std::vector<std::string>& targets, const Value& v, int line) {
  Scope& s = *scopes_.back();
  if (targets.size() == 1) {
    s.insert_or_assign(targets[0], v);
    return;
  }
  std::vector<Value> parts = iterate(v, line);
  if (parts.size() != targets.size())
    template_error(line, std::string(parts.size() > targets.size() ? "too many" : "not enough") +
                             " values to unpack (expected " + std::to_string(targets.size()) + ", got " +
                             std::to_string(parts.size()) + ")");
  for (size_t k = 0; k < targets.size(); ++k) s.insert_or_assign(targets[k], parts[k]);
}

void Interp::exec_set(const Node& n) {
  Value v = eval(*n.expr);
  if (n.attr.empty()) {
    assign(n.targets, v, n.line);
    return;
  }
  Value ns = lookup(n.targets[0]);
  if (!ns.is_dict() || ns.dict_data().flavor != DictFlavor::Namespace)
    template_error(n.line, "cannot assign attribute on non-namespace object '" + n.targets[0] + "'");
  ns.dict_data().set(n.attr, std::move(v));
}

void Interp::exec_for(const Node& n, std::string& out) {
  Value seq = eval(*n.expr);
  std::vector<Value> items = iterate(seq, n.line);
  ScopePush push(scopes_);
  if (n.cond) {
    std::vector<Value> kept;
    for (auto& item : items) {
      step(n.line);
      assign(n.targets, item, n.line);
      if (eval(*n.cond).truthy()) kept.push_back(std::move(item));
    }
    items = std::move(kept);
  }
  if (items.empty()) {
    exec(n.else_body, out);
    return;
  }
  auto len = static_cast<int64_t>(items.size());
  for (int64_t i = 0; i < len; ++i) {
    step(n.line);
    auto idx = static_cast<size_t>(i);
    assign(n.targets, items[idx], n.line);
    Value loop = Value::dict(DictFlavor::Loop);
    DictData& d = loop.dict_data();
    d.items.reserve(12);
    d.items.emplace_back("index", Value::integer(i + 1));
    d.items.emplace_back("index0", Value::integer(i));
    d.items.emplace_back("revindex", Value::integer(len - i));
    d.items.emplace_back("revindex0", Value::integer(len - i - 1));
    d.items.emplace_back("first", Value::boolean(i == 0));
    d.items.emplace_back("last", Value::boolean(i == len - 1));
    d.items.emplace_back("length", Value::integer(len));
    d.items.emplace_back("depth", Value::integer(1));
    d.items.emplace_back("depth0", Value::integer(0));
    d.items.emplace_back("previtem", i > 0 ? items[idx - 1] : Value::undefined("there is no previous item"));
    d.items.emplace_back("nextitem", i + 1 < len ? items[idx + 1] : Value::undefined("there is no next item"));
    d.items.emplace_back("cycle", Value::callable("cycle", [i](Interp&, CallArgs& a) {
      if (a.pos.empty()) template_error(a.line, "no items for cycling given");
      return a.pos[static_cast<size_t>(i) % a.pos.size()];
    }));
    scopes_.back()->insert_or_assign("loop", loop);
    if (exec(n.body, out) == Flow::Break) break;
  }
}

Value Interp::make_macro(const Node& n) {
  // Weak references: the macro usually lives in one of these scopes, and a strong capture
  // would make a reference cycle.
  std::vector<std::weak_ptr<Scope>> closure(scopes_.begin(), scopes_.end());
  const Node* node = &n;
  return Value::callable(n.name, [node, closure](Interp& ip, CallArgs& a) {
    ScopeChain chain;
    for (const auto& w : closure) {
      if (auto s = w.lock()) chain.push_back(std::move(s));
    }
    return ip.invoke_macro(*node, chain, a);
  }, true);
}

Value Interp::invoke_macro(const Node& n, const ScopeChain& closure, CallArgs& args) {
  if (depth_ >= limits_.max_call_depth)
    template_error(args.line, "macro calls nested deeper than " + std::to_string(limits_.max_call_depth));
  step(args.line);
  auto frame = std::make_shared<Scope>();
  std::vector<bool> bound(n.targets.size(), false);
  std::vector<Value> varargs;
  Value kwargs = Value::dict();
  for (size_t k = 0; k < args.pos.size(); ++k) {
    if (k < n.targets.size()) {
      (*frame)[n.targets[k]] = args.pos[k];
      bound[k] = true;
    } else {
      varargs.push_back(args.pos[k]);
    }
  }
  for (auto& kw : args.kw) {
    size_t k = 0;
    while (k < n.targets.size() && n.targets[k] != kw.first) ++k;
    if (k < n.targets.size()) {
      if (bound[k]) template_error(args.line, "macro '" + n.name + "' got multiple values for argument '" + kw.first + "'");
      (*frame)[kw.first] = kw.second;
      bound[k] = true;
    } else if (kw.first == "caller") {
      (*frame)["caller"] = kw.second;
    } else {
      kwargs.dict_data().set(kw.first, kw.second);
    }
  }
  (*frame)["varargs"] = Value::list(std::move(varargs), ListFlavor::Tuple);
  (*frame)["kwargs"] = kwargs;
  ScopeChain saved = std::move(scopes_);
  scopes_ = closure;
  scopes_.push_back(frame);
  ++depth_;
  std::string out;
  try {
    for (size_t k = 0; k < n.targets.size(); ++k) {
      if (bound[k]) continue;
      (*frame)[n.targets[k]] = n.defaults[k] ? eval(*n.defaults[k])
                                             : Value::undefined("parameter '" + n.targets[k] + "' was not provided");
    }
    exec(n.body, out);
  } catch (...) {
    --depth_;
    scopes_ = std::move(saved);
    throw;
  }
  --depth_;
  scopes_ = std::move(saved);
  return Value::string(std::move(out));
}

Value Interp::call(const Value& fn, CallArgs& args) {
  if (fn.is_undefined()) undefined_error(fn, args.line);
  if (!fn.is_callable()) template_error(args.line, std::string("'") + fn.type_name() + "' object is not callable");
  return fn.fn().fn(*this, args);
}

Value Interp::getattr(const Value& obj, const std::string& name, int line) {
  switch (obj.kind()) {
    case Kind::Undefined: undefined_error(obj, line);
    case Kind::Dict: {
      if (obj.is_mapping()) {
        Value m = bound_method(obj, name);
        if (!m.is_undefined()) return m;
      }
      if (const Value* v = obj.dict_data().find(name)) return *v;
      break;
    }
    case Kind::String: case Kind::List: {
      Value m = bound_method(obj, name);
      if (!m.is_undefined()) return m;
      break;
    }
    default: break;
  }
  return Value::undefined(std::string("'") + obj.type_name() + " object' has no attribute '" + name + "'");
}

Value Interp::getitem(const Value& obj, const Value& key, int line) {
  switch (obj.kind()) {
    case Kind::Undefined: undefined_error(obj, line);
    case Kind::Dict:
      if (key.is_string()) {
        if (const Value* v = obj.dict_data().find(key.str())) return *v;
        return getattr(obj, key.str(), line);
      }
      break;
    case Kind::List:
      if (key.is_int() && obj.list_data().flavor != ListFlavor::Iterator) {
        auto n = static_cast<int64_t>(obj.items().size());
        int64_t i = key.as_int() < 0 ? key.as_int() + n : key.as_int();
        if (i >= 0 && i < n) return obj.items()[static_cast<size_t>(i)];
        return Value::undefined(std::string("'") + obj.type_name() + " object' has no element " + std::to_string(key.as_int()));
      }
      if (key.is_string()) return getattr(obj, key.str(), line);
      break;
    case Kind::String:
      if (key.is_int()) {
        auto offs = utf8_offsets(obj.str());
        auto n = static_cast<int64_t>(offs.size() - 1);
        int64_t i = key.as_int() < 0 ? key.as_int() + n : key.as_int();
        if (i >= 0 && i < n) {
          auto u = static_cast<size_t>(i);
          return Value::string(obj.str().substr(offs[u], offs[u + 1] - offs[u]));
        }
        return Value::undefined("'str object' has no element " + std::to_string(key.as_int()));
      }
      if (key.is_string()) return getattr(obj, key.str(), line);
      break;
    default: break;
  }
  return Value::undefined(std::string("'") + obj.type_name() + " object' has no element " + key.repr());
}

std::vector<Value> Interp::iterate(const Value& v, int line) {
  switch (v.kind()) {
    case Kind::Undefined: return {};
    case Kind::List: return v.items();
    case Kind::Dict: {
      if (v.dict_data().flavor == DictFlavor::Namespace) break;
      std::vector<Value> keys;
      for (const auto& kv : v.dict_data().items) keys.push_back(Value::string(kv.first));
      return keys;
    }
    case Kind::String: {
      auto offs = utf8_offsets(v.str());
      std::vector<Value> chars;
      for (size_t k = 0; k + 1 < offs.size(); ++k) chars.push_back(Value::string(v.str().substr(offs[k], offs[k + 1] - offs[k])));
      return chars;
    }
    default: break;
  }
  template_error(line, std::string("'") + v.type_name() + "' object is not iterable");
}

bool Interp::contains(const Value& container, const Value& item, int line) {
  switch (container.kind()) {
    case Kind::Undefined: return false;
    case Kind::String:
      if (!item.is_string())
        template_error(line, std::string("'in <string>' requires string as left operand, not ") + item.type_name());
      return container.str().find(item.str()) != std::string::npos;
    case Kind::List:
      for (const auto& e : container.items()) if (e.equals(item)) return true;
      return false;
    case Kind::Dict:
      if (container.dict_data().flavor == DictFlavor::Namespace) break;
      if (item.is_list() || item.is_dict()) template_error(line, std::string("unhashable type: '") + item.type_name() + "'");
      return item.is_string() && container.dict_data().find(item.str()) != nullptr;
    default: break;
  }
  template_error(line, std::string("argument of type '") + container.type_name() + "' is not iterable");
}

Value Interp::eval_slice(const Value& obj, const Expr& slice, int line) {
  if (obj.is_undefined()) undefined_error(obj, line);
  int64_t parts[3] = {0, 0, 1};
  bool given[3] = {false, false, false};
  for (int k = 0; k < 3; ++k) {
    if (!slice.args[static_cast<size_t>(k)]) continue;
    Value p = eval(*slice.args[static_cast<size_t>(k)]);
    if (p.is_none()) continue;
    if (!p.is_int()) return Value::undefined("slice indices must be integers or None");
    parts[k] = p.as_int();
    given[k] = true;
  }
  if (parts[2] == 0) template_error(line, "slice step cannot be zero");
  bool is_str = obj.is_string();
  if (!is_str && !(obj.is_list() && obj.list_data().flavor != ListFlavor::Iterator))
    return Value::undefined(std::string("'") + obj.type_name() + "' object is not subscriptable");
  std::vector<size_t> offs;
  int64_t len;
  if (is_str) {
    offs = utf8_offsets(obj.str());
    len = static_cast<int64_t>(offs.size()) - 1;
  } else {
    len = static_cast<int64_t>(obj.items().size());
  }
  int64_t step = parts[2];
  // CPython's PySlice_AdjustIndices.
  int64_t lower = step < 0 ? -1 : 0, upper = step < 0 ? len - 1 : len;
  auto adjust = [&](int64_t v, bool has, int64_t def) {
    if (!has) return def;
    if (v < 0) { v += len; return v < lower ? lower : v; }
    return v > upper ? upper : v;
  };
  int64_t start = adjust(parts[0], given[0], step < 0 ? upper : lower);
  int64_t stop = adjust(parts[1], given[1], step < 0 ? lower : upper);
  std::vector<Value> items;
  std::string s;
  for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) {
    auto u = static_cast<size_t>(i);
    if (is_str) s.append(obj.str(), offs[u], offs[u + 1] - offs[u]);
    else items.push_back(obj.items()[u]);
  }
  if (is_str) return Value::string(std::move(s));
  return Value::list(std::move(items), obj.list_data().flavor);
}

Value Interp::eval(const Expr& e) {
  switch (e.k) {
    case Expr::K::Literal: return e.lit;
    case Expr::K::Name: return lookup(e.name);
    case Expr::K::List: case Expr::K::Tuple: {
      std::vector<Value> items;
      items.reserve(e.args.size());
      for (const auto& a : e.args) items.push_back(eval(*a));
      return Value::list(std::move(items), e.k == Expr::K::List ? ListFlavor::List : ListFlavor::Tuple);
    }
    case Expr::K::Dict: {
      Value d = Value::dict();
      for (size_t k = 0; k + 1 < e.args.size(); k += 2) {
        Value key = eval(*e.args[k]);
        if (!key.is_string()) template_error(e.line, "only string dict keys are supported");
        d.dict_data().set(key.str(), eval(*e.args[k + 1]));
      }
      return d;
    }
    case Expr::K::Attr: return getattr(eval(*e.args[0]), e.name, e.line);
    case Expr::K::Subscript: {
      Value obj = eval(*e.args[0]);
      if (e.args[1]->k == Expr::K::Slice) return eval_slice(obj, *e.args[1], e.line);
      return getitem(obj, eval(*e.args[1]), e.line);
    }
    case Expr::K::Slice: template_error(e.line, "slice outside of subscript");
    case Expr::K::Call: case Expr::K::Filter: case Expr::K::Test: {
      CallArgs args;
      args.line = e.line;
      Value first = eval(*e.args[0]);
      for (size_t k = 1; k < e.args.size(); ++k) args.pos.push_back(eval(*e.args[k]));
      for (const auto& kw : e.kwargs) args.kw.emplace_back(kw.first, eval(*kw.second));
      if (e.k == Expr::K::Call) return call(first, args);
      if (e.k == Expr::K::Filter) return call_filter(*this, e.name, first, args);
      return Value::boolean(call_test(*this, e.name, first, args) != e.negated);
    }
    case Expr::K::Unary: {
      Value v = eval(*e.args[0]);
      if (v.is_undefined()) undefined_error(v, e.line);
      if (!v.is_number()) template_error(e.line, std::string("bad operand type for unary ") + e.name + ": '" + v.type_name() + "'");
      if (e.name == "+") return v.kind() == Kind::Bool ? Value::integer(v.as_int()) : v;
      if (v.kind() == Kind::Float) return Value::number(-v.as_float());
      if (v.as_int() == INT64_MIN) template_error(e.line, "integer overflow");
      return Value::integer(-v.as_int());
    }
    case Expr::K::Binary: {
      Value a = eval(*e.args[0]);
      Value b = eval(*e.args[1]);
      if (e.name == "in") return Value::boolean(contains(b, a, e.line));
      if (e.name == "notin") return Value::boolean(!contains(b, a, e.line));
      Value r = binary_op(e.name, a, b, e.line);
      if (r.is_string()) check_size(r.str().size(), e.line);
      return r;
    }
    case Expr::K::And: {
      Value a = eval(*e.args[0]);
      return a.truthy() ? eval(*e.args[1]) : a;
    }
    case Expr::K::Or: {
      Value a = eval(*e.args[0]);
      return a.truthy() ? a : eval(*e.args[1]);
    }
    case Expr::K::Not: return Value::boolean(!eval(*e.args[0]).truthy());
    case Expr::K::Cond:
      if (eval(*e.args[1]).truthy()) return eval(*e.args[0]);
      return e.args[2] ? eval(*e.args[2]) : Value::undefined("conditional expression has no else branch");
  }
  return Value();
}

}  // namespace coppice::chat::jinja
