// Evaluation of KV compression (quantized KV, eviction policies) on a text: the logits a
// chunk's second half gets when the first half is the prompt and the rest is decoded one
// token at a time under the policy, plus the log-softmax / KL helpers of `perplexity`.
#pragma once
#include <cstdint>
#include <vector>

#include "engine/kl_store.h"
#include "model/kv_policy.h"
#include "model/model.h"

namespace coppice {

struct ChunkEval {
  std::vector<float> rows;  // [n - 1 - first][n_vocab] logits of positions first .. n-2
  int64_t peak_blocks = 0;  // most KV blocks the sequence held at once
  size_t peak_bytes = 0;    // most KV bytes it held (per-layer slots counted exactly)
};

// Sequence 0 of `cache` (added and removed here). Without a policy the chunk is one prefill
// in batches of n_batch; with one, [0, first) is prefilled (evicting after each batch) and
// positions first.. are decoded singly, evicting after every step.
ChunkEval eval_chunk(Model& model, KvCache& cache, KvPolicy* policy, const std::vector<int32_t>& chunk,
                     int first, int n_batch);

// Natural-log softmax of one row (double precision); returns the argmax.
int32_t log_softmax_row(const float* logits, int64_t n, std::vector<double>& out);

}  // namespace coppice
