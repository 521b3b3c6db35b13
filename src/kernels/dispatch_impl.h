// Internal: the per-ISA units' table fillers, called once by dispatch.cpp. A build compiles
// the units of its own architecture only (x86-64: avx2 / avx512; AArch64: neon).
#pragma once
#include "kernels/dispatch.h"

namespace coppice::kernels {
namespace avx2 {
void fill_dot(KernelSet& ks);
void fill_gemm(KernelSet& ks);
void fill_quant(KernelSet& ks);
void fill_packed(KernelSet& ks);
void fill_attn(KernelSet& ks);
}  // namespace avx2
namespace avx512 {
void fill_dot(KernelSet& ks);
void fill_gemm(KernelSet& ks);
void fill_quant(KernelSet& ks);
void fill_packed(KernelSet& ks);
void fill_attn(KernelSet& ks);
}  // namespace avx512
namespace neon {
void fill(KernelSet& ks);  // AArch64 builds only (dot_neon.cpp)
}  // namespace neon
}  // namespace coppice::kernels
