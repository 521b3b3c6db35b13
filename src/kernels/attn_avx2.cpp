// avx2 attention kernels (simd_attn.h).
#include "kernels/dispatch_impl.h"
#include "kernels/simd_attn.h"

namespace coppice::kernels::avx2 {

void fill_attn(KernelSet& ks) { ks.attn = {kv_dot, kv_axpy}; }

}  // namespace coppice::kernels::avx2
