// Recursive-descent parser mirroring jinja2/parser.py: same precedence (condexpr < or < and <
// not < compare < +,- < ~ < *,/,//,% < ** < unary < postfix/filters/tests) and statements.
#include <algorithm>

#include "chat/jinja_ast.h"

namespace coppice::chat::jinja {

namespace {

class Parser {
 public:
  explicit Parser(std::vector<Token> toks) : t_(std::move(toks)) {}

  NodeList parse_root() {
    std::string found;
    return subparse({}, &found);
  }

 private:
  const Token& cur() const { return t_[i_]; }
  const Token& peek(size_t k = 1) const { return t_[std::min(i_ + k, t_.size() - 1)]; }
  void next() { if (i_ + 1 < t_.size()) ++i_; }
  bool is_op(const char* op) const { return cur().type == Tok::Op && cur().text == op; }
  bool is_name(const char* n) const { return cur().type == Tok::Name && cur().text == n; }
  static std::string describe(const Token& t) {
    switch (t.type) {
      case Tok::Eof: return "end of template";
      case Tok::VarEnd: return "end of print statement";
      case Tok::BlockEnd: return "end of statement block";
      case Tok::String: return "string";
      case Tok::Data: return "template data";
      default: return "'" + t.text + "'";
    }
  }
  [[noreturn]] void unexpected(const std::string& expected = {}) const {
    std::string msg = "unexpected " + describe(cur());
    if (!expected.empty()) msg += ", expected " + expected;
    template_error(cur().line, msg);
  }
  void expect_op(const char* op) {
    if (!is_op(op)) unexpected(std::string("'") + op + "'");
    next();
  }
  std::string expect_name() {
    if (cur().type != Tok::Name) unexpected("a name");
    std::string n = cur().text;
    next();
    return n;
  }
  void expect_block_end() {
    if (cur().type != Tok::BlockEnd) unexpected("end of statement block");
    next();
  }

  struct DepthGuard {
    explicit DepthGuard(Parser& p) : p_(p) {
      if (++p_.depth_ > kMaxParseDepth) template_error(p_.cur().line, "template nested too deeply");
    }
    ~DepthGuard() { --p_.depth_; }
    Parser& p_;
  };

  // Parses nodes until a block tag named in `ends`; leaves the cursor on that name.
  NodeList subparse(const std::vector<std::string>& ends, std::string* found) {
    DepthGuard g(*this);
    NodeList out;
    for (;;) {
      const Token& t = cur();
      if (t.type == Tok::Eof) {
        if (!ends.empty()) template_error(t.line, "unexpected end of template, expected '" + ends.back() + "'");
        return out;
      }
      if (t.type == Tok::Data) {
        auto n = std::make_unique<Node>(Node::K::Text, t.line);
        n->text = t.text;
        out.push_back(std::move(n));
        next();
      } else if (t.type == Tok::VarBegin) {
        next();
        auto n = std::make_unique<Node>(Node::K::Output, t.line);
        n->expr = parse_tuple(true, {});
        if (cur().type != Tok::VarEnd) unexpected("end of print statement");
        next();
        out.push_back(std::move(n));
      } else if (t.type == Tok::BlockBegin) {
        next();
        if (cur().type != Tok::Name) unexpected("statement name");
        if (std::find(ends.begin(), ends.end(), cur().text) != ends.end()) {
          *found = cur().text;
          next();
          return out;
        }
        out.push_back(parse_statement());
      } else {
        unexpected();
      }
    }
  }

  NodeP parse_statement() {
    const std::string kw = cur().text;
    int line = cur().line;
    next();
    if (kw == "if") return parse_if(line);
    if (kw == "for") return parse_for(line);
    if (kw == "set") return parse_set(line);
    if (kw == "macro") return parse_macro(line);
    if (kw == "call") return parse_call_block(line);
    if (kw == "filter") {
      auto n = std::make_unique<Node>(Node::K::FilterBlock, line);
      parse_filter_chain(n->filters, false);
      expect_block_end();
      std::string found;
      n->body = subparse({"endfilter"}, &found);
      expect_block_end();
      return n;
    }
    if (kw == "break" || kw == "continue") {
      if (loop_depth_ == 0) template_error(line, "'" + kw + "' outside of a loop");
      expect_block_end();
      return std::make_unique<Node>(kw == "break" ? Node::K::Break : Node::K::Continue, line);
    }
    if (kw == "generation" || kw == "with") {  // generation: HF's assistant-mask marker
      auto n = std::make_unique<Node>(Node::K::Scope, line);
      while (kw == "with" && cur().type != Tok::BlockEnd) {
        if (!n->body.empty()) expect_op(",");
        auto s = std::make_unique<Node>(Node::K::Set, cur().line);
        s->targets.push_back(expect_name());
        expect_op("=");
        s->expr = parse_expression(true);
        n->body.push_back(std::move(s));
      }
      expect_block_end();
      std::string found;
      NodeList body = subparse({"end" + kw}, &found);
      for (auto& b : body) n->body.push_back(std::move(b));
      expect_block_end();
      return n;
    }
    template_error(line, "unknown tag '" + kw + "'");
  }

  NodeP parse_if(int line) {
    auto n = std::make_unique<Node>(Node::K::If, line);
    ExprP cond = parse_tuple(false, {});
    for (;;) {
      expect_block_end();
      std::string found;
      NodeList body = subparse({"elif", "else", "endif"}, &found);
      n->branches.emplace_back(std::move(cond), std::move(body));
      if (found == "elif") {
        cond = parse_tuple(false, {});
      } else if (found == "else") {
        expect_block_end();
        NodeList else_body = subparse({"endif"}, &found);
        n->branches.emplace_back(nullptr, std::move(else_body));
        expect_block_end();
        return n;
      } else {
        expect_block_end();
        return n;
      }
    }
  }

  std::vector<std::string> parse_targets(const char* stop) {
    std::vector<std::string> names;
    bool paren = is_op("(");
    if (paren) next();
    for (;;) {
      names.push_back(expect_name());
      if (!is_op(",")) break;
      next();
      if ((stop && is_name(stop)) || is_op(")") || is_op("=")) break;
    }
    if (paren) expect_op(")");
    return names;
  }

  NodeP parse_for(int line) {
    auto n = std::make_unique<Node>(Node::K::For, line);
    n->targets = parse_targets("in");
    if (!is_name("in")) unexpected("'in'");
    next();
    n->expr = parse_tuple(false, {"recursive"});
    if (is_name("if")) {
      next();
      n->cond = parse_expression(true);
    }
    if (is_name("recursive")) template_error(cur().line, "recursive loops are not supported");
    expect_block_end();
    ++loop_depth_;
    std::string found;
    n->body = subparse({"endfor", "else"}, &found);
    --loop_depth_;
    if (found == "else") {
      expect_block_end();
      n->else_body = subparse({"endfor"}, &found);
    }
    expect_block_end();
    return n;
  }

  NodeP parse_set(int line) {
    auto n = std::make_unique<Node>(Node::K::Set, line);
    if (cur().type == Tok::Name && peek().type == Tok::Op && peek().text == ".") {
      n->targets.push_back(expect_name());
      next();
      n->attr = expect_name();
    } else {
      n->targets = parse_targets(nullptr);
    }
    if (is_op("=")) {
      next();
      n->expr = parse_tuple(true, {});
      expect_block_end();
      return n;
    }
    if (!n->attr.empty() || n->targets.size() != 1) unexpected("'='");
    n->k = Node::K::SetBlock;
    parse_filter_chain(n->filters, true);
    expect_block_end();
    std::string found;
    n->body = subparse({"endset"}, &found);
    expect_block_end();
    return n;
  }

  void parse_params(Node& n) {
    expect_op("(");
    while (!is_op(")")) {
      if (!n.targets.empty()) expect_op(",");
      if (is_op(")")) break;
      n.targets.push_back(expect_name());
      if (is_op("=")) {
        next();
        n.defaults.push_back(parse_expression(true));
      } else {
        n.defaults.push_back(nullptr);
      }
    }
    next();
  }

  NodeP parse_macro(int line) {
    auto n = std::make_unique<Node>(Node::K::Macro, line);
    n->name = expect_name();
    parse_params(*n);
    expect_block_end();
    int saved = loop_depth_;
    loop_depth_ = 0;
    std::string found;
    n->body = subparse({"endmacro"}, &found);
    loop_depth_ = saved;
    if (cur().type == Tok::Name) next();  // optional repeated name
    expect_block_end();
    return n;
  }

  NodeP parse_call_block(int line) {
    auto n = std::make_unique<Node>(Node::K::CallBlock, line);
    n->name = "caller";
    if (is_op("(")) parse_params(*n);
    n->expr = parse_expression(true);
    if (n->expr->k != Expr::K::Call) template_error(line, "expected call");
    expect_block_end();
    int saved = loop_depth_;
    loop_depth_ = 0;
    std::string found;
    n->body = subparse({"endcall"}, &found);
    loop_depth_ = saved;
    expect_block_end();
    return n;
  }

  // `{% filter a | b %}` names the first filter bare; `{% set x | a | b %}` pipes each one.
  void parse_filter_chain(std::vector<ExprP>& out, bool pipe_first) {
    for (bool first = true;; first = false) {
      if (is_op("|")) next();
      else if (!first || pipe_first) return;
      auto f = std::make_unique<Expr>(Expr::K::Filter, cur().line);
      f->args.push_back(nullptr);
      f->name = dotted_name();
      if (!is_known_filter(f->name)) template_error(f->line, "no filter named '" + f->name + "'");
      if (is_op("(")) parse_call_args(*f);
      out.push_back(std::move(f));
    }
  }

  // ---- expressions ----

  bool tuple_end(const std::vector<std::string>& extra) const {
    if (cur().type == Tok::VarEnd || cur().type == Tok::BlockEnd || cur().type == Tok::Eof || is_op(")")) return true;
    return cur().type == Tok::Name && std::find(extra.begin(), extra.end(), cur().text) != extra.end();
  }

  ExprP parse_tuple(bool with_condexpr, const std::vector<std::string>& extra, bool explicit_parens = false) {
    int line = cur().line;
    std::vector<ExprP> items;
    bool is_tuple = false;
    for (;;) {
      if (!items.empty()) expect_op(",");
      if (tuple_end(extra)) break;
      items.push_back(parse_expression(with_condexpr));
      if (is_op(",")) is_tuple = true;
      else break;
    }
    if (!is_tuple) {
      if (!items.empty()) return std::move(items[0]);
      if (!explicit_parens) unexpected("an expression");
    }
    auto t = std::make_unique<Expr>(Expr::K::Tuple, line);
    t->args = std::move(items);
    return t;
  }

  ExprP parse_expression(bool with_condexpr) {
    DepthGuard g(*this);
    return with_condexpr ? parse_condexpr() : parse_or();
  }

  ExprP parse_condexpr() {
    ExprP e = parse_or();
    while (is_name("if")) {
      auto c = std::make_unique<Expr>(Expr::K::Cond, cur().line);
      next();
      ExprP test = parse_or();
      ExprP other;
      if (is_name("else")) {
        next();
        other = parse_condexpr();
      }
      c->args.push_back(std::move(e));
      c->args.push_back(std::move(test));
      c->args.push_back(std::move(other));
      e = std::move(c);
    }
    return e;
  }

  ExprP binary(Expr::K k, const std::string& op, ExprP a, ExprP b, int line) {
    auto e = std::make_unique<Expr>(k, line);
    e->name = op;
    e->args.push_back(std::move(a));
    e->args.push_back(std::move(b));
    return e;
  }

  ExprP parse_or() {
    ExprP e = parse_and();
    while (is_name("or")) {
      int line = cur().line;
      next();
      e = binary(Expr::K::Or, "or", std::move(e), parse_and(), line);
    }
    return e;
  }

  ExprP parse_and() {
    ExprP e = parse_not();
    while (is_name("and")) {
      int line = cur().line;
      next();
      e = binary(Expr::K::And, "and", std::move(e), parse_not(), line);
    }
    return e;
  }

  ExprP parse_not() {
    if (is_name("not")) {
      DepthGuard g(*this);
      auto e = std::make_unique<Expr>(Expr::K::Not, cur().line);
      next();
      e->args.push_back(parse_not());
      return e;
    }
    return parse_compare();
  }

  ExprP parse_compare() {
    ExprP e = parse_math1();
    for (;;) {
      int line = cur().line;
      std::string op;
      if (cur().type == Tok::Op && (cur().text == "==" || cur().text == "!=" || cur().text == "<" ||
                                    cur().text == ">" || cur().text == "<=" || cur().text == ">=")) {
        op = cur().text;
        next();
      } else if (is_name("in")) {
        op = "in";
        next();
      } else if (is_name("not") && peek().type == Tok::Name && peek().text == "in") {
        op = "notin";
        next();
        next();
      } else {
        return e;
      }
      e = binary(Expr::K::Binary, op, std::move(e), parse_math1(), line);
    }
  }

  template <typename Sub>
  ExprP left_assoc(Sub sub, std::initializer_list<const char*> ops) {
    ExprP e = (this->*sub)();
    for (;;) {
      const char* hit = nullptr;
      for (const char* op : ops) if (is_op(op)) hit = op;
      if (!hit) return e;
      int line = cur().line;
      next();
      e = binary(Expr::K::Binary, hit, std::move(e), (this->*sub)(), line);
    }
  }
  ExprP parse_math1() { return left_assoc(&Parser::parse_concat, {"+", "-"}); }
  ExprP parse_concat() { return left_assoc(&Parser::parse_math2, {"~"}); }
  ExprP parse_math2() { return left_assoc(&Parser::parse_pow, {"*", "/", "//", "%"}); }
  ExprP parse_pow() { return left_assoc(&Parser::parse_unary_f, {"**"}); }
  ExprP parse_unary_f() { return parse_unary(true); }

  ExprP parse_unary(bool with_filter) {
    DepthGuard g(*this);
    ExprP e;
    if (is_op("-") || is_op("+")) {
      e = std::make_unique<Expr>(Expr::K::Unary, cur().line);
      e->name = cur().text;
      next();
      e->args.push_back(parse_unary(false));
    } else {
      e = parse_primary();
    }
    e = parse_postfix(std::move(e));
    if (with_filter) e = parse_filter_expr(std::move(e));
    return e;
  }

  ExprP literal(Value v, int line) {
    auto e = std::make_unique<Expr>(Expr::K::Literal, line);
    e->lit = std::move(v);
    return e;
  }

  ExprP parse_primary() {
    const Token& t = cur();
    int line = t.line;
    if (t.type == Tok::Name) {
      std::string n = t.text;
      next();
      if (n == "true" || n == "True") return literal(Value::boolean(true), line);
      if (n == "false" || n == "False") return literal(Value::boolean(false), line);
      if (n == "none" || n == "None") return literal(Value::none(), line);
      auto e = std::make_unique<Expr>(Expr::K::Name, line);
      e->name = n;
      return e;
    }
    if (t.type == Tok::String) {
      std::string s;
      while (cur().type == Tok::String) {
        s += cur().text;
        next();
      }
      return literal(Value::string(std::move(s)), line);
    }
    if (t.type == Tok::Int) { int64_t v = t.ival; next(); return literal(Value::integer(v), line); }
    if (t.type == Tok::Float) { double v = t.fval; next(); return literal(Value::number(v), line); }
    if (is_op("(")) {
      next();
      ExprP e = parse_tuple(true, {}, true);
      expect_op(")");
      return e;
    }
    if (is_op("[")) {
      next();
      auto e = std::make_unique<Expr>(Expr::K::List, line);
      while (!is_op("]")) {
        if (!e->args.empty()) expect_op(",");
        if (is_op("]")) break;
        e->args.push_back(parse_expression(true));
      }
      next();
      return e;
    }
    if (is_op("{")) {
      next();
      auto e = std::make_unique<Expr>(Expr::K::Dict, line);
      while (!is_op("}")) {
        if (!e->args.empty()) expect_op(",");
        if (is_op("}")) break;
        e->args.push_back(parse_expression(true));
        expect_op(":");
        e->args.push_back(parse_expression(true));
      }
      next();
      return e;
    }
    unexpected();
  }

  ExprP parse_postfix(ExprP e) {
    for (;;) {
      int line = cur().line;
      if (is_op(".")) {
        next();
        if (cur().type == Tok::Name) {
          auto a = std::make_unique<Expr>(Expr::K::Attr, line);
          a->name = cur().text;
          next();
          a->args.push_back(std::move(e));
          e = std::move(a);
        } else if (cur().type == Tok::Int) {
          auto s = std::make_unique<Expr>(Expr::K::Subscript, line);
          s->args.push_back(std::move(e));
          s->args.push_back(literal(Value::integer(cur().ival), line));
          next();
          e = std::move(s);
        } else {
          unexpected("attribute name");
        }
      } else if (is_op("[")) {
        next();
        std::vector<ExprP> subs;
        while (!is_op("]")) {
          if (!subs.empty()) expect_op(",");
          subs.push_back(parse_subscribed());
        }
        next();
        auto s = std::make_unique<Expr>(Expr::K::Subscript, line);
        s->args.push_back(std::move(e));
        if (subs.size() == 1) {
          s->args.push_back(std::move(subs[0]));
        } else {
          auto t = std::make_unique<Expr>(Expr::K::Tuple, line);
          t->args = std::move(subs);
          s->args.push_back(std::move(t));
        }
        e = std::move(s);
      } else if (is_op("(")) {
        auto c = std::make_unique<Expr>(Expr::K::Call, line);
        c->args.push_back(std::move(e));
        parse_call_args(*c);
        e = std::move(c);
      } else {
        return e;
      }
    }
  }

  ExprP parse_subscribed() {
    int line = cur().line;
    std::vector<ExprP> parts;
    if (is_op(":")) {
      next();
      parts.push_back(nullptr);
    } else {
      ExprP e = parse_expression(true);
      if (!is_op(":")) return e;
      next();
      parts.push_back(std::move(e));
    }
    if (is_op(":") || is_op("]") || is_op(",")) parts.push_back(nullptr);
    else parts.push_back(parse_expression(true));
    if (is_op(":")) {
      next();
      if (is_op("]") || is_op(",")) parts.push_back(nullptr);
      else parts.push_back(parse_expression(true));
    } else {
      parts.push_back(nullptr);
    }
    auto s = std::make_unique<Expr>(Expr::K::Slice, line);
    s->args = std::move(parts);
    return s;
  }

  void parse_call_args(Expr& e) {
    expect_op("(");
    bool any = false;
    while (!is_op(")")) {
      if (any) expect_op(",");
      if (is_op(")")) break;
      any = true;
      if (is_op("*") || is_op("**")) template_error(cur().line, "*args / **kwargs in calls are not supported");
      if (cur().type == Tok::Name && peek().type == Tok::Op && peek().text == "=") {
        std::string key = cur().text;
        next();
        next();
        e.kwargs.emplace_back(key, parse_expression(true));
      } else {
        if (!e.kwargs.empty()) template_error(cur().line, "positional argument after keyword argument");
        e.args.push_back(parse_expression(true));
      }
    }
    next();
  }

  std::string dotted_name() {
    std::string n = expect_name();
    while (is_op(".")) {
      next();
      n += "." + expect_name();
    }
    return n;
  }

  ExprP parse_filter_expr(ExprP e) {
    for (;;) {
      if (is_op("|")) {
        next();
        auto f = std::make_unique<Expr>(Expr::K::Filter, cur().line);
        f->name = dotted_name();
        if (!is_known_filter(f->name)) template_error(f->line, "no filter named '" + f->name + "'");
        f->args.push_back(std::move(e));
        if (is_op("(")) parse_call_args(*f);
        e = std::move(f);
      } else if (is_name("is")) {
        auto t = std::make_unique<Expr>(Expr::K::Test, cur().line);
        next();
        if (is_name("not")) {
          t->negated = true;
          next();
        }
        t->name = dotted_name();
        if (!is_known_test(t->name)) template_error(t->line, "no test named '" + t->name + "'");
        t->args.push_back(std::move(e));
        if (is_op("(")) {
          parse_call_args(*t);
        } else if ((cur().type == Tok::Name || cur().type == Tok::String || cur().type == Tok::Int ||
                    cur().type == Tok::Float || is_op("(") || is_op("[") || is_op("{")) &&
                   !is_name("else") && !is_name("or") && !is_name("and")) {
          if (is_name("is")) template_error(cur().line, "you cannot chain multiple tests with is");
          t->args.push_back(parse_postfix(parse_primary()));
        }
        e = std::move(t);
      } else if (is_op("(")) {
        auto c = std::make_unique<Expr>(Expr::K::Call, cur().line);
        c->args.push_back(std::move(e));
        parse_call_args(*c);
        e = std::move(c);
      } else {
        return e;
      }
    }
  }

  std::vector<Token> t_;
  size_t i_ = 0;
  int depth_ = 0;
  int loop_depth_ = 0;
};

}  // namespace

NodeList parse_template(const std::string& source) {
  return Parser(lex_template(source)).parse_root();
}

}  // namespace coppice::chat::jinja
