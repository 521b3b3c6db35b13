#include "engine/prune_mask.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "util/error.h"

namespace coppice::prune {

std::vector<float> scores(std::span<const float> w, int64_t n_out, int64_t n_in,
                          std::span<const float> norms) {
  CP_ASSERT(static_cast<int64_t>(w.size()) == n_out * n_in);
  CP_ASSERT(norms.empty() || static_cast<int64_t>(norms.size()) == n_in);
  std::vector<float> s(w.size());
  for (int64_t r = 0; r < n_out; ++r) {
    for (int64_t j = 0; j < n_in; ++j) {
      const float a = std::fabs(w[r * n_in + j]);
      s[r * n_in + j] = norms.empty() ? a : a * norms[j];
    }
  }
  return s;
}

int64_t pruned_per_row(int64_t n_in, double sparsity) {
  const double s = std::clamp(sparsity, 0.0, 1.0);
  return std::min<int64_t>(n_in, static_cast<int64_t>(std::llround(s * static_cast<double>(n_in))));
}

std::vector<uint8_t> row_mask(std::span<const float> score, int64_t n_out, int64_t n_in, double sparsity) {
  CP_ASSERT(static_cast<int64_t>(score.size()) == n_out * n_in);
  std::vector<uint8_t> keep(score.size(), 1);
  const int64_t k = pruned_per_row(n_in, sparsity);
  if (k == 0) return keep;
  std::vector<int64_t> idx(static_cast<size_t>(n_in));
  for (int64_t r = 0; r < n_out; ++r) {
    const float* s = score.data() + r * n_in;
    std::iota(idx.begin(), idx.end(), 0);
    auto less = [s](int64_t a, int64_t b) { return s[a] < s[b] || (s[a] == s[b] && a < b); };
    std::nth_element(idx.begin(), idx.begin() + (k - 1), idx.end(), less);
    for (int64_t i = 0; i < k; ++i) keep[r * n_in + idx[i]] = 0;
  }
  return keep;
}

std::vector<uint8_t> nm_mask(std::span<const float> score, int64_t n_out, int64_t n_in, int n, int m) {
  CP_ASSERT(m > 0 && n >= 0 && n <= m && n_in % m == 0);
  CP_ASSERT(static_cast<int64_t>(score.size()) == n_out * n_in);
  std::vector<uint8_t> keep(score.size(), 1);
  std::vector<int> idx(static_cast<size_t>(m));
  for (int64_t g = 0; g < n_out * n_in; g += m) {
    const float* s = score.data() + g;
    std::iota(idx.begin(), idx.end(), 0);
    // lowest first; ties: the lower index first (dropped), as row_mask
    std::stable_sort(idx.begin(), idx.end(), [s](int a, int b) { return s[a] < s[b]; });
    for (int i = 0; i < m - n; ++i) keep[g + idx[i]] = 0;
  }
  return keep;
}

void apply_mask(std::span<float> w, std::span<const uint8_t> keep) {
  CP_ASSERT(w.size() == keep.size());
  for (size_t i = 0; i < w.size(); ++i)
    if (keep[i] == 0) w[i] = 0.0f;
}

}  // namespace coppice::prune
