#include "model/kv_cache.h"

#include <algorithm>
#include <cstring>
#include <string>

#include "util/error.h"

namespace coppice {

namespace {
bool is_kv_type(DType t) {
  switch (t) {
    case DType::F32: case DType::F16: case DType::BF16: case DType::Q8_0:
    case DType::Q4_0: case DType::Q4_1: case DType::Q5_0: case DType::Q5_1: return true;
    default: return false;
  }
}

// Bytes of one cell's row of n_kv_head heads; a quantized head must be whole blocks.
size_t kv_row_bytes(DType t, int n_kv_head, int head_dim) {
  const TypeTraits* tt = type_traits(t);
  if (!is_kv_type(t) || tt == nullptr)
    fail("kv", std::string("unsupported KV cache type ") + (tt ? tt->name : "?") +
                   " (use f32, f16, bf16, q8_0, q4_0, q4_1, q5_0 or q5_1)");
  // A head is whole blocks, or (narrow heads) a block holds whole heads of the row.
  const int64_t bs = tt->block_size, row = static_cast<int64_t>(n_kv_head) * head_dim;
  if (head_dim % bs != 0 && (bs % head_dim != 0 || row % bs != 0))
    fail("kv", std::string("KV cache type ") + tt->name + " needs head_dim (" + std::to_string(head_dim) +
                   ") to be a multiple or a divisor of " + std::to_string(bs) + " and a row of " +
                   std::to_string(n_kv_head) + " heads to be whole blocks (use f16, bf16 or f32)");
  return row_size(*tt, static_cast<int64_t>(n_kv_head) * head_dim);
}
}  // namespace

KvCache::KvCache(int n_layer, int n_kv_head, int head_dim, const KvCacheOptions& opts)
    : n_layer_(n_layer), opts_(opts) {
  if (opts.block_size <= 0 || opts.n_blocks <= 0)
    fail("kv", "block size " + std::to_string(opts.block_size) + " and block count " +
                   std::to_string(opts.n_blocks) + " must be positive");
  if (!opts.layer_types.empty() && static_cast<int>(opts.layer_types.size()) != n_layer)
    fail("kv", "per-layer KV types given for " + std::to_string(opts.layer_types.size()) +
                   " layers, the model has " + std::to_string(n_layer));
  layers_.resize(static_cast<size_t>(n_layer));
  size_t k_total = 0, v_total = 0;
  const size_t nb = static_cast<size_t>(opts.n_blocks), bs = static_cast<size_t>(opts.block_size);
  for (int l = 0; l < n_layer; ++l) {
    Layer& L = layers_[l];
    L.k = opts.type;
    L.v = opts.type_v.value_or(opts.type);
    if (!opts.layer_types.empty()) {
      L.k = opts.layer_types[l].k;
      L.v = opts.layer_types[l].v;
    }
    L.k_row = kv_row_bytes(L.k, n_kv_head, head_dim);
    L.v_row = kv_row_bytes(L.v, n_kv_head, head_dim);
    L.k_off = k_total;
    L.v_off = v_total;
    k_total += L.k_row * bs * nb;
    v_total += L.v_row * bs * nb;
    block_bytes_all_ += (L.k_row + L.v_row) * bs;
  }
  // Uninitialised: pages are committed only when a block is first written.
  k_.reset(new uint8_t[k_total]);
  v_.reset(new uint8_t[v_total]);
  refcount_.assign(nb, 0);
  free_.reserve(nb);
  for (int64_t b = opts.n_blocks - 1; b >= 0; --b) free_.push_back(static_cast<int32_t>(b));
}

KvCache::Seq& KvCache::seq(SeqId id) {
  auto it = seqs_.find(id);
  if (it == seqs_.end()) fail("kv", "unknown sequence " + std::to_string(id));
  return it->second;
}
const KvCache::Seq& KvCache::seq(SeqId id) const {
  auto it = seqs_.find(id);
  if (it == seqs_.end()) fail("kv", "unknown sequence " + std::to_string(id));
  return it->second;
}

void KvCache::add_sequence(SeqId id) {
  if (seqs_.count(id)) fail("kv", "sequence " + std::to_string(id) + " already exists");
  seqs_.emplace(id, Seq{});
}

void KvCache::remove_sequence(SeqId id) {
  Seq& s = seq(id);
  for (int32_t b : s.blocks) release_block(b);
  layered_release(s);
  seqs_.erase(id);
}

void KvCache::fork_sequence(SeqId src, SeqId dst) {
  if (seqs_.count(dst)) fail("kv", "sequence " + std::to_string(dst) + " already exists");
  Seq copy = seq(src);
  for (int32_t b : copy.blocks) retain(b);
  for (size_t l = 0; l < copy.layers.size(); ++l)
    for (int32_t b : copy.layers[l].blocks) ++lref(static_cast<int>(l), b);
  seqs_.emplace(dst, std::move(copy));
}

int KvCache::length(SeqId id) const {
  const Seq& s = seq(id);
  return s.layers.empty() ? static_cast<int>(s.positions.size()) : s.n_cells;
}

int32_t KvCache::position(SeqId id, int cell) const { return positions(id)[static_cast<size_t>(cell)]; }
std::span<const int32_t> KvCache::positions(SeqId id) const {
  const Seq& s = seq(id);
  if (s.layers.empty()) return s.positions;
  for (const LayerCells& t : s.layers)
    if (static_cast<int>(t.positions.size()) == s.n_cells) return t.positions;
  return s.layers[0].positions;
}

int KvCache::blocks_needed(SeqId id, int n_new) const {
  const Seq& s = seq(id);
  if (!s.layers.empty()) {
    std::vector<int64_t> slots(static_cast<size_t>(n_layer_), 0);
    layered_slots_needed(s, n_new, slots);
    return static_cast<int>(blocks_for_slots(slots));
  }
  const int len = static_cast<int>(s.positions.size());
  const int bs = opts_.block_size;
  const int have = static_cast<int>(s.blocks.size());
  const int need = (len + n_new + bs - 1) / bs;
  int extra = need > have ? need - have : 0;
  // A shared, partially filled last block is copied before it is written.
  if (n_new > 0 && len % bs != 0 && refcount_[s.blocks.back()] > 1) ++extra;
  return extra;
}

bool KvCache::append(SeqId id, std::span<const int32_t> positions) {
  Seq& s = seq(id);
  const int n_new = static_cast<int>(positions.size());
  if (blocks_needed(id, n_new) > blocks_free()) return false;
  if (!s.layers.empty()) {
    layered_append(s, positions);
    return true;
  }
  const int bs = opts_.block_size;
  const int len = static_cast<int>(s.positions.size());
  if (n_new > 0 && len % bs != 0 && refcount_[s.blocks.back()] > 1) {
    const int32_t fresh = alloc_block();
    copy_block(s.blocks.back(), fresh);
    release_block(s.blocks.back());
    s.blocks.back() = fresh;
  }
  const int need = (len + n_new + bs - 1) / bs;
  while (static_cast<int>(s.blocks.size()) < need) s.blocks.push_back(alloc_block());
  s.positions.insert(s.positions.end(), positions.begin(), positions.end());
  return true;
}

void KvCache::truncate(SeqId id, int n) {
  Seq& s = seq(id);
  if (n < 0 || n > length(id))
    fail("kv", "truncate sequence " + std::to_string(id) + " to " + std::to_string(n) +
                   " cells, it has " + std::to_string(length(id)));
  if (!s.layers.empty()) return layered_truncate(s, n);
  s.positions.resize(static_cast<size_t>(n));
  const size_t keep = static_cast<size_t>((n + opts_.block_size - 1) / opts_.block_size);
  while (s.blocks.size() > keep) {
    release_block(s.blocks.back());
    s.blocks.pop_back();
  }
}

void KvCache::move_cell(SeqId id, int from, int to) {
  Seq& s = seq(id);
  const int n = length(id);
  if (from < 0 || from >= n || to < 0 || to >= n)
    fail("kv", "move cell " + std::to_string(from) + " to " + std::to_string(to) + " of sequence " +
                   std::to_string(id) + " with " + std::to_string(n) + " cells");
  if (from == to) return;
  if (!s.layers.empty()) return layered_move_cell(s, from, to);
  const int bs = opts_.block_size;
  const int32_t bf = s.blocks[from / bs], bt = s.blocks[to / bs];
  CP_ASSERT(refcount_[bt] == 1);
  for (int l = 0; l < n_layer_; ++l) {
    std::memcpy(k_cell(l, bt, to % bs), k_cell(l, bf, from % bs), layers_[static_cast<size_t>(l)].k_row);
    std::memcpy(v_cell(l, bt, to % bs), v_cell(l, bf, from % bs), layers_[static_cast<size_t>(l)].v_row);
  }
  s.positions[to] = s.positions[from];
}

uint8_t* KvCache::k_cell(int layer, int32_t block, int off) const {
  const Layer& L = layers_[layer];
  return k_.get() + L.k_off + (static_cast<size_t>(block) * opts_.block_size + off) * L.k_row;
}

uint8_t* KvCache::v_cell(int layer, int32_t block, int off) const {
  const Layer& L = layers_[layer];
  return v_.get() + L.v_off + (static_cast<size_t>(block) * opts_.block_size + off) * L.v_row;
}

void* KvCache::k_row(int layer, SeqId id, int cell) {
  const Seq& s = seq(id);
  if (!s.layers.empty()) return layered_row(layer, s, cell, true);
  CP_DASSERT(cell >= 0 && cell < static_cast<int>(s.positions.size()));
  return k_cell(layer, s.blocks[cell / opts_.block_size], cell % opts_.block_size);
}

void* KvCache::v_row(int layer, SeqId id, int cell) {
  const Seq& s = seq(id);
  if (!s.layers.empty()) return layered_row(layer, s, cell, false);
  CP_DASSERT(cell >= 0 && cell < static_cast<int>(s.positions.size()));
  return v_cell(layer, s.blocks[cell / opts_.block_size], cell % opts_.block_size);
}

void KvCache::chunks(int layer, SeqId id, int begin, int end, std::vector<ops::KvChunk>& out) const {
  const Seq& s = seq(id);
  if (!s.layers.empty()) return layered_chunks(layer, s, begin, end, out);
  CP_ASSERT(begin >= 0 && begin <= end && end <= static_cast<int>(s.positions.size()));
  out.clear();
  const int bs = opts_.block_size;
  for (int c = begin; c < end;) {
    const int bi = c / bs, off = c % bs;
    const int cnt = std::min(end - c, bs - off);
    out.push_back({k_cell(layer, s.blocks[bi], off), v_cell(layer, s.blocks[bi], off), cnt});
    c += cnt;
  }
}

int32_t KvCache::alloc_block() {
  if (free_.empty()) CP_ASSERT(evict_one());
  const int32_t b = free_.back();
  free_.pop_back();
  refcount_[b] = 1;
  return b;
}

void KvCache::retain(int32_t b) {
  if (refcount_[b] == 1 && by_block_.count(b)) --evictable_;
  ++refcount_[b];
}

void KvCache::release_block(int32_t b) {
  CP_ASSERT(refcount_[b] > 0);
  --refcount_[b];
  if (refcount_[b] == 1 && by_block_.count(b)) ++evictable_;
  if (refcount_[b] == 0) free_.push_back(b);
}

void KvCache::copy_block(int32_t from, int32_t to) {
  for (int l = 0; l < n_layer_; ++l) {
    const size_t bs = static_cast<size_t>(opts_.block_size);
    std::memcpy(k_cell(l, to, 0), k_cell(l, from, 0), bs * layers_[l].k_row);
    std::memcpy(v_cell(l, to, 0), v_cell(l, from, 0), bs * layers_[l].v_row);
  }
}

}  // namespace coppice
