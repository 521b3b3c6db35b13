// The Q8_0 2:4 panel layout q8_0x16s (sparse24.h): packing from q8_0 rows and the scalar twin.
#include <cmath>
#include <cstring>

#include "kernels/blocks.h"
#include "kernels/sparse24.h"
#include "util/error.h"
#include "util/fp16.h"

namespace coppice::kernels::sparse24 {
namespace {

constexpr size_t kPos = 256, kSum = 320, kScale = 352;

int kept_code(const uint8_t* wb, int lane, int k) { return static_cast<int8_t>(wb[64 * (k / 4) + 4 * lane + k % 4]); }

int kept_input(const uint8_t* wb, int lane, int k) {  // 0..31 within the block
  uint32_t bits;
  std::memcpy(&bits, wb + kPos + 4 * lane, 4);
  return 4 * (k / 2) + static_cast<int>((bits >> (2 * k)) & 3);
}

}  // namespace

size_t q8_0x16s_row_bytes(int64_t n) { return static_cast<size_t>(n / kChunk) * kQ8PanelBlockBytes / packed::kPanel; }

void pack_q8_0x16s(const void* src, void* dst, int64_t n, int64_t rows) {
  CP_ASSERT(n % kChunk == 0 && rows % packed::kPanel == 0);
  const int64_t nb = n / kChunk;
  const auto* b = static_cast<const BlockQ8_0*>(src);  // [rows][nb]
  auto* o = static_cast<uint8_t*>(dst);
  for (int64_t p = 0; p < rows / packed::kPanel; ++p) {
    for (int64_t i = 0; i < nb; ++i, o += kQ8PanelBlockBytes) {
      for (int r = 0; r < packed::kPanel; ++r) {
        const BlockQ8_0& blk = b[(p * packed::kPanel + r) * nb + i];
        uint8_t row[kChunkBytesQ8];  // the row layout's chunk: 16 codes, u32 positions, f16 d
        pack_rows_q8(&blk, row, kChunk, 1);
        int16_t sum = 0;
        for (int k = 0; k < 16; ++k) {
          o[64 * (k / 4) + 4 * r + k % 4] = row[k];
          sum = static_cast<int16_t>(sum + static_cast<int8_t>(row[k]));
        }
        std::memcpy(o + kPos + 4 * r, row + 16, 4);
        std::memcpy(o + kSum + 2 * r, &sum, 2);
        std::memcpy(o + kScale + 2 * r, row + 20, 2);
      }
    }
  }
}

void gemm_q8_0x16s_ref(int64_t n, int nr, int nc, const void* w, size_t w_stride, const void* a,
                       size_t a_stride, float* y, size_t y_stride) {
  CP_ASSERT(nr % packed::kPanel == 0);
  for (int r = 0; r < nr; ++r) {
    const auto* panel = static_cast<const uint8_t*>(w) + static_cast<size_t>(r / packed::kPanel * packed::kPanel) * w_stride;
    const int lane = r % packed::kPanel;
    for (int c = 0; c < nc; ++c) {
      const auto* ab = static_cast<const uint8_t*>(a) + static_cast<size_t>(c) * a_stride;
      float acc = 0.0f;
      for (int64_t i = 0; i < n / kChunk; ++i) {
        const uint8_t* wb = panel + i * kQ8PanelBlockBytes;
        const uint8_t* qa = ab + i * packed::kQ8sBlockBytes;
        int32_t isum = 0;
        for (int k = 0; k < 16; ++k) isum += kept_code(wb, lane, k) * static_cast<int8_t>(qa[kept_input(wb, lane, k)]);
        float da;
        uint16_t dh;
        std::memcpy(&da, qa + 32, 4);
        std::memcpy(&dh, wb + kScale + 2 * lane, 2);
        acc = std::fma(fp16_to_fp32(dh), static_cast<float>(isum) * da, acc);
      }
      y[static_cast<size_t>(c) * y_stride + r] = acc;
    }
  }
}

}  // namespace coppice::kernels::sparse24
