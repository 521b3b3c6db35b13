// Panel layouts (packed.h): packing from the file's blocks and the scalar twins.
#include <cmath>
#include <cstring>

#include "kernels/blocks.h"
#include "kernels/packed.h"
#include "util/error.h"
#include "util/fp16.h"

namespace coppice::kernels::packed {

size_t q4_0x16_row_bytes(int64_t n) { return static_cast<size_t>(n / 32) * sizeof(BlockQ4_0); }
size_t q8_0x16_row_bytes(int64_t n) { return static_cast<size_t>(n / 32) * sizeof(BlockQ8_0); }
size_t q8s_row_bytes(int64_t n) { return static_cast<size_t>(n / 32) * kQ8sBlockBytes; }

namespace {

// Walks the blocks of every panel: emit(panel block bytes, the 16 source blocks).
template <class Block, class Emit>
void for_panel_blocks(const void* src, void* dst, int64_t n, int64_t rows, size_t block_bytes, Emit emit) {
  CP_ASSERT(n % 32 == 0 && rows % kPanel == 0);
  const int64_t nb = n / 32;
  const auto* b = static_cast<const Block*>(src);  // [rows][nb]
  auto* o = static_cast<uint8_t*>(dst);
  for (int64_t p = 0; p < rows / kPanel; ++p) {
    for (int64_t i = 0; i < nb; ++i, o += block_bytes) {
      for (int r = 0; r < kPanel; ++r) emit(o, r, b[(p * kPanel + r) * nb + i]);
    }
  }
}

// code(panel block, lane, element) in the layout's unsigned form, and its bias.
struct Q4 {
  static constexpr size_t kBytes = kQ4PanelBlockBytes, kScales = 256;
  static constexpr int kBias = 8;
  static int code(const uint8_t* wb, int lane, int e) {
    const uint8_t byte = wb[64 * ((e % 16) / 4) + 4 * lane + e % 4];
    return e < 16 ? (byte & 0x0F) : (byte >> 4);
  }
};
struct Q8 {
  static constexpr size_t kBytes = kQ8PanelBlockBytes, kScales = 512;
  static constexpr int kBias = 128;
  static int code(const uint8_t* wb, int lane, int e) { return wb[64 * (e / 4) + 4 * lane + e % 4]; }
};

template <class L>
void gemm_ref(int64_t n, int nr, int nc, const void* w, size_t w_stride, const void* a, size_t a_stride,
              float* y, size_t y_stride) {
  CP_ASSERT(nr % kPanel == 0);
  for (int r = 0; r < nr; ++r) {
    const auto* panel = static_cast<const uint8_t*>(w) + static_cast<size_t>(r / kPanel * kPanel) * w_stride;
    const int lane = r % kPanel;
    for (int c = 0; c < nc; ++c) {
      const auto* ab = static_cast<const uint8_t*>(a) + static_cast<size_t>(c) * a_stride;
      float acc = 0.0f;
      for (int64_t i = 0; i < n / 32; ++i) {
        const uint8_t* wb = panel + i * L::kBytes;
        const uint8_t* qa = ab + i * kQ8sBlockBytes;
        int32_t isum = 0, sum;
        for (int e = 0; e < 32; ++e) isum += L::code(wb, lane, e) * static_cast<int8_t>(qa[e]);
        float da;
        uint16_t dh;
        std::memcpy(&da, qa + 32, 4);
        std::memcpy(&sum, qa + 36, 4);
        std::memcpy(&dh, wb + L::kScales + 2 * lane, 2);
        const float t = static_cast<float>(isum - L::kBias * sum) * da;
        acc = std::fma(fp16_to_fp32(dh), t, acc);
      }
      y[static_cast<size_t>(c) * y_stride + r] = acc;
    }
  }
}

}  // namespace

void pack_q4_0x16(const void* src, void* dst, int64_t n, int64_t rows) {
  for_panel_blocks<BlockQ4_0>(src, dst, n, rows, kQ4PanelBlockBytes, [](uint8_t* o, int r, const BlockQ4_0& b) {
    for (int k = 0; k < 4; ++k) std::memcpy(o + 64 * k + 4 * r, b.qs + 4 * k, 4);
    std::memcpy(o + 256 + 2 * r, &b.d, 2);
  });
}

void pack_q8_0x16(const void* src, void* dst, int64_t n, int64_t rows) {
  for_panel_blocks<BlockQ8_0>(src, dst, n, rows, kQ8PanelBlockBytes, [](uint8_t* o, int r, const BlockQ8_0& b) {
    for (int e = 0; e < 32; ++e) o[64 * (e / 4) + 4 * r + e % 4] = static_cast<uint8_t>(b.qs[e] + 128);
    std::memcpy(o + 512 + 2 * r, &b.d, 2);
  });
}

void quantize_q8s_ref(const float* src, void* dst, int64_t n) {
  CP_ASSERT(n % 32 == 0);
  auto* o = static_cast<uint8_t*>(dst);
  for (int64_t i = 0; i < n / 32; ++i, src += 32, o += kQ8sBlockBytes) {
    float amax = 0.0f;
    for (int j = 0; j < 32; ++j) amax = std::fmax(amax, std::fabs(src[j]));
    const float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
    int32_t sum = 0;
    for (int j = 0; j < 32; ++j) {
      const int8_t q = static_cast<int8_t>(std::round(src[j] * id));
      o[j] = static_cast<uint8_t>(q);
      sum += q;
    }
    std::memcpy(o + 32, &d, 4);
    std::memcpy(o + 36, &sum, 4);
  }
}

void gemm_q4_0x16_ref(int64_t n, int nr, int nc, const void* w, size_t w_stride, const void* a,
                      size_t a_stride, float* y, size_t y_stride) {
  gemm_ref<Q4>(n, nr, nc, w, w_stride, a, a_stride, y, y_stride);
}
void gemm_q8_0x16_ref(int64_t n, int nr, int nc, const void* w, size_t w_stride, const void* a,
                      size_t a_stride, float* y, size_t y_stride) {
  gemm_ref<Q8>(n, nr, nc, w, w_stride, a, a_stride, y, y_stride);
}

}  // namespace coppice::kernels::packed
