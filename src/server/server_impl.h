// Internal: the server's state, shared by server.cpp (lifecycle, small routes) and
// generate.cpp (the two generation endpoints).
#pragma once
#include <httplib.h>

#include <atomic>
#include <mutex>
#include <thread>

#include "server/api_error.h"
#include "server/server.h"

namespace coppice::server {

struct Server::Impl {
  Impl(Engine& e, const Tokenizer& t, ServerOptions o) : engine(e), tok(t), opts(std::move(o)) {}

  Engine& engine;
  const Tokenizer& tok;
  ServerOptions opts;
  httplib::Server http;
  Metrics metrics;
  std::thread thread;
  int port = -1;
  std::chrono::system_clock::time_point started = std::chrono::system_clock::now();
  std::atomic<bool> draining{false};  // new requests get 503
  std::atomic<bool> aborting{false};  // in-flight requests are cancelled
  std::atomic<int> in_flight{0};      // generation responses not yet released
  std::atomic<uint64_t> next_id{0};
  uint64_t id_salt = 0;
  std::mutex stop_mu;
  bool stopped = false;

  void routes();
  void generate(const httplib::Request& req, httplib::Response& res, Endpoint ep);
  // The `search` extension (server/search_endpoint.cpp): g holds the prompt and sampling.
  // Throws ApiError for what fails before the search starts.
  void generate_search(httplib::Response& res, Endpoint ep, const std::string& id, const ApiRequest& r,
                       GenRequest g, std::chrono::steady_clock::time_point arrival, const std::string& client);
  void send_error(httplib::Response& res, const ApiError& e) const;
  // Adds a unix-ms timestamp and writes one JSON line.
  void log_line(nlohmann::json line) const;
  std::string new_id(Endpoint ep);
  bool model_known(const std::string& name) const;
};

}  // namespace coppice::server
