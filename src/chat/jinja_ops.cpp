// Python's arithmetic, concatenation and ordering on template values (ints are 64-bit here and
// overflow is an error instead of a bignum).
#include <cmath>

#include "chat/jinja_eval.h"

namespace coppice::chat::jinja {

namespace {

constexpr size_t kMaxRepeatBytes = size_t{64} << 20;

[[noreturn]] void unsupported(const std::string& op, const Value& a, const Value& b, int line) {
  template_error(line, "unsupported operand type(s) for " + op + ": '" + a.type_name() + "' and '" + b.type_name() + "'");
}

template <typename Op>
int64_t checked(Op op, int64_t a, int64_t b, int line) {
  int64_t r = 0;
  if (op(a, b, &r)) template_error(line, "integer overflow");
  return r;
}
bool add_ovf(int64_t a, int64_t b, int64_t* r) { return __builtin_add_overflow(a, b, r); }
bool sub_ovf(int64_t a, int64_t b, int64_t* r) { return __builtin_sub_overflow(a, b, r); }
bool mul_ovf(int64_t a, int64_t b, int64_t* r) { return __builtin_mul_overflow(a, b, r); }

Value repeat(const Value& seq, int64_t n, int line) {
  if (n <= 0) return seq.is_string() ? Value::string("") : Value::list({}, seq.list_data().flavor);
  size_t unit = seq.is_string() ? seq.str().size() : seq.items().size() * sizeof(Value);
  if (unit != 0 && static_cast<uint64_t>(n) > kMaxRepeatBytes / unit) template_error(line, "repeated sequence too large");
  if (seq.is_string()) {
    std::string s;
    for (int64_t k = 0; k < n; ++k) s += seq.str();
    return seq.is_markup() ? Value::markup(std::move(s)) : Value::string(std::move(s));
  }
  std::vector<Value> items;
  for (int64_t k = 0; k < n; ++k) items.insert(items.end(), seq.items().begin(), seq.items().end());
  return Value::list(std::move(items), seq.list_data().flavor);
}

bool is_seq(const Value& v) { return v.is_list() && v.list_data().flavor != ListFlavor::Iterator; }

Value arith(const std::string& op, const Value& a, const Value& b, int line) {
  bool ints = a.is_int() && b.is_int();
  if (op == "+") {
    if (ints) return Value::integer(checked(add_ovf, a.as_int(), b.as_int(), line));
    if (a.is_number() && b.is_number()) return Value::number(a.as_float() + b.as_float());
    if (a.is_string() && b.is_string()) {
      if (!a.is_markup() && !b.is_markup()) return Value::string(a.str() + b.str());
      auto esc = [](const Value& v) { return v.is_markup() ? v.str() : html_escape(v.str()); };
      return Value::markup(esc(a) + esc(b));
    }
    if (is_seq(a) && is_seq(b) && a.list_data().flavor == b.list_data().flavor) {
      std::vector<Value> items = a.items();
      items.insert(items.end(), b.items().begin(), b.items().end());
      return Value::list(std::move(items), a.list_data().flavor);
    }
    if (a.is_string()) template_error(line, std::string("can only concatenate str (not \"") + b.type_name() + "\") to str");
    unsupported(op, a, b, line);
  }
  if (op == "-") {
    if (ints) return Value::integer(checked(sub_ovf, a.as_int(), b.as_int(), line));
    if (a.is_number() && b.is_number()) return Value::number(a.as_float() - b.as_float());
    unsupported(op, a, b, line);
  }
  if (op == "*") {
    if (ints) return Value::integer(checked(mul_ovf, a.as_int(), b.as_int(), line));
    if (a.is_number() && b.is_number()) return Value::number(a.as_float() * b.as_float());
    if ((a.is_string() || is_seq(a)) && b.is_int()) return repeat(a, b.as_int(), line);
    if (a.is_int() && (b.is_string() || is_seq(b))) return repeat(b, a.as_int(), line);
    unsupported(op, a, b, line);
  }
  if (!a.is_number() || !b.is_number()) {
    if (op == "%" && a.is_string()) template_error(line, "printf-style '%' string formatting is not supported");
    unsupported(op, a, b, line);
  }
  if (op == "/") {
    if (b.as_float() == 0.0) template_error(line, "division by zero");
    return Value::number(a.as_float() / b.as_float());
  }
  if (op == "//" || op == "%") {
    if (ints) {
      int64_t x = a.as_int(), y = b.as_int();
      if (y == 0) template_error(line, "integer division or modulo by zero");
      if (x == INT64_MIN && y == -1) template_error(line, "integer overflow");
      int64_t q = x / y, m = x % y;
      if (m != 0 && ((m < 0) != (y < 0))) { --q; m += y; }
      return Value::integer(op == "//" ? q : m);
    }
    double x = a.as_float(), y = b.as_float();
    if (y == 0.0) template_error(line, "float division by zero");
    // CPython float_divmod.
    double m = std::fmod(x, y);
    double div = (x - m) / y;
    if (m != 0.0 && ((m < 0) != (y < 0))) { m += y; div -= 1.0; }
    if (op == "%") return Value::number(m);
    double fl = std::floor(div);
    if (div - fl > 0.5) fl += 1.0;
    return Value::number(fl);
  }
  if (op == "**") {
    if (ints && b.as_int() >= 0) {
      int64_t base = a.as_int(), e = b.as_int(), acc = 1;
      while (e-- > 0) {
        if (__builtin_mul_overflow(acc, base, &acc)) template_error(line, "integer overflow");
        if (acc == 0 || acc == 1) break;
      }
      return Value::integer(acc);
    }
    return Value::number(std::pow(a.as_float(), b.as_float()));
  }
  template_error(line, "unknown operator " + op);
}

}  // namespace

bool py_less(const Value& a, const Value& b, int line) {
  if (a.is_undefined()) undefined_error(a, line);
  if (b.is_undefined()) undefined_error(b, line);
  if (a.is_number() && b.is_number()) {
    if (a.is_int() && b.is_int()) return a.as_int() < b.as_int();
    return a.as_float() < b.as_float();
  }
  if (a.is_string() && b.is_string()) return a.str() < b.str();  // UTF-8 byte order == code point order
  if (is_seq(a) && is_seq(b) && a.list_data().flavor == b.list_data().flavor) {
    const auto &x = a.items(), &y = b.items();
    for (size_t k = 0; k < x.size() && k < y.size(); ++k) {
      if (!x[k].equals(y[k])) return py_less(x[k], y[k], line);
    }
    return x.size() < y.size();
  }
  template_error(line, std::string("'<' not supported between instances of '") + a.type_name() + "' and '" + b.type_name() + "'");
}

Value binary_op(const std::string& op, const Value& a, const Value& b, int line) {
  if (op == "==") return Value::boolean(a.equals(b));
  if (op == "!=") return Value::boolean(!a.equals(b));
  if (op == "~") return Value::string(a.to_str() + b.to_str());
  if (op == "<") return Value::boolean(py_less(a, b, line));
  if (op == ">") return Value::boolean(py_less(b, a, line));
  if (op == "<=") return Value::boolean(!py_less(b, a, line));
  if (op == ">=") return Value::boolean(!py_less(a, b, line));
  if (a.is_undefined()) undefined_error(a, line);
  if (b.is_undefined()) undefined_error(b, line);
  return arith(op, a, b, line);
}

}  // namespace coppice::chat::jinja
