// NEON (AArch64 Advanced SIMD, baseline ARMv8-A: no dotprod / fp16-arithmetic extensions needed)
// vec_dot for F32, F16, BF16, Q4_0 and Q8_0, and a gemm that calls the same vec_dot for every
// (row, token) so decode and prefill agree bit for bit. Other types keep the scalar kernels.
// Built only for aarch64 (CMakeLists.txt); tested under qemu-aarch64 (scripts/test_neon.sh).
//
// The quantized dots sum each block's integer products exactly (int8 x int8 -> int16 pairs ->
// int32) and then do the scalar twin's float operations in the same order, so they equal the
// twins exactly. The float dots keep 4 x 4 lanes of FMA partial sums.
#include <arm_neon.h>

#include <cstring>

#include "kernels/blocks.h"
#include "kernels/dispatch_impl.h"
#include "util/fp16.h"

namespace coppice::kernels::neon {
namespace {

// 16 lanes of f32 partial sums over x[i] * y[i] for n % 4 == 0; `load` widens 4 elements.
template <class Load>
float dot_float(int64_t n, const void* x, const void* y, Load load) {
  float32x4_t acc[4] = {vdupq_n_f32(0), vdupq_n_f32(0), vdupq_n_f32(0), vdupq_n_f32(0)};
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    for (int k = 0; k < 4; ++k) acc[k] = vfmaq_f32(acc[k], load(x, i + 4 * k), load(y, i + 4 * k));
  }
  for (; i + 4 <= n; i += 4) acc[0] = vfmaq_f32(acc[0], load(x, i), load(y, i));
  return vaddvq_f32(vaddq_f32(vaddq_f32(acc[0], acc[1]), vaddq_f32(acc[2], acc[3])));
}

inline float32x4_t load_f32(const void* p, int64_t i) {
  const float* f = static_cast<const float*>(p) + i;
  return vld1q_f32(f);
}
inline float32x4_t load_f16(const void* p, int64_t i) {
  const uint16_t* h = static_cast<const uint16_t*>(p) + i;
  return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(h)));
}
inline float32x4_t load_bf16(const void* p, int64_t i) {
  const uint16_t* h = static_cast<const uint16_t*>(p) + i;
  return vreinterpretq_f32_u32(vshll_n_u16(vld1_u16(h), 16));
}

// One element widened into lane 0 (the tails read no byte past the row).
template <class T>
inline T element(const void* p, int64_t i) {
  T v;
  std::memcpy(&v, static_cast<const uint8_t*>(p) + i * static_cast<int64_t>(sizeof(T)), sizeof(T));
  return v;
}
inline float32x4_t one_f32(const void* p, int64_t i) { return vdupq_n_f32(element<float>(p, i)); }
inline float32x4_t one_f16(const void* p, int64_t i) { return vdupq_n_f32(fp16_to_fp32(element<uint16_t>(p, i))); }
inline float32x4_t one_bf16(const void* p, int64_t i) { return vdupq_n_f32(bf16_to_fp32(element<uint16_t>(p, i))); }

// The body loads 4 at a time only below n - 3; the tail asks for single elements.
template <float32x4_t (*Load4)(const void*, int64_t), float32x4_t (*Load1)(const void*, int64_t)>
void vec_dot_float(int64_t n, float* s, const void* x, const void* y) {
  const int64_t body = n / 4 * 4;
  float r = dot_float(body, x, y, Load4);
  float t = 0.0f;
  for (int64_t j = body; j < n; ++j) t += vgetq_lane_f32(Load1(x, j), 0) * vgetq_lane_f32(Load1(y, j), 0);
  *s = r + t;
}

// Exact integer dot of 32 int8 pairs.
inline int32_t dot32_s8(int8x16_t a0, int8x16_t a1, const int8_t* b) {
  const int8x16_t b0 = vld1q_s8(b), b1 = vld1q_s8(b + 16);
  int32x4_t acc = vdupq_n_s32(0);
  acc = vpadalq_s16(acc, vmull_s8(vget_low_s8(a0), vget_low_s8(b0)));
  acc = vpadalq_s16(acc, vmull_high_s8(a0, b0));
  acc = vpadalq_s16(acc, vmull_s8(vget_low_s8(a1), vget_low_s8(b1)));
  acc = vpadalq_s16(acc, vmull_high_s8(a1, b1));
  return vaddvq_s32(acc);
}

void vec_dot_q8_0(int64_t n, float* s, const void* x, const void* y) {
  const auto* a = static_cast<const BlockQ8_0*>(x);
  const auto* b = static_cast<const BlockQ8_0*>(y);
  float sum = 0.0f;
  for (int64_t i = 0; i < n / QK8_0; ++i) {
    const int32_t sumi = dot32_s8(vld1q_s8(a[i].qs), vld1q_s8(a[i].qs + 16), b[i].qs);
    sum += static_cast<float>(sumi) * (fp16_to_fp32(a[i].d) * fp16_to_fp32(b[i].d));
  }
  *s = sum;
}

void vec_dot_q4_0(int64_t n, float* s, const void* x, const void* y) {
  const auto* a = static_cast<const BlockQ4_0*>(x);
  const auto* b = static_cast<const BlockQ8_0*>(y);
  const uint8x16_t low = vdupq_n_u8(0x0F);
  const int8x16_t eight = vdupq_n_s8(8);
  float sum = 0.0f;
  for (int64_t i = 0; i < n / QK4_0; ++i) {
    const uint8x16_t q = vld1q_u8(a[i].qs);  // codes 0..15 low nibbles, 16..31 high nibbles
    const int8x16_t c0 = vsubq_s8(vreinterpretq_s8_u8(vandq_u8(q, low)), eight);
    const int8x16_t c1 = vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8(q, 4)), eight);
    const int32_t sumi = dot32_s8(c0, c1, b[i].qs);
    sum += static_cast<float>(sumi) * (fp16_to_fp32(a[i].d) * fp16_to_fp32(b[i].d));
  }
  *s = sum;
}

// gemm as vec_dot per (row, token): identical bits to decoding.
template <VecDotFn Dot>
void gemm_dot(int64_t n, int nr, int nc, const void* w, size_t ws, const void* a, size_t as, float* y,
              size_t ys) {
  const auto* wb = static_cast<const uint8_t*>(w);
  const auto* ab = static_cast<const uint8_t*>(a);
  for (int r = 0; r < nr; ++r)
    for (int c = 0; c < nc; ++c) Dot(n, y + static_cast<size_t>(c) * ys + r, wb + r * ws, ab + c * as);
}

template <VecDotFn Dot>
void set(KernelSet& ks, DType t) {
  ks.weight[static_cast<uint32_t>(t)] = {Dot, gemm_dot<Dot>};
}

}  // namespace

void fill(KernelSet& ks) {
  set<vec_dot_float<load_f32, one_f32>>(ks, DType::F32);
  set<vec_dot_float<load_f16, one_f16>>(ks, DType::F16);
  set<vec_dot_float<load_bf16, one_bf16>>(ks, DType::BF16);
  set<vec_dot_q4_0>(ks, DType::Q4_0);
  set<vec_dot_q8_0>(ks, DType::Q8_0);
}

}  // namespace coppice::kernels::neon
