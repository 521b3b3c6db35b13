// Load-time weight packing: rewrites the matrices whose type the running ISA prefers in a packed
// layout (kernels/packed.h) into owned, 64-byte aligned buffers and drops the mapped source
// pages, so resident memory stays about the file size.
#pragma once
#include <cstdint>
#include <memory>
#include <span>
#include <utility>
#include <vector>

#include "formats/gguf.h"
#include "model/weights.h"
#include "util/threadpool.h"

namespace coppice {
namespace kernels { struct PackedKernels; }

struct PackedStore {
  struct Free { void operator()(uint8_t* p) const; };
  std::vector<std::unique_ptr<uint8_t[], Free>> buffers;
  size_t bytes = 0;      // packed bytes held
  int n_packed = 0;      // matrices packed
};

// Packs every dense matmul weight of `w` that has a packed layout on this ISA, and copies the
// others (F16, BF16, F32, K-quants without a panel layout) unchanged into the same huge-page
// arena ("relocated": rows as in the file, `packed` stays null), because decode streams them
// and 4 KiB file pages cost TLB misses: F16 1.1B tg +13-20 %, pp +20 % (bench/RESULTS.md).
// COPPICE_RELOCATE=0 leaves those on the mapping, and so does a model whose copies would not
// fit MemAvailable (it streams from the page cache as before). Stay in place:
// token_embd (read by row lookups; a tied output with it), the MoE router and the 3-D expert
// tensors (addressed by stride). Views already packed (2:4, model/sparse_pack.h, runs first)
// are left alone. COPPICE_PACK=0 disables. Appends the arena to `store`.
void pack_weights(ModelWeights& w, const gguf::File& file, ThreadPool& pool, PackedStore& store);
// Whether pack_weights packs at all (COPPICE_PACK=0 turns it off).
bool dense_packing_enabled();

// The shared mechanism (also model/sparse_pack.cpp): rewrites each view into its layout (a null
// layout: a byte copy of its rows) inside
// one 2 MiB-aligned arena advised as huge pages, drops the mapped source pages and points the
// view at its packed rows. Adds the arena to `store`.
using PackJob = std::pair<WeightView*, const kernels::PackedKernels*>;
void pack_views(std::span<const PackJob> jobs, const gguf::File& file, ThreadPool& pool, PackedStore& store);

}  // namespace coppice
