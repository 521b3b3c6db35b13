// Server metrics in Prometheus text format: request counts by endpoint/status and by finish
// reason, time-to-first-token and time-per-output-token histograms, recent tokens/s, and the
// engine's gauges (queue, running, KV blocks, prefix-cache hit rate) read at scrape time.
#pragma once
#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "engine/scheduler.h"

namespace coppice::server {

class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds);  // upper bounds, ascending, in seconds
  void observe(double v);
  // Appends NAME_bucket{le=...}, NAME_sum and NAME_count lines.
  void render(std::string& out, const std::string& name) const;

 private:
  std::vector<double> bounds_;
  std::vector<uint64_t> counts_;  // [bounds + 1], the last is +Inf
  double sum_ = 0;
  uint64_t count_ = 0;
};

class Metrics {
 public:
  using Clock = std::chrono::steady_clock;
  Metrics();

  void on_http(const std::string& endpoint, int status);
  void on_ttft(double seconds);
  void on_tpot(double seconds);
  void on_tokens(int n, Clock::time_point now);  // generated tokens, for the recent rate
  void on_request_finished(FinishReason r);
  // The recent output rate: tokens over the last kWindow whole seconds.
  double tokens_per_second(Clock::time_point now) const;

  std::string render(const EngineStats& es) const;

 private:
  static constexpr int kWindow = 10;
  static constexpr int kSlots = kWindow + 2;
  mutable std::mutex mu_;
  std::map<std::pair<std::string, int>, uint64_t> http_;  // (endpoint, status) -> count
  std::map<std::string, uint64_t> finished_;              // finish reason -> requests
  Histogram ttft_, tpot_;
  Clock::time_point t0_;
  int64_t slot_sec_[kSlots];  // which second each slot counts
  uint64_t slot_n_[kSlots];
};

}  // namespace coppice::server
