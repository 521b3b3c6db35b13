// Per-layer cells for the paged KV cache (CAKE-style layer budgets): a sequence compacted with
// different kept sets per layer gets one table per layer. Its blocks are "split": each layer's
// slot of a physical block (that layer's [block_size][row] region) has its own holders, and a
// layer keeping fewer cells holds fewer slots. Free slots of split blocks serve the next
// per-layer allocations of that layer; a split block whose every slot is free becomes a whole
// free block again. Sequences that never differ per layer keep the shared table untouched.
// Cell indices stay sequence indices: a layer's cells are the last layer_length of length().
#include <algorithm>
#include <cstring>
#include <string>

#include "model/kv_cache.h"
#include "util/error.h"

namespace coppice {

int KvCache::layer_length(int layer, SeqId id) const {
  const Seq& s = seq(id);
  if (s.layers.empty()) return static_cast<int>(s.positions.size());
  return static_cast<int>(s.layers[static_cast<size_t>(layer)].positions.size());
}

std::span<const int32_t> KvCache::layer_positions(int layer, SeqId id) const {
  const Seq& s = seq(id);
  if (s.layers.empty()) return s.positions;
  return s.layers[static_cast<size_t>(layer)].positions;
}

size_t KvCache::bytes_used() const {
  const int64_t whole = opts_.n_blocks - blocks_free() - n_split_;
  size_t b = static_cast<size_t>(whole) * block_bytes_all_;
  if (!lused_.empty())
    for (int l = 0; l < n_layer_; ++l)
      b += static_cast<size_t>(lused_[static_cast<size_t>(l)]) * static_cast<size_t>(opts_.block_size) *
           (layers_[static_cast<size_t>(l)].k_row + layers_[static_cast<size_t>(l)].v_row);
  return b;
}

int32_t KvCache::alloc_slot(int layer) {
  std::vector<int32_t>& fl = lfree_[static_cast<size_t>(layer)];
  int32_t b = -1;
  while (!fl.empty() && b < 0) {
    const int32_t c = fl.back();
    fl.pop_back();
    if (split_[c] && lref(layer, c) == 0) b = c;  // else a stale entry
  }
  if (b >= 0) {
    --lfree_n_[static_cast<size_t>(layer)];
  } else {  // split a whole free block: one slot per layer
    b = alloc_block();
    refcount_[b] = 0;
    split_[b] = 1;
    ++n_split_;
    for (int l = 0; l < n_layer_; ++l)
      if (l != layer) {
        lfree_[static_cast<size_t>(l)].push_back(b);
        ++lfree_n_[static_cast<size_t>(l)];
      }
  }
  lref(layer, b) = 1;
  ++split_used_[b];
  ++lused_[static_cast<size_t>(layer)];
  ++slots_used_;
  return b;
}

void KvCache::release_slot(int layer, int32_t b) {
  CP_ASSERT(split_[b] && lref(layer, b) > 0);
  if (--lref(layer, b) > 0) return;
  --lused_[static_cast<size_t>(layer)];
  --slots_used_;
  if (--split_used_[b] > 0) {
    lfree_[static_cast<size_t>(layer)].push_back(b);
    ++lfree_n_[static_cast<size_t>(layer)];
    return;
  }
  // Every slot is free: the block is whole and free again; its lfree_ entries go stale.
  split_[b] = 0;
  --n_split_;
  free_.push_back(b);
  const size_t nb = static_cast<size_t>(opts_.n_blocks);
  for (int l = 0; l < n_layer_; ++l) {
    if (l == layer) continue;
    --lfree_n_[static_cast<size_t>(l)];
    std::vector<int32_t>& fl = lfree_[static_cast<size_t>(l)];
    if (fl.size() > 2 * nb + 64) {  // drop stale entries
      fl.clear();
      for (size_t c = 0; c < nb; ++c)
        if (split_[c] && lref(l, static_cast<int32_t>(c)) == 0) fl.push_back(static_cast<int32_t>(c));
    }
  }
}

// Every block of s becomes split with all its layer slots held by s; shared blocks are copied
// first (the caller checked that the pool has room for those copies).
void KvCache::split_sequence(Seq& s) {
  if (lref_.empty()) {
    const size_t nb = static_cast<size_t>(opts_.n_blocks), nl = static_cast<size_t>(n_layer_);
    lref_.assign(nl * nb, 0);
    split_.assign(nb, 0);
    split_used_.assign(nb, 0);
    lfree_.assign(nl, {});
    lfree_n_.assign(nl, 0);
    lused_.assign(nl, 0);
  }
  for (int32_t& b : s.blocks) {
    if (refcount_[b] <= 1) continue;
    const int32_t fresh = alloc_block();
    copy_block(b, fresh);
    release_block(b);
    b = fresh;
  }
  for (int32_t b : s.blocks) {
    CP_ASSERT(refcount_[b] == 1 && by_block_.count(b) == 0);
    refcount_[b] = 0;
    split_[b] = 1;
    ++n_split_;
    split_used_[b] = n_layer_;
    for (int l = 0; l < n_layer_; ++l) lref(l, b) = 1;
  }
  for (int l = 0; l < n_layer_; ++l) lused_[static_cast<size_t>(l)] += static_cast<int64_t>(s.blocks.size());
  slots_used_ += static_cast<int64_t>(s.blocks.size()) * n_layer_;
  s.layers.assign(static_cast<size_t>(n_layer_), LayerCells{s.blocks, s.positions});
  s.n_cells = static_cast<int>(s.positions.size());
  s.blocks.clear();
  s.positions.clear();
}

bool KvCache::compact_layers(SeqId id, std::span<const std::vector<int>> keep) {
  Seq& s = seq(id);
  if (static_cast<int>(keep.size()) != n_layer_)
    fail("kv", "compact_layers: " + std::to_string(keep.size()) + " kept sets for " + std::to_string(n_layer_) + " layers");
  for (int l = 0; l < n_layer_; ++l) {
    const std::vector<int>& k = keep[static_cast<size_t>(l)];
    const int len = layer_length(l, id);
    for (size_t i = 0; i < k.size(); ++i)
      if (k[i] < 0 || k[i] >= len || (i > 0 && k[i] <= k[i - 1]))
        fail("kv", "compact sequence " + std::to_string(id) + " layer " + std::to_string(l) + ": kept cell " +
                       std::to_string(k[i]) + " at index " + std::to_string(i) +
                       " is out of order or outside [0, " + std::to_string(len) + ")");
  }
  const int bs = opts_.block_size;
  if (s.layers.empty()) {
    if (std::all_of(keep.begin(), keep.end(), [&](const std::vector<int>& k) { return k == keep[0]; }))
      return compact(id, keep[0]);
    int64_t shared = 0;
    for (int32_t b : s.blocks) shared += refcount_[b] > 1;
    if (shared > blocks_free()) return false;
    split_sequence(s);  // every slot is now held by s alone: compaction below copies nothing
  } else {
    // Shared slots that receive rows are copied; each new split block gives one slot per layer.
    int64_t need = 0;
    for (int l = 0; l < n_layer_; ++l) {
      const std::vector<int>& k = keep[static_cast<size_t>(l)];
      const LayerCells& t = s.layers[static_cast<size_t>(l)];
      int first = 0;
      while (first < static_cast<int>(k.size()) && k[first] == first) ++first;
      int64_t shared = 0;
      if (first < static_cast<int>(k.size()))
        for (int j = first / bs; j <= (static_cast<int>(k.size()) - 1) / bs; ++j) shared += lref(l, t.blocks[j]) > 1;
      need = std::max(need, shared);
    }
    if (need > blocks_free()) return false;
  }
  int n_cells = 0;
  for (int l = 0; l < n_layer_; ++l) {
    compact_layer(s, l, keep[static_cast<size_t>(l)]);
    n_cells = std::max(n_cells, static_cast<int>(keep[static_cast<size_t>(l)].size()));
  }
  s.n_cells = n_cells;
  if (n_cells == 0) s.layers.clear();  // empty: back to the shared table
  return true;
}

void KvCache::compact_layer(Seq& s, int l, std::span<const int> keep) {
  LayerCells& t = s.layers[static_cast<size_t>(l)];
  const Layer& L = layers_[static_cast<size_t>(l)];
  const int bs = opts_.block_size, n_keep = static_cast<int>(keep.size());
  int first = 0;
  while (first < n_keep && keep[first] == first) ++first;
  if (first < n_keep) {
    for (int j = first / bs; j <= (n_keep - 1) / bs; ++j) {
      const int32_t old = t.blocks[static_cast<size_t>(j)];
      if (lref(l, old) <= 1) continue;
      const int32_t fresh = alloc_slot(l);
      std::memcpy(k_cell(l, fresh, 0), k_cell(l, old, 0), static_cast<size_t>(bs) * L.k_row);
      std::memcpy(v_cell(l, fresh, 0), v_cell(l, old, 0), static_cast<size_t>(bs) * L.v_row);
      release_slot(l, old);
      t.blocks[static_cast<size_t>(j)] = fresh;
    }
    // Rows only move down (i <= keep[i]): a source is read before anything overwrites it.
    for (int i = first; i < n_keep; ++i) {
      const int src = keep[i];
      const int32_t sb = t.blocks[static_cast<size_t>(src / bs)], db = t.blocks[static_cast<size_t>(i / bs)];
      std::memcpy(k_cell(l, db, i % bs), k_cell(l, sb, src % bs), L.k_row);
      std::memcpy(v_cell(l, db, i % bs), v_cell(l, sb, src % bs), L.v_row);
      t.positions[static_cast<size_t>(i)] = t.positions[static_cast<size_t>(src)];
    }
  }
  t.positions.resize(static_cast<size_t>(n_keep));
  const size_t nb = static_cast<size_t>((n_keep + bs - 1) / bs);
  while (t.blocks.size() > nb) {
    release_slot(l, t.blocks.back());
    t.blocks.pop_back();
  }
}

// New slots per layer that appending n_new cells takes (copy-on-write of a shared last slot too).
void KvCache::layered_slots_needed(const Seq& s, int n_new, std::vector<int64_t>& per_layer) const {
  const int bs = opts_.block_size;
  for (int l = 0; l < n_layer_; ++l) {
    const LayerCells& t = s.layers[static_cast<size_t>(l)];
    const int len = static_cast<int>(t.positions.size()), have = static_cast<int>(t.blocks.size());
    int extra = std::max(0, (len + n_new + bs - 1) / bs - have);
    if (n_new > 0 && len % bs != 0 && lref(l, t.blocks.back()) > 1) ++extra;
    per_layer[static_cast<size_t>(l)] += extra;
  }
}

// Whole blocks to split for these slots: free slots of split blocks first, then one new split
// block serves one slot of every layer.
int64_t KvCache::blocks_for_slots(std::span<const int64_t> per_layer) const {
  int64_t need = 0;
  for (int l = 0; l < n_layer_; ++l)
    need = std::max(need, per_layer[static_cast<size_t>(l)] - lfree_n_[static_cast<size_t>(l)]);
  return need;
}

int64_t KvCache::blocks_needed(std::span<const std::pair<SeqId, int>> appends) const {
  int64_t whole = 0;
  std::vector<int64_t> slots;
  for (const auto& [id, n_new] : appends) {
    const Seq& s = seq(id);
    if (s.layers.empty()) {
      whole += blocks_needed(id, n_new);
      continue;
    }
    if (slots.empty()) slots.assign(static_cast<size_t>(n_layer_), 0);
    layered_slots_needed(s, n_new, slots);
  }
  return whole + (slots.empty() ? 0 : blocks_for_slots(slots));
}

void KvCache::layered_append(Seq& s, std::span<const int32_t> positions) {
  const int bs = opts_.block_size, n_new = static_cast<int>(positions.size());
  for (int l = 0; l < n_layer_; ++l) {
    LayerCells& t = s.layers[static_cast<size_t>(l)];
    const Layer& L = layers_[static_cast<size_t>(l)];
    const int len = static_cast<int>(t.positions.size());
    if (n_new > 0 && len % bs != 0 && lref(l, t.blocks.back()) > 1) {  // copy-on-write
      const int32_t old = t.blocks.back(), fresh = alloc_slot(l);
      std::memcpy(k_cell(l, fresh, 0), k_cell(l, old, 0), static_cast<size_t>(bs) * L.k_row);
      std::memcpy(v_cell(l, fresh, 0), v_cell(l, old, 0), static_cast<size_t>(bs) * L.v_row);
      release_slot(l, old);
      t.blocks.back() = fresh;
    }
    const size_t need = static_cast<size_t>((len + n_new + bs - 1) / bs);
    while (t.blocks.size() < need) t.blocks.push_back(alloc_slot(l));
    t.positions.insert(t.positions.end(), positions.begin(), positions.end());
  }
  s.n_cells += n_new;
}

// Drops the last length() - n sequence cells from every layer.
void KvCache::layered_truncate(Seq& s, int n) {
  const int drop = s.n_cells - n, bs = opts_.block_size;
  for (int l = 0; l < n_layer_; ++l) {
    LayerCells& t = s.layers[static_cast<size_t>(l)];
    const int len = std::max(0, static_cast<int>(t.positions.size()) - drop);
    t.positions.resize(static_cast<size_t>(len));
    const size_t nb = static_cast<size_t>((len + bs - 1) / bs);
    while (t.blocks.size() > nb) {
      release_slot(l, t.blocks.back());
      t.blocks.pop_back();
    }
  }
  s.n_cells = n;
  if (n == 0) s.layers.clear();
}

void KvCache::layered_release(Seq& s) {
  for (size_t l = 0; l < s.layers.size(); ++l)
    for (int32_t b : s.layers[l].blocks) release_slot(static_cast<int>(l), b);
  s.layers.clear();
}

uint8_t* KvCache::layered_row(int layer, const Seq& s, int cell, bool k) const {
  const LayerCells& t = s.layers[static_cast<size_t>(layer)];
  const int c = cell - (s.n_cells - static_cast<int>(t.positions.size()));
  CP_ASSERT(c >= 0 && c < static_cast<int>(t.positions.size()));
  const int32_t b = t.blocks[static_cast<size_t>(c / opts_.block_size)];
  return k ? k_cell(layer, b, c % opts_.block_size) : v_cell(layer, b, c % opts_.block_size);
}

void KvCache::layered_chunks(int layer, const Seq& s, int begin, int end, std::vector<ops::KvChunk>& out) const {
  const LayerCells& t = s.layers[static_cast<size_t>(layer)];
  const int shift = s.n_cells - static_cast<int>(t.positions.size());
  CP_ASSERT(begin >= 0 && begin <= end && end <= s.n_cells && end - shift >= 0);
  out.clear();
  const int bs = opts_.block_size, e = end - shift;
  for (int c = std::max(0, begin - shift); c < e;) {
    const int bi = c / bs, off = c % bs, cnt = std::min(e - c, bs - off);
    const int32_t b = t.blocks[static_cast<size_t>(bi)];
    out.push_back({k_cell(layer, b, off), v_cell(layer, b, off), cnt});
    c += cnt;
  }
}

void KvCache::layered_move_cell(Seq& s, int from, int to) {
  const int bs = opts_.block_size;
  for (int l = 0; l < n_layer_; ++l) {
    LayerCells& t = s.layers[static_cast<size_t>(l)];
    const int shift = s.n_cells - static_cast<int>(t.positions.size());
    const int f = from - shift, d = to - shift;
    if (f < 0 || d < 0) fail("kv", "move_cell: cell " + std::to_string(std::min(from, to)) + " was evicted from layer " + std::to_string(l));
    const int32_t bf = t.blocks[static_cast<size_t>(f / bs)], bt = t.blocks[static_cast<size_t>(d / bs)];
    CP_ASSERT(lref(l, bt) == 1);
    std::memcpy(k_cell(l, bt, d % bs), k_cell(l, bf, f % bs), layers_[static_cast<size_t>(l)].k_row);
    std::memcpy(v_cell(l, bt, d % bs), v_cell(l, bf, f % bs), layers_[static_cast<size_t>(l)].v_row);
    t.positions[static_cast<size_t>(d)] = t.positions[static_cast<size_t>(f)];
  }
}

}  // namespace coppice
