// Scaled dot-product attention for one query token over keys/values held in paged chunks,
// with an online softmax (one pass over the keys, flash-attention style).
#pragma once
#include <cstdint>
#include <optional>
#include <span>

#include "kernels/types.h"

namespace coppice::ops {

// n consecutive cached rows; each row is [n_kv_head][head_dim] in kv_type.
struct KvChunk {
  const void* k = nullptr;
  const void* v = nullptr;
  int n = 0;
};

struct AttentionShape {
  int n_head = 0;      // query heads
  int n_kv_head = 0;   // key/value heads (GQA: n_head % n_kv_head == 0)
  int head_dim = 0;
  DType kv_type = DType::F16;  // K type (and V's unless v_type): F32, F16, BF16, Q8_0, Q4_0,
                               // Q4_1, Q5_0, Q5_1 (quantized: head_dim % 32 == 0)
  float scale = 1.0f;          // usually 1/sqrt(head_dim)
  float softcap = 0.0f;        // > 0: score = softcap * tanh(score / softcap) (Gemma 2)
  std::optional<DType> v_type = std::nullopt;  // V type when it differs from kv_type
};

// q: [n_head][head_dim]; out: [n_head][head_dim]. Keys in chunk order; `visible(i)` is not
// used here: callers pass exactly the visible keys (a causal prefix or a tree's ancestors)
// as chunks, and `mask` (optional, one bool per key in order) hides individual keys.
// scratch: at least 2 * n_head floats.
// Only query heads [h0, h1) are computed (lets callers split heads across threads).
void attention(const float* q, std::span<const KvChunk> chunks, const AttentionShape& s,
               const uint8_t* mask, float* out, float* scratch, int h0, int h1);

// Softmax attention weights of query head h over the chunks' keys (same scores as
// attention()), written to p[0, n_keys). For KV eviction policies (ops/attention_weights.cpp).
void attention_weights(const float* q, std::span<const KvChunk> chunks, const AttentionShape& s,
                       int h, float* p);

// Converts one row of n floats into the KV storage type (quantized: n % 32 == 0).
void store_kv_row(const float* src, void* dst, int64_t n, DType kv_type);

}  // namespace coppice::ops
