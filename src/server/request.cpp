#include "server/request.h"

#include "engine/spec.h"

#include <cmath>
#include <limits>
#include <set>

#include <nlohmann/json.hpp>

#include "engine/grammar_sampling.h"
#include "engine/spec.h"
#include "grammar/json_schema.h"
#include "util/error.h"

namespace coppice::server {

using json = nlohmann::json;

const char* endpoint_path(Endpoint e) {
  return e == Endpoint::Chat ? "/v1/chat/completions" : "/v1/completions";
}

namespace {

[[noreturn]] void bad(const std::string& param, const std::string& msg, const std::string& code = "invalid_value") {
  throw ApiError(400, msg, param, code);
}

const char* type_name(const json& v) {
  switch (v.type()) {
    case json::value_t::null: return "null";
    case json::value_t::boolean: return "boolean";
    case json::value_t::string: return "string";
    case json::value_t::array: return "array";
    case json::value_t::object: return "object";
    case json::value_t::number_float: return "number";
    default: return "integer";
  }
}

[[noreturn]] void wrong_type(const std::string& param, const json& v, const char* want) {
  bad(param, "'" + param + "' must be " + want + ", got " + type_name(v), "invalid_type");
}

double number(const std::string& param, const json& v, double lo, double hi) {
  if (!v.is_number()) wrong_type(param, v, "a number");
  const double x = v.get<double>();
  if (!std::isfinite(x) || x < lo || x > hi)
    bad(param, "'" + param + "' = " + v.dump() + " is out of range [" + json(lo).dump() + ", " + json(hi).dump() + "]");
  return x;
}

int64_t integer(const std::string& param, const json& v, int64_t lo, int64_t hi) {
  if (!v.is_number_integer()) wrong_type(param, v, "an integer");
  // Unsigned values above INT64_MAX compare as out of range, not as negative.
  if (v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
    bad(param, "'" + param + "' = " + v.dump() + " is out of range [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
  const int64_t x = v.get<int64_t>();
  if (x < lo || x > hi)
    bad(param, "'" + param + "' = " + std::to_string(x) + " is out of range [" + std::to_string(lo) + ", " +
                   std::to_string(hi) + "]");
  return x;
}

bool boolean(const std::string& param, const json& v) {
  if (!v.is_boolean()) wrong_type(param, v, "a boolean");
  return v.get<bool>();
}

std::string string(const std::string& param, const json& v) {
  if (!v.is_string()) wrong_type(param, v, "a string");
  return v.get<std::string>();
}

std::string message_content(const std::string& param, const json& c) {
  if (c.is_string()) return c.get<std::string>();
  if (!c.is_array()) wrong_type(param, c, "a string or an array of text parts");
  std::string out;
  for (size_t i = 0; i < c.size(); ++i) {
    const std::string p = param + "[" + std::to_string(i) + "]";
    const json& part = c[i];
    if (!part.is_object()) wrong_type(p, part, "an object");
    for (const auto& [k, v] : part.items())
      if (k != "type" && k != "text") bad(p + "." + k, "unsupported field '" + k + "' in a content part", "unknown_field");
    if (!part.contains("type") || string(p + ".type", part["type"]) != "text")
      bad(p + ".type", "only content parts of type 'text' are supported", "unsupported_value");
    if (!part.contains("text")) bad(p + ".text", "a text part needs 'text'", "missing_field");
    out += string(p + ".text", part["text"]);
  }
  return out;
}

void parse_messages(const json& v, ApiRequest& r, const ParseLimits& lim) {
  if (!v.is_array()) wrong_type("messages", v, "an array");
  if (v.empty()) bad("messages", "'messages' must hold at least one message");
  if (v.size() > lim.max_messages)
    bad("messages", "'messages' has " + std::to_string(v.size()) + " entries; at most " +
                        std::to_string(lim.max_messages) + " are allowed");
  for (size_t i = 0; i < v.size(); ++i) {
    const std::string p = "messages[" + std::to_string(i) + "]";
    const json& m = v[i];
    if (!m.is_object()) wrong_type(p, m, "an object");
    for (const auto& [k, x] : m.items())
      if (k != "role" && k != "content") bad(p + "." + k, "unsupported field '" + k + "' in a message", "unknown_field");
    if (!m.contains("role")) bad(p + ".role", "a message needs a 'role'", "missing_field");
    if (!m.contains("content")) bad(p + ".content", "a message needs 'content'", "missing_field");
    ChatMessage cm;
    cm.role = string(p + ".role", m["role"]);
    if (cm.role == "developer") cm.role = "system";
    if (cm.role != "system" && cm.role != "user" && cm.role != "assistant")
      bad(p + ".role", "role '" + cm.role + "' is not supported (system, developer, user, assistant)", "unsupported_value");
    cm.content = message_content(p + ".content", m["content"]);
    r.messages.push_back(std::move(cm));
  }
}

void parse_prompt(const json& v, ApiRequest& r, const ParseLimits& lim) {
  if (v.is_string()) {
    r.prompt_text = v.get<std::string>();
    return;
  }
  if (!v.is_array()) wrong_type("prompt", v, "a string or an array of token ids");
  if (v.empty()) bad("prompt", "'prompt' must not be an empty array");
  if (v.size() == 1 && v[0].is_string()) {
    r.prompt_text = v[0].get<std::string>();
    return;
  }
  r.prompt_is_ids = true;
  for (size_t i = 0; i < v.size(); ++i) {
    const std::string p = "prompt[" + std::to_string(i) + "]";
    if (v[i].is_string()) bad("prompt", "several prompts in one request are not supported", "unsupported_value");
    r.prompt_ids.push_back(static_cast<int32_t>(integer(p, v[i], 0, lim.n_vocab - 1)));
  }
}

void parse_stop(const json& v, ApiRequest& r, const ParseLimits& lim) {
  auto add = [&](const std::string& p, const json& s) {
    std::string x = string(p, s);
    if (x.empty()) bad(p, "stop strings must not be empty");
    if (x.size() > lim.max_stop_len)
      bad(p, "a stop string has " + std::to_string(x.size()) + " bytes; at most " + std::to_string(lim.max_stop_len));
    r.stop.push_back(std::move(x));
  };
  if (v.is_string()) return add("stop", v);
  if (!v.is_array()) wrong_type("stop", v, "a string or an array of strings");
  if (v.size() > 4) bad("stop", "'stop' has " + std::to_string(v.size()) + " strings; at most 4 are allowed");
  for (size_t i = 0; i < v.size(); ++i) add("stop[" + std::to_string(i) + "]", v[i]);
}

void parse_logit_bias(const json& v, SamplingParams& sp, const ParseLimits& lim) {
  if (!v.is_object()) wrong_type("logit_bias", v, "an object mapping token ids to biases");
  if (v.size() > 1024) bad("logit_bias", "'logit_bias' has more than 1024 entries");
  for (const auto& [k, b] : v.items()) {
    const std::string p = "logit_bias." + k;
    int64_t id = -1;
    if (!k.empty() && k.size() <= 10 && k.find_first_not_of("0123456789") == std::string::npos) id = std::stoll(k);
    if (id < 0 || id >= lim.n_vocab)
      bad(p, "logit_bias key '" + k + "' is not a token id in [0, " + std::to_string(lim.n_vocab) + ")");
    sp.logit_bias[static_cast<int32_t>(id)] = static_cast<float>(number(p, b, -100, 100));
  }
}

// Structured output: the grammar is compiled here, so a bad schema or grammar is a 400 that
// names the field, never an engine failure.
void set_grammar(ApiRequest& r, const std::string& param, const std::string& gbnf) {
  if (r.gen.grammar) bad(param, "give only one of 'response_format' (json_object/json_schema) and 'grammar'");
  try {
    r.gen.grammar = compile_grammar(gbnf);
  } catch (const Error& e) {
    bad(param, e.what(), "invalid_grammar");
  }
}

void parse_response_format(const json& v, ApiRequest& r) {
  if (!v.is_object()) wrong_type("response_format", v, "an object");
  if (!v.contains("type") || !v["type"].is_string()) bad("response_format.type", "'response_format.type' is required", "missing_field");
  const std::string type = v["type"].get<std::string>();
  for (const auto& [k, x] : v.items())
    if (k != "type" && !(k == "json_schema" && type == "json_schema"))
      bad("response_format." + k, "unsupported field 'response_format." + k + "'", "unknown_field");
  if (type == "text") return;
  if (type == "json_object") return set_grammar(r, "response_format", grammar::json_object_gbnf());
  if (type != "json_schema")
    bad("response_format.type", "'response_format.type' must be text, json_object or json_schema, got '" + type + "'");
  if (!v.contains("json_schema") || !v["json_schema"].is_object())
    bad("response_format.json_schema", "'response_format.json_schema' must be an object", "missing_field");
  const json& js = v["json_schema"];
  for (const auto& [k, x] : js.items()) {
    if (k == "name" || k == "description") string("response_format.json_schema." + k, x);
    else if (k == "strict") { if (!x.is_null()) boolean("response_format.json_schema.strict", x); }
    else if (k != "schema") bad("response_format.json_schema." + k, "unsupported field 'response_format.json_schema." + k + "'", "unknown_field");
  }
  if (!js.contains("name")) bad("response_format.json_schema.name", "'response_format.json_schema.name' is required", "missing_field");
  // The body was parsed with sorted keys; properties are generated in that order.
  const nlohmann::ordered_json schema = js.contains("schema") ? nlohmann::ordered_json::parse(js["schema"].dump())
                                                               : nlohmann::ordered_json::object();
  std::string gbnf;
  try {
    gbnf = grammar::json_schema_to_gbnf(schema);
  } catch (const Error& e) {
    bad("response_format.json_schema.schema", e.what(), "invalid_schema");
  }
  set_grammar(r, "response_format.json_schema.schema", gbnf);
}

ApiRequest parse(std::string_view body, Endpoint ep, const ParseLimits& lim) {
  json j = json::parse(body.begin(), body.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) bad("", "the request body is not valid JSON", "invalid_json");
  if (!j.is_object()) bad("", "the request body must be a JSON object, got " + std::string(type_name(j)), "invalid_json");

  ApiRequest r;
  r.endpoint = ep;
  SamplingParams& sp = r.gen.sampling;
  // OpenAI's defaults, not the CLI's: plain sampling at temperature 1, fresh seed per request.
  sp.temperature = 1.0f;
  sp.top_k = 0;
  sp.top_p = 1.0f;
  sp.min_p = 0.0f;
  sp.seed = SamplingParams::kRandomSeed;
  r.gen.max_tokens = 0;
  r.gen.top_logprobs = -1;
  const bool chat = ep == Endpoint::Chat;
  int64_t top_logprobs = -1;
  bool has_stream_options = false;

  for (const auto& [key, v] : j.items()) {
    if (v.is_null()) continue;  // OpenAI clients send null for "not given"
    if (key == "model") {
      r.model = string(key, v);
    } else if (key == "messages" && chat) {
      parse_messages(v, r, lim);
    } else if (key == "prompt" && !chat) {
      parse_prompt(v, r, lim);
    } else if (key == "max_tokens" || (key == "max_completion_tokens" && chat)) {
      const int m = static_cast<int>(integer(key, v, 1, lim.max_tokens));
      if (key == "max_completion_tokens" || r.gen.max_tokens == 0) r.gen.max_tokens = m;
    } else if (key == "temperature") {
      sp.temperature = static_cast<float>(number(key, v, 0, 10));
    } else if (key == "top_p") {
      sp.top_p = static_cast<float>(number(key, v, 0, 1));
      if (sp.top_p <= 0) bad(key, "'top_p' must be in (0, 1]");
    } else if (key == "top_k") {
      sp.top_k = static_cast<int>(integer(key, v, 0, 1 << 30));
    } else if (key == "min_p") {
      sp.min_p = static_cast<float>(number(key, v, 0, 1));
    } else if (key == "seed") {
      if (v.is_number_integer() && !v.is_number_unsigned() && v.get<int64_t>() == -1) {
        sp.seed = SamplingParams::kRandomSeed;
      } else {
        sp.seed = static_cast<uint64_t>(integer(key, v, 0, std::numeric_limits<int64_t>::max()));
      }
    } else if (key == "stop") {
      parse_stop(v, r, lim);
    } else if (key == "n") {
      r.gen.n = static_cast<int>(integer(key, v, 1, lim.max_n));
    } else if (key == "logprobs") {
      if (chat) {
        r.logprobs = boolean(key, v);
      } else {
        top_logprobs = integer(key, v, 0, lim.max_top_logprobs);
        r.logprobs = true;
      }
    } else if (key == "top_logprobs" && chat) {
      top_logprobs = integer(key, v, 0, lim.max_top_logprobs);
    } else if (key == "presence_penalty") {
      sp.presence_penalty = static_cast<float>(number(key, v, -2, 2));
    } else if (key == "frequency_penalty") {
      sp.frequency_penalty = static_cast<float>(number(key, v, -2, 2));
    } else if (key == "repetition_penalty") {
      sp.repeat_penalty = static_cast<float>(number(key, v, 0, 10));
      if (sp.repeat_penalty <= 0) bad(key, "'repetition_penalty' must be > 0");
    } else if (key == "logit_bias") {
      parse_logit_bias(v, sp, lim);
    } else if (key == "stream") {
      r.stream = boolean(key, v);
    } else if (key == "stream_options") {
      if (!v.is_object()) wrong_type(key, v, "an object");
      has_stream_options = true;
      for (const auto& [k, x] : v.items()) {
        if (k != "include_usage") bad("stream_options." + k, "unsupported field 'stream_options." + k + "'", "unknown_field");
        if (!x.is_null()) r.include_usage = boolean("stream_options.include_usage", x);
      }
    } else if (key == "user") {
      r.user = string(key, v);
    } else if (key == "response_format") {
      parse_response_format(v, r);
    } else if (key == "grammar") {  // extension: a GBNF grammar
      set_grammar(r, key, string(key, v));
    } else if (key == "spec") {  // extension: speculative decoding, e.g. "ngram" or "none"
      r.gen.spec = string(key, v);
      try {
        parse_spec(r.gen.spec);
      } catch (const Error& e) {
        bad(key, e.what());
      }
    } else if (key == "best_of" && !chat) {
      r.best_of = static_cast<int>(integer(key, v, 1, lim.max_best_of));
    } else if (key == "search") {  // extension: test-time search (server/search_request.h)
      r.search = parse_search_object(v, lim.search);
    } else {
      bad(key, "unsupported field '" + key + "' for " + endpoint_path(ep), "unknown_field");
    }
  }

  if (chat && r.messages.empty()) bad("messages", "'messages' is required", "missing_field");
  if (!chat && !j.contains("prompt")) bad("prompt", "'prompt' is required", "missing_field");
  if (!chat && j["prompt"].is_null()) bad("prompt", "'prompt' must not be null", "missing_field");
  if (has_stream_options && !r.stream) bad("stream_options", "'stream_options' is only allowed when 'stream' is true");
  if (chat && top_logprobs >= 0 && !r.logprobs) bad("top_logprobs", "'top_logprobs' needs 'logprobs': true");
  if (r.logprobs) r.gen.top_logprobs = static_cast<int>(std::max<int64_t>(top_logprobs, 0));
  if (r.best_of > 0) {  // OpenAI: best_of >= n, and no streaming (candidates are ranked at the end)
    if (r.best_of < r.gen.n)
      bad("best_of", "'best_of' (" + std::to_string(r.best_of) + ") must be at least 'n' (" + std::to_string(r.gen.n) + ")");
    if (r.stream && r.best_of > 1) bad("best_of", "'best_of' cannot be used with 'stream': true");
    if (r.search) bad("best_of", "'best_of' cannot be combined with 'search' (use search.strategy best-of-n)");
  }
  if (r.search) {
    if (r.stream) bad("search", "'search' cannot be used with 'stream': true (candidates are ranked at the end)");
    if (r.logprobs) bad("search", "'search' does not return logprobs");
    if (r.gen.grammar) bad("search", "'search' cannot be combined with a grammar or response_format");
    if (!r.stop.empty()) bad("search", "'search' cannot be combined with 'stop' (use search.unit for steps)");
  }
  const std::string err = validate(sp);
  if (!err.empty()) bad("", err);
  return r;
}

}  // namespace

std::variant<ApiRequest, ApiError> parse_request(std::string_view body, Endpoint endpoint, const ParseLimits& limits) {
  try {
    return parse(body, endpoint, limits);
  } catch (const ApiError& e) {
    return e;
  } catch (const json::exception& e) {
    return ApiError(400, std::string("malformed request: ") + e.what(), "", "invalid_json");
  } catch (const std::exception& e) {
    return ApiError(400, std::string("malformed request: ") + e.what(), "", "invalid_request");
  }
}

}  // namespace coppice::server
