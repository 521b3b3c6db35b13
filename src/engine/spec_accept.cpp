#include "engine/spec_accept.h"

#include <algorithm>

#include "util/error.h"

namespace coppice {
namespace {

// Draws from unnormalized weights w (inverse CDF, fixed order); -1 when all are zero.
int32_t draw_from(std::span<const float> w, Rng& rng) {
  double total = 0;
  for (float x : w) total += x;
  if (!(total > 0)) return -1;
  const double r = rng.uniform() * total;
  double cum = 0;
  int32_t last = -1;
  for (size_t i = 0; i < w.size(); ++i) {
    if (w[i] <= 0) continue;
    cum += w[i];
    last = static_cast<int32_t>(i);
    if (r < cum) return last;
  }
  return last;  // rounding left r at the total
}

}  // namespace

AcceptResult speculative_accept(std::span<float> p, std::span<const int32_t> cand,
                                std::span<const float* const> q, Rng& rng) {
  CP_ASSERT(cand.size() == q.size());
  const int64_t V = static_cast<int64_t>(p.size());
  const std::vector<float> p0(p.begin(), p.end());
  for (size_t i = 0; i < cand.size(); ++i) {
    const int32_t c = cand[i];
    CP_ASSERT(c >= 0 && c < V);
    double sum = 0;
    for (float x : p) sum += x;
    if (!(sum > 0)) break;
    const double pc = p[c] / sum;
    const double qc = q[i] ? q[i][c] : 1.0;
    // Accept with probability min(1, p(c) / q(c)); q(c) > 0 since c was drawn from q.
    if (qc <= 0 || rng.uniform() * qc < pc) return {static_cast<int>(i), c};
    // Residual: max(p - q, 0) (p normalized first); a point mass just removes c.
    if (q[i]) {
      for (int64_t t = 0; t < V; ++t) p[t] = std::max(0.0f, static_cast<float>(p[t] / sum - q[i][t]));
    } else {
      p[c] = 0;
    }
  }
  const int32_t t = draw_from(p, rng);
  if (t >= 0) return {-1, t};
  // Rounding exhausted the residual (p == q on the support, a rejection of probability ~0).
  const int32_t t0 = draw_from(p0, rng);
  if (t0 < 0) fail("spec", "speculative sampling: the target distribution is all zero");
  return {-1, t0};
}

void dense_probs(const Candidates& c, int64_t n_vocab, std::vector<float>& out) {
  out.assign(static_cast<size_t>(n_vocab), 0.0f);
  for (const Candidate& x : c.items)
    if (x.id >= 0 && x.id < n_vocab) out[x.id] = x.p;
}

}  // namespace coppice
