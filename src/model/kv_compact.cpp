// Eviction support for the paged KV cache: a sequence keeps a subset of its cells. Kept rows
// move down in order (their RoPE positions move with them, so nothing is re-rotated) and the
// blocks left empty at the end go back to the pool.
#include <cstring>
#include <string>

#include "model/kv_cache.h"
#include "util/error.h"

namespace coppice {

bool KvCache::compact(SeqId id, std::span<const int> keep) {
  Seq& s = seq(id);
  if (!s.layers.empty())
    fail("kv", "compact sequence " + std::to_string(id) + ": its layers hold different cells (use compact_layers)");
  const int len = static_cast<int>(s.positions.size());
  const int n_keep = static_cast<int>(keep.size());
  for (int i = 0; i < n_keep; ++i)
    if (keep[i] < 0 || keep[i] >= len || (i > 0 && keep[i] <= keep[i - 1]))
      fail("kv", "compact sequence " + std::to_string(id) + ": kept cell " + std::to_string(keep[i]) +
                     " at index " + std::to_string(i) + " is out of order or outside [0, " +
                     std::to_string(len) + ")");
  int first = 0;  // cells before `first` stay where they are
  while (first < n_keep && keep[first] == first) ++first;
  const int bs = opts_.block_size;
  if (first < n_keep) {
    // Blocks that receive rows are copied first when shared (copy-on-write).
    const int b0 = first / bs, b1 = (n_keep - 1) / bs;
    int64_t shared = 0;
    for (int b = b0; b <= b1; ++b) shared += refcount_[s.blocks[b]] > 1;
    if (shared > blocks_free()) return false;
    for (int b = b0; b <= b1; ++b) {
      if (refcount_[s.blocks[b]] <= 1) continue;
      const int32_t fresh = alloc_block();
      copy_block(s.blocks[b], fresh);
      release_block(s.blocks[b]);
      s.blocks[b] = fresh;
    }
    // Rows only move down (i <= keep[i]), so a source is read before anything overwrites it.
    for (int i = first; i < n_keep; ++i) {
      const int src = keep[i];
      const int32_t sb = s.blocks[src / bs], db = s.blocks[i / bs];
      for (int l = 0; l < n_layer_; ++l) {
        std::memcpy(k_cell(l, db, i % bs), k_cell(l, sb, src % bs), layers_[l].k_row);
        std::memcpy(v_cell(l, db, i % bs), v_cell(l, sb, src % bs), layers_[l].v_row);
      }
      s.positions[i] = s.positions[src];
    }
  }
  truncate(id, n_keep);
  return true;
}

}  // namespace coppice
