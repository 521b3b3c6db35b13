// Per-step token budget that keeps decode streams within a time-per-output-token target
// (Sarathi-Serve: the chunk size is chosen from the TPOT SLO). A step's wall time is modelled
// as t(n) = a + b * n for n batch tokens (a: reading the weights once, b: compute per token),
// fitted online by exponentially weighted least squares over the steps the engine ran. While
// sequences are decoding, prompt chunks get only what keeps the predicted step time within
// the target, but never less than `min_chunk` tokens, so prompts always progress.
#pragma once
#include <cstdint>

namespace coppice {

class StepBudget {
 public:
  // tpot_ms <= 0: no target (every step may take `max_tokens`).
  StepBudget(double tpot_ms, int max_tokens, int min_chunk = 16, double decay = 0.9);

  // Records one step of n tokens that took ms milliseconds.
  void observe(int n, double ms);
  // Tokens the next step may carry in all when n_decode of them are decode tokens.
  int tokens_for(int n_decode) const;

  // Fitted model (ms): valid once two different step sizes were seen.
  bool fitted() const;
  double fixed_ms() const;      // a
  double per_token_ms() const;  // b
  double target_ms() const { return tpot_ms_; }

 private:
  double tpot_ms_;
  int max_tokens_, min_chunk_;
  double decay_;
  // Exponentially weighted sums for the least-squares fit of t = a + b n.
  double sw_ = 0, sn_ = 0, st_ = 0, snn_ = 0, snt_ = 0;
};

}  // namespace coppice
