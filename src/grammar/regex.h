// ECMAScript regular expressions (the subset JSON Schema `pattern` uses) -> GBNF.
// Supported: literals, escapes (\d \w \s \D \W \S \n \t \r \f \v \0 \xHH \uHHHH, escaped
// punctuation), classes [a-z] [^...] (with \d \w \s inside), `.`, groups ( ) (?: ),
// alternation, quantifiers * + ? {n} {n,} {n,m} (lazy forms match the same language),
// anchors ^ $ at the ends of a top-level alternative. Anything else (backreferences,
// lookaround, \b, named groups) is an error naming the column.
#pragma once
#include <string>
#include <string_view>

namespace coppice::grammar {

enum class RegexMode {
  Full,        // --regex: the whole output matches (anchors optional)
  JsonString,  // a JSON Schema pattern: search semantics (unanchored ends match anything);
               // the text is the content of a JSON string, so " and \ are emitted escaped
};

// A GBNF expression for the regex. Throws coppice::Error "[regex] col N: what".
std::string regex_to_gbnf_expr(std::string_view re, RegexMode mode);
// A complete grammar: "root ::= <expr>".
std::string regex_to_gbnf(std::string_view re);

}  // namespace coppice::grammar
