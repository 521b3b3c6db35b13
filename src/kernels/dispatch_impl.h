// Internal: the per-ISA units' table fillers, called once by dispatch.cpp.
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
}  // namespace coppice::kernels
