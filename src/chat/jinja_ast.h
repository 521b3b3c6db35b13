// Tokens and syntax tree of the Jinja2 subset used by chat templates. The lexer applies the
// whitespace rules HF configures (trim_blocks, lstrip_blocks, `-`/`+` markers) while
// splitting, so the parser sees final text.
#pragma once
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "chat/jinja_value.h"

namespace coppice::chat::jinja {

// Limits that keep a hostile template from exhausting the stack or memory.
inline constexpr int kMaxParseDepth = 200;

[[noreturn]] void template_error(int line, const std::string& what);

enum class Tok : uint8_t { Data, VarBegin, VarEnd, BlockBegin, BlockEnd, Name, String, Int, Float, Op, Eof };

struct Token {
  Tok type;
  std::string text;  // data text, name, decoded string, operator
  int line = 1;
  int64_t ival = 0;
  double fval = 0;
};

std::vector<Token> lex_template(const std::string& source);

struct Expr;
using ExprP = std::unique_ptr<Expr>;

struct Expr {
  enum class K : uint8_t {
    Literal, Name, List, Tuple, Dict, Attr, Subscript, Slice, Call, Filter, Test,
    Unary, Binary, And, Or, Not, Cond
  };
  K k;
  int line;
  Value lit;                                           // Literal
  std::string name;                                    // Name, Attr, Filter, Test, operator
  std::vector<ExprP> args;                             // operands; see parser for layout
  std::vector<std::pair<std::string, ExprP>> kwargs;   // Call, Filter, Test keyword args
  bool negated = false;                                // Test: `is not`
  Expr(K kind, int ln) : k(kind), line(ln) {}
};

struct Node;
using NodeP = std::unique_ptr<Node>;
using NodeList = std::vector<NodeP>;

struct Node {
  enum class K : uint8_t {
    Text, Output, If, For, Set, SetBlock, Macro, CallBlock, FilterBlock, Break, Continue, Scope
  };
  K k;
  int line;
  std::string text;                                    // Text
  ExprP expr;                                          // Output, For iterable, Set value, CallBlock call
  ExprP cond;                                          // For `if` filter
  std::vector<std::pair<ExprP, NodeList>> branches;    // If: (condition, body); else has null cond
  std::vector<std::string> targets;                    // For / Set names; Macro params
  std::string attr;                                    // Set `ns.attr`: targets[0] is ns
  std::vector<ExprP> defaults;                         // Macro defaults (null: none)
  std::vector<ExprP> filters;                          // FilterBlock / SetBlock filters (args[0] null)
  NodeList body, else_body;                            // For/Macro/SetBlock/CallBlock/FilterBlock/Scope
  std::string name;                                    // Macro name
  Node(K kind, int ln) : k(kind), line(ln) {}
};

NodeList parse_template(const std::string& source);

// Known filter / test names, checked at parse time as jinja2 does.
bool is_known_filter(const std::string& name);
bool is_known_test(const std::string& name);

}  // namespace coppice::chat::jinja
