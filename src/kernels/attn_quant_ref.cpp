// Scalar twins of the fused quantized-KV attention kernels (kernels/attn.h): each block is
// decoded to integer codes c with value = d * c + m; the score takes the exact integer dot
// of c with the query codes per block, the accumulation adds p * value per element.
#include <cstring>
#include <type_traits>

#include "kernels/attn.h"
#include "kernels/blocks.h"
#include "util/error.h"
#include "util/fp16.h"

namespace coppice::kernels {

void kv_query_prepare(const float* q, int head_dim, KvQuery& out) {
  CP_ASSERT(head_dim % 32 == 0 && head_dim / 32 <= KvQuery::kMaxBlocks);
  out.nb = head_dim / 32;
  const FromFloatFn quant = type_traits(DType::Q8_0)->from_float;
  for (int b = 0; b < out.nb; ++b) {
    BlockQ8_0 blk;
    quant(q + 32 * b, &blk, 32);
    std::memcpy(out.q + 32 * b, blk.qs, 32);
    out.d[b] = fp16_to_fp32(blk.d);
    int32_t s = 0;
    for (int8_t c : blk.qs) s += c;
    out.sum[b] = s;
    out.s[b] = out.d[b] * static_cast<float>(s);
  }
}

namespace attn_ref {
namespace {

struct Codes {
  int c[32];
  float d = 0.0f, m = 0.0f;
};

template <DType T>
Codes decode(const uint8_t* p) {
  Codes r;
  if constexpr (T == DType::Q8_0) {
    const auto* b = reinterpret_cast<const BlockQ8_0*>(p);
    for (int j = 0; j < 32; ++j) r.c[j] = b->qs[j];
    r.d = fp16_to_fp32(b->d);
  } else if constexpr (T == DType::Q4_0 || T == DType::Q4_1) {
    using B = std::conditional_t<T == DType::Q4_0, BlockQ4_0, BlockQ4_1>;
    const auto* b = reinterpret_cast<const B*>(p);
    const int off = T == DType::Q4_0 ? 8 : 0;
    for (int j = 0; j < 16; ++j) {
      r.c[j] = (b->qs[j] & 15) - off;
      r.c[j + 16] = (b->qs[j] >> 4) - off;
    }
    r.d = fp16_to_fp32(b->d);
    if constexpr (T == DType::Q4_1) r.m = fp16_to_fp32(b->m);
  } else {
    using B = std::conditional_t<T == DType::Q5_0, BlockQ5_0, BlockQ5_1>;
    const auto* b = reinterpret_cast<const B*>(p);
    const int off = T == DType::Q5_0 ? 16 : 0;
    uint32_t qh;
    std::memcpy(&qh, b->qh, 4);
    for (int j = 0; j < 16; ++j) {
      r.c[j] = ((b->qs[j] & 15) | static_cast<int>((qh >> j) & 1) << 4) - off;
      r.c[j + 16] = ((b->qs[j] >> 4) | static_cast<int>((qh >> (j + 16)) & 1) << 4) - off;
    }
    r.d = fp16_to_fp32(b->d);
    if constexpr (T == DType::Q5_1) r.m = fp16_to_fp32(b->m);
  }
  return r;
}

template <DType T>
void score_rows(const KvQuery& q, const void* k, size_t stride, int n, float* scores) {
  const size_t bs = type_traits(T)->type_size;
  for (int j = 0; j < n; ++j) {
    const auto* row = static_cast<const uint8_t*>(k) + j * stride;
    float s = 0.0f;
    for (int b = 0; b < q.nb; ++b) {
      const Codes c = decode<T>(row + b * bs);
      int32_t isum = 0;
      for (int i = 0; i < 32; ++i) isum += c.c[i] * q.q[32 * b + i];
      s += c.d * q.d[b] * static_cast<float>(isum) + c.m * q.s[b];
    }
    scores[j] = s;
  }
}

template <DType T>
void accum_rows(float* y, const float* p, const void* v, size_t stride, int n, int nb) {
  const size_t bs = type_traits(T)->type_size;
  for (int j = 0; j < n; ++j) {
    if (p[j] == 0.0f) continue;
    const auto* row = static_cast<const uint8_t*>(v) + j * stride;
    for (int b = 0; b < nb; ++b) {
      const Codes c = decode<T>(row + b * bs);
      for (int i = 0; i < 32; ++i) y[32 * b + i] += p[j] * (c.d * static_cast<float>(c.c[i]) + c.m);
    }
  }
}

}  // namespace

void fill_quant(AttnKernels& a) {
  a.quant[kv_quant_index(DType::Q8_0)] = {score_rows<DType::Q8_0>, accum_rows<DType::Q8_0>};
  a.quant[kv_quant_index(DType::Q4_0)] = {score_rows<DType::Q4_0>, accum_rows<DType::Q4_0>};
  a.quant[kv_quant_index(DType::Q4_1)] = {score_rows<DType::Q4_1>, accum_rows<DType::Q4_1>};
  a.quant[kv_quant_index(DType::Q5_0)] = {score_rows<DType::Q5_0>, accum_rows<DType::Q5_0>};
  a.quant[kv_quant_index(DType::Q5_1)] = {score_rows<DType::Q5_1>, accum_rows<DType::Q5_1>};
}

}  // namespace attn_ref
}  // namespace coppice::kernels
