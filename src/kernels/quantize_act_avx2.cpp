// AVX2 activation quantizers (q8_0, q8_1, q8_K) and f16 conversion (simd_quant_act.h).
#include "kernels/dispatch_impl.h"
#include "kernels/simd_quant_act.h"

namespace coppice::kernels::avx2 {

void fill_quant(KernelSet& ks) {
  auto id = [](DType t) { return static_cast<uint32_t>(t); };
  ks.from_float[id(DType::Q8_0)] = quantize_q8_0;
  ks.from_float[id(DType::Q8_1)] = quantize_q8_1;
  ks.from_float[id(DType::Q8_K)] = quantize_q8_K;
  ks.from_float[id(DType::F16)] = convert_f16;
  ks.to_float[id(DType::F16)] = widen_f16;
}

}  // namespace coppice::kernels::avx2
