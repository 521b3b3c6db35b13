#include "kernels/attn.h"

#include "util/fp16.h"

namespace coppice::kernels::attn_ref {
namespace {
inline float load(const void* base, int64_t i, DType t) {
  switch (t) {
    case DType::F16: return fp16_to_fp32(static_cast<const uint16_t*>(base)[i]);
    case DType::BF16: return bf16_to_fp32(static_cast<const uint16_t*>(base)[i]);
    default: return static_cast<const float*>(base)[i];
  }
}
}  // namespace

float dot(const float* q, const void* k, int64_t n, DType t) {
  float s = 0.0f;
  for (int64_t i = 0; i < n; ++i) s += q[i] * load(k, i, t);
  return s;
}

void axpy(float* y, float a, const void* v, int64_t n, DType t) {
  for (int64_t i = 0; i < n; ++i) y[i] += a * load(v, i, t);
}

}  // namespace coppice::kernels::attn_ref
