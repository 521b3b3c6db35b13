#include "kernels/attn.h"

#include <cmath>

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

void score_rows(const float* q, const void* k, size_t stride, int n, int hd, DType t, float* scores) {
  const auto* kb = static_cast<const uint8_t*>(k);
  for (int j = 0; j < n; ++j) scores[j] = dot(q, kb + j * stride, hd, t);
}

void accum_rows(float* y, const float* p, const void* v, size_t stride, int n, int hd, DType t) {
  const auto* vb = static_cast<const uint8_t*>(v);
  for (int j = 0; j < n; ++j) {
    if (p[j] != 0.0f) axpy(y, p[j], vb + j * stride, hd, t);
  }
}

float scale_max(float* s, int n, float scale, const uint8_t* mask) {
  float m = -INFINITY;
  for (int j = 0; j < n; ++j) {
    s[j] = mask == nullptr || mask[j] ? s[j] * scale : -INFINITY;
    m = s[j] > m ? s[j] : m;
  }
  return m;
}

float exp_sum(float* s, int n, float m) {
  float sum = 0.0f;
  for (int j = 0; j < n; ++j) {
    s[j] = s[j] == -INFINITY ? 0.0f : std::exp(s[j] - m);
    sum += s[j];
  }
  return sum;
}

}  // namespace coppice::kernels::attn_ref
