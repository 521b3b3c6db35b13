// q4_0x128 packing and its scalar twins (layouts in packed.h).
#include <cstring>

#include "kernels/blocks.h"
#include "kernels/packed.h"
#include "util/error.h"
#include "util/fp16.h"

namespace coppice::kernels::packed {
size_t q4_0x128_row_bytes(int64_t n) { return static_cast<size_t>(n / kGroup) * kQ4GroupBytes; }
size_t q8x128_row_bytes(int64_t n) { return static_cast<size_t>(n / kGroup) * kQ8GroupBytes; }

void pack_q4_0x128(const void* src, void* dst, int64_t n, int64_t rows) {
  CP_ASSERT(n % kGroup == 0);
  const auto* b = static_cast<const BlockQ4_0*>(src);
  auto* o = static_cast<uint8_t*>(dst);
  // Element j < 16 of a block is qs[j] & 15, element 16 + j is qs[j] >> 4; straight byte loops
  // (vectorized by the compiler) since packing runs over the whole model at load.
  for (int64_t g = 0; g < rows * (n / kGroup); ++g, b += 4, o += kQ4GroupBytes) {
    const uint8_t *q0 = b[0].qs, *q1 = b[1].qs, *q2 = b[2].qs, *q3 = b[3].qs;
    for (int j = 0; j < 16; ++j) {
      o[j] = static_cast<uint8_t>((q0[j] & 0x0F) | (q2[j] << 4));
      o[16 + j] = static_cast<uint8_t>((q0[j] >> 4) | (q2[j] & 0xF0));
      o[32 + j] = static_cast<uint8_t>((q1[j] & 0x0F) | (q3[j] << 4));
      o[48 + j] = static_cast<uint8_t>((q1[j] >> 4) | (q3[j] & 0xF0));
    }
    for (int i = 0; i < 4; ++i) std::memcpy(o + 64 + 2 * i, &b[i].d, 2);
  }
}

void quantize_q8x128_ref(const float* src, void* dst, int64_t n) {
  CP_ASSERT(n % kGroup == 0);
  const FromFloatFn q8 = type_traits(DType::Q8_0)->from_float;
  auto* o = static_cast<uint8_t*>(dst);
  for (int64_t g = 0; g < n / kGroup; ++g, src += kGroup, o += kQ8GroupBytes) {
    BlockQ8_0 blk[4];
    q8(src, blk, kGroup);
    float da[32], corr[32];
    for (int l = 0; l < 32; ++l) {
      const BlockQ8_0& b = blk[l / 8];
      const int j = 4 * (l % 8);
      da[l] = fp16_to_fp32(b.d);
      const int sum = b.qs[j] + b.qs[j + 1] + b.qs[j + 2] + b.qs[j + 3];
      corr[l] = 8.0f * da[l] * static_cast<float>(sum);
    }
    for (int i = 0; i < 4; ++i) std::memcpy(o + 32 * i, blk[i].qs, 32);
    std::memcpy(o + 128, da, sizeof da);
    std::memcpy(o + 256, corr, sizeof corr);
  }
}

void vec_dot_q4_0x128_ref(int64_t n, float* s, const void* x, const void* y) {
  const auto* w = static_cast<const uint8_t*>(x);
  const auto* a = static_cast<const uint8_t*>(y);
  double sum = 0.0;
  for (int64_t g = 0; g < n / kGroup; ++g, w += kQ4GroupBytes, a += kQ8GroupBytes) {
    const auto* qa = reinterpret_cast<const int8_t*>(a);
    for (int b = 0; b < 4; ++b) {
      uint16_t dh;
      std::memcpy(&dh, w + 64 + 2 * b, 2);
      float da;
      std::memcpy(&da, a + 128 + 4 * (8 * b), 4);
      int isum = 0;
      for (int j = 0; j < 32; ++j) {
        const int e = 32 * b + j;
        const int code = e < 64 ? (w[e] & 0xF) : (w[e - 64] >> 4);
        isum += (code - 8) * qa[e];
      }
      sum += static_cast<double>(fp16_to_fp32(dh)) * da * isum;
    }
  }
  *s = static_cast<float>(sum);
}

}  // namespace coppice::kernels::packed
