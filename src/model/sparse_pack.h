// Load-time 2:4 detection: F16 / BF16 / Q8_0 matrices whose every group of 4 inputs holds at most 2
// non-zeros (`coppice prune --method nm`) are rewritten into the compact 2:4 layout
// (kernels/sparse24.h), so a pruned model stays a standard dense GGUF on disk and runs on
// kernels that skip the zeros. COPPICE_SPARSE=0 disables.
#pragma once
#include "formats/gguf.h"
#include "model/pack.h"
#include "model/weights.h"
#include "util/threadpool.h"

namespace coppice {

// Repacks every qualifying dense matmul weight of `w` (same set as pack_weights) and appends
// the buffer to `store` (n_packed, bytes grow). Returns the number of matrices repacked.
int pack_sparse24(ModelWeights& w, const gguf::File& file, ThreadPool& pool, PackedStore& store);

}  // namespace coppice
