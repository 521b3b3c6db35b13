// `coppice perplexity --kv-sweep`: every eviction policy at 50%, 25% and 12.5% of the context
// against the full KV of the same run (KV memory vs perplexity vs mean KL vs top-1).
#pragma once
#include <cstdint>
#include <vector>

#include "apps/common.h"

namespace coppice::cli {

int kv_sweep(Loaded& l, const std::vector<int32_t>& tokens, int n_ctx, int n_chunk, int n_batch);

}  // namespace coppice::cli
