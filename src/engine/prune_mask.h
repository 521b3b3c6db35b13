// Pruning masks on one weight matrix [n_out][n_in] (row-major, f32): which weights to zero.
// Scores follow Wanda (Sun et al. 2023, "A Simple and Effective Pruning Approach for LLMs"):
// S_ij = |W_ij| * ||X_j||_2 with ||X_j|| the norm of input channel j over calibration tokens;
// magnitude pruning is the same with every norm 1. Both compare weights within an output row.
#pragma once
#include <cstdint>
#include <span>
#include <vector>

namespace coppice::prune {

// S_ij = |W_ij| * norms[j] (norms empty: |W_ij|). w: [n_out][n_in]; result [n_out][n_in].
std::vector<float> scores(std::span<const float> w, int64_t n_out, int64_t n_in,
                          std::span<const float> norms);

// Number of weights zeroed in a row of n_in at `sparsity` in [0, 1]: round(sparsity * n_in).
int64_t pruned_per_row(int64_t n_in, double sparsity);

// keep[i] = 0 for the pruned_per_row lowest scores of every row, 1 otherwise. Ties go to the
// lower column index first (deterministic).
std::vector<uint8_t> row_mask(std::span<const float> score, int64_t n_out, int64_t n_in, double sparsity);

// N:M: in every group of m consecutive inputs of a row, keep the n highest scores (ties: the
// lower index is dropped first, as row_mask). n_in % m must be 0.
std::vector<uint8_t> nm_mask(std::span<const float> score, int64_t n_out, int64_t n_in, int n, int m);

// w[i] = 0 where keep[i] == 0.
void apply_mask(std::span<float> w, std::span<const uint8_t> keep);

}  // namespace coppice::prune
