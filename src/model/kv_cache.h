// Block-paged KV cache shared by every sequence: fixed-size blocks of token cells per layer,
// a block table per sequence, reference-counted blocks so forks share prefixes (copy-on-write
// at the block being written). A cell's position (for RoPE and masks) is stored apart from
// where its data lives, so eviction and trees can make positions sparse later.
#pragma once
#include <cstdint>
#include <list>
#include <map>
#include <unordered_map>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "kernels/types.h"
#include "ops/attention.h"

namespace coppice {

using SeqId = int32_t;

struct KvLayerTypes {
  DType k = DType::F16, v = DType::F16;
};

struct KvCacheOptions {
  int block_size = 16;    // token cells per block
  int64_t n_blocks = 0;   // pool size (all sequences together)
  // K (and V) type: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1 (quantized types need
  // head_dim % 32 == 0, or head_dim dividing 32 with a row of n_kv_head heads whole blocks).
  DType type = DType::F16;
  std::optional<DType> type_v = std::nullopt;  // V type when it differs from K
  std::vector<KvLayerTypes> layer_types = {};  // [n_layer] per-layer overrides; empty: none
};

class KvCache {
 public:
  KvCache(int n_layer, int n_kv_head, int head_dim, const KvCacheOptions& opts);

  // Sequences. Throws coppice::Error for an unknown or duplicate id.
  void add_sequence(SeqId id);
  void remove_sequence(SeqId id);  // returns its blocks to the pool (when unshared)
  bool has_sequence(SeqId id) const { return seqs_.count(id) != 0; }
  // dst starts as a copy of src that shares every block; no data is copied.
  void fork_sequence(SeqId src, SeqId dst);
  int length(SeqId id) const;
  // Cells in use (layered: the longest layer's count).
  int32_t position(SeqId id, int cell) const;  // RoPE position of a cell
  // [length] every cell's position (layered: the longest layer's; see layer_positions).
  std::span<const int32_t> positions(SeqId id) const;
  // Physical ids of the shared table (empty for a sequence compacted per layer).
  std::span<const int32_t> block_table(SeqId id) const { return seq(id).blocks; }

  // Appends cells with the given positions; returns false (and changes nothing) when the pool
  // cannot supply the blocks. Copies a shared last block before it is written (COW).
  bool append(SeqId id, std::span<const int32_t> positions);
  // Drops cells [n, length): speculative rollback. Blocks no longer needed go back to the pool.
  void truncate(SeqId id, int n);
  // Copies cell `from`'s K/V rows (every layer) and position over cell `to` of the same sequence:
  // moves an accepted speculative node into place before truncate. `to` must not be shared.
  void move_cell(SeqId id, int from, int to);
  // Bytes of one cell's K (V) row in a layer (types, hence sizes, may differ per layer).
  size_t k_row_bytes(int layer) const { return layers_[static_cast<size_t>(layer)].k_row; }
  size_t v_row_bytes(int layer) const { return layers_[static_cast<size_t>(layer)].v_row; }
  // Eviction (model/kv_compact.cpp): keeps only the cells `keep` (strictly increasing), moved
  // down in order with their positions, in every layer; emptied blocks go back to the pool.
  // Shared blocks that get written are copied first; returns false (nothing changed) when the
  // pool cannot supply those copies.
  bool compact(SeqId id, std::span<const int> keep);

  // ---- Per-layer cells (CAKE budgets, model/kv_layers.cpp) ----
  // Keeps in each layer l the cells keep[l] (that layer's own indices, strictly increasing).
  // Different sets make the sequence "layered": each layer gets its own table of per-layer
  // slots (a block's rows of one layer), so a layer keeping fewer cells holds fewer slots and
  // the rest return to the pool. Cell indices given to k_row / v_row / chunks / truncate /
  // move_cell stay sequence indices: a layer's cells are the last layer_length(l) of
  // [0, length()), and new cells are appended to every layer. Identical sets on an unlayered
  // sequence are compact(). Returns false (nothing changed) when copies of shared blocks do
  // not fit in the pool.
  bool compact_layers(SeqId id, std::span<const std::vector<int>> keep);
  bool layered(SeqId id) const { return !seq(id).layers.empty(); }
  int layer_length(int layer, SeqId id) const;
  std::span<const int32_t> layer_positions(int layer, SeqId id) const;
  int n_layer() const { return n_layer_; }
  int64_t layer_slots_used() const { return slots_used_; }  // per-layer slots held (all layers)

  // Where a cell's K or V row ([n_kv_head * head_dim] of type()) lives for a layer.
  void* k_row(int layer, SeqId id, int cell);
  void* v_row(int layer, SeqId id, int cell);
  // The first n cells of a sequence as contiguous chunks (one per block) for attention.
  void chunks(int layer, SeqId id, int n, std::vector<ops::KvChunk>& out) const {
    chunks(layer, id, 0, n, out);
  }
  // Cells [begin, end) of a sequence as chunks (sliding-window attention starts late).
  void chunks(int layer, SeqId id, int begin, int end, std::vector<ops::KvChunk>& out) const;

  // ---- Prefix cache: full blocks published under a chained hash of their tokens ----
  // Publishes logical block `lb` of a sequence (it must be full) under `hash`; `tokens` are
  // kept to rule out hash collisions. The cache holds its own reference to the block.
  void publish_block(SeqId id, int lb, uint64_t hash, std::span<const int32_t> tokens);
  // Longest run of leading hashes whose blocks are cached (tokens compared too); appends
  // their physical ids to `blocks` and marks them recently used.
  int match_prefix(std::span<const uint64_t> hashes, std::span<const int32_t> tokens,
                   std::vector<int32_t>& blocks);
  // Starts an empty sequence on shared blocks: cells = blocks.size() * block_size, with
  // the given positions (one per cell).
  void attach_blocks(SeqId id, std::span<const int32_t> blocks, std::span<const int32_t> positions);
  bool is_evictable(int32_t b) const { return refcount_[b] == 1 && by_block_.count(b) != 0; }
  int64_t cached_blocks() const { return static_cast<int64_t>(cached_.size()); }
  int64_t evictable_blocks() const { return evictable_; }
  void clear_prefix_cache();

  DType type() const { return opts_.type; }
  DType k_type(int layer) const { return layers_[layer].k; }
  DType v_type(int layer) const { return layers_[layer].v; }
  // Bytes one block holds over all layers, K and V (KV memory in use = blocks_used() * this).
  size_t block_bytes_all_layers() const { return block_bytes_all_; }
  int block_size() const { return opts_.block_size; }
  int64_t n_blocks() const { return opts_.n_blocks; }
  // Free blocks, counting cached blocks nobody else uses (evicted LRU-first on demand). Free
  // per-layer slots of partly used split blocks are not counted (a whole block is needed).
  int64_t blocks_free() const { return static_cast<int64_t>(free_.size()) + evictable_; }
  // Memory held, in blocks: whole blocks in use + per-layer slots in use / n_layer (rounded up).
  int64_t blocks_used() const {
    const int64_t whole = opts_.n_blocks - blocks_free() - n_split_;
    return whole + (slots_used_ + n_layer_ - 1) / n_layer_;
  }
  size_t bytes_used() const;  // exact: whole blocks and per-layer slots, K and V
  size_t bytes_total() const { return block_bytes_all_ * static_cast<size_t>(opts_.n_blocks); }
  int blocks_needed(SeqId id, int n_new) const;  // extra blocks append(n_new) would take
  // The same for appends to several sequences at once (free per-layer slots of split blocks
  // serve layered sequences, so their needs do not simply add up).
  int64_t blocks_needed(std::span<const std::pair<SeqId, int>> appends) const;

 private:
  struct LayerCells {
    std::vector<int32_t> blocks;     // logical block -> physical block whose layer slot is used
    std::vector<int32_t> positions;  // [cells of this layer]
  };
  struct Seq {
    std::vector<int32_t> blocks;     // block table: logical block -> physical block
    std::vector<int32_t> positions;  // [n_cells]
    std::vector<LayerCells> layers;  // [n_layer] once compacted per layer; empty: the table above
    int n_cells = 0;                 // layered: the longest layer's cell count
  };
  Seq& seq(SeqId id);
  const Seq& seq(SeqId id) const;
  int32_t alloc_block();
  void release_block(int32_t b);
  void copy_block(int32_t from, int32_t to);
  uint8_t* k_cell(int layer, int32_t block, int off) const;
  uint8_t* v_cell(int layer, int32_t block, int off) const;
  // Layered sequences (model/kv_layers.cpp).
  int32_t& lref(int layer, int32_t b) { return lref_[static_cast<size_t>(layer) * opts_.n_blocks + b]; }
  int32_t lref(int layer, int32_t b) const { return lref_[static_cast<size_t>(layer) * opts_.n_blocks + b]; }
  int32_t alloc_slot(int layer);
  void release_slot(int layer, int32_t b);
  void split_sequence(Seq& s);
  void compact_layer(Seq& s, int layer, std::span<const int> keep);
  void layered_slots_needed(const Seq& s, int n_new, std::vector<int64_t>& per_layer) const;
  int64_t blocks_for_slots(std::span<const int64_t> per_layer) const;
  void layered_append(Seq& s, std::span<const int32_t> positions);
  void layered_truncate(Seq& s, int n);
  void layered_release(Seq& s);
  uint8_t* layered_row(int layer, const Seq& s, int cell, bool k) const;
  void layered_chunks(int layer, const Seq& s, int begin, int end, std::vector<ops::KvChunk>& out) const;
  void layered_move_cell(Seq& s, int from, int to);

  // Per layer: its K/V types and where its pool starts (types, hence row sizes, may differ).
  struct Layer {
    DType k = DType::F16, v = DType::F16;
    size_t k_row = 0, v_row = 0;  // bytes of one cell's [n_kv_head * head_dim] row
    size_t k_off = 0, v_off = 0;  // byte offset of the layer in k_ / v_
  };
  int n_layer_;
  std::vector<Layer> layers_;  // [n_layer]
  size_t block_bytes_all_ = 0;  // sum over layers of block_size * (k_row + v_row)
  KvCacheOptions opts_;
  std::unique_ptr<uint8_t[]> k_;  // per layer: [n_blocks][block_size][k_row bytes]
  std::unique_ptr<uint8_t[]> v_;  // per layer: [n_blocks][block_size][v_row bytes]
  std::vector<int32_t> refcount_;  // [n_blocks]
  std::vector<int32_t> free_;      // stack of free physical blocks
  std::map<SeqId, Seq> seqs_;
  // Per-layer slots of split blocks (allocated on the first per-layer compaction). A block is
  // free (in free_), whole (refcount_), or split: each layer's slot has its own holders.
  std::vector<int32_t> lref_;                // [n_layer][n_blocks] holders of a split block's slot
  std::vector<uint8_t> split_;               // [n_blocks] 1: split
  std::vector<int32_t> split_used_;          // [n_blocks] layers of a split block in use
  std::vector<std::vector<int32_t>> lfree_;  // [n_layer] free slots of split blocks (stale entries skipped)
  std::vector<int64_t> lfree_n_, lused_;     // [n_layer] free / used slots per layer
  int64_t n_split_ = 0, slots_used_ = 0;

  // Prefix cache state.
  struct CachedBlock {
    uint64_t hash = 0;
    std::vector<int32_t> tokens;
    std::list<int32_t>::iterator lru;
  };
  void retain(int32_t b);
  bool evict_one();
  std::unordered_map<uint64_t, int32_t> cached_;     // hash -> physical block
  std::unordered_map<int32_t, CachedBlock> by_block_;  // physical block -> its entry
  std::list<int32_t> lru_;                           // least recently used first
  int64_t evictable_ = 0;                            // cached blocks with refcount 1
};

}  // namespace coppice
