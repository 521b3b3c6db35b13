#include "ops/attention.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "kernels/dispatch.h"
#include "ops/kv_read.h"
#include "util/error.h"
#include "util/fp16.h"

namespace coppice::ops {
void store_kv_row(const float* src, void* dst, int64_t n, DType kv_type) {
  switch (kv_type) {
    case DType::F16: {
      auto* d = static_cast<uint16_t*>(dst);
      for (int64_t i = 0; i < n; ++i) d[i] = fp32_to_fp16(src[i]);
      break;
    }
    case DType::BF16: {
      auto* d = static_cast<uint16_t*>(dst);
      for (int64_t i = 0; i < n; ++i) d[i] = fp32_to_bf16(src[i]);
      break;
    }
    case DType::F32: std::memcpy(dst, src, n * sizeof(float)); break;
    default: {
      const TypeTraits* tt = type_traits(kv_type);
      CP_ASSERT(tt != nullptr && tt->quantized && n % tt->block_size == 0);
      tt->from_float(src, dst, n);
    }
  }
}

// Blocked online softmax (flash-attention style): keys are scored a block at a time, the running
// max and sum of each query head are rescaled once per block, then the block's values are
// accumulated. Blocks are the outer loop and the heads [h0, h1) the inner one, so a block's
// cells are read from memory once for all the query heads that share their kv head (GQA).
// The row kernels and the softmax passes are the start-up ISA's (kernels/attn.h; rows via
// ops/kv_read.h).
void attention(const float* q, std::span<const KvChunk> chunks, const AttentionShape& s,
               const uint8_t* mask, float* out, float* scratch, int h0, int h1) {
  constexpr int kBlock = 32;  // keys per softmax update
  KvReader rd(s);
  const kernels::AttnKernels& ak = kernels::kernels().attn;
  const int hd = s.head_dim;
  const int group = s.n_head / s.n_kv_head;
  const size_t kr = rd.k_row_bytes(), vr = rd.v_row_bytes();
  thread_local std::vector<KvReader::Head> heads;  // per query head of [h0, h1)
  if (heads.size() < static_cast<size_t>(h1 - h0)) heads.resize(static_cast<size_t>(h1 - h0));
  float* mx = scratch;             // running max per head
  float* sum = scratch + s.n_head;  // running sum of exp per head
  for (int h = h0; h < h1; ++h) {
    rd.set_query(heads[h - h0], q + static_cast<int64_t>(h) * hd, h / group);
    std::memset(out + static_cast<int64_t>(h) * hd, 0, sizeof(float) * hd);
    mx[h] = -INFINITY;
    sum[h] = 0.0f;
  }
  float score[kBlock];
  int64_t key = 0;
  for (const KvChunk& c : chunks) {
    const auto* kc = static_cast<const uint8_t*>(c.k);
    const auto* vc = static_cast<const uint8_t*>(c.v);
    for (int j0 = 0; j0 < c.n; j0 += kBlock) {
      const int nb = std::min(kBlock, c.n - j0);
      for (int h = h0; h < h1; ++h) {
        const KvReader::Head& hs = heads[h - h0];
        float* oh = out + static_cast<int64_t>(h) * hd;
        rd.score_rows(hs, kc + hs.k_off + j0 * kr, nb, score);
        const uint8_t* bmask = mask == nullptr ? nullptr : mask + key + j0;
        float bmax = -INFINITY;
        if (s.softcap > 0) {
          for (int j = 0; j < nb; ++j) {
            float sc = -INFINITY;
            if (bmask == nullptr || bmask[j]) sc = s.softcap * std::tanh(score[j] * s.scale / s.softcap);
            score[j] = sc;
            bmax = std::max(bmax, sc);
          }
        } else {
          bmax = ak.scale_max(score, nb, s.scale, bmask);
        }
        if (bmax == -INFINITY) continue;  // every key of the block is masked
        if (bmax > mx[h]) {
          const float corr = std::exp(mx[h] - bmax);  // exp(-inf) = 0 on the first block
          sum[h] *= corr;
          for (int d = 0; d < hd; ++d) oh[d] *= corr;
          mx[h] = bmax;
        }
        sum[h] += ak.exp_sum(score, nb, mx[h]);  // p: 0 for masked keys (skipped when accumulating)
        rd.accumulate_rows(hs, oh, score, vc + hs.v_off + j0 * vr, nb);
      }
    }
    key += c.n;
  }
  for (int h = h0; h < h1; ++h) {
    const float inv = sum[h] > 0 ? 1.0f / sum[h] : 0.0f;
    float* oh = out + static_cast<int64_t>(h) * hd;
    for (int d = 0; d < hd; ++d) oh[d] *= inv;
  }
}

}  // namespace coppice::ops
