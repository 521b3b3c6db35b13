// AVX-512 gemm tiles (simd_tile.h): 4 rows x 4 tokens; AVX-512VL gives 32 vector registers,
// so 16 accumulators and the decoded blocks stay in registers for the 32-element formats.
#include "kernels/dispatch_impl.h"
#include "kernels/simd_tile.h"

namespace coppice::kernels::avx512 {

void fill_gemm(KernelSet& ks) {
  constexpr int R = 4, C = 4;
  ks.tile_rows = R;
  ks.tile_cols = C;
  auto set = [&](DType t, GemmFn f) { ks.weight[static_cast<uint32_t>(t)].gemm = f; };
  set(DType::F32, gemm_t<F32T, R, C>);
  set(DType::F16, gemm_t<F16T, R, C>);
  set(DType::BF16, gemm_t<BF16T, R, C>);
  set(DType::Q4_0, gemm_t<Q4_0T, R, C>);
  set(DType::Q4_1, gemm_t<Q4_1T, R, C>);
  set(DType::Q5_0, gemm_t<Q5_0T, R, C>);
  set(DType::Q5_1, gemm_t<Q5_1T, R, C>);
  set(DType::Q8_0, gemm_t<Q8_0T, R, C>);
  set(DType::Q2_K, gemm_t<Q2_KT, R, C>);
  set(DType::Q3_K, gemm_t<Q3_KT, R, C>);
  set(DType::Q4_K, gemm_t<Q4_KT, R, C>);
  set(DType::Q5_K, gemm_t<Q5_KT, R, C>);
  set(DType::Q6_K, gemm_t<Q6_KT, R, C>);
}

}  // namespace coppice::kernels::avx512
