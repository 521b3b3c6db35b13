#include "ops/ops.h"

#include <cmath>

#include "util/error.h"

namespace coppice::ops {

void rmsnorm(const float* x, const float* w, float* out, int64_t n, float eps) {
  double ss = 0;
  for (int64_t i = 0; i < n; ++i) ss += static_cast<double>(x[i]) * x[i];
  const float scale = 1.0f / std::sqrt(static_cast<float>(ss / static_cast<double>(n)) + eps);
  for (int64_t i = 0; i < n; ++i) out[i] = x[i] * scale * w[i];
}

void rope(float* x, int n_head, int head_dim, int rope_dim, float pos, float freq_base,
          float freq_scale, bool neox) {
  const float p = pos * freq_scale;
  for (int i = 0; i < rope_dim / 2; ++i) {
    const float theta = p * std::pow(freq_base, -2.0f * static_cast<float>(i) / static_cast<float>(rope_dim));
    const float c = std::cos(theta), s = std::sin(theta);
    const int a = neox ? i : 2 * i;
    const int b = neox ? i + rope_dim / 2 : 2 * i + 1;
    for (int h = 0; h < n_head; ++h) {
      float* xh = x + static_cast<int64_t>(h) * head_dim;
      const float x0 = xh[a], x1 = xh[b];
      xh[a] = x0 * c - x1 * s;
      xh[b] = x0 * s + x1 * c;
    }
  }
}

void rope(float* x, int n_head, int head_dim, float pos, const RopeParams& rp) {
  const int half = rp.rope_dim / 2;
  for (int i = 0; i < half; ++i) {
    float theta = pos * rp.freq_scale *
                  std::pow(rp.freq_base, -2.0f * static_cast<float>(i) / static_cast<float>(rp.rope_dim));
    if (rp.freq_factors) theta /= rp.freq_factors[i];
    const float c = std::cos(theta) * rp.mscale, s = std::sin(theta) * rp.mscale;
    const int a = rp.neox ? i : 2 * i;
    const int b = rp.neox ? i + half : 2 * i + 1;
    for (int h = 0; h < n_head; ++h) {
      float* xh = x + static_cast<int64_t>(h) * head_dim;
      const float x0 = xh[a], x1 = xh[b];
      xh[a] = x0 * c - x1 * s;
      xh[b] = x0 * s + x1 * c;
    }
  }
}

void geglu(float* gate, const float* up, int64_t n) {
  constexpr float kSqrt2OverPi = 0.7978845608028654f;
  for (int64_t i = 0; i < n; ++i) {
    const float g = gate[i];
    gate[i] = 0.5f * g * (1.0f + std::tanh(kSqrt2OverPi * (g + 0.044715f * g * g * g))) * up[i];
  }
}

void softcap(float* x, int64_t n, float cap) {
  const float inv = 1.0f / cap;
  for (int64_t i = 0; i < n; ++i) x[i] = cap * std::tanh(x[i] * inv);
}

void axpy(float* y, float a, const float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += a * x[i];
}

void swiglu(float* gate, const float* up, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float g = gate[i];
    gate[i] = g / (1.0f + std::exp(-g)) * up[i];
  }
}

void add(float* y, const float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += x[i];
}

void get_row(const WeightView& w, int64_t r, float* out) {
  CP_ASSERT(r >= 0 && r < w.n_out);
  type_traits(w.type)->to_float(w.row(r), out, w.n_in);
}

void softmax(float* x, int64_t n) {
  float mx = -INFINITY;
  for (int64_t i = 0; i < n; ++i) mx = std::max(mx, x[i]);
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) { x[i] = std::exp(x[i] - mx); sum += x[i]; }
  const float inv = static_cast<float>(1.0 / sum);
  for (int64_t i = 0; i < n; ++i) x[i] *= inv;
}

}  // namespace coppice::ops
