// 2:4 layout: detection, packing, scalar twins and dispatch (sparse24.h).
#include "kernels/sparse24.h"

#include <array>
#include <bit>
#include <cstring>

#include "kernels/blocks.h"
#include "util/cpu.h"
#include "util/error.h"
#include "util/fp16.h"

namespace coppice::kernels::sparse24 {
namespace {

bool nz(uint16_t v) { return (v & 0x7FFF) != 0; }
bool nz(int8_t v) { return v != 0; }

// Where each layout keeps its values, positions and (Q8_0) scale within a chunk.
struct F16L {
  static constexpr size_t kBytes = kChunkBytes, kIdx = 32;
  static double value(const uint8_t* p, int j) { uint16_t v; std::memcpy(&v, p + 2 * j, 2); return fp16_to_fp32(v); }
};
struct BF16L {
  static constexpr size_t kBytes = kChunkBytes, kIdx = 32;
  static double value(const uint8_t* p, int j) { uint16_t v; std::memcpy(&v, p + 2 * j, 2); return bf16_to_fp32(v); }
};
struct Q8L {
  static constexpr size_t kBytes = kChunkBytesQ8, kIdx = 16;
  static double value(const uint8_t* p, int j) {
    uint16_t d;
    std::memcpy(&d, p + 20, 2);
    return static_cast<double>(fp16_to_fp32(d)) * static_cast<int8_t>(p[j]);
  }
};

template <class L>
void vec_dot_ref(int64_t n, float* s, const void* w, const void* x) {
  const auto* p = static_cast<const uint8_t*>(w);
  const auto* a = static_cast<const float*>(x);
  double sum = 0;
  for (int64_t c = 0; c < n / kChunk; ++c, p += L::kBytes, a += kChunk) {
    uint32_t idx;
    std::memcpy(&idx, p + L::kIdx, 4);
    for (int j = 0; j < 16; ++j) {
      const int in = 4 * (j / 2) + static_cast<int>((idx >> (2 * j)) & 3);
      sum += L::value(p, j) * a[in];
    }
  }
  *s = static_cast<float>(sum);
}

template <class L>
void gemm_ref(int64_t n, int nr, int nc, const void* w, size_t ws, const void* a, size_t as, float* y,
              size_t ys) {
  for (int r = 0; r < nr; ++r)
    for (int c = 0; c < nc; ++c)
      vec_dot_ref<L>(n, y + c * ys + r, static_cast<const uint8_t*>(w) + r * ws,
                     static_cast<const uint8_t*>(a) + c * as);
}

// The two kept positions of a group of 4 by its non-zero mask (<= 2 bits set): the non-zero
// positions in order, then the lowest unused zero positions (their value is 0). A table, so
// packing does not branch per element (load time of a pruned model).
struct Pick {
  uint8_t pos[2];
};
constexpr std::array<Pick, 16> make_picks() {
  std::array<Pick, 16> t{};
  for (int m = 0; m < 16; ++m) {
    int k = 0;
    for (int i = 0; i < 4 && k < 2; ++i)
      if ((m >> i) & 1) t[m].pos[k++] = static_cast<uint8_t>(i);
    for (int i = 0; i < 4 && k < 2; ++i)
      if (!((m >> i) & 1) && (k == 0 || t[m].pos[0] != i)) t[m].pos[k++] = static_cast<uint8_t>(i);
  }
  return t;
}
constexpr std::array<Pick, 16> kPicks = make_picks();
// Bit m set: mask m has at most 2 of its 4 bits set.
constexpr uint32_t kValidMasks = [] {
  uint32_t v = 0;
  for (unsigned m = 0; m < 16; ++m) v |= static_cast<uint32_t>(std::popcount(m) <= 2) << m;
  return v;
}();

// One chunk of 32 source elements -> 16 kept elements and their 2-bit positions.
template <class T>
uint32_t pick_chunk(const T* s, T* vals) {
  uint32_t idx = 0;
  for (int g = 0; g < 8; ++g) {
    const T* e = s + 4 * g;
    const unsigned m = static_cast<unsigned>(nz(e[0])) | static_cast<unsigned>(nz(e[1])) << 1 |
                       static_cast<unsigned>(nz(e[2])) << 2 | static_cast<unsigned>(nz(e[3])) << 3;
    CP_ASSERT((kValidMasks >> m) & 1);  // callers check the pattern
    for (int j = 0; j < 2; ++j) {
      const int p = kPicks[m].pos[j];
      vals[2 * g + j] = ((m >> p) & 1) ? e[p] : T{0};  // -0.0 stored as +0
      idx |= static_cast<uint32_t>(p) << (2 * (2 * g + j));
    }
  }
  return idx;
}

const PackedKernels kRefF16{"f16_2of4", DType::F16, kChunk, row_bytes, pack_rows, act_row_bytes,
                            nullptr, vec_dot_ref<F16L>, gemm_ref<F16L>};
const PackedKernels kRefBF16{"bf16_2of4", DType::BF16, kChunk, row_bytes, pack_rows, act_row_bytes,
                             nullptr, vec_dot_ref<BF16L>, gemm_ref<BF16L>};
const PackedKernels kRefQ8{"q8_0_2of4", DType::Q8_0, kChunk, row_bytes_q8, pack_rows_q8, act_row_bytes,
                           nullptr, vec_dot_ref<Q8L>, gemm_ref<Q8L>};
const PackedKernels kRefQ8Panel{"q8_0x16s", DType::Q8_0, kChunk, q8_0x16s_row_bytes, pack_q8_0x16s,
                                packed::q8s_row_bytes, packed::quantize_q8s_ref, nullptr, gemm_q8_0x16s_ref,
                                packed::kPanel};

}  // namespace

size_t row_bytes(int64_t n) { return static_cast<size_t>(n / kChunk) * kChunkBytes; }
size_t row_bytes_q8(int64_t n) { return static_cast<size_t>(n / kChunk) * kChunkBytesQ8; }
size_t act_row_bytes(int64_t n) { return static_cast<size_t>(n) * sizeof(float); }

bool is_2of4(const uint16_t* src, int64_t n, int64_t rows) {
  const int64_t total = n * rows;
  for (int64_t g = 0; g + 4 <= total; g += 4) {
    if (nz(src[g]) + nz(src[g + 1]) + nz(src[g + 2]) + nz(src[g + 3]) > 2) return false;
  }
  return true;
}

bool row_is_2of4(DType type, const void* row, int64_t n) {
  if (type == DType::F16 || type == DType::BF16) return is_2of4(static_cast<const uint16_t*>(row), n, 1);
  if (type != DType::Q8_0 || n % kChunk != 0) return false;
  const auto* b = static_cast<const BlockQ8_0*>(row);
  for (int64_t i = 0; i < n / kChunk; ++i) {
    unsigned bad = 0;  // no branch per group: a row is checked whole at load
    for (int g = 0; g < 32; g += 4) {
      const unsigned m = static_cast<unsigned>(nz(b[i].qs[g])) | static_cast<unsigned>(nz(b[i].qs[g + 1])) << 1 |
                         static_cast<unsigned>(nz(b[i].qs[g + 2])) << 2 | static_cast<unsigned>(nz(b[i].qs[g + 3])) << 3;
      bad |= ~(kValidMasks >> m) & 1;
    }
    if (bad != 0) return false;
  }
  return true;
}

void pack_rows(const void* src, void* dst, int64_t n, int64_t rows) {
  CP_ASSERT(n % kChunk == 0);
  const auto* s = static_cast<const uint16_t*>(src);
  auto* o = static_cast<uint8_t*>(dst);
  for (int64_t c = 0; c < rows * (n / kChunk); ++c, s += kChunk, o += kChunkBytes) {
    uint16_t vals[16];
    const uint32_t idx = pick_chunk(s, vals);
    std::memcpy(o, vals, 32);
    std::memcpy(o + 32, &idx, 4);
  }
}

void pack_rows_q8(const void* src, void* dst, int64_t n, int64_t rows) {
  CP_ASSERT(n % kChunk == 0);
  const auto* b = static_cast<const BlockQ8_0*>(src);
  auto* o = static_cast<uint8_t*>(dst);
  for (int64_t c = 0; c < rows * (n / kChunk); ++c, ++b, o += kChunkBytesQ8) {
    int8_t vals[16];
    const uint32_t idx = pick_chunk(b->qs, vals);
    std::memcpy(o, vals, 16);
    std::memcpy(o + 16, &idx, 4);
    std::memcpy(o + 20, &b->d, 2);
  }
}

void vec_dot_f16_ref(int64_t n, float* s, const void* w, const void* x) { vec_dot_ref<F16L>(n, s, w, x); }
void vec_dot_bf16_ref(int64_t n, float* s, const void* w, const void* x) { vec_dot_ref<BF16L>(n, s, w, x); }
void vec_dot_q8_ref(int64_t n, float* s, const void* w, const void* x) { vec_dot_ref<Q8L>(n, s, w, x); }

const PackedKernels* kernels_for(Isa isa, DType source) {
  if (source != DType::F16 && source != DType::BF16 && source != DType::Q8_0) return nullptr;
  if (coppice::kernels::kernels_for(isa) == nullptr) return nullptr;
#if defined(__x86_64__) || defined(__i386__)
  if (isa == Isa::Avx512)
    return source == DType::F16 ? &avx512::kF16 : source == DType::BF16 ? &avx512::kBF16 : &avx512::kQ8;
  if (isa == Isa::Avx2)
    return source == DType::F16 ? &avx2::kF16 : source == DType::BF16 ? &avx2::kBF16 : &avx2::kQ8;
#endif
  if (isa != Isa::Scalar) return nullptr;
  return source == DType::F16 ? &kRefF16 : source == DType::BF16 ? &kRefBF16 : &kRefQ8;
}

const PackedKernels* q8_panel_for(Isa isa) {
  if (coppice::kernels::kernels_for(isa) == nullptr) return nullptr;
#if defined(__x86_64__) || defined(__i386__)
  if (isa == Isa::Avx512) return cpu_features().avx512vbmi ? &avx512::kQ8Panel : nullptr;
#endif
  return isa == Isa::Scalar ? &kRefQ8Panel : nullptr;
}

// Only AVX-512 at load. The scalar twin is slower than the dense SIMD kernels; the AVX2 kernel
// decodes faster than dense AVX2 (1.36x on the 1.1B F16 model) but its gemm, one vpermps pair
// and blend per FMA, prefills at 0.66x (bench/RESULTS.md): AVX2 keeps the dense rows until it
// has a gemm that expands a row chunk once per tile. Q8_0 takes the integer panel layout where
// VBMI is present (the f32 row kernels lose to the dense q8_0x16 panels), else stays dense.
const PackedKernels* best(DType source) {
  const Isa isa = coppice::kernels::kernels().isa;
  if (isa != Isa::Avx512) return nullptr;
  return source == DType::Q8_0 ? q8_panel_for(isa) : kernels_for(isa, source);
}

}  // namespace coppice::kernels::sparse24
