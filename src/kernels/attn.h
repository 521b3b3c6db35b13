// Attention inner kernels over cached K/V rows: the score dot and the value accumulation.
// F32 / F16 / BF16 rows: one row segment of n elements per call (dot, axpy). Quantized rows
// (q8_0, q4_0, q4_1, q5_0, q5_1): a block of n cached rows per call, read block by block in
// registers with no dequantized copy (score_rows, accum_rows). ops/attention.cpp builds the
// blocked online softmax on top; the scalar versions here are the twins of the SIMD ones.
#pragma once
#include <cstddef>
#include <cstdint>

#include "kernels/types.h"

namespace coppice::kernels {

using KvDotFn = float (*)(const float* q, const void* k, int64_t n, DType t);    // sum q[i] k[i]
using KvAxpyFn = void (*)(float* y, float a, const void* v, int64_t n, DType t);  // y += a v

// A query head quantized once per head for the quantized-K scores: per 32-block b, int8 codes
// q[32b .. 32b+31] with scale d[b] (exactly ggml's q8_0 rounding, fp16 scale), sum[b] = sum of
// the codes and s[b] = d[b] * sum[b] (what a block's offset or min multiplies).
struct KvQuery {
  static constexpr int kMaxBlocks = 32;  // head_dim <= 1024
  int nb = 0;                            // head_dim / 32
  float d[kMaxBlocks] = {};
  float s[kMaxBlocks] = {};
  int32_t sum[kMaxBlocks] = {};
  alignas(64) int8_t q[kMaxBlocks * 32] = {};
};
// q: head_dim floats (head_dim % 32 == 0, <= 1024).
void kv_query_prepare(const float* q, int head_dim, KvQuery& out);

// scores[j] = q . dequant(row j) over q.nb blocks, j < n; rows `stride` bytes apart.
using KvScoreRowsFn = void (*)(const KvQuery& q, const void* k, size_t stride, int n, float* scores);
// y[0, 32 nb) += sum over j < n with p[j] != 0 of p[j] * dequant(row j); rows `stride` apart.
using KvAccumRowsFn = void (*)(float* y, const float* p, const void* v, size_t stride, int n, int nb);

struct KvQuantKernels {
  KvScoreRowsFn score_rows = nullptr;
  KvAccumRowsFn accum_rows = nullptr;
};

// F32 / F16 / BF16 rows a block at a time (the float twin of the fused quantized kernels):
// one call scores or accumulates n cached rows of one head, hd elements each (hd % 8 == 0),
// rows `stride` bytes apart. Narrow heads (hd 8, 16) are the case it exists for: a per-row
// call costs more than the row's arithmetic there.
// scores[j] = q . row j, j < n. Each row's sum is reduced in the same order wherever it sits
// in the block, so a row's score does not depend on how the rows were grouped.
using KvFloatScoreFn = void (*)(const float* q, const void* k, size_t stride, int n, int hd, DType t,
                                float* scores);
// y[0, hd) += sum over j < n (in order) with p[j] != 0 of p[j] * row j.
using KvFloatAccumFn = void (*)(float* y, const float* p, const void* v, size_t stride, int n, int hd,
                                DType t);
// The online softmax's element-wise passes over one block of scores (ops::attention):
// scale_max: s[j] = s[j] * scale, or -inf where mask[j] == 0 (mask may be null), j < n;
//   returns their max (-inf when every key is masked).
// exp_sum: s[j] = exp(s[j] - m) for s[j] <= m (0 for -inf), j < n; returns their sum.
using ScaleMaxFn = float (*)(float* s, int n, float scale, const uint8_t* mask);
using ExpSumFn = float (*)(float* s, int n, float m);

struct KvFloatKernels {
  KvFloatScoreFn score_rows = nullptr;
  KvFloatAccumFn accum_rows = nullptr;
};

// Index of a quantized KV type in AttnKernels::quant (Q8_0, Q4_0, Q4_1, Q5_0, Q5_1), or -1.
constexpr int kNumKvQuant = 5;
constexpr int kv_quant_index(DType t) {
  switch (t) {
    case DType::Q8_0: return 0;
    case DType::Q4_0: return 1;
    case DType::Q4_1: return 2;
    case DType::Q5_0: return 3;
    case DType::Q5_1: return 4;
    default: return -1;
  }
}
constexpr DType kKvQuantTypes[kNumKvQuant] = {DType::Q8_0, DType::Q4_0, DType::Q4_1, DType::Q5_0,
                                              DType::Q5_1};

struct AttnKernels {
  KvDotFn dot = nullptr;
  KvAxpyFn axpy = nullptr;
  KvQuantKernels quant[kNumKvQuant];  // by kv_quant_index
  KvFloatKernels rows;                // F32 / F16 / BF16 blocks of rows (head_dim % 8 == 0)
  ScaleMaxFn scale_max = nullptr;
  ExpSumFn exp_sum = nullptr;
  // The fused kernels for a quantized KV type, or nullptr.
  const KvQuantKernels* for_quant(DType t) const {
    const int i = kv_quant_index(t);
    return i < 0 ? nullptr : &quant[i];
  }
};

namespace attn_ref {
float dot(const float* q, const void* k, int64_t n, DType t);
void axpy(float* y, float a, const void* v, int64_t n, DType t);
void score_rows(const float* q, const void* k, size_t stride, int n, int hd, DType t, float* scores);
void accum_rows(float* y, const float* p, const void* v, size_t stride, int n, int hd, DType t);
float scale_max(float* s, int n, float scale, const uint8_t* mask);
float exp_sum(float* s, int n, float m);  // std::exp
// The scalar twins of the fused quantized-KV kernels, by kv_quant_index.
void fill_quant(AttnKernels& a);
}  // namespace attn_ref

}  // namespace coppice::kernels
