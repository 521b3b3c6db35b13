#include "engine/kv_eval.h"

#include <algorithm>
#include <cmath>

#include "engine/generate.h"
#include "util/error.h"

namespace coppice {

ChunkEval eval_chunk(Model& model, KvCache& cache, KvPolicy* policy, const std::vector<int32_t>& chunk,
                     int first, int n_batch) {
  const int n = static_cast<int>(chunk.size());
  CP_ASSERT(first >= 1 && first < n);
  const int64_t V = model.n_vocab();
  ChunkEval ev;
  std::vector<float> logits;
  cache.add_sequence(0);
  if (policy == nullptr) {
    prefill(model, cache, 0, chunk, n_batch, true, logits);
    ev.peak_blocks = cache.blocks_used();
    ev.peak_bytes = cache.bytes_used();
    ev.rows.assign(logits.begin() + static_cast<std::ptrdiff_t>(first) * V,
                   logits.begin() + static_cast<std::ptrdiff_t>(n - 1) * V);
  } else {
    // Blocks are counted while they are full: right after each step, before eviction.
    for (int s = 0; s < first; s += n_batch) {
      std::vector<BatchToken> batch;
      for (int i = s; i < std::min(first, s + n_batch); ++i) batch.push_back({chunk[i], i, 0, false});
      model.step(batch, cache, logits);
      ev.peak_blocks = std::max(ev.peak_blocks, cache.blocks_used());
      ev.peak_bytes = std::max(ev.peak_bytes, cache.bytes_used());
      policy->enforce(cache, 0);
    }
    ev.rows.reserve(static_cast<size_t>(n - 1 - first) * V);
    for (int i = first; i < n - 1; ++i) {
      const BatchToken bt{chunk[i], i, 0, true};
      model.step({&bt, 1}, cache, logits);
      ev.peak_blocks = std::max(ev.peak_blocks, cache.blocks_used());
      ev.peak_bytes = std::max(ev.peak_bytes, cache.bytes_used());
      policy->enforce(cache, 0);
      ev.rows.insert(ev.rows.end(), logits.begin(), logits.end());
    }
    policy->forget(0);
  }
  cache.remove_sequence(0);
  return ev;
}

int32_t log_softmax_row(const float* logits, int64_t n, std::vector<double>& out) {
  out.resize(static_cast<size_t>(n));
  int32_t arg = 0;
  for (int64_t j = 1; j < n; ++j)
    if (logits[j] > logits[arg]) arg = static_cast<int32_t>(j);
  const double mx = logits[arg];
  double sum = 0;
  for (int64_t j = 0; j < n; ++j) sum += std::exp(static_cast<double>(logits[j]) - mx);
  const double lse = mx + std::log(sum);
  for (int64_t j = 0; j < n; ++j) out[j] = logits[j] - lse;
  return arg;
}

}  // namespace coppice
