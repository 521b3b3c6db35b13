// `coppice serve`: an OpenAI-compatible HTTP server over the serving Engine.
//   POST /v1/chat/completions, POST /v1/completions (SSE streaming or whole JSON),
//   GET /v1/models, GET /health (never needs the key), GET /metrics (Prometheus text).
// Every failure is an OpenAI-style JSON error with a 4xx/5xx status; a client that goes away
// has its request cancelled (and its KV blocks freed) at once.
#pragma once
#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "engine/scheduler.h"
#include "server/metrics.h"
#include "server/request.h"
#include "tokenizer/tokenizer.h"

namespace coppice::server {

// Renders chat messages into the prompt text, ending with the assistant's turn opener.
using ChatRenderer = std::function<std::string(const std::vector<ChatMessage>&)>;

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8080;                  // 0: any free port (see Server::port)
  std::string api_key;              // "": no key needed
  size_t max_body = 1 << 20;        // bytes; larger bodies get 413
  int max_connections = 64;         // worker threads = connections served at once
  int max_prompt_tokens = 0;        // 0: the engine's n_ctx - 1
  int max_tokens = 0;               // cap on max_tokens and its default; 0: the engine's n_ctx
  int max_n = 16;
  std::string model_id = "model";   // listed by /v1/models, accepted as "model"
  std::vector<std::string> model_aliases;  // also accepted as "model"
  ChatRenderer render_chat;         // needed for /v1/chat/completions
  // The reward model that `"search": {"scorer": "reward"}` uses (serve --reward-model); null:
  // none. Called on the engine thread only (one search runs at a time).
  std::shared_ptr<Scorer> reward_scorer;
  SearchLimits search_limits;
  // One JSON line per request; null: stderr.
  std::function<void(const std::string&)> log;
};

class Server {
 public:
  Server(Engine& engine, const Tokenizer& tok, ServerOptions opts);
  ~Server();  // shutdown(0) if still running
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds host:port and returns the port; throws coppice::Error when it cannot.
  int bind();
  // Serves until shutdown(); call after bind().
  void listen();
  // bind() + listen() on a background thread; returns the port.
  int start();
  // Graceful stop: new requests get 503, in-flight ones may finish for up to `grace`, then
  // are cancelled; then the listener closes and listen() returns. Idempotent.
  void shutdown(std::chrono::milliseconds grace);
  int port() const;
  int in_flight() const;
  const Metrics& metrics() const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace coppice::server
