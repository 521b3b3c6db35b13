// avx512 attention kernels: F32 / F16 / BF16 rows (simd_attn.h), blocks of them
// (simd_attn_rows.h), the softmax passes (simd_softmax.h) and the fused quantized-KV
// kernels (simd_attn_quant.h).
#include "kernels/dispatch_impl.h"
#include "kernels/simd_attn.h"
#include "kernels/simd_attn_rows.h"
#include "kernels/simd_softmax.h"
#include "kernels/simd_x86.h"
#include "kernels/simd_attn_quant.h"

namespace coppice::kernels::avx512 {

void fill_attn(KernelSet& ks) {
  ks.attn.dot = kv_dot;
  ks.attn.axpy = kv_axpy;
  ks.attn.rows = {kv_score_rows, kv_accum_rows};
  ks.attn.scale_max = kv_scale_max;
  ks.attn.exp_sum = kv_exp_sum;
  fill_attn_quant(ks.attn);
}

}  // namespace coppice::kernels::avx512
