// Load-time weight packing: rewrites the matrices whose type the running ISA prefers in a packed
// layout (kernels/packed.h) into owned, 64-byte aligned buffers and drops the mapped source
// pages, so resident memory stays about the file size.
#pragma once
#include <cstdint>
#include <memory>
#include <vector>

#include "formats/gguf.h"
#include "model/weights.h"
#include "util/threadpool.h"

namespace coppice {

struct PackedStore {
  struct Free { void operator()(uint8_t* p) const; };
  std::vector<std::unique_ptr<uint8_t[], Free>> buffers;
  size_t bytes = 0;      // packed bytes held
  int n_packed = 0;      // matrices packed
};

// Packs every dense matmul weight of `w` that has a packed layout on this ISA. Stay in place:
// token_embd (read by row lookups; a tied output with it), the MoE router and the 3-D expert
// tensors (addressed by stride). COPPICE_PACK=0 disables.
PackedStore pack_weights(ModelWeights& w, const gguf::File& file, ThreadPool& pool);

}  // namespace coppice
