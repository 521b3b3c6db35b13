// AVX2 vec_dot for every weight type against its vec_dot_type (bodies in simd_x86.h).
#include "kernels/dispatch_impl.h"
#include "kernels/simd_tile.h"

namespace coppice::kernels::avx2 {

void fill_dot(KernelSet& ks) {
  auto set = [&](DType t, VecDotFn f) { ks.weight[static_cast<uint32_t>(t)].vec_dot = f; };
  set(DType::F32, vec_dot_t<F32T>);
  set(DType::F16, vec_dot_t<F16T>);
  set(DType::BF16, vec_dot_t<BF16T>);
  set(DType::Q4_0, vec_dot_t<Q4_0T>);
  set(DType::Q4_1, vec_dot_t<Q4_1T>);
  set(DType::Q5_0, vec_dot_t<Q5_0T>);
  set(DType::Q5_1, vec_dot_t<Q5_1T>);
  set(DType::Q8_0, vec_dot_t<Q8_0T>);
  set(DType::Q2_K, vec_dot_t<Q2_KT>);
  set(DType::Q3_K, vec_dot_t<Q3_KT>);
  set(DType::Q4_K, vec_dot_t<Q4_KT>);
  set(DType::Q5_K, vec_dot_t<Q5_KT>);
  set(DType::Q6_K, vec_dot_t<Q6_KT>);
}

}  // namespace coppice::kernels::avx2
