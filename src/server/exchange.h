// One generation request in flight, between the engine thread and the HTTP thread that
// answers it. The engine's sink (engine thread) turns token events into text pieces per choice:
// StreamDecoder (never half a UTF-8 character), then the stop matcher (held back while a stop
// string may be starting), then a queue the HTTP side drains. A matched stop string finishes
// its choice (the sink returns false); its text is never emitted.
#pragma once
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "engine/scheduler.h"
#include "server/metrics.h"
#include "server/stop.h"
#include "tokenizer/tokenizer.h"

namespace coppice::server {

struct TokenInfo {
  int32_t id;
  std::string piece;  // raw bytes (may be part of a UTF-8 character)
  float logprob;
  std::vector<std::pair<std::string, float>> top;  // (piece, logprob), most likely first
};

// A run of a choice's output: text safe to show, the logprobs of the tokens it came from,
// and on the choice's last piece its finish reason.
struct Piece {
  int choice = 0;
  std::string text;
  std::vector<TokenInfo> tokens;  // only when logprobs were asked for
  FinishReason finish = FinishReason::None;
};

struct Usage {
  int prompt_tokens = 0;
  int cached_tokens = 0;
  int completion_tokens = 0;
};

class Exchange {
 public:
  using Clock = std::chrono::steady_clock;
  struct Options {
    int n = 1;
    std::vector<std::string> stop;
    bool logprobs = false;
    // Completions continue the prompt's text, so the decoder is primed with its last tokens
    // (keeps a SentencePiece leading space); chat replies start fresh.
    std::vector<int32_t> prime;
  };
  Exchange(const Tokenizer& tok, Options opts, Metrics* metrics, Clock::time_point arrival);

  // The sink to hand to Engine::submit; it keeps this exchange alive.
  static EventSink sink(const std::shared_ptr<Exchange>& self);

  // HTTP side: waits up to `timeout` for pieces, moves them into `out`. True once every choice
  // has finished and everything has been handed out.
  bool drain(std::vector<Piece>& out, std::chrono::milliseconds timeout);
  Usage usage() const;
  // The request's overall finish reason (worst of its choices) and first-token latency.
  FinishReason finish_reason() const;
  double ttft_ms() const;

 private:
  struct Choice {
    std::unique_ptr<StreamDecoder> dec;
    StopMatcher stop;
    std::vector<TokenInfo> pending;  // logprobs of tokens whose text is still held back
    int tokens = 0;
    Clock::time_point first, last;
    FinishReason finish = FinishReason::None;
  };
  bool on_event(const TokenEvent& ev);  // engine thread
  void emit(Choice& c, int index, std::string text, FinishReason finish);

  const Tokenizer& tok_;
  Options opts_;
  Metrics* metrics_;
  Clock::time_point arrival_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Choice> choices_;   // engine thread only, except finish (guarded by mu_)
  std::vector<Piece> queue_;      // guarded by mu_
  int open_ = 0;                  // choices not finished, guarded by mu_
  Usage usage_;                   // guarded by mu_
  Clock::time_point first_token_; // guarded by mu_
  bool any_token_ = false;        // guarded by mu_
};

}  // namespace coppice::server
