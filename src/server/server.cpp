#include "server/server.h"

#include <csignal>
#include <cstdio>
#include <random>

#include "server/auth.h"
#include "server/response.h"
#include "server/server_impl.h"
#include "util/error.h"

namespace coppice::server {

using json = nlohmann::json;

namespace {
const char* status_text(int status) {
  switch (status) {
    case 400: return "bad request";
    case 401: return "invalid or missing API key";
    case 404: return "not found";
    case 405: return "method not allowed";
    case 413: return "the request body is too large";
    case 414: return "the request URI is too long";
    case 503: return "the server is busy";
    default: return status >= 500 ? "internal server error" : "request failed";
  }
}

// The metrics label for a path: known routes by name, everything else as "other".
std::string route_label(const std::string& path) {
  for (const char* p : {"/v1/chat/completions", "/v1/completions", "/v1/models", "/health", "/metrics"})
    if (path == p) return p;
  return "other";
}
}  // namespace

void Server::Impl::send_error(httplib::Response& res, const ApiError& e) const {
  res.status = e.status;
  if (e.status == 503) res.set_header("Retry-After", "1");
  res.set_content(dump_json(e.to_json()), "application/json");
}

void Server::Impl::log_line(json j) const {
  j["ts"] = std::chrono::duration_cast<std::chrono::milliseconds>(
                std::chrono::system_clock::now().time_since_epoch()).count();
  const std::string line = dump_json(j);
  if (opts.log) {
    opts.log(line);
  } else {
    std::fprintf(stderr, "%s\n", line.c_str());
  }
}

std::string Server::Impl::new_id(Endpoint ep) {
  const uint64_t n = next_id.fetch_add(1) + 1;
  char buf[40];
  std::snprintf(buf, sizeof buf, "%016llx%08llx", static_cast<unsigned long long>(id_salt),
                static_cast<unsigned long long>(n));
  return std::string(ep == Endpoint::Chat ? "chatcmpl-" : "cmpl-") + buf;
}

bool Server::Impl::model_known(const std::string& name) const {
  if (name == opts.model_id) return true;
  for (const std::string& a : opts.model_aliases)
    if (name == a) return true;
  return false;
}

void Server::Impl::routes() {
  http.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
    if (req.path == "/health") return httplib::Server::HandlerResponse::Unhandled;
    if (!authorized(opts.api_key, req.get_header_value("Authorization"))) {
      send_error(res, ApiError(401, "invalid or missing API key: send 'Authorization: Bearer KEY'", "",
                               "invalid_api_key"));
      return httplib::Server::HandlerResponse::Handled;
    }
    if (draining.load() && req.path != "/metrics") {
      send_error(res, ApiError(503, "the server is shutting down", "", "shutting_down"));
      return httplib::Server::HandlerResponse::Handled;
    }
    return httplib::Server::HandlerResponse::Unhandled;
  });

  http.Get("/health", [this](const httplib::Request&, httplib::Response& res) {
    const bool ok = !draining.load();
    res.status = ok ? 200 : 503;
    res.set_content(dump_json({{"status", ok ? "ok" : "shutting down"}}), "application/json");
  });

  http.Get("/v1/models", [this](const httplib::Request&, httplib::Response& res) {
    const int64_t created =
        std::chrono::duration_cast<std::chrono::seconds>(started.time_since_epoch()).count();
    json m = {{"id", opts.model_id}, {"object", "model"}, {"created", created}, {"owned_by", "coppice"}};
    res.set_content(dump_json({{"object", "list"}, {"data", json::array({m})}}), "application/json");
  });

  http.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(metrics.render(engine.stats()), "text/plain; version=0.0.4; charset=utf-8");
  });

  http.Post("/v1/chat/completions",
            [this](const httplib::Request& req, httplib::Response& res) { generate(req, res, Endpoint::Chat); });
  http.Post("/v1/completions",
            [this](const httplib::Request& req, httplib::Response& res) { generate(req, res, Endpoint::Completions); });

  // Statuses httplib decides by itself (404, 413, ...) get an OpenAI-style body too.
  http.set_error_handler(httplib::Server::HandlerWithResponse([this](const httplib::Request&, httplib::Response& res) {
    if (!res.body.empty() || res.status < 400) return httplib::Server::HandlerResponse::Unhandled;
    const std::string code = res.status == 413 ? "request_too_large" : res.status == 404 ? "not_found" : "";
    send_error(res, ApiError(res.status, status_text(res.status), "", code));
    return httplib::Server::HandlerResponse::Handled;
  }));
  http.set_exception_handler([this](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
    std::string msg = "internal error";
    try {
      if (ep) std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      msg += std::string(": ") + e.what();
    } catch (...) {
    }
    send_error(res, ApiError(500, msg, "", "internal_error"));
  });
  // Generation requests log themselves when their response is released (with token counts);
  // the rest are logged here.
  http.set_logger([this](const httplib::Request& req, const httplib::Response& res) {
    if (res.has_header("X-Request-Id")) return;
    metrics.on_http(route_label(req.path), res.status);
    log_line({{"endpoint", route_label(req.path)}, {"method", req.method}, {"status", res.status},
              {"client", req.remote_addr}});
  });
}

Server::Server(Engine& engine, const Tokenizer& tok, ServerOptions opts)
    : impl_(std::make_unique<Impl>(engine, tok, std::move(opts))) {
  Impl& m = *impl_;
  m.id_salt = (static_cast<uint64_t>(std::random_device{}()) << 32) ^ std::random_device{}();
  // A write to a socket the client closed must fail, not kill the process.
  std::signal(SIGPIPE, SIG_IGN);
  const int threads = std::max(2, m.opts.max_connections);
  m.http.new_task_queue = [threads] { return new httplib::ThreadPool(static_cast<size_t>(threads)); };
  m.http.set_payload_max_length(m.opts.max_body);
  m.http.set_read_timeout(30, 0);
  m.http.set_write_timeout(30, 0);
  m.http.set_keep_alive_timeout(5);
  m.http.set_tcp_nodelay(true);
  m.routes();
}

Server::~Server() {
  shutdown(std::chrono::milliseconds(0));
  if (impl_->thread.joinable()) impl_->thread.join();
}

int Server::bind() {
  Impl& m = *impl_;
  if (m.opts.port == 0) {
    m.port = m.http.bind_to_any_port(m.opts.host);
  } else {
    m.port = m.http.bind_to_port(m.opts.host, m.opts.port) ? m.opts.port : -1;
  }
  if (m.port <= 0)
    fail("server", "cannot listen on " + m.opts.host + ":" + std::to_string(m.opts.port) +
                       " (address in use or not available)");
  return m.port;
}

void Server::listen() { impl_->http.listen_after_bind(); }

int Server::start() {
  const int p = bind();
  impl_->thread = std::thread([this] { listen(); });
  // Ready when start() returns (and stop() only works on a running listener).
  for (int i = 0; i < 5000 && !impl_->http.is_running(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  return p;
}

void Server::shutdown(std::chrono::milliseconds grace) {
  Impl& m = *impl_;
  {
    std::lock_guard<std::mutex> lk(m.stop_mu);
    if (m.stopped) return;
    m.stopped = true;
  }
  m.draining.store(true);
  const auto wait_idle = [&](std::chrono::milliseconds limit) {
    const auto until = std::chrono::steady_clock::now() + limit;
    while (m.in_flight.load() > 0 && std::chrono::steady_clock::now() < until)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
  };
  wait_idle(grace);
  m.aborting.store(true);  // what is left is cancelled; its responses end promptly
  wait_idle(std::chrono::milliseconds(5000));
  m.http.stop();
  if (m.thread.joinable()) m.thread.join();
}

int Server::port() const { return impl_->port; }
int Server::in_flight() const { return impl_->in_flight.load(); }
const Metrics& Server::metrics() const { return impl_->metrics; }

}  // namespace coppice::server
