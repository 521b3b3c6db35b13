// Paged KV cache bookkeeping: block accounting, forks sharing blocks, copy-on-write of a
// shared partial block, truncation (rollback) returning blocks, all-or-nothing appends.
#include <gtest/gtest.h>

#include <cstring>
#include <numeric>

#include "model/kv_cache.h"
#include "util/error.h"

using namespace coppice;

namespace {
KvCache make(int64_t blocks, int bs = 4) {
  KvCacheOptions o;
  o.block_size = bs;
  o.n_blocks = blocks;
  o.type = DType::F32;
  return KvCache(2, 1, 2, o);  // 2 layers, 1 kv head of dim 2: a row is 2 floats
}
std::vector<int32_t> iota(int n, int from = 0) {
  std::vector<int32_t> v(static_cast<size_t>(n));
  std::iota(v.begin(), v.end(), from);
  return v;
}
void put(KvCache& c, SeqId s, int cell, float val) {
  for (int l = 0; l < 2; ++l) {
    auto* k = static_cast<float*>(c.k_row(l, s, cell));
    k[0] = k[1] = val;
  }
}
float get(KvCache& c, SeqId s, int cell, int layer = 0) { return static_cast<float*>(c.k_row(layer, s, cell))[0]; }
}  // namespace

TEST(KvCache, AppendTruncateAndBlockAccounting) {
  KvCache c = make(8);
  c.add_sequence(0);
  ASSERT_TRUE(c.append(0, iota(6)));
  EXPECT_EQ(c.length(0), 6);
  EXPECT_EQ(c.blocks_used(), 2);
  EXPECT_EQ(c.position(0, 5), 5);
  c.truncate(0, 4);
  EXPECT_EQ(c.blocks_used(), 1);
  c.truncate(0, 0);
  EXPECT_EQ(c.blocks_used(), 0);
  EXPECT_THROW(c.truncate(0, 1), Error);
  EXPECT_THROW(c.add_sequence(0), Error);
  EXPECT_THROW(c.length(42), Error);
}

TEST(KvCache, AppendIsAllOrNothing) {
  KvCache c = make(2);
  c.add_sequence(0);
  EXPECT_FALSE(c.append(0, iota(9)));  // needs 3 blocks
  EXPECT_EQ(c.length(0), 0);
  EXPECT_EQ(c.blocks_used(), 0);
  EXPECT_TRUE(c.append(0, iota(8)));
  EXPECT_EQ(c.blocks_free(), 0);
}

TEST(KvCache, ForkSharesBlocksAndCopiesOnWrite) {
  KvCache c = make(8);
  c.add_sequence(0);
  ASSERT_TRUE(c.append(0, iota(6)));
  for (int i = 0; i < 6; ++i) put(c, 0, i, float(i));
  c.fork_sequence(0, 1);
  EXPECT_EQ(c.blocks_used(), 2);  // shared
  EXPECT_EQ(c.blocks_needed(1, 1), 1);  // the partial last block must be copied first
  ASSERT_TRUE(c.append(1, iota(1, 6)));
  EXPECT_EQ(c.blocks_used(), 3);
  put(c, 1, 6, 100.0f);
  put(c, 1, 4, 44.0f);  // inside the copied block: the parent must not see it
  EXPECT_EQ(get(c, 0, 4), 4.0f);
  EXPECT_EQ(get(c, 1, 4, 1), 44.0f);
  EXPECT_EQ(get(c, 1, 5, 1), 5.0f);  // copied data, both layers
  EXPECT_EQ(get(c, 1, 0), 0.0f);     // first block still shared
  c.remove_sequence(0);
  EXPECT_EQ(c.blocks_used(), 2);  // the child keeps the shared first block alive
  c.remove_sequence(1);
  EXPECT_EQ(c.blocks_used(), 0);
}

TEST(KvCache, ChunksCoverExactlyTheRequestedCells) {
  KvCache c = make(8, 4);
  c.add_sequence(3);
  ASSERT_TRUE(c.append(3, iota(10)));
  std::vector<ops::KvChunk> ch;
  c.chunks(0, 3, 10, ch);
  ASSERT_EQ(ch.size(), 3u);
  EXPECT_EQ(ch[0].n + ch[1].n + ch[2].n, 10);
  EXPECT_EQ(ch[2].n, 2);
  c.chunks(1, 3, 4, ch);
  ASSERT_EQ(ch.size(), 1u);
  EXPECT_EQ(ch[0].k, c.k_row(1, 3, 0));
}

TEST(KvCache, RejectsUnsupportedTypes) {
  KvCacheOptions o;
  o.n_blocks = 1;
  o.type = DType::Q4_K;  // a weight-only type (q8_0/q4_0/... KV: tests/test_kv_quant.cpp)
  EXPECT_THROW(KvCache(1, 1, 32, o), Error);
}

TEST(KvCache, PrefixCachePublishMatchAndLruEviction) {
  KvCache c = make(4, 4);  // 4 blocks of 4 cells
  c.add_sequence(0);
  ASSERT_TRUE(c.append(0, iota(8)));
  const std::vector<int32_t> toks = {1, 2, 3, 4, 5, 6, 7, 8};
  c.publish_block(0, 0, 111, std::span<const int32_t>(toks.data(), 4));
  c.publish_block(0, 1, 222, std::span<const int32_t>(toks.data() + 4, 4));
  EXPECT_EQ(c.cached_blocks(), 2);
  EXPECT_EQ(c.evictable_blocks(), 0);  // still used by sequence 0
  c.remove_sequence(0);
  EXPECT_EQ(c.evictable_blocks(), 2);
  EXPECT_EQ(c.blocks_free(), 4);       // cached-but-unused blocks count as free

  std::vector<int32_t> blocks;
  const std::vector<uint64_t> hashes = {111, 222, 333};
  EXPECT_EQ(c.match_prefix(hashes, toks, blocks), 2);
  // A hash hit with different tokens is a miss (collision guard).
  std::vector<int32_t> other = toks;
  other[1] = 99;
  std::vector<int32_t> b2;
  EXPECT_EQ(c.match_prefix(hashes, other, b2), 0);

  c.add_sequence(1);
  c.attach_blocks(1, blocks, iota(8));
  EXPECT_EQ(c.length(1), 8);
  EXPECT_EQ(c.evictable_blocks(), 0);
  c.remove_sequence(1);

  // Filling the pool evicts cached blocks, least recently used first.
  c.add_sequence(2);
  ASSERT_TRUE(c.append(2, iota(12)));  // 3 blocks: 2 free + 1 evicted
  EXPECT_EQ(c.cached_blocks(), 1);
  ASSERT_TRUE(c.append(2, iota(4, 12)));
  EXPECT_EQ(c.cached_blocks(), 0);
  EXPECT_FALSE(c.append(2, iota(1, 16)));
}
