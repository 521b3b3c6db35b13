#include "server/metrics.h"

#include <cstdio>

namespace coppice::server {

namespace {
std::string num(double v) {
  char b[64];
  std::snprintf(b, sizeof b, "%.9g", v);
  return b;
}

void gauge(std::string& out, const char* name, const char* help, double v, const char* type = "gauge") {
  out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n" + name + " " + num(v) + "\n";
}
}  // namespace

Histogram::Histogram(std::vector<double> bounds) : bounds_(std::move(bounds)), counts_(bounds_.size() + 1, 0) {}

void Histogram::observe(double v) {
  size_t i = 0;
  while (i < bounds_.size() && v > bounds_[i]) ++i;
  ++counts_[i];
  sum_ += v;
  ++count_;
}

void Histogram::render(std::string& out, const std::string& name) const {
  uint64_t cum = 0;
  for (size_t i = 0; i < bounds_.size(); ++i) {
    cum += counts_[i];
    out += name + "_bucket{le=\"" + num(bounds_[i]) + "\"} " + std::to_string(cum) + "\n";
  }
  cum += counts_.back();
  out += name + "_bucket{le=\"+Inf\"} " + std::to_string(cum) + "\n";
  out += name + "_sum " + num(sum_) + "\n";
  out += name + "_count " + std::to_string(count_) + "\n";
}

Metrics::Metrics()
    : ttft_({0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}),
      tpot_({0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5}),
      t0_(Clock::now()) {
  for (int i = 0; i < kSlots; ++i) slot_sec_[i] = -1, slot_n_[i] = 0;
}

void Metrics::on_http(const std::string& endpoint, int status) {
  std::lock_guard<std::mutex> lk(mu_);
  ++http_[{endpoint, status}];
}

void Metrics::on_ttft(double s) {
  std::lock_guard<std::mutex> lk(mu_);
  ttft_.observe(s);
}

void Metrics::on_tpot(double s) {
  std::lock_guard<std::mutex> lk(mu_);
  tpot_.observe(s);
}

void Metrics::on_tokens(int n, Clock::time_point now) {
  const int64_t sec = std::chrono::duration_cast<std::chrono::seconds>(now - t0_).count();
  std::lock_guard<std::mutex> lk(mu_);
  const int i = static_cast<int>(sec % kSlots);
  if (slot_sec_[i] != sec) slot_sec_[i] = sec, slot_n_[i] = 0;
  slot_n_[i] += static_cast<uint64_t>(n);
}

double Metrics::tokens_per_second(Clock::time_point now) const {
  const int64_t sec = std::chrono::duration_cast<std::chrono::seconds>(now - t0_).count();
  std::lock_guard<std::mutex> lk(mu_);
  uint64_t n = 0;
  for (int i = 0; i < kSlots; ++i)  // the kWindow whole seconds before the current one
    if (slot_sec_[i] < sec && slot_sec_[i] >= sec - kWindow) n += slot_n_[i];
  const int64_t span = std::min<int64_t>(kWindow, std::max<int64_t>(sec, 1));
  return static_cast<double>(n) / static_cast<double>(span);
}

void Metrics::on_request_finished(FinishReason r) {
  std::lock_guard<std::mutex> lk(mu_);
  ++finished_[finish_reason_name(r)];
}

std::string Metrics::render(const EngineStats& es) const {
  std::string o;
  gauge(o, "coppice_queue_length", "requests waiting for admission", static_cast<double>(es.queued));
  gauge(o, "coppice_requests_running", "sequences being generated", static_cast<double>(es.running));
  gauge(o, "coppice_tokens_per_second", "generated tokens per second over the last 10 s",
        tokens_per_second(Clock::now()));
  gauge(o, "coppice_kv_blocks_total", "KV cache blocks in the pool", static_cast<double>(es.kv_blocks_total));
  gauge(o, "coppice_kv_blocks_used", "KV cache blocks held by sequences", static_cast<double>(es.kv_blocks_used));
  gauge(o, "coppice_kv_blocks_cached", "KV cache blocks kept by the prefix cache", static_cast<double>(es.kv_blocks_cached));
  gauge(o, "coppice_kv_bytes_total", "KV cache pool size in bytes", static_cast<double>(es.kv_bytes_total));
  gauge(o, "coppice_kv_bytes_used", "KV cache bytes held (blocks in use, all layers, K and V)", static_cast<double>(es.kv_bytes_used));
  gauge(o, "coppice_kv_cells_evicted", "KV cells evicted by the --kv-policy so far", static_cast<double>(es.kv_cells_evicted));
  gauge(o, "coppice_prompt_tokens_total", "prompt tokens admitted", static_cast<double>(es.prompt_tokens), "counter");
  gauge(o, "coppice_prompt_tokens_cached_total", "prompt tokens served from the prefix cache",
        static_cast<double>(es.cached_prompt_tokens), "counter");
  gauge(o, "coppice_prefix_cache_hit_rate", "cached prompt tokens / prompt tokens",
        es.prompt_tokens ? static_cast<double>(es.cached_prompt_tokens) / static_cast<double>(es.prompt_tokens) : 0.0);
  gauge(o, "coppice_generated_tokens_total", "tokens generated", static_cast<double>(es.generated_tokens), "counter");
  gauge(o, "coppice_engine_steps_total", "forward steps run", static_cast<double>(es.steps), "counter");
  gauge(o, "coppice_preemptions_total", "sequences preempted for recompute", static_cast<double>(es.preemptions), "counter");
  gauge(o, "coppice_step_fixed_ms", "fitted step time independent of batch size (ms)", es.step_fixed_ms);
  gauge(o, "coppice_step_token_ms", "fitted step time per batch token (ms)", es.step_token_ms);
  gauge(o, "coppice_last_step_tokens", "tokens in the last forward step", static_cast<double>(es.last_step_tokens));
  gauge(o, "coppice_searches_running", "test-time searches running (one at a time)", static_cast<double>(es.searches_running));
  gauge(o, "coppice_searches_queued", "test-time searches waiting", static_cast<double>(es.searches_queued));
  gauge(o, "coppice_searches_total", "test-time searches ended", static_cast<double>(es.searches_done), "counter");
  gauge(o, "coppice_search_tokens_total", "tokens generated by completed searches", static_cast<double>(es.search_tokens), "counter");
  gauge(o, "coppice_spec_verify_steps_total", "speculative verify steps", static_cast<double>(es.spec_steps), "counter");
  gauge(o, "coppice_spec_drafted_tokens_total", "draft tokens verified", static_cast<double>(es.spec_drafted), "counter");
  gauge(o, "coppice_spec_accepted_tokens_total", "draft tokens accepted", static_cast<double>(es.spec_accepted), "counter");
  gauge(o, "coppice_spec_acceptance_rate", "accepted / drafted tokens",
        es.spec_drafted ? static_cast<double>(es.spec_accepted) / static_cast<double>(es.spec_drafted) : 0.0);
  gauge(o, "coppice_spec_mean_accepted_length", "tokens per verify step (accepted drafts + 1)",
        es.spec_steps ? static_cast<double>(es.spec_tokens) / static_cast<double>(es.spec_steps) : 0.0);
  gauge(o, "coppice_spec_draft_kv_blocks", "draft models' KV blocks in use", static_cast<double>(es.spec_draft_kv_blocks));
  std::lock_guard<std::mutex> lk(mu_);
  o += "# HELP coppice_requests_finished_total generation requests by finish reason\n"
       "# TYPE coppice_requests_finished_total counter\n";
  for (const char* r : {"stop", "length", "cancelled", "error"}) {
    auto it = finished_.find(r);
    o += std::string("coppice_requests_finished_total{finish_reason=\"") + r + "\"} " +
         std::to_string(it == finished_.end() ? 0 : it->second) + "\n";
  }
  o += "# HELP coppice_http_requests_total HTTP requests by endpoint and status\n"
       "# TYPE coppice_http_requests_total counter\n";
  for (const auto& [k, n] : http_)
    o += "coppice_http_requests_total{endpoint=\"" + k.first + "\",status=\"" + std::to_string(k.second) + "\"} " +
         std::to_string(n) + "\n";
  o += "# HELP coppice_time_to_first_token_seconds time from request arrival to its first token\n"
       "# TYPE coppice_time_to_first_token_seconds histogram\n";
  ttft_.render(o, "coppice_time_to_first_token_seconds");
  o += "# HELP coppice_time_per_output_token_seconds mean time between a choice's tokens after the first\n"
       "# TYPE coppice_time_per_output_token_seconds histogram\n";
  tpot_.render(o, "coppice_time_per_output_token_seconds");
  return o;
}

}  // namespace coppice::server
