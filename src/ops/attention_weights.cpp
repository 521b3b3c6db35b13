// Exact softmax attention weights of one query head, for KV eviction policies (H2O, SnapKV)
// that rank cached cells by the attention they receive. Two passes: scores, then softmax.
#include <algorithm>
#include <cmath>

#include "ops/attention.h"
#include "ops/kv_read.h"

namespace coppice::ops {

void attention_weights(const float* q, std::span<const KvChunk> chunks, const AttentionShape& s,
                       int h, float* p) {
  KvReader rd(s);
  const int kvh = h / (s.n_head / s.n_kv_head);
  KvReader::Head hs;
  rd.set_query(hs, q + static_cast<int64_t>(h) * s.head_dim, kvh);
  float m = -INFINITY;
  int64_t key = 0;
  for (const KvChunk& c : chunks) {
    rd.score_rows(hs, static_cast<const uint8_t*>(c.k) + hs.k_off, c.n, p + key);
    for (int j = 0; j < c.n; ++j) {
      float sc = p[key + j] * s.scale;
      if (s.softcap > 0) sc = s.softcap * std::tanh(sc / s.softcap);
      p[key + j] = sc;
      m = std::max(m, sc);
    }
    key += c.n;
  }
  double l = 0;
  for (int64_t j = 0; j < key; ++j) {
    p[j] = std::exp(p[j] - m);
    l += p[j];
  }
  const float inv = l > 0 ? static_cast<float>(1.0 / l) : 0.0f;
  for (int64_t j = 0; j < key; ++j) p[j] *= inv;
}

}  // namespace coppice::ops
