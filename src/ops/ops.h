// Elementwise and normalization ops on float activations. Shapes in comments; all in-place
// where the name says so. These are the simple-op fallbacks that fused kernels are tested against.
#pragma once
#include <cstdint>
#include <vector>

#include "ops/tensor.h"
#include "util/threadpool.h"

namespace coppice::ops {

// out[i] = x[i] / sqrt(mean(x^2) + eps) * w[i]; x, w, out: [n]
void rmsnorm(const float* x, const float* w, float* out, int64_t n, float eps);

// Rotary embedding of one token's heads in place. x: [n_head][head_dim]; rotates the first
// rope_dim dims of each head. neox=false pairs (2i, 2i+1) (GGUF llama layout), true pairs
// (i, i + rope_dim/2). theta_i = pos * freq_scale * base^(-2i/rope_dim) (RoFormer).
void rope(float* x, int n_head, int head_dim, int rope_dim, float pos, float freq_base,
          float freq_scale, bool neox);

// The general form: theta_i = pos * freq_scale * base^(-2i/rope_dim) / freq_factors[i]
// (llama3 / LongRoPE per-frequency factors, optional), cos and sin multiplied by mscale
// (LongRoPE attention factor), as ggml_rope_ext does with ext_factor 0.
struct RopeParams {
  int rope_dim = 0;
  float freq_base = 10000.0f;
  float freq_scale = 1.0f;
  const float* freq_factors = nullptr;  // [rope_dim / 2] or null
  float mscale = 1.0f;
  bool neox = false;
};
void rope(float* x, int n_head, int head_dim, float pos, const RopeParams& p);

// gate[i] = silu(gate[i]) * up[i]; [n]
void swiglu(float* gate, const float* up, int64_t n);

// gate[i] = gelu(gate[i]) * up[i] with the tanh approximation (GeGLU, Gemma); [n]
void geglu(float* gate, const float* up, int64_t n);

// x[i] = cap * tanh(x[i] / cap) (Gemma 2 logit soft-capping); [n]
void softcap(float* x, int64_t n, float cap);

// y[i] += a * x[i]; [n]
void axpy(float* y, float a, const float* x, int64_t n);

// y[i] += x[i]; [n]
void add(float* y, const float* x, int64_t n);

// Row r of w dequantized to out: [w.n_in]
void get_row(const WeightView& w, int64_t r, float* out);

// y: [n_tok][w.n_out] = x: [n_tok][w.n_in] times w^T. Activations are converted once per call
// to the weight type's dot format (scratch is reused across calls: no per-token allocation).
void matmul(const WeightView& w, const float* x, int n_tok, float* y, ThreadPool& pool,
            std::vector<uint8_t>& scratch);

// Numerically safe softmax in place; [n]
void softmax(float* x, int64_t n);

}  // namespace coppice::ops
