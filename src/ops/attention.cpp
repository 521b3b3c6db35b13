#include "ops/attention.h"

#include <cmath>
#include <cstring>

#include "util/error.h"
#include "util/fp16.h"

namespace coppice::ops {
namespace {

inline float load(const void* base, int64_t i, DType t) {
  switch (t) {
    case DType::F16: return fp16_to_fp32(static_cast<const uint16_t*>(base)[i]);
    case DType::BF16: return bf16_to_fp32(static_cast<const uint16_t*>(base)[i]);
    default: return static_cast<const float*>(base)[i];
  }
}

size_t elem_size(DType t) { return t == DType::F32 ? 4 : 2; }

}  // namespace

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
    default: CP_ASSERT(false && "unsupported KV type");
  }
}

void attention(const float* q, std::span<const KvChunk> chunks, const AttentionShape& s,
               const uint8_t* mask, float* out, float* scratch, int h0, int h1) {
  const int hd = s.head_dim;
  const int group = s.n_head / s.n_kv_head;
  const int64_t row = static_cast<int64_t>(s.n_kv_head) * hd;
  const size_t es = elem_size(s.kv_type);
  // Online softmax state per query head: running max m, running sum l, accumulator in out.
  float* m = scratch;
  float* l = scratch + s.n_head;
  for (int h = h0; h < h1; ++h) { m[h] = -INFINITY; l[h] = 0.0f; }
  std::memset(out + static_cast<int64_t>(h0) * hd, 0, sizeof(float) * (h1 - h0) * hd);
  int64_t key = 0;
  for (const KvChunk& c : chunks) {
    for (int j = 0; j < c.n; ++j, ++key) {
      if (mask && !mask[key]) continue;
      const void* krow = static_cast<const uint8_t*>(c.k) + j * row * es;
      const void* vrow = static_cast<const uint8_t*>(c.v) + j * row * es;
      for (int h = h0; h < h1; ++h) {
        const int kvh = h / group;
        const float* qh = q + static_cast<int64_t>(h) * hd;
        float dot = 0;
        for (int d = 0; d < hd; ++d) dot += qh[d] * load(krow, kvh * hd + d, s.kv_type);
        float score = dot * s.scale;
        if (s.softcap > 0) score = s.softcap * std::tanh(score / s.softcap);
        float* oh = out + static_cast<int64_t>(h) * hd;
        if (score > m[h]) {
          const float corr = std::exp(m[h] - score);  // exp(-inf) = 0 on the first key
          l[h] *= corr;
          for (int d = 0; d < hd; ++d) oh[d] *= corr;
          m[h] = score;
        }
        const float p = std::exp(score - m[h]);
        l[h] += p;
        for (int d = 0; d < hd; ++d) oh[d] += p * load(vrow, kvh * hd + d, s.kv_type);
      }
    }
  }
  for (int h = h0; h < h1; ++h) {
    float* oh = out + static_cast<int64_t>(h) * hd;
    const float inv = l[h] > 0 ? 1.0f / l[h] : 0.0f;
    for (int d = 0; d < hd; ++d) oh[d] *= inv;
  }
}

}  // namespace coppice::ops
