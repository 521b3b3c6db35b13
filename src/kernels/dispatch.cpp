// Picks the kernel table once from CPUID. A table is offered only when the CPU has every
// extension its unit was compiled with (CMakeLists.txt: the *_avx2 / *_avx512 flags).
#include "kernels/dispatch.h"

#include <cstdlib>
#include <cstring>
#include <iterator>
#include <utility>

#include "kernels/dispatch_impl.h"
#include "util/cpu.h"

namespace coppice::kernels {
namespace {

constexpr DType kAllTypes[] = {DType::F32,  DType::F16,  DType::BF16, DType::Q4_0, DType::Q4_1,
                               DType::Q5_0, DType::Q5_1, DType::Q8_0, DType::Q8_1, DType::Q2_K,
                               DType::Q3_K, DType::Q4_K, DType::Q5_K, DType::Q6_K, DType::Q8_K};

// The scalar gemm: the reference vec_dot for every (row, token) pair.
template <DType T>
void gemm_ref(int64_t n, int nr, int nc, const void* w, size_t ws, const void* a, size_t as,
              float* y, size_t ys) {
  const VecDotFn dot = type_traits(T)->vec_dot;
  const auto* wb = static_cast<const uint8_t*>(w);
  const auto* ab = static_cast<const uint8_t*>(a);
  for (int r = 0; r < nr; ++r) {
    for (int c = 0; c < nc; ++c) dot(n, y + c * ys + r, wb + r * ws, ab + c * as);
  }
}

template <size_t... I>
void fill_ref_gemm(KernelSet& ks, std::index_sequence<I...>) {
  ((ks.weight[static_cast<uint32_t>(kAllTypes[I])].gemm = &gemm_ref<kAllTypes[I]>), ...);
}

KernelSet make_scalar() {
  KernelSet ks;
  for (DType t : kAllTypes) {
    const TypeTraits& tt = *type_traits(t);
    const auto id = static_cast<uint32_t>(t);
    ks.weight[id].vec_dot = tt.vec_dot;
    ks.from_float[id] = tt.from_float;
    ks.to_float[id] = tt.to_float;
  }
  fill_ref_gemm(ks, std::make_index_sequence<std::size(kAllTypes)>{});
  ks.attn.dot = attn_ref::dot;
  ks.attn.axpy = attn_ref::axpy;
  ks.attn.rows = {attn_ref::score_rows, attn_ref::accum_rows};
  ks.attn.scale_max = attn_ref::scale_max;
  ks.attn.exp_sum = attn_ref::exp_sum;
  attn_ref::fill_quant(ks.attn);
  return ks;
}

bool cpu_has(Isa isa) {
#if defined(__x86_64__) || defined(__i386__)
  const CpuFeatures& f = cpu_features();
  const bool avx2 = f.avx2 && f.fma && f.f16c && __builtin_cpu_supports("bmi2");
  if (isa == Isa::Avx2) return avx2;
  if (isa == Isa::Avx512) {
    return avx2 && f.avx512f && f.avx512bw && f.avx512vl && __builtin_cpu_supports("avx512dq") &&
           f.avx512vnni && f.avx512bf16;
  }
#endif
#if defined(__aarch64__)
  if (isa == Isa::Neon) return true;  // Advanced SIMD is part of every AArch64 CPU
#endif
  return isa == Isa::Scalar;
}

struct Tables {
  KernelSet set[kIsaCount];
  bool ok[kIsaCount] = {true, false, false, false};
  Isa best = Isa::Scalar;

  static KernelSet derived(const KernelSet& scalar, Isa isa, const char* name) {
    KernelSet ks = scalar;
    ks.isa = isa;
    ks.name = name;
    return ks;
  }

  Tables() {
    set[0] = make_scalar();
    set[1] = derived(set[0], Isa::Avx2, "avx2");
    set[2] = derived(set[0], Isa::Avx512, "avx512");
    set[3] = derived(set[0], Isa::Neon, "neon");
#if defined(__x86_64__) || defined(__i386__)
    avx2::fill_dot(set[1]);
    avx2::fill_gemm(set[1]);
    avx2::fill_quant(set[1]);
    avx2::fill_packed(set[1]);
    avx2::fill_attn(set[1]);
    avx512::fill_dot(set[2]);
    avx512::fill_gemm(set[2]);
    avx512::fill_quant(set[2]);
    avx512::fill_packed(set[2]);
    avx512::fill_attn(set[2]);
#endif
#if defined(__aarch64__)
    neon::fill(set[3]);
#endif
    for (int i = 1; i < kIsaCount; ++i) ok[i] = cpu_has(static_cast<Isa>(i));
    for (int i = kIsaCount - 1; i >= 0; --i) {
      if (ok[i]) { best = static_cast<Isa>(i); break; }
    }
    // COPPICE_ISA can only lower the choice: a higher ISA than the CPU has would crash.
    if (const char* env = std::getenv("COPPICE_ISA")) {
      for (int i = 0; i < kIsaCount; ++i) {
        if (std::strcmp(env, isa_name(static_cast<Isa>(i))) == 0 && ok[i] && i < static_cast<int>(best)) {
          best = static_cast<Isa>(i);
        }
      }
    }
  }
};

const Tables& tables() {
  static const Tables t;
  return t;
}

}  // namespace

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::Avx2: return "avx2";
    case Isa::Avx512: return "avx512";
    case Isa::Neon: return "neon";
    default: return "scalar";
  }
}

const KernelSet& kernels() {
  static const KernelSet& k = tables().set[static_cast<int>(tables().best)];
  return k;
}

const char* kernel_isa_name() { return kernels().name; }

const KernelSet* kernels_for(Isa isa) {
  const int i = static_cast<int>(isa);
  return tables().ok[i] ? &tables().set[i] : nullptr;
}

}  // namespace coppice::kernels
