// Request parsing and validation: the JSON body of /v1/chat/completions or /v1/completions
// becomes an ApiRequest, or an ApiError (400) naming the field. Strict: unknown fields, wrong
// types and out-of-range values are rejected, never ignored. No model or tokenizer needed, so
// the parser is fuzzed on its own (fuzz/fuzz_request.cpp).
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "engine/scheduler.h"
#include "server/api_error.h"
#include "server/search_request.h"

namespace coppice::server {

enum class Endpoint { Chat, Completions };
const char* endpoint_path(Endpoint e);

struct ChatMessage {
  std::string role;     // system, user, assistant (developer is read as system)
  std::string content;  // text parts of an array content are concatenated
};

struct ApiRequest {
  Endpoint endpoint = Endpoint::Chat;
  std::string model;                  // "" when absent
  std::vector<ChatMessage> messages;  // chat
  std::string prompt_text;            // completions, string form
  std::vector<int32_t> prompt_ids;    // completions, token-id form (used as given, no BOS added)
  bool prompt_is_ids = false;
  GenRequest gen;                     // everything but the prompt; gen.max_tokens = 0: not given
  std::vector<std::string> stop;      // at most 4, none empty
  bool stream = false;
  bool include_usage = false;         // stream_options.include_usage
  bool logprobs = false;              // any logprobs wanted (gen.top_logprobs >= 0)
  std::string user;
  int best_of = 0;                    // completions: candidates generated, the n best returned (0: n)
  std::optional<SearchSpec> search;   // extension: a test-time search instead of sampling
};

struct ParseLimits {
  int32_t n_vocab = 1 << 30;     // logit_bias keys must be below it
  int max_tokens = 1 << 20;      // cap on max_tokens / max_completion_tokens
  int max_n = 16;                // cap on n
  int max_top_logprobs = 20;
  size_t max_stop_len = 256;     // bytes per stop string
  size_t max_messages = 4096;
  int max_best_of = 32;          // cap on best_of
  SearchLimits search;
};

// Never throws: a value or an ApiError.
std::variant<ApiRequest, ApiError> parse_request(std::string_view body, Endpoint endpoint,
                                                 const ParseLimits& limits);

}  // namespace coppice::server
