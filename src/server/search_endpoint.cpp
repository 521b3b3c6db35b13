// The `search` extension object on the generation endpoints: builds the scorer, submits a
// SearchJob to the engine (which runs it between scheduler iterations), and answers with the
// ranked candidates, each with its score, plus a `search` usage object (tokens spent, KV blocks
// at the peak vs as independent requests). The handler waits until the search has its prompt
// in (so "no KV room" and scorer errors still get a 4xx/5xx status); the body then comes from a
// provider that polls the connection, so a client that goes away cancels the search and its
// blocks return at once.
#include <condition_variable>
#include <mutex>
#include <optional>
#include <random>

#include "server/response.h"
#include "server/server_impl.h"

namespace coppice::server {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

constexpr auto kPoll = std::chrono::milliseconds(50);

// Shared by the engine's callbacks, the handler, the provider and the releaser.
struct SearchFlight {
  std::mutex mu;
  std::condition_variable cv;
  bool started = false, done = false;   // guarded by mu
  std::optional<SearchResult> result;   // guarded by mu
  std::string error;                    // guarded by mu
  int status = 0;                       // guarded by mu
  std::shared_ptr<RequestHandle> handle;
  bool completed = false, client_gone = false;
};

std::unique_ptr<Scorer> make_scorer(const ScorerSpec& s) {
  if (s.kind == ScorerSpec::Kind::Rules) return make_rules_scorer(s.rules);
  return make_logprob_scorer();
}

json body_of(const SearchResult& r, const ApiRequest& q, const SearchOptions& o, const ResponseMeta& m, int prompt_tokens) {
  const bool chat = m.endpoint == Endpoint::Chat;
  json choices = json::array();
  for (size_t i = 0; i < r.candidates.size() && static_cast<int>(i) < q.gen.n; ++i) {
    const SearchCandidate& c = r.candidates[i];
    json ch = {{"index", i}};
    if (chat) ch["message"] = {{"role", "assistant"}, {"content", c.text}, {"refusal", nullptr}};
    else ch["text"] = c.text;
    ch["logprobs"] = nullptr;
    const bool at_limit = static_cast<int>(c.tokens.size()) >= o.max_tokens;
    ch["finish_reason"] = c.finished && !at_limit ? "stop" : "length";
    ch["score"] = c.score;
    ch["mean_logprob"] = c.mean_logprob;
    if (o.kind == SearchKind::SelfConsistency) ch["answer"] = c.answer;
    choices.push_back(std::move(ch));
  }
  json search = {{"strategy", search_kind_name(o.kind)},
                 {"budget", o.budget},
                 {"tokens_spent", r.tokens_spent},
                 {"candidates", r.candidates.size()},
                 {"forward_steps", r.forward_steps},
                 {"kv_blocks_peak", r.kv_blocks_peak},
                 {"kv_blocks_independent", r.kv_blocks_independent},
                 {"kv_blocks_shared", std::max<int64_t>(0, r.kv_blocks_independent - r.kv_blocks_peak)}};
  if (o.kind == SearchKind::SelfConsistency) {
    search["answer"] = r.answer;
    search["answer_votes"] = r.answer_votes;
  }
  return {{"id", m.id},
          {"object", chat ? "chat.completion" : "text_completion"},
          {"created", m.created},
          {"model", m.model},
          {"system_fingerprint", "coppice-0.1.0"},
          {"choices", std::move(choices)},
          {"usage",
           {{"prompt_tokens", prompt_tokens},
            {"completion_tokens", r.tokens_spent},
            {"total_tokens", prompt_tokens + r.tokens_spent},
            {"prompt_tokens_details", {{"cached_tokens", 0}}}}},
          {"search", std::move(search)}};
}

}  // namespace

void Server::Impl::generate_search(httplib::Response& res, Endpoint ep, const std::string& id, const ApiRequest& r,
                                   GenRequest g, Clock::time_point arrival, const std::string& client) {
  const SearchSpec& spec = *r.search;
  SearchJob job;
  job.prompt = std::move(g.prompt);
  job.prompt_text = tok.decode(job.prompt);
  job.opts = spec.opts;
  job.opts.sampling = g.sampling;
  if (job.opts.sampling.seed == SamplingParams::kRandomSeed) job.opts.sampling.seed = std::random_device{}();
  const int room = engine.options().n_ctx - static_cast<int>(job.prompt.size()) - 1;
  job.opts.max_tokens = g.max_tokens > 0 ? g.max_tokens : std::max(1, std::min(room, 256));
  if (spec.scorer.kind == ScorerSpec::Kind::Reward) {
    if (!opts.reward_scorer)
      throw ApiError(400, "'search.scorer.type': this server has no reward model (serve --reward-model FILE)",
                     "search.scorer.type", "invalid_value");
    job.scorer = opts.reward_scorer;
  } else {
    job.scorer = make_scorer(spec.scorer);
  }
  const int prompt_tokens = static_cast<int>(job.prompt.size());
  const SearchOptions sopts = job.opts;

  auto f = std::make_shared<SearchFlight>();
  job.started = [f] {
    std::lock_guard<std::mutex> lk(f->mu);
    f->started = true;
    f->cv.notify_all();
  };
  SearchDone done = [f](const SearchResult* result, const std::string& error, int status) {
    std::lock_guard<std::mutex> lk(f->mu);
    if (result) f->result = *result;
    f->error = error;
    f->status = status;
    f->done = true;
    f->cv.notify_all();
  };
  try {
    f->handle = engine.submit_search(std::move(job), std::move(done));
  } catch (const AdmissionError& e) {
    throw ApiError(e.http_status, e.what(), "", e.http_status == 503 ? "server_busy" : "invalid_request");
  }
  {
    std::unique_lock<std::mutex> lk(f->mu);
    while (!f->started && !f->done) {
      if (aborting.load()) f->handle->cancel();
      f->cv.wait_for(lk, kPoll);
    }
    if (f->done && !f->result) {
      const int st = f->status == 499 ? 503 : f->status;
      throw ApiError(st, f->error, st == 400 ? "search" : "", st == 503 ? "server_busy" : "invalid_request");
    }
  }

  ResponseMeta meta;
  meta.endpoint = ep;
  meta.id = id;
  meta.created = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
  meta.model = r.model.empty() ? opts.model_id : r.model;
  in_flight.fetch_add(1);
  auto provider = [this, f, r, sopts, meta, prompt_tokens](size_t, httplib::DataSink& sink) -> bool {
    std::string out;
    {
      std::unique_lock<std::mutex> lk(f->mu);
      f->cv.wait_for(lk, kPoll, [&] { return f->done; });
      if (f->done) {
        out = f->result ? dump_json(body_of(*f->result, r, sopts, meta, prompt_tokens))
                        : dump_json(ApiError(500, f->error, "search", "search_failed").to_json());
      }
    }
    if (aborting.load()) f->handle->cancel();
    if (out.empty()) {
      if (!sink.is_writable()) {
        f->client_gone = true;
        f->handle->cancel();
        return false;
      }
      return true;
    }
    if (!sink.write(out.data(), out.size())) {
      f->client_gone = true;
      return false;
    }
    f->completed = true;
    sink.done();
    return true;
  };
  const std::string path = endpoint_path(ep);
  auto releaser = [this, f, path, id, arrival, client](bool) {
    if (!f->completed) {
      f->client_gone = true;
      f->handle->cancel();
    }
    const int status = f->client_gone ? 499 : 200;
    metrics.on_http(path, status);
    json line = {{"id", id}, {"endpoint", path}, {"status", status}, {"search", true},
                 {"total_ms", std::chrono::duration<double, std::milli>(Clock::now() - arrival).count()},
                 {"client", client}};
    {
      std::lock_guard<std::mutex> lk(f->mu);
      if (f->result) line["completion_tokens"] = f->result->tokens_spent;
      if (!f->error.empty()) line["error"] = f->error;
    }
    log_line(std::move(line));
    in_flight.fetch_sub(1);
  };
  res.status = 200;
  res.set_chunked_content_provider("application/json", provider, releaser);
}

}  // namespace coppice::server
