// The generation endpoints: parse -> tokenize -> Engine::submit -> stream (SSE) or collect
// (JSON) the exchange's pieces. The response body is produced by a content provider that
// polls the connection, so a client that goes away cancels its request within ~50 ms.
#include <algorithm>
#include <chrono>

#include "server/exchange.h"
#include "server/response.h"
#include "server/server_impl.h"

namespace coppice::server {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

constexpr auto kPoll = std::chrono::milliseconds(50);

// What one admitted request's provider and releaser share.
struct Flight {
  std::shared_ptr<Exchange> ex;
  std::shared_ptr<RequestHandle> handle;
  ResponseMeta meta;
  bool stream = false, include_usage = false;
  std::unique_ptr<ChunkWriter> writer;      // stream
  std::unique_ptr<ResponseBuilder> builder;  // whole response
  bool opened = false, completed = false, client_gone = false;
  Clock::time_point arrival;
  std::string client;
  int best_of = 0, keep_n = 1;  // best_of > n: keep the keep_n best candidates
  bool show_logprobs = false;
};

double ms_since(Clock::time_point t) { return std::chrono::duration<double, std::milli>(Clock::now() - t).count(); }

}  // namespace

void Server::Impl::generate(const httplib::Request& req, httplib::Response& res, Endpoint ep) {
  const auto arrival = Clock::now();
  const std::string id = new_id(ep);
  res.set_header("X-Request-Id", id);
  const std::string path = endpoint_path(ep);
  auto log_error = [&](const ApiError& e) {
    send_error(res, e);
    metrics.on_http(path, e.status);
    log_line({{"id", id}, {"endpoint", path}, {"status", e.status}, {"error", e.what()},
              {"total_ms", ms_since(arrival)}, {"client", req.remote_addr}});
  };

  const int n_ctx = engine.options().n_ctx;
  const int max_prompt = opts.max_prompt_tokens > 0 ? std::min(opts.max_prompt_tokens, n_ctx - 1) : n_ctx - 1;
  const int cap = opts.max_tokens > 0 ? opts.max_tokens : n_ctx;
  ParseLimits lim;
  lim.n_vocab = tok.n_vocab();
  lim.max_tokens = cap;
  lim.max_n = opts.max_n;
  lim.search = opts.search_limits;

  auto f = std::make_shared<Flight>();
  f->arrival = arrival;
  f->client = req.remote_addr;
  try {
    auto parsed = parse_request(req.body, ep, lim);
    if (auto* e = std::get_if<ApiError>(&parsed)) throw *e;
    ApiRequest& r = std::get<ApiRequest>(parsed);
    if (!r.model.empty() && !model_known(r.model))
      throw ApiError(404, "the model '" + r.model + "' does not exist; this server serves '" + opts.model_id + "'",
                     "model", "model_not_found");

    std::vector<int32_t> ids;
    std::vector<int32_t> prime;
    if (ep == Endpoint::Chat) {
      if (!opts.render_chat) throw ApiError(501, "this server has no chat template", "messages", "not_implemented");
      ids = tok.encode(opts.render_chat(r.messages), true, true);
    } else if (r.prompt_is_ids) {
      ids = std::move(r.prompt_ids);
    } else {
      ids = tok.encode(r.prompt_text, true, true);
    }
    if (ids.empty()) throw ApiError(400, "the prompt is empty", ep == Endpoint::Chat ? "messages" : "prompt");
    if (static_cast<int>(ids.size()) > max_prompt)
      throw ApiError(400,
                     "the prompt has " + std::to_string(ids.size()) + " tokens; this server accepts at most " +
                         std::to_string(max_prompt),
                     ep == Endpoint::Chat ? "messages" : "prompt", "context_length_exceeded");
    if (ep == Endpoint::Completions)
      prime.assign(ids.end() - std::min<std::ptrdiff_t>(4, static_cast<std::ptrdiff_t>(ids.size())), ids.end());

    GenRequest g = r.gen;
    g.prompt = std::move(ids);
    if (r.search) {
      generate_search(res, ep, id, r, std::move(g), arrival, req.remote_addr);
      return;
    }
    if (g.max_tokens == 0) g.max_tokens = cap;
    // best_of: every candidate runs as a choice of one request (shared prefill); the n with
    // the best mean token log-prob are returned (ResponseBuilder::keep_best).
    f->best_of = r.best_of > g.n ? r.best_of : 0;
    const bool want_logprobs = r.logprobs || f->best_of > 0;
    f->keep_n = g.n;
    f->show_logprobs = r.logprobs;
    if (f->best_of) {
      g.n = f->best_of;
      g.top_logprobs = std::max(g.top_logprobs, 0);
    }
    Exchange::Options xo;
    xo.n = g.n;
    xo.stop = r.stop;
    xo.logprobs = want_logprobs;
    xo.prime = std::move(prime);
    f->ex = std::make_shared<Exchange>(tok, std::move(xo), &metrics, arrival);
    f->stream = r.stream;
    f->include_usage = r.include_usage;
    f->meta.endpoint = ep;
    f->meta.id = id;
    f->meta.created = std::chrono::duration_cast<std::chrono::seconds>(
                          std::chrono::system_clock::now().time_since_epoch()).count();
    f->meta.model = r.model.empty() ? opts.model_id : r.model;
    f->meta.logprobs = want_logprobs;
    f->meta.n = g.n;
    try {
      f->handle = engine.submit(std::move(g), Exchange::sink(f->ex));
    } catch (const AdmissionError& e) {
      throw ApiError(e.http_status, e.what(), e.param, e.http_status == 503 ? "server_busy" : "invalid_request");
    }
  } catch (const ApiError& e) {
    log_error(e);
    return;
  } catch (const std::exception& e) {
    log_error(ApiError(500, std::string("internal error: ") + e.what(), "", "internal_error"));
    return;
  }

  in_flight.fetch_add(1);
  if (f->stream) f->writer = std::make_unique<ChunkWriter>(f->meta);
  else f->builder = std::make_unique<ResponseBuilder>(f->meta);

  auto provider = [this, f](size_t, httplib::DataSink& sink) -> bool {
    std::vector<Piece> pieces;
    const bool done = f->ex->drain(pieces, kPoll);
    std::string out;
    if (f->stream) {
      if (!f->opened)
        for (const json& c : f->writer->opening()) out += sse_event(c);
      f->opened = true;
      for (const Piece& p : pieces) out += sse_event(f->writer->chunk(p));
      if (done) {
        if (f->include_usage) out += sse_event(f->writer->usage_chunk(f->ex->usage()));
        out += sse_done();
      }
    } else {
      for (const Piece& p : pieces) f->builder->add(p);
      if (done && f->best_of) f->builder->keep_best(f->keep_n, f->show_logprobs);
      if (done) out = dump_json(f->builder->body(f->ex->usage()));
    }
    if (!out.empty() && !sink.write(out.data(), out.size())) {
      f->client_gone = true;
      f->handle->cancel();
      return false;
    }
    if (done) {
      f->completed = true;
      sink.done();
      return true;
    }
    if (aborting.load()) f->handle->cancel();  // shutdown: finish with what was generated
    if (!sink.is_writable()) {
      f->client_gone = true;
      f->handle->cancel();
      return false;
    }
    return true;
  };
  auto releaser = [this, f, path](bool) {
    if (!f->completed) {
      f->client_gone = true;
      f->handle->cancel();
    }
    const Usage u = f->ex->usage();
    // 499: nginx's "client closed request", so logs and metrics tell it from a success.
    const int status = f->client_gone ? 499 : 200;
    metrics.on_http(path, status);
    json line = {{"id", f->meta.id},
                 {"endpoint", path},
                 {"status", status},
                 {"stream", f->stream},
                 {"n", f->meta.n},
                 {"prompt_tokens", u.prompt_tokens},
                 {"completion_tokens", u.completion_tokens},
                 {"cached_tokens", u.cached_tokens},
                 {"ttft_ms", f->ex->ttft_ms()},
                 {"total_ms", ms_since(f->arrival)},
                 {"finish_reason", f->client_gone ? "cancelled" : finish_name(f->ex->finish_reason())},
                 {"client", f->client}};
    log_line(std::move(line));
    in_flight.fetch_sub(1);
  };
  res.status = 200;
  if (f->stream) {
    res.set_header("Cache-Control", "no-cache");
    res.set_chunked_content_provider("text/event-stream", provider, releaser);
  } else {
    res.set_chunked_content_provider("application/json", provider, releaser);
  }
}

}  // namespace coppice::server
