// 2:4 layout: detection, packing, scalar twins and dispatch (sparse24.h).
#include "kernels/sparse24.h"

#include <cstring>

#include "util/error.h"
#include "util/fp16.h"

namespace coppice::kernels::sparse24 {
namespace {

bool nz(uint16_t v) { return (v & 0x7FFF) != 0; }

template <float (*ToF)(uint16_t)>
void vec_dot_ref(int64_t n, float* s, const void* w, const void* x) {
  const auto* p = static_cast<const uint8_t*>(w);
  const auto* a = static_cast<const float*>(x);
  double sum = 0;
  for (int64_t c = 0; c < n / kChunk; ++c, p += kChunkBytes, a += kChunk) {
    uint32_t idx;
    std::memcpy(&idx, p + 32, 4);
    for (int j = 0; j < 16; ++j) {
      uint16_t v;
      std::memcpy(&v, p + 2 * j, 2);
      const int in = 4 * (j / 2) + static_cast<int>((idx >> (2 * j)) & 3);
      sum += static_cast<double>(ToF(v)) * a[in];
    }
  }
  *s = static_cast<float>(sum);
}

float f16(uint16_t v) { return fp16_to_fp32(v); }
float bf16(uint16_t v) { return bf16_to_fp32(v); }

void gemm_ref_f16(int64_t n, int nr, int nc, const void* w, size_t ws, const void* a, size_t as,
                  float* y, size_t ys) {
  for (int r = 0; r < nr; ++r)
    for (int c = 0; c < nc; ++c)
      vec_dot_ref<f16>(n, y + c * ys + r, static_cast<const uint8_t*>(w) + r * ws,
                       static_cast<const uint8_t*>(a) + c * as);
}
void gemm_ref_bf16(int64_t n, int nr, int nc, const void* w, size_t ws, const void* a, size_t as,
                   float* y, size_t ys) {
  for (int r = 0; r < nr; ++r)
    for (int c = 0; c < nc; ++c)
      vec_dot_ref<bf16>(n, y + c * ys + r, static_cast<const uint8_t*>(w) + r * ws,
                        static_cast<const uint8_t*>(a) + c * as);
}

const PackedKernels kRefF16{"f16_2of4", DType::F16, kChunk, row_bytes, pack_rows, act_row_bytes,
                            nullptr, vec_dot_ref<f16>, gemm_ref_f16};
const PackedKernels kRefBF16{"bf16_2of4", DType::BF16, kChunk, row_bytes, pack_rows, act_row_bytes,
                             nullptr, vec_dot_ref<bf16>, gemm_ref_bf16};

}  // namespace

size_t row_bytes(int64_t n) { return static_cast<size_t>(n / kChunk) * kChunkBytes; }
size_t act_row_bytes(int64_t n) { return static_cast<size_t>(n) * sizeof(float); }

bool is_2of4(const uint16_t* src, int64_t n, int64_t rows) {
  const int64_t total = n * rows;
  for (int64_t g = 0; g + 4 <= total; g += 4) {
    if (nz(src[g]) + nz(src[g + 1]) + nz(src[g + 2]) + nz(src[g + 3]) > 2) return false;
  }
  return true;
}

void pack_rows(const void* src, void* dst, int64_t n, int64_t rows) {
  CP_ASSERT(n % kChunk == 0);
  const auto* s = static_cast<const uint16_t*>(src);
  auto* o = static_cast<uint8_t*>(dst);
  for (int64_t c = 0; c < rows * (n / kChunk); ++c, s += kChunk, o += kChunkBytes) {
    uint16_t vals[16];
    uint32_t idx = 0;
    for (int g = 0; g < 8; ++g) {
      const uint16_t* e = s + 4 * g;
      int pos[2], k = 0;
      for (int i = 0; i < 4 && k < 2; ++i)
        if (nz(e[i])) pos[k++] = i;
      CP_ASSERT(nz(e[0]) + nz(e[1]) + nz(e[2]) + nz(e[3]) <= 2);  // callers check is_2of4
      // fill up to two slots with unused positions (their value is 0)
      for (int i = 0; i < 4 && k < 2; ++i)
        if (!nz(e[i]) && (k == 0 || pos[0] != i)) pos[k++] = i;
      for (int j = 0; j < 2; ++j) {
        vals[2 * g + j] = nz(e[pos[j]]) ? e[pos[j]] : 0;
        idx |= static_cast<uint32_t>(pos[j]) << (2 * (2 * g + j));
      }
    }
    std::memcpy(o, vals, 32);
    std::memcpy(o + 32, &idx, 4);
  }
}

void vec_dot_f16_ref(int64_t n, float* s, const void* w, const void* x) { vec_dot_ref<f16>(n, s, w, x); }
void vec_dot_bf16_ref(int64_t n, float* s, const void* w, const void* x) { vec_dot_ref<bf16>(n, s, w, x); }

const PackedKernels* kernels_for(Isa isa, DType source) {
  if (source != DType::F16 && source != DType::BF16) return nullptr;
  if (coppice::kernels::kernels_for(isa) == nullptr) return nullptr;
  const bool h = source == DType::F16;
  if (isa == Isa::Avx512) return h ? &avx512::kF16 : &avx512::kBF16;
  return h ? &kRefF16 : &kRefBF16;  // AVX2 has no fast kernel yet: the scalar twin
}

// Only where a SIMD kernel exists: the scalar twin is slower than the dense SIMD kernels, so
// other ISAs keep the dense rows.
const PackedKernels* best(DType source) {
  const Isa isa = coppice::kernels::kernels().isa;
  return isa == Isa::Avx512 ? kernels_for(isa, source) : nullptr;
}

}  // namespace coppice::kernels::sparse24
