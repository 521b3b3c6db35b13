// The speculative sampling acceptance rule (Leviathan et al. 2023, Chen et al. 2023) in its
// multi-candidate form for draft trees (SpecInfer, Miao et al. 2024): candidates are tried in
// order; candidate c drawn from q is accepted with probability min(1, p(c) / q(c)); after a
// rejection the target becomes p <- norm(max(p - q, 0)). If every candidate is rejected the
// token is drawn from what is left of p. The emitted token is distributed exactly as p.
#pragma once
#include <cstdint>
#include <span>
#include <vector>

#include "engine/sampling.h"

namespace coppice {

struct AcceptResult {
  int chosen = -1;    // index of the accepted candidate, -1 if all were rejected
  int32_t token = 0;  // the emitted token
};

// p: [n_vocab] target probabilities (overwritten with the residual). cand[i] was drawn from
// q[i] ([n_vocab]); a null q[i] is a point mass on cand[i] (a deterministic drafter).
AcceptResult speculative_accept(std::span<float> p, std::span<const int32_t> cand,
                                std::span<const float* const> q, Rng& rng);

// The sampler's processed distribution (Sampler::process) as a dense [n_vocab] vector.
void dense_probs(const Candidates& c, int64_t n_vocab, std::vector<float>& out);

}  // namespace coppice
