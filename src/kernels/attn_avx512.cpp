// avx512 attention kernels: F32 / F16 / BF16 rows (simd_attn.h) and the fused quantized-KV
// kernels (simd_attn_quant.h).
#include "kernels/dispatch_impl.h"
#include "kernels/simd_attn.h"
#include "kernels/simd_x86.h"
#include "kernels/simd_attn_quant.h"

namespace coppice::kernels::avx512 {

void fill_attn(KernelSet& ks) {
  ks.attn.dot = kv_dot;
  ks.attn.axpy = kv_axpy;
  fill_attn_quant(ks.attn);
}

}  // namespace coppice::kernels::avx512
