// Attention inner kernels over one cached K/V row segment of n elements in the KV type
// (F32, F16 or BF16): the score dot and the value accumulation. ops/attention.cpp builds the
// blocked online softmax on top; the scalar versions here are the twins of the SIMD ones.
#pragma once
#include <cstdint>

#include "kernels/types.h"

namespace coppice::kernels {

using KvDotFn = float (*)(const float* q, const void* k, int64_t n, DType t);    // sum q[i] k[i]
using KvAxpyFn = void (*)(float* y, float a, const void* v, int64_t n, DType t);  // y += a v

struct AttnKernels {
  KvDotFn dot = nullptr;
  KvAxpyFn axpy = nullptr;
};

namespace attn_ref {
float dot(const float* q, const void* k, int64_t n, DType t);
void axpy(float* y, float a, const void* v, int64_t n, DType t);
}  // namespace attn_ref

}  // namespace coppice::kernels
