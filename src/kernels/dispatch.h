// Runtime ISA dispatch: one table of fast kernels per ISA (scalar, AVX2, AVX-512 on x86-64;
// scalar, NEON on AArch64), chosen once at start-up from CPUID. The scalar table wraps the reference kernels of the traits table, so
// every type always has an entry; SIMD tables fill in what they accelerate.
#pragma once
#include <cstddef>
#include <cstdint>

#include "kernels/attn.h"
#include "kernels/packed.h"
#include "kernels/types.h"

namespace coppice::kernels {

enum class Isa { Scalar = 0, Avx2 = 1, Avx512 = 2, Neon = 3 };
constexpr int kIsaCount = 4;

// y[c * y_stride + r] = dot(weight row r, activation row c) for r < nr, c < nc, over n elements.
// Weight rows are w_stride bytes apart (the weight type), activation rows a_stride bytes apart
// (the weight type's vec_dot_type). Any nr, nc >= 1: the kernel walks its own register tiles,
// so the caller only cache-blocks (keep nr rows in L1 while the nc tokens stream past).
// (GemmFn is declared in packed.h.)

constexpr int kMaxTypeId = 31;  // DType ids are < 31 (BF16 = 30)

struct WeightKernels {
  VecDotFn vec_dot = nullptr;  // x in the weight type, y in its vec_dot_type
  GemmFn gemm = nullptr;
};

struct KernelSet {
  Isa isa = Isa::Scalar;
  const char* name = "scalar";
  int tile_rows = 1, tile_cols = 1;         // the gemm register tile (informational)
  WeightKernels weight[kMaxTypeId];         // by DType id; every supported type filled
  FromFloatFn from_float[kMaxTypeId] = {};  // activation converters by vec_dot_type id
  ToFloatFn to_float[kMaxTypeId] = {};      // dequantize by type id (reference where no SIMD)
  // By source type id: the packed layout this ISA prefers (packed.h), or nullptr (use in place).
  const PackedKernels* packed[kMaxTypeId] = {};
  AttnKernels attn;  // score dot / value accumulation: F32 / F16 / BF16 rows, fused quantized rows

  const WeightKernels& for_weight(DType t) const { return weight[static_cast<uint32_t>(t)]; }
  FromFloatFn quantizer(DType t) const { return from_float[static_cast<uint32_t>(t)]; }
};

// The table for the best ISA this CPU supports (lowered by COPPICE_ISA=scalar|avx2|avx512|neon).
const KernelSet& kernels();
const char* kernel_isa_name();
// A specific ISA's table, or nullptr if this CPU (or this build) cannot run it. For tests.
const KernelSet* kernels_for(Isa isa);
const char* isa_name(Isa isa);

}  // namespace coppice::kernels
