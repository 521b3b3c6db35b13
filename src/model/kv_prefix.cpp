// Prefix cache on top of the paged KV cache: full blocks are published under a chained hash
// of their tokens (block i's hash covers blocks 0..i), so a new request whose prompt starts
// with the same tokens attaches those blocks instead of recomputing them. The cache holds one
// reference per published block; blocks only it references are evicted least-recently-used
// first when the pool runs dry.
#include <algorithm>

#include "model/kv_cache.h"
#include "util/error.h"

namespace coppice {

void KvCache::publish_block(SeqId id, int lb, uint64_t hash, std::span<const int32_t> tokens) {
  const Seq& s = seq(id);
  if (!s.layers.empty()) fail("kv", "publish_block: sequence " + std::to_string(id) + " holds different cells per layer");
  CP_ASSERT(lb >= 0 && lb < static_cast<int>(s.blocks.size()));
  CP_ASSERT(static_cast<int>(tokens.size()) == opts_.block_size);
  CP_ASSERT(static_cast<int>(s.positions.size()) >= (lb + 1) * opts_.block_size);
  if (cached_.count(hash)) return;  // an identical block is already cached
  const int32_t b = s.blocks[lb];
  if (by_block_.count(b)) return;   // this physical block is cached under another hash
  retain(b);
  lru_.push_back(b);
  by_block_[b] = CachedBlock{hash, std::vector<int32_t>(tokens.begin(), tokens.end()), std::prev(lru_.end())};
  cached_[hash] = b;
}

int KvCache::match_prefix(std::span<const uint64_t> hashes, std::span<const int32_t> tokens,
                          std::vector<int32_t>& blocks) {
  const int bs = opts_.block_size;
  int n = 0;
  for (uint64_t h : hashes) {
    auto it = cached_.find(h);
    if (it == cached_.end()) break;
    CachedBlock& cb = by_block_.at(it->second);
    if (static_cast<int>(tokens.size()) < (n + 1) * bs ||
        !std::equal(cb.tokens.begin(), cb.tokens.end(), tokens.begin() + static_cast<std::ptrdiff_t>(n) * bs))
      break;  // a hash collision: treat as a miss
    lru_.splice(lru_.end(), lru_, cb.lru);
    blocks.push_back(it->second);
    ++n;
  }
  return n;
}

void KvCache::attach_blocks(SeqId id, std::span<const int32_t> blocks, std::span<const int32_t> positions) {
  Seq& s = seq(id);
  if (!s.blocks.empty() || !s.positions.empty() || !s.layers.empty())
    fail("kv", "attach_blocks: sequence " + std::to_string(id) + " is not empty");
  CP_ASSERT(positions.size() == blocks.size() * static_cast<size_t>(opts_.block_size));
  for (int32_t b : blocks) {
    retain(b);
    s.blocks.push_back(b);
  }
  s.positions.assign(positions.begin(), positions.end());
}

bool KvCache::evict_one() {
  for (auto it = lru_.begin(); it != lru_.end(); ++it) {
    const int32_t b = *it;
    if (refcount_[b] != 1) continue;  // still used by a sequence
    CachedBlock& cb = by_block_.at(b);
    cached_.erase(cb.hash);
    lru_.erase(it);
    by_block_.erase(b);
    --evictable_;
    release_block(b);
    return true;
  }
  return false;
}

void KvCache::clear_prefix_cache() {
  while (!lru_.empty()) {
    const int32_t b = lru_.front();
    lru_.pop_front();
    cached_.erase(by_block_.at(b).hash);
    if (refcount_[b] == 1) --evictable_;
    by_block_.erase(b);
    release_block(b);
  }
}

}  // namespace coppice
