// SIMD kernels against their scalar twins, for every ISA table this CPU can run (others are
// skipped): vec_dot per type on fresh random inputs, activation quantizers byte for byte, gemm
// tiles at every edge shape, and ops::matmul against dequantize-then-float.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "kernels/blocks.h"
#include "kernels/dispatch.h"
#include "ops/ops.h"
#include "util/fp16.h"
#include "util/threadpool.h"

using namespace coppice;
using kernels::Isa;

namespace {

constexpr DType kWeightTypes[] = {DType::F32,  DType::F16,  DType::BF16, DType::Q4_0, DType::Q4_1,
                                  DType::Q5_0, DType::Q5_1, DType::Q8_0, DType::Q2_K, DType::Q3_K,
                                  DType::Q4_K, DType::Q5_K, DType::Q6_K};
constexpr double kEps = 1.0 / (1 << 24);  // float unit roundoff

enum class Dist { Normal, Uniform, Positive, Heavy, RandomBits };
constexpr Dist kDists[] = {Dist::Normal, Dist::Uniform, Dist::Positive, Dist::Heavy, Dist::RandomBits};

std::vector<float> make_floats(int64_t n, Dist dist, std::mt19937& rng) {
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::uniform_real_distribution<float> ud(-1.0f, 1.0f);
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& x : v) {
    switch (dist) {
      case Dist::Uniform: x = ud(rng); break;
      case Dist::Positive: x = 2.0f + ud(rng); break;  // offset data: exercises the mins
      case Dist::Heavy: x = nd(rng) * std::exp(2.0f * nd(rng)); break;
      default: x = nd(rng); break;
    }
  }
  return v;
}

void set_half(std::vector<uint8_t>& b, size_t off, float v) {
  const uint16_t h = fp32_to_fp16(v);
  std::memcpy(b.data() + off, &h, 2);
}

// Weight row bytes. RandomBits: every code and sub-block scale bit pattern at random, with
// sane positive fp16 super-block scales (random fp16 bits would be inf/NaN).
std::vector<uint8_t> make_weights(const TypeTraits& tt, int64_t n, Dist dist, std::mt19937& rng) {
  std::vector<uint8_t> b(row_size(tt, n));
  if (dist != Dist::RandomBits || !tt.quantized) {
    const auto f = make_floats(n, dist == Dist::RandomBits ? Dist::Normal : dist, rng);
    tt.from_float(f.data(), b.data(), n);
    return b;
  }
  std::uniform_int_distribution<int> byte(0, 255);
  std::uniform_real_distribution<float> sc(0.01f, 0.1f);
  for (auto& x : b) x = static_cast<uint8_t>(byte(rng));
  for (int64_t blk = 0; blk < n / tt.block_size; ++blk) {
    const size_t o = static_cast<size_t>(blk) * tt.type_size;
    switch (tt.type) {
      case DType::Q4_0: case DType::Q5_0: set_half(b, o, sc(rng)); break;
      case DType::Q4_1: case DType::Q5_1: case DType::Q4_K: case DType::Q5_K:
        set_half(b, o, sc(rng)); set_half(b, o + 2, sc(rng)); break;
      case DType::Q8_0:  // -128 never comes out of a quantizer; the sign trick assumes so
        set_half(b, o, sc(rng));
        for (size_t j = 2; j < tt.type_size; ++j) if (b[o + j] == 0x80) b[o + j] = 0x81;
        break;
      case DType::Q2_K: set_half(b, o + 80, sc(rng)); set_half(b, o + 82, sc(rng)); break;
      case DType::Q3_K: set_half(b, o + 108, sc(rng)); break;
      case DType::Q6_K: set_half(b, o + 208, sc(rng)); break;
      default: break;
    }
  }
  return b;
}

std::vector<float> dequant(const TypeTraits& tt, const std::vector<uint8_t>& b, int64_t n) {
  std::vector<float> f(static_cast<size_t>(n));
  tt.to_float(b.data(), f.data(), n);
  return f;
}

// Both sides compute the same sum of exact block terms; they differ only in float rounding of
// the per-block scale products and of the accumulation. Recursive summation of nb terms errs
// by at most (nb + 2) eps * sum|term| (Higham, Accuracy and Stability, 4.2); a block term is
// bounded by sum |w_i a_i| plus, for formats with mins or code offsets, max|w in block| *
// |a_i| per element. k = 2 (nb + 16) doubles that for the two sides and the short tree sums.
double dot_tolerance(const TypeTraits& tt, const std::vector<float>& w, const std::vector<float>& a) {
  const int64_t n = static_cast<int64_t>(w.size());
  const int64_t bs = tt.quantized ? tt.block_size : 8;
  double mag = 0.0;
  for (int64_t b = 0; b < n; b += bs) {
    double wmax = 0.0;
    for (int64_t i = b; i < std::min(n, b + bs); ++i) wmax = std::max(wmax, std::fabs(double(w[i])));
    for (int64_t i = b; i < std::min(n, b + bs); ++i) {
      mag += std::fabs(double(w[i]) * a[i]) + (tt.quantized ? wmax * std::fabs(double(a[i])) : 0.0);
    }
  }
  const double nb = static_cast<double>((n + bs - 1) / bs);
  return 2.0 * (nb + 16.0) * kEps * mag + 1e-30;
}

std::vector<int64_t> sizes_for(const TypeTraits& tt) {
  if (tt.block_size == QK_K) return {256, 512, 256 * 5, 4096};
  if (tt.block_size == 32) return {32, 64, 96, 32 * 7, 32 * 33, 4096};
  return {1, 7, 8, 15, 16, 31, 33, 100, 4096};  // float types: every tail length
}

class SimdIsa : public ::testing::TestWithParam<Isa> {
 protected:
  const kernels::KernelSet* ks() {
    const kernels::KernelSet* k = kernels::kernels_for(GetParam());
    return k;
  }
};

#define SKIP_IF_UNSUPPORTED()                                                           \
  const kernels::KernelSet* K = ks();                                                   \
  if (K == nullptr) GTEST_SKIP() << kernels::isa_name(GetParam()) << " not on this CPU"

TEST_P(SimdIsa, VecDotMatchesScalar) {
  SKIP_IF_UNSUPPORTED();
  std::mt19937 rng(1234 + static_cast<int>(GetParam()));
  for (DType t : kWeightTypes) {
    const TypeTraits& tt = *type_traits(t);
    const TypeTraits& vt = *type_traits(tt.vec_dot_type);
    for (int64_t n : sizes_for(tt)) {
      for (Dist dist : kDists) {
        const auto wb = make_weights(tt, n, dist, rng);
        const auto af = make_floats(n, dist == Dist::Positive ? Dist::Uniform : Dist::Normal, rng);
        std::vector<uint8_t> ab(row_size(vt, n));
        vt.from_float(af.data(), ab.data(), n);  // reference quantizer: identical inputs
        float ref = 0, got = 0;
        tt.vec_dot(n, &ref, wb.data(), ab.data());
        K->for_weight(t).vec_dot(n, &got, wb.data(), ab.data());
        const double tol = dot_tolerance(tt, dequant(tt, wb, n), dequant(vt, ab, n));
        EXPECT_NEAR(got, ref, tol) << tt.name << " n=" << n << " dist=" << static_cast<int>(dist);
      }
    }
  }
}

// q8_0 / q8_1 round half away from zero and q8_K half to even, exactly as the references;
// the SIMD versions use the same float operations, so the bytes must match exactly.
TEST_P(SimdIsa, ActivationQuantizersAreByteExact) {
  SKIP_IF_UNSUPPORTED();
  std::mt19937 rng(99);
  std::vector<std::vector<float>> inputs;
  for (Dist d : kDists) inputs.push_back(make_floats(1024, d, rng));
  // rounding ties: amax 127 gives d = 1, so x * id lands exactly on k + 0.5
  std::vector<float> ties(1024);
  for (size_t i = 0; i < ties.size(); ++i) ties[i] = (i % 32 == 0) ? 127.0f : float(int(i % 200) - 100) + 0.5f;
  inputs.push_back(ties);
  // equal magnitudes of opposite sign: the first one fixes the sign of the q8_K scale
  std::vector<float> signs(1024, 0.25f);
  for (size_t i = 0; i < signs.size(); i += 256) { signs[i + 3] = -3.0f; signs[i + 200] = 3.0f; }
  inputs.push_back(signs);
  inputs.push_back(std::vector<float>(1024, 0.0f));
  for (DType t : {DType::Q8_0, DType::Q8_1, DType::Q8_K, DType::F16}) {
    const TypeTraits& tt = *type_traits(t);
    for (size_t k = 0; k < inputs.size(); ++k) {
      const auto& x = inputs[k];
      const auto n = static_cast<int64_t>(x.size());
      std::vector<uint8_t> ref(row_size(tt, n)), got(row_size(tt, n), 0xAB);
      tt.from_float(x.data(), ref.data(), n);
      K->quantizer(t)(x.data(), got.data(), n);
      EXPECT_EQ(ref, got) << tt.name << " input " << k;
    }
  }
  // f16 widening is exact
  std::vector<uint16_t> h(1000);
  for (size_t i = 0; i < h.size(); ++i) h[i] = fp32_to_fp16(inputs[3][i]);
  std::vector<float> a(h.size()), b(h.size());
  type_traits(DType::F16)->to_float(h.data(), a.data(), 1000);
  K->to_float[static_cast<int>(DType::F16)](h.data(), b.data(), 1000);
  EXPECT_EQ(a, b);
}

// Every tile shape, including the partial ones at the edges, against the same table's vec_dot:
// bit-identical, since decode (vec_dot) and prefill (gemm) must give a token the same logits.
TEST_P(SimdIsa, GemmTilesMatchVecDot) {
  SKIP_IF_UNSUPPORTED();
  std::mt19937 rng(7);
  for (DType t : kWeightTypes) {
    const TypeTraits& tt = *type_traits(t);
    const TypeTraits& vt = *type_traits(tt.vec_dot_type);
    const int64_t n = tt.quantized ? 2 * tt.block_size * (tt.block_size == 32 ? 5 : 1) : 77;
    const int max_r = 2 * K->tile_rows + 1, max_c = 2 * K->tile_cols + 1;
    const size_t ws = row_size(tt, n), as = row_size(vt, n);
    std::vector<uint8_t> w, a;
    std::vector<std::vector<float>> wf, af;
    for (int r = 0; r < max_r; ++r) {
      auto b = make_weights(tt, n, Dist::Normal, rng);
      w.insert(w.end(), b.begin(), b.end());
      wf.push_back(dequant(tt, b, n));
    }
    for (int c = 0; c < max_c; ++c) {
      const auto f = make_floats(n, Dist::Normal, rng);
      std::vector<uint8_t> b(as);
      vt.from_float(f.data(), b.data(), n);
      a.insert(a.end(), b.begin(), b.end());
      af.push_back(dequant(vt, b, n));
    }
    for (int nr = 1; nr <= max_r; ++nr) {
      for (int nc = 1; nc <= max_c; ++nc) {
        const size_t ys = static_cast<size_t>(nr) + 3;  // a stride wider than nr
        std::vector<float> y(ys * nc, -7.0f);
        K->for_weight(t).gemm(n, nr, nc, w.data(), ws, a.data(), as, y.data(), ys);
        for (int c = 0; c < nc; ++c) {
          for (int r = 0; r < nr; ++r) {
            float ref = 0;
            K->for_weight(t).vec_dot(n, &ref, w.data() + r * ws, a.data() + c * as);
            EXPECT_EQ(y[c * ys + r], ref)
                << tt.name << " tile " << nr << "x" << nc << " at " << r << "," << c;
          }
          for (size_t r = nr; r < ys; ++r) EXPECT_EQ(y[c * ys + r], -7.0f) << "wrote outside the tile";
        }
      }
    }
  }
}

// Attention kernels against their scalar twins, every KV type and every tail length.
TEST_P(SimdIsa, AttentionKernelsMatchScalar) {
  SKIP_IF_UNSUPPORTED();
  std::mt19937 rng(17);
  for (DType t : {DType::F32, DType::F16, DType::BF16}) {
    for (int64_t n : {1, 7, 8, 15, 16, 17, 31, 32, 33, 64, 100, 128, 256}) {
      const auto q = make_floats(n, Dist::Normal, rng), kv = make_floats(n, Dist::Normal, rng);
      std::vector<uint8_t> row(static_cast<size_t>(n) * (t == DType::F32 ? 4 : 2));
      type_traits(t)->from_float(kv.data(), row.data(), n);
      std::vector<float> kf(static_cast<size_t>(n));
      type_traits(t)->to_float(row.data(), kf.data(), n);
      double mag = 0;
      for (int64_t i = 0; i < n; ++i) mag += std::fabs(double(q[i]) * kf[i]);
      const float ref = kernels::attn_ref::dot(q.data(), row.data(), n, t);
      const float got = K->attn.dot(q.data(), row.data(), n, t);
      EXPECT_NEAR(got, ref, 2.0 * (n + 16) * kEps * mag + 1e-30) << dtype_name(t) << " n=" << n;
      std::vector<float> y0 = q, y1 = q;
      kernels::attn_ref::axpy(y0.data(), 0.37f, row.data(), n, t);
      K->attn.axpy(y1.data(), 0.37f, row.data(), n, t);
      for (int64_t i = 0; i < n; ++i) {  // one fused or two rounded operations per element
        EXPECT_NEAR(y1[i], y0[i], 4 * kEps * (std::fabs(q[i]) + std::fabs(0.37 * kf[i])))
            << dtype_name(t) << " n=" << n << " i=" << i;
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(All, SimdIsa, ::testing::Values(Isa::Scalar, Isa::Avx2, Isa::Avx512, Isa::Neon),
                         [](const auto& p) { return std::string(kernels::isa_name(p.param)); });

// ops::matmul (the start-up ISA) against dequantized weights times float activations. The
// tolerance bounds the activation conversion error per element: q8 codes are off by at most
// d/2 = amax_block/254 plus the fp16 rounding of d (127 * 2^-11 d); f16 / bf16 by 2^-11 / 2^-8
// relative. Summed as sum_k |w_k| * err_k, plus the float rounding of dot_tolerance, x1.5.
TEST(SimdMatmul, MatchesDequantizedReference) {
  std::mt19937 rng(42);
  const int64_t n_in = 512;
  for (int n_threads : {1, 3}) {
    ThreadPool pool(n_threads);
    std::vector<uint8_t> scratch;
    for (DType t : kWeightTypes) {
      const TypeTraits& tt = *type_traits(t);
      const TypeTraits& vt = *type_traits(tt.vec_dot_type);
      for (int64_t n_out : {37, 67}) {
        std::vector<uint8_t> wb;
        std::vector<std::vector<float>> wf;
        for (int64_t r = 0; r < n_out; ++r) {
          auto b = make_weights(tt, n_in, Dist::Normal, rng);
          wb.insert(wb.end(), b.begin(), b.end());
          wf.push_back(dequant(tt, b, n_in));
        }
        WeightView w{t, wb.data(), n_in, n_out, row_size(tt, n_in)};
        for (int n_tok : {1, 2, 3, 7, 16, 33}) {
          const auto x = make_floats(n_in * n_tok, Dist::Normal, rng);
          std::vector<float> y(static_cast<size_t>(n_out * n_tok));
          ops::matmul(w, x.data(), n_tok, y.data(), pool, scratch);
          for (int tok = 0; tok < n_tok; ++tok) {
            const float* xt = x.data() + tok * n_in;
            std::vector<double> err(static_cast<size_t>(n_in));
            const int64_t bs = vt.quantized ? vt.block_size : 1;
            for (int64_t b = 0; b < n_in; b += bs) {
              double amax = 0;
              for (int64_t i = b; i < b + bs; ++i) amax = std::max(amax, std::fabs(double(xt[i])));
              for (int64_t i = b; i < b + bs; ++i) {
                const double ax = std::fabs(double(xt[i]));
                err[i] = vt.type == DType::F32    ? 0.0
                         : vt.type == DType::F16  ? ax * std::ldexp(1.0, -11)
                         : vt.type == DType::BF16 ? ax * std::ldexp(1.0, -8)
                                                  : amax / 254.0 + amax * std::ldexp(1.0, -11);
              }
            }
            const std::vector<float> xv(xt, xt + n_in);
            for (int64_t r = 0; r < n_out; ++r) {
              double ref = 0, tol = 0;
              for (int64_t i = 0; i < n_in; ++i) {
                ref += double(wf[r][i]) * xt[i];
                tol += std::fabs(double(wf[r][i])) * err[i];
              }
              tol = 1.5 * (tol + dot_tolerance(tt, wf[r], xv));
              ASSERT_NEAR(y[tok * n_out + r], ref, tol)
                  << tt.name << " n_out=" << n_out << " n_tok=" << n_tok << " threads=" << n_threads
                  << " tok=" << tok << " row=" << r << " isa=" << kernels::kernel_isa_name();
            }
          }
        }
      }
    }
  }
}

}  // namespace
