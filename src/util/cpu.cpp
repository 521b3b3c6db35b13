#include "util/cpu.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

namespace coppice {

namespace {
#if defined(__x86_64__) || defined(__i386__)
// CPUID leaf/subleaf -> eax, ebx, ecx, edx (all zero when the leaf is beyond the maximum).
struct Regs { unsigned a = 0, b = 0, c = 0, d = 0; };
Regs cpuid(unsigned leaf, unsigned sub) {
  Regs r;
  if (leaf > __get_cpuid_max(leaf & 0x80000000u, nullptr)) return r;
  __cpuid_count(leaf, sub, r.a, r.b, r.c, r.d);
  return r;
}
bool bit(unsigned v, int i) { return (v >> i) & 1u; }
#endif

// Reads CPUID directly (the compilers' __builtin_cpu_supports differ in which names they know)
// and checks with XGETBV that the OS saves the AVX / AVX-512 register state.
CpuFeatures detect() {
  CpuFeatures c;
#if defined(__x86_64__) || defined(__i386__)
  const Regs l1 = cpuid(1, 0);
  const bool osxsave = bit(l1.c, 27);
  unsigned long long xcr0 = 0;
  if (osxsave) {
    unsigned lo = 0, hi = 0;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    xcr0 = (static_cast<unsigned long long>(hi) << 32) | lo;
  }
  const bool os_avx = (xcr0 & 0x6) == 0x6;             // XMM + YMM state
  const bool os_avx512 = os_avx && (xcr0 & 0xe0) == 0xe0;  // opmask + ZMM state
  const Regs l7 = cpuid(7, 0);
  const Regs l7s1 = cpuid(7, 1);
  const bool avx = os_avx && bit(l1.c, 28);
  c.fma = avx && bit(l1.c, 12);
  c.f16c = avx && bit(l1.c, 29);
  c.avx2 = avx && bit(l7.b, 5);
  c.avx512f = os_avx512 && bit(l7.b, 16);
  c.avx512bw = c.avx512f && bit(l7.b, 30);
  c.avx512vl = c.avx512f && bit(l7.b, 31);
  c.avx512vnni = c.avx512f && bit(l7.c, 11);
  c.avx512vbmi = c.avx512f && bit(l7.c, 1);
  c.avx512bf16 = c.avx512f && bit(l7s1.a, 5);
  c.avxvnni = avx && bit(l7s1.a, 4);
#endif
  return c;
}
}  // namespace

const CpuFeatures& cpu_features() {
  static const CpuFeatures f = detect();
  return f;
}

std::string CpuFeatures::best_isa() const {
  if (avx512f && avx512bw && avx512vl) return "avx512";
  if (avx2 && fma && f16c) return "avx2";
#if defined(__aarch64__)
  return "neon";  // Advanced SIMD is part of every AArch64 CPU
#else
  return "scalar";
#endif
}

std::vector<std::string> CpuFeatures::names() const {
  std::vector<std::string> n;
  auto add = [&](bool b, const char* s) { if (b) n.emplace_back(s); };
  add(avx2, "avx2"); add(fma, "fma"); add(f16c, "f16c"); add(avx512f, "avx512f");
  add(avx512bw, "avx512bw"); add(avx512vl, "avx512vl"); add(avx512vnni, "avx512vnni"); add(avx512vbmi, "avx512vbmi");
  add(avx512bf16, "avx512bf16"); add(avxvnni, "avxvnni");
  return n;
}

}  // namespace coppice
