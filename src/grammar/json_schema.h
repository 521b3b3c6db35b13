// JSON Schema (the subset structured output needs) -> GBNF. Every keyword that constrains
// validity is either enforced or rejected with "[json-schema] <JSON pointer>: ..."; annotation
// keywords (title, description, default, examples, $schema, $id, $comment) are ignored.
// Objects are generated with properties in declared order and no extra properties unless
// additionalProperties says so; numbers without bounds use at most 16 integer digits.
#pragma once
#include <nlohmann/json.hpp>
#include <string>

namespace coppice::grammar {

// A complete grammar ("root ::= ...") whose language is a subset of the schema's instances.
// Takes ordered_json so properties are generated in the order the schema declares them.
std::string json_schema_to_gbnf(const nlohmann::ordered_json& schema);
// Any JSON object (OpenAI's response_format {"type": "json_object"}).
std::string json_object_gbnf();

// Integer-valued decimal numbers in [lo, hi] exactly; absent bounds are open. For tests.
std::string int_range_gbnf(const int64_t* lo, const int64_t* hi);

}  // namespace coppice::grammar
