// Scaled dot-product attention for one query token over keys/values held in paged chunks,
// with an online softmax (one pass over the keys, flash-attention style).
#pragma once
#include <cstdint>
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
  DType kv_type = DType::F16;  // F32, F16 or BF16
  float scale = 1.0f;          // usually 1/sqrt(head_dim)
  float softcap = 0.0f;        // > 0: score = softcap * tanh(score / softcap) (Gemma 2)
};

// q: [n_head][head_dim]; out: [n_head][head_dim]. Keys in chunk order; `visible(i)` is not
// used here: callers pass exactly the visible keys (a causal prefix or a tree's ancestors)
// as chunks, and `mask` (optional, one bool per key in order) hides individual keys.
// scratch: at least 2 * n_head floats.
// Only query heads [h0, h1) are computed (lets callers split heads across threads).
void attention(const float* q, std::span<const KvChunk> chunks, const AttentionShape& s,
               const uint8_t* mask, float* out, float* scratch, int h0, int h1);

// Converts one row of n floats into the KV storage type.
void store_kv_row(const float* src, void* dst, int64_t n, DType kv_type);

}  // namespace coppice::ops
