#include "engine/step_budget.h"

#include <algorithm>
#include <cmath>

namespace coppice {

StepBudget::StepBudget(double tpot_ms, int max_tokens, int min_chunk, double decay)
    : tpot_ms_(tpot_ms), max_tokens_(max_tokens), min_chunk_(std::max(1, min_chunk)), decay_(decay) {}

void StepBudget::observe(int n, double ms) {
  if (n <= 0 || !(ms >= 0) || !std::isfinite(ms)) return;
  const double x = n;
  sw_ = decay_ * sw_ + 1;
  sn_ = decay_ * sn_ + x;
  st_ = decay_ * st_ + ms;
  snn_ = decay_ * snn_ + x * x;
  snt_ = decay_ * snt_ + x * ms;
}

bool StepBudget::fitted() const {
  // The weighted variance of n must be non-negligible for the slope to mean anything.
  return sw_ > 0 && (snn_ / sw_ - (sn_ / sw_) * (sn_ / sw_)) > 1e-6;
}

double StepBudget::per_token_ms() const {
  if (!fitted()) return 0;
  const double var = snn_ / sw_ - (sn_ / sw_) * (sn_ / sw_);
  const double cov = snt_ / sw_ - (sn_ / sw_) * (st_ / sw_);
  return std::max(0.0, cov / var);
}

double StepBudget::fixed_ms() const {
  if (!fitted()) return 0;
  return std::max(0.0, st_ / sw_ - per_token_ms() * (sn_ / sw_));
}

int StepBudget::tokens_for(int n_decode) const {
  if (tpot_ms_ <= 0 || n_decode == 0 || !fitted()) return max_tokens_;
  const double b = per_token_ms();
  const double left = tpot_ms_ - fixed_ms() - b * n_decode;
  int chunk = min_chunk_;  // the target is out of reach (or nearly): prompts still progress
  if (left > b * min_chunk_) chunk = b > 0 ? static_cast<int>(std::min(left / b, static_cast<double>(max_tokens_))) : max_tokens_;
  return std::min(max_tokens_, n_decode + chunk);
}

}  // namespace coppice
