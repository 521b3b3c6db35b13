// CPU feature detection (CPUID via the compiler's builtins), read once at start-up.
#pragma once
#include <string>
#include <vector>

namespace coppice {

struct CpuFeatures {
  bool avx2 = false, fma = false, f16c = false;
  bool avx512f = false, avx512bw = false, avx512vl = false, avx512vnni = false, avx512bf16 = false;
  bool avx512vbmi = false;
  bool avxvnni = false;
  std::string best_isa() const;  // "avx512", "avx2" or "scalar"
  std::vector<std::string> names() const;
};

const CpuFeatures& cpu_features();

}  // namespace coppice
