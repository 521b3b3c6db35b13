// The q4_Kx16 panel layout (packed.h): packing from q4_K super-blocks, the q8k activation
// quantizer and the scalar twin.
#include <cmath>
#include <cstring>

#include "kernels/blocks.h"
#include "kernels/packed.h"
#include "kernels/quant_impl.h"
#include "util/error.h"
#include "util/fp16.h"

namespace coppice::kernels::packed {

size_t q4_Kx16_row_bytes(int64_t n) { return static_cast<size_t>(n / QK_K) * (kQ4KPanelBlockBytes / kPanel); }
size_t q8k_row_bytes(int64_t n) { return static_cast<size_t>(n / QK_K) * kQ8kBlockBytes; }

void pack_q4_Kx16(const void* src, void* dst, int64_t n, int64_t rows) {
  CP_ASSERT(n % QK_K == 0 && rows % kPanel == 0);
  const int64_t nb = n / QK_K;
  const auto* b = static_cast<const BlockQ4_K*>(src);  // [rows][nb]
  auto* o = static_cast<uint8_t*>(dst);
  for (int64_t p = 0; p < rows / kPanel; ++p) {
    for (int64_t i = 0; i < nb; ++i, o += kQ4KPanelBlockBytes) {
      for (int r = 0; r < kPanel; ++r) {
        const BlockQ4_K& blk = b[(p * kPanel + r) * nb + i];
        for (int j = 0; j < 4; ++j)
          for (int k = 0; k < 8; ++k) std::memcpy(o + 64 * (8 * j + k) + 4 * r, blk.qs + 32 * j + 4 * k, 4);
        for (int s = 0; s < 8; ++s) {
          uint8_t sc, m;
          quant::get_scale_min_k4(s, blk.scales, &sc, &m);
          o[2048 + 16 * s + r] = sc;
          o[2176 + 32 * (s / 2) + 2 * r + s % 2] = m;
        }
        std::memcpy(o + 2304 + 2 * r, &blk.d, 2);
        std::memcpy(o + 2336 + 2 * r, &blk.dmin, 2);
      }
    }
  }
}

void quantize_q8k_ref(const float* src, void* dst, int64_t n) {
  CP_ASSERT(n % QK_K == 0);
  auto* o = static_cast<uint8_t*>(dst);
  for (int64_t i = 0; i < n / QK_K; ++i, src += QK_K, o += kQ8kBlockBytes) {
    float amax = 0.0f;
    for (int j = 0; j < QK_K; ++j) amax = std::fmax(amax, std::fabs(src[j]));
    const float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
    int16_t sums[8] = {};
    for (int j = 0; j < QK_K; ++j) {
      const int8_t q = static_cast<int8_t>(std::round(src[j] * id));
      o[j] = static_cast<uint8_t>(q);
      sums[j / 32] = static_cast<int16_t>(sums[j / 32] + q);
    }
    std::memcpy(o + 256, &d, 4);
    std::memcpy(o + 260, sums, sizeof sums);
    std::memset(o + 276, 0, kQ8kBlockBytes - 276);
  }
}

void gemm_q4_Kx16_ref(int64_t n, int nr, int nc, const void* w, size_t w_stride, const void* a,
                      size_t a_stride, float* y, size_t y_stride) {
  CP_ASSERT(nr % kPanel == 0);
  for (int r = 0; r < nr; ++r) {
    const auto* panel = static_cast<const uint8_t*>(w) + static_cast<size_t>(r / kPanel * kPanel) * w_stride;
    const int lane = r % kPanel;
    for (int c = 0; c < nc; ++c) {
      const auto* ab = static_cast<const uint8_t*>(a) + static_cast<size_t>(c) * a_stride;
      float acc = 0.0f;
      for (int64_t i = 0; i < n / QK_K; ++i) {
        const uint8_t* wb = panel + i * kQ4KPanelBlockBytes;
        const uint8_t* qa = ab + i * kQ8kBlockBytes;
        int32_t isum = 0, msum = 0;
        for (int s = 0; s < 8; ++s) {
          int32_t dot = 0;
          for (int e = 0; e < 32; ++e) {
            const uint8_t byte = wb[64 * (8 * (s / 2) + e / 4) + 4 * lane + e % 4];
            const int code = s % 2 == 0 ? (byte & 0x0F) : (byte >> 4);
            dot += code * static_cast<int8_t>(qa[32 * s + e]);
          }
          int16_t asum;
          std::memcpy(&asum, qa + 260 + 2 * s, 2);
          isum += wb[2048 + 16 * s + lane] * dot;
          msum += wb[2176 + 32 * (s / 2) + 2 * lane + s % 2] * asum;
        }
        float da;
        uint16_t dh, mh;
        std::memcpy(&da, qa + 256, 4);
        std::memcpy(&dh, wb + 2304 + 2 * lane, 2);
        std::memcpy(&mh, wb + 2336 + 2 * lane, 2);
        const float t1 = static_cast<float>(isum) * da, t2 = static_cast<float>(msum) * da;
        acc = std::fma(fp16_to_fp32(dh), t1, acc);
        acc = std::fma(-fp16_to_fp32(mh), t2, acc);
      }
      y[static_cast<size_t>(c) * y_stride + r] = acc;
    }
  }
}

}  // namespace coppice::kernels::packed
