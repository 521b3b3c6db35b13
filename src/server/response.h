// OpenAI response bodies: streamed chunks (SSE "data: {...}\n\n" events, then "data: [DONE]")
// and whole non-streaming responses, for both chat.completion and text_completion shapes.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "server/exchange.h"
#include "server/request.h"

namespace coppice::server {

struct ResponseMeta {
  Endpoint endpoint = Endpoint::Chat;
  std::string id;       // chatcmpl-... / cmpl-...
  int64_t created = 0;  // unix seconds
  std::string model;
  bool logprobs = false;
  int n = 1;
};

// JSON text with invalid UTF-8 (raw byte tokens in logprobs) replaced, never throwing.
std::string dump_json(const nlohmann::json& j);
std::string sse_event(const nlohmann::json& j);
inline const char* sse_done() { return "data: [DONE]\n\n"; }
nlohmann::json usage_json(const Usage& u);
const char* finish_name(FinishReason r);  // "stop" / "length"; cancelled and errors too

// Streaming: one chunk per piece, with per-choice state (the chat role comes first, text
// offsets for completion logprobs).
class ChunkWriter {
 public:
  explicit ChunkWriter(ResponseMeta meta);
  std::vector<nlohmann::json> opening() const;     // chat: a role chunk per choice
  nlohmann::json chunk(const Piece& p);
  nlohmann::json usage_chunk(const Usage& u) const;  // choices: [] and the usage

 private:
  nlohmann::json logprobs_json(const Piece& p);
  ResponseMeta meta_;
  std::vector<size_t> offset_;  // [n] bytes of token text so far, for text_offset
};

// Non-streaming: pieces accumulate per choice; body() is the whole response.
class ResponseBuilder {
 public:
  explicit ResponseBuilder(ResponseMeta meta);
  void add(const Piece& p);
  nlohmann::json body(const Usage& u) const;
  // best_of: keeps the n choices with the highest mean token log-prob (the tokens' logprobs
  // must have been collected; an empty choice ranks last), renumbered in that order.
  void keep_best(int n, bool show_logprobs);

 private:
  struct Choice {
    std::string text;
    std::vector<TokenInfo> tokens;
    FinishReason finish = FinishReason::None;
  };
  ResponseMeta meta_;
  std::vector<Choice> choices_;
};

}  // namespace coppice::server
