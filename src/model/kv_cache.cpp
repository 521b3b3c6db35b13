#include "model/kv_cache.h"

#include <algorithm>
#include <cstring>
#include <string>

#include "util/error.h"

namespace coppice {

namespace {
size_t kv_elem_size(DType t) {
  if (t == DType::F32) return 4;
  if (t == DType::F16 || t == DType::BF16) return 2;
  fail("kv", std::string("unsupported KV cache type ") + dtype_name(t) + " (use f32, f16 or bf16)");
}
}  // namespace

KvCache::KvCache(int n_layer, int n_kv_head, int head_dim, const KvCacheOptions& opts)
    : n_layer_(n_layer), opts_(opts) {
  if (opts.block_size <= 0 || opts.n_blocks <= 0)
    fail("kv", "block size " + std::to_string(opts.block_size) + " and block count " +
                   std::to_string(opts.n_blocks) + " must be positive");
  row_bytes_ = static_cast<size_t>(n_kv_head) * head_dim * kv_elem_size(opts.type);
  block_bytes_ = row_bytes_ * opts.block_size;
  layer_bytes_ = block_bytes_ * static_cast<size_t>(opts.n_blocks);
  // Uninitialised: pages are committed only when a block is first written.
  k_.reset(new uint8_t[layer_bytes_ * n_layer]);
  v_.reset(new uint8_t[layer_bytes_ * n_layer]);
  refcount_.assign(static_cast<size_t>(opts.n_blocks), 0);
  free_.reserve(static_cast<size_t>(opts.n_blocks));
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
  seqs_.erase(id);
}

void KvCache::fork_sequence(SeqId src, SeqId dst) {
  if (seqs_.count(dst)) fail("kv", "sequence " + std::to_string(dst) + " already exists");
  Seq copy = seq(src);
  for (int32_t b : copy.blocks) retain(b);
  seqs_.emplace(dst, std::move(copy));
}

int KvCache::length(SeqId id) const { return static_cast<int>(seq(id).positions.size()); }

int32_t KvCache::position(SeqId id, int cell) const { return seq(id).positions.at(cell); }
std::span<const int32_t> KvCache::positions(SeqId id) const { return seq(id).positions; }

int KvCache::blocks_needed(SeqId id, int n_new) const {
  const Seq& s = seq(id);
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
  if (n < 0 || n > static_cast<int>(s.positions.size()))
    fail("kv", "truncate sequence " + std::to_string(id) + " to " + std::to_string(n) +
                   " cells, it has " + std::to_string(s.positions.size()));
  s.positions.resize(static_cast<size_t>(n));
  const size_t keep = static_cast<size_t>((n + opts_.block_size - 1) / opts_.block_size);
  while (s.blocks.size() > keep) {
    release_block(s.blocks.back());
    s.blocks.pop_back();
  }
}

void KvCache::move_cell(SeqId id, int from, int to) {
  Seq& s = seq(id);
  const int n = static_cast<int>(s.positions.size());
  if (from < 0 || from >= n || to < 0 || to >= n)
    fail("kv", "move cell " + std::to_string(from) + " to " + std::to_string(to) + " of sequence " +
                   std::to_string(id) + " with " + std::to_string(n) + " cells");
  if (from == to) return;
  const int bs = opts_.block_size;
  const int32_t bf = s.blocks[from / bs], bt = s.blocks[to / bs];
  CP_ASSERT(refcount_[bt] == 1);
  for (int l = 0; l < n_layer_; ++l) {
    std::memcpy(cell_ptr(k_, l, bt, to % bs), cell_ptr(k_, l, bf, from % bs), row_bytes_);
    std::memcpy(cell_ptr(v_, l, bt, to % bs), cell_ptr(v_, l, bf, from % bs), row_bytes_);
  }
  s.positions[to] = s.positions[from];
}

uint8_t* KvCache::cell_ptr(const std::unique_ptr<uint8_t[]>& base, int layer, int32_t block,
                           int off) const {
  return base.get() + layer * layer_bytes_ + static_cast<size_t>(block) * block_bytes_ +
         static_cast<size_t>(off) * row_bytes_;
}

void* KvCache::k_row(int layer, SeqId id, int cell) {
  const Seq& s = seq(id);
  CP_DASSERT(cell >= 0 && cell < static_cast<int>(s.positions.size()));
  return cell_ptr(k_, layer, s.blocks[cell / opts_.block_size], cell % opts_.block_size);
}

void* KvCache::v_row(int layer, SeqId id, int cell) {
  const Seq& s = seq(id);
  CP_DASSERT(cell >= 0 && cell < static_cast<int>(s.positions.size()));
  return cell_ptr(v_, layer, s.blocks[cell / opts_.block_size], cell % opts_.block_size);
}

void KvCache::chunks(int layer, SeqId id, int begin, int end, std::vector<ops::KvChunk>& out) const {
  const Seq& s = seq(id);
  CP_ASSERT(begin >= 0 && begin <= end && end <= static_cast<int>(s.positions.size()));
  out.clear();
  const int bs = opts_.block_size;
  for (int c = begin; c < end;) {
    const int bi = c / bs, off = c % bs;
    const int cnt = std::min(end - c, bs - off);
    out.push_back({cell_ptr(k_, layer, s.blocks[bi], off), cell_ptr(v_, layer, s.blocks[bi], off), cnt});
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
    std::memcpy(cell_ptr(k_, l, to, 0), cell_ptr(k_, l, from, 0), block_bytes_);
    std::memcpy(cell_ptr(v_, l, to, 0), cell_ptr(v_, l, from, 0), block_bytes_);
  }
}

}  // namespace coppice
