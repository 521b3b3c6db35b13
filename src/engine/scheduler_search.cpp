// Search jobs inside the serving engine. A search runs on the engine thread over the engine's
// own KvCache, its sequence ids in a range the scheduler never reaches (kSearchSeqBase on),
// and hands control back after each of its forward steps: BranchOptions::between_steps runs
// one ordinary scheduler iteration, so running requests keep decoding and queued ones are
// admitted while the search runs. Cancellation is checked at the same point; unwinding the
// search's BranchSet returns every block it held.
#include <chrono>

#include "engine/scheduler.h"

namespace coppice {

namespace {
// The scheduler numbers its sequences from 1 up; a search's branches start far above.
constexpr SeqId kSearchSeqBase = SeqId{1} << 30;

struct SearchCancelled : Error {
  SearchCancelled() : Error("[search] cancelled") {}
};
}  // namespace

struct Engine::SearchTask {
  SearchJob job;
  SearchDone done;
  std::shared_ptr<RequestHandle> handle;
};

std::shared_ptr<RequestHandle> Engine::submit_search(SearchJob job, SearchDone done) {
  if (job.prompt.empty()) throw AdmissionError(400, "the prompt is empty");
  if (!job.scorer) throw AdmissionError(400, "the search has no scorer");
  // Eviction policies track the scheduler's sequences only (and h2o observes every step).
  if (policy_) throw AdmissionError(400, "search is not available on a server started with --kv-policy");
  if (static_cast<int64_t>(job.prompt.size()) + job.opts.max_tokens >= opts_.n_ctx)
    throw AdmissionError(400, "the prompt (" + std::to_string(job.prompt.size()) + " tokens) plus max_tokens (" +
                                  std::to_string(job.opts.max_tokens) + ") exceeds the context size " +
                                  std::to_string(opts_.n_ctx));
  const int64_t min_blocks =
      (static_cast<int64_t>(job.prompt.size()) + 1 + opts_.block_size - 1) / opts_.block_size + job.opts.n;
  if (min_blocks > cache_.n_blocks())
    throw AdmissionError(400, "the search needs at least " + std::to_string(min_blocks) +
                                  " KV blocks (its prompt plus one per branch); the server has " +
                                  std::to_string(cache_.n_blocks()));
  for (int32_t t : job.prompt)
    if (t < 0 || t >= model_.n_vocab()) throw AdmissionError(400, "token id " + std::to_string(t) + " is out of range");
  const std::string err = validate(job.opts.sampling);
  if (!err.empty()) throw AdmissionError(400, err);
  auto t = std::make_shared<SearchTask>();
  t->job = std::move(job);
  t->done = std::move(done);
  t->handle = std::make_shared<RequestHandle>();
  {
    std::lock_guard<std::mutex> lk(mu_);
    if (stopping_) throw AdmissionError(503, "the server is shutting down");
    if (static_cast<int>(searches_.size()) >= opts_.max_queue)
      throw AdmissionError(503, "too many queued searches (" + std::to_string(searches_.size()) + ")");
    searches_.push_back(t);
    stats_.searches_queued = static_cast<int64_t>(searches_.size());
  }
  cv_.notify_all();
  return t->handle;
}

void Engine::run_search_job(SearchTask& t) {
  if (t.handle->cancelled()) {
    t.done(nullptr, "the search was cancelled", 499);
    return;
  }
  {
    std::lock_guard<std::mutex> lk(mu_);
    stats_.searches_running = 1;
  }
  SearchOptions o = t.job.opts;
  o.branch.first_seq = kSearchSeqBase;
  bool started = false;
  o.branch.between_steps = [this, &t, &started] {
    if (!started && t.job.started) t.job.started();
    started = true;
    {
      std::lock_guard<std::mutex> lk(mu_);
      if (stopping_ && !drain_) t.handle->cancel();
    }
    if (t.handle->cancelled()) throw SearchCancelled();
    iterate_guarded();
  };
  SearchResult r;
  std::string error;
  int status = 200;
  try {
    r = run_search(model_, cache_, tok_, t.job.prompt, t.job.prompt_text, *t.job.scorer, o);
  } catch (const SearchCancelled&) {
    error = "the search was cancelled";
    status = 499;
  } catch (const Error& e) {
    // No KV room for the prompt is the pool being busy (retry later); the rest is the
    // request's own fault (a scorer that fails, options out of range).
    error = e.what();
    status = error.find("[kv]") != std::string::npos || error.find("KV cache") != std::string::npos ? 503 : 400;
  }
  {
    std::lock_guard<std::mutex> lk(mu_);
    stats_.searches_running = 0;
    ++stats_.searches_done;
    stats_.search_tokens += static_cast<uint64_t>(r.tokens_spent);
    stats_.kv_blocks_used = cache_.blocks_used();
    stats_.kv_blocks_cached = cache_.cached_blocks();
    stats_.kv_bytes_used = static_cast<int64_t>(cache_.bytes_used());
  }
  t.done(status == 200 ? &r : nullptr, error, status);
}

void Engine::drop_searches() {
  std::deque<std::shared_ptr<SearchTask>> left;
  {
    std::lock_guard<std::mutex> lk(mu_);
    left.swap(searches_);
    stats_.searches_queued = 0;
  }
  for (auto& t : left) t->done(nullptr, "the server is shutting down", 503);
}

}  // namespace coppice
