// Tree steps for speculative verification: a tree token attends to the committed cells of its
// sequence plus its own ancestors. The ancestors (and the committed cells of the last,
// partially filled block) are gathered into scratch rows laid out exactly as plain decoding
// would see them, so attention runs over the same chunks in the same order and the logits are
// bit-identical to decoding the accepted path token by token (greedy identity).
#include <algorithm>
#include <cstring>

#include "model/model.h"
#include "util/error.h"

namespace coppice {

void Model::check_tree(std::span<const BatchToken> batch) const {
  for (size_t i = 0; i < batch.size(); ++i) {
    const BatchToken& b = batch[i];
    if (!b.tree) continue;
    if (b.parent == -1) continue;
    if (b.parent < -1 || static_cast<size_t>(b.parent) >= i || !batch[b.parent].tree ||
        batch[b.parent].seq != b.seq)
      fail("model", "tree token " + std::to_string(i) + " has parent " + std::to_string(b.parent) +
                        ": a parent must be an earlier tree token of the same sequence");
  }
}

void Model::tree_chunks(int il, int ith, int i, int begin, std::span<const BatchToken> batch,
                        KvCache& cache, std::span<const int> cells, std::vector<ops::KvChunk>& out) {
  std::vector<int>& path = s_.tree_path[ith];  // batch indices, self first, root last
  path.clear();
  for (int j = i;; j = batch[j].parent) {
    path.push_back(j);
    if (batch[j].parent < 0) break;
  }
  std::reverse(path.begin(), path.end());
  const SeqId seq = batch[i].seq;
  const int root = cells[path[0]];  // virtual cell of depth d is root + d
  const int vend = root + static_cast<int>(path.size());
  const int bs = cache.block_size();
  // Gather from the start of the root's block so chunk boundaries match plain decoding's.
  const int g0 = std::min(root, std::max(begin, root - root % bs));
  out.clear();
  if (begin < g0) cache.chunks(il, seq, begin, g0, out);
  const size_t rk = cache.k_row_bytes(il), rv = cache.v_row_bytes(il);  // K and V types may differ
  std::vector<uint8_t>& kb = s_.tree_k[ith];
  std::vector<uint8_t>& vb = s_.tree_v[ith];
  const size_t n = static_cast<size_t>(vend - g0);
  if (kb.size() < n * rk) kb.resize(n * rk);
  if (vb.size() < n * rv) vb.resize(n * rv);
  for (int v = g0; v < vend; ++v) {
    const int real = v < root ? v : cells[path[v - root]];
    std::memcpy(kb.data() + (v - g0) * rk, cache.k_row(il, seq, real), rk);
    std::memcpy(vb.data() + (v - g0) * rv, cache.v_row(il, seq, real), rv);
  }
  for (int v = g0; v < vend;) {
    const int cnt = std::min(vend - v, bs - v % bs);
    out.push_back({kb.data() + (v - g0) * rk, vb.data() + (v - g0) * rv, cnt});
    v += cnt;
  }
}

}  // namespace coppice
