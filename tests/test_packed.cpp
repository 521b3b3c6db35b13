// The panel layouts q4_0x16 and q8_0x16 (kernels/packed.h): the scalar twins against a dot of
// the file's dequantized rows, the SIMD kernels against the twins (activations byte-identical,
// gemm bit-identical), every tile shape equal to decoding alone, and matmul on panel views.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "kernels/dispatch.h"
#include "kernels/packed.h"
#include "ops/ops.h"
#include "util/threadpool.h"

using namespace coppice;
using namespace coppice::kernels;

namespace {

std::vector<float> normal(int64_t n, std::mt19937& rng, float scale = 1.0f) {
  std::normal_distribution<float> nd(0.0f, scale);
  std::vector<float> v(static_cast<size_t>(n));
  for (auto& x : v) x = nd(rng);
  return v;
}

std::vector<uint8_t> file_rows(DType t, int64_t n, int64_t rows, std::mt19937& rng) {
  const TypeTraits& tt = *type_traits(t);
  std::vector<uint8_t> b(row_size(tt, n) * static_cast<size_t>(rows));
  auto f = normal(n * rows, rng);
  for (int64_t i = 0; i < 64 && i < n; ++i) f[static_cast<size_t>(i)] = 0.0f;  // an all-zero block: d = 0
  tt.from_float(f.data(), b.data(), n * rows);
  return b;
}

// q8s activations back to floats (code * d), read from the documented layout.
std::vector<float> dequant_q8s(const uint8_t* a, int64_t n) {
  std::vector<float> out(static_cast<size_t>(n));
  for (int64_t i = 0; i < n / 32; ++i, a += packed::kQ8sBlockBytes) {
    float d;
    int32_t stored_sum;
    std::memcpy(&d, a + 32, 4);
    std::memcpy(&stored_sum, a + 36, 4);
    int32_t sum = 0;
    for (int j = 0; j < 32; ++j) {
      out[static_cast<size_t>(32 * i + j)] = static_cast<int8_t>(a[j]) * d;
      sum += static_cast<int8_t>(a[j]);
    }
    EXPECT_EQ(stored_sum, sum);
  }
  return out;
}

// q8k activations back to floats (one d per 256), read from the documented layout.
std::vector<float> dequant_q8k(const uint8_t* a, int64_t n) {
  std::vector<float> out(static_cast<size_t>(n));
  for (int64_t i = 0; i < n / 256; ++i, a += packed::kQ8kBlockBytes) {
    float d;
    std::memcpy(&d, a + 256, 4);
    for (int s = 0; s < 8; ++s) {
      int16_t stored_sum;
      std::memcpy(&stored_sum, a + 260 + 2 * s, 2);
      int32_t sum = 0;
      for (int j = 0; j < 32; ++j) {
        out[static_cast<size_t>(256 * i + 32 * s + j)] = static_cast<int8_t>(a[32 * s + j]) * d;
        sum += static_cast<int8_t>(a[32 * s + j]);
      }
      EXPECT_EQ(stored_sum, sum);
    }
  }
  return out;
}

// Per source type: the panel packing, its row size, the activation format and the scalar twin.
struct Layout {
  DType type;
  void (*pack)(const void*, void*, int64_t, int64_t);
  size_t (*row_bytes)(int64_t);
  GemmFn twin;
  FromFloatFn quant_ref;
  size_t (*act_row_bytes)(int64_t);
  std::vector<float> (*dequant_act)(const uint8_t*, int64_t);
  double size_ratio;   // panel bytes / file bytes
  bool same_codes;     // activation codes equal the file path's (only d's f16 rounding differs)
};
const Layout kLayouts[] = {
    {DType::Q4_0, packed::pack_q4_0x16, packed::q4_0x16_row_bytes, packed::gemm_q4_0x16_ref,
     packed::quantize_q8s_ref, packed::q8s_row_bytes, dequant_q8s, 1.0, true},
    {DType::Q8_0, packed::pack_q8_0x16, packed::q8_0x16_row_bytes, packed::gemm_q8_0x16_ref,
     packed::quantize_q8s_ref, packed::q8s_row_bytes, dequant_q8s, 1.0, true},
    {DType::Q4_K, packed::pack_q4_Kx16, packed::q4_Kx16_row_bytes, packed::gemm_q4_Kx16_ref,
     packed::quantize_q8k_ref, packed::q8k_row_bytes, dequant_q8k, 148.0 / 144.0, false},
};

struct Case {
  int64_t n = 0;
  int rows = 0, toks = 0;
  std::vector<uint8_t> src, w, a;        // file rows, panels, activations
  std::vector<float> wf, af;             // dequantized weights [rows][n], activations [toks][n]
};

Case make_case(const Layout& l, int64_t n, int rows, int toks, uint32_t seed, FromFloatFn quant) {
  std::mt19937 rng(seed);
  Case k;
  k.n = n, k.rows = rows, k.toks = toks;
  k.src = file_rows(l.type, n, rows, rng);
  k.w.resize(l.row_bytes(n) * static_cast<size_t>(rows));
  l.pack(k.src.data(), k.w.data(), n, rows);
  k.wf.resize(static_cast<size_t>(n * rows));
  type_traits(l.type)->to_float(k.src.data(), k.wf.data(), n * rows);
  const size_t as = l.act_row_bytes(n);
  k.a.resize(as * static_cast<size_t>(toks));
  for (int c = 0; c < toks; ++c) {
    const auto x = normal(n, rng, c == 1 ? 1e-3f : 1.0f);
    quant(x.data(), k.a.data() + c * as, n);
    const auto f = l.dequant_act(k.a.data() + c * as, n);
    k.af.insert(k.af.end(), f.begin(), f.end());
  }
  return k;
}

class PackedPanel : public ::testing::TestWithParam<Layout> {};

}  // namespace

TEST_P(PackedPanel, PackingKeepsTheSizeAndTheTwinMatchesTheFileRows) {
  const Layout& l = GetParam();
  for (int64_t n : {256, 768, 2048}) {
    const Case k = make_case(l, n, 32, 3, 7, l.quant_ref);
    EXPECT_EQ(k.w.size(), static_cast<size_t>(std::lround(k.src.size() * l.size_ratio)));
    std::vector<float> y(static_cast<size_t>(k.rows * k.toks));
    l.twin(n, k.rows, k.toks, k.w.data(), l.row_bytes(n), k.a.data(), l.act_row_bytes(n), y.data(),
           static_cast<size_t>(k.rows));
    for (int c = 0; c < k.toks; ++c) {
      for (int r = 0; r < k.rows; ++r) {
        double ref = 0, mag = 0;
        for (int64_t i = 0; i < n; ++i) {
          const double p = double(k.wf[r * n + i]) * k.af[c * n + i];
          ref += p;
          mag += std::fabs(p);
        }
        // every block term is exact up to two roundings and the f32 accumulation
        EXPECT_NEAR(y[c * k.rows + r], ref, (n / 32 + 4) * 1.2e-7 * mag + 1e-30) << "n " << n << " row " << r << " token " << c;
      }
    }
  }
}

// Each SIMD ISA's kernels against the twin: activations byte-identical, every tile shape (rows,
// odd token counts) and k size bit-identical, each token's column equal to that token alone.
void expect_simd_equals_twin(const Layout& l, Isa isa) {
  const KernelSet* ks = kernels_for(isa);
  if (ks == nullptr) GTEST_SKIP() << "no " << isa_name(isa) << " on this CPU";
  const PackedKernels* pk = ks->packed[static_cast<uint32_t>(l.type)];
  ASSERT_NE(pk, nullptr);
  ASSERT_EQ(pk->row_panel, packed::kPanel);
  for (int64_t n : {pk->k_multiple, 3 * pk->k_multiple, int64_t{768}}) {
    const Case twin = make_case(l, n, 48, 11, 3, l.quant_ref);
    const Case simd = make_case(l, n, 48, 11, 3, pk->quantize_act);
    EXPECT_EQ(simd.a, twin.a) << "the activation quantizer is byte-identical to its twin";
    const size_t ws = pk->row_bytes(n), as = pk->act_row_bytes(n);
    for (int nr : {16, 32, 48}) {
      for (int nc = 1; nc <= 11; ++nc) {
        const size_t ys = static_cast<size_t>(nr) + 3;
        std::vector<float> y(ys * nc, -7.0f), ref(ys * nc, -7.0f);
        pk->gemm(n, nr, nc, twin.w.data(), ws, twin.a.data(), as, y.data(), ys);
        l.twin(n, nr, nc, twin.w.data(), ws, twin.a.data(), as, ref.data(), ys);
        EXPECT_EQ(y, ref) << "n " << n << " tile " << nr << " x " << nc;
        for (int c = 0; c < nc; ++c) {  // each token's column equals that token decoded alone
          std::vector<float> solo(static_cast<size_t>(nr));
          pk->gemm(n, nr, 1, twin.w.data(), ws, twin.a.data() + c * as, as, solo.data(), static_cast<size_t>(nr));
          for (int r = 0; r < nr; ++r) EXPECT_EQ(y[c * ys + r], solo[static_cast<size_t>(r)]) << nr << "x" << nc;
        }
      }
    }
  }
}

TEST_P(PackedPanel, Avx512KernelsEqualTheTwinForEveryTileShape) { expect_simd_equals_twin(GetParam(), Isa::Avx512); }
TEST_P(PackedPanel, Avx2KernelsEqualTheTwinForEveryTileShape) { expect_simd_equals_twin(GetParam(), Isa::Avx2); }

// Extreme codes (the int16 limits of AVX2's vpmaddubsw): file rows of raw bytes, panel 0 all
// 0xFF (q4 code 15, q8 code 127), panel 1 all 0x00 (q4 code 0, q8 code -128), panel 2 random;
// hand-made activations of codes +127, -127, random +-127 and random. Every SIMD ISA equals the
// twin bit for bit, and the twin equals an exact integer dot of the codes (q4_0, q8_0).
TEST_P(PackedPanel, ExtremeCodesMatchTheTwinOnEveryIsa) {
  const Layout& l = GetParam();
  const TypeTraits& tt = *type_traits(l.type);
  const int64_t n = 512, rows = 48;
  const int toks = 4;
  std::mt19937 rng(11);
  std::vector<uint8_t> src(row_size(tt, n) * rows);
  for (size_t i = 0; i < src.size(); ++i) {
    const size_t row = i / row_size(tt, n);
    src[i] = row < 16 ? 0xFF : row < 32 ? 0x00 : static_cast<uint8_t>(rng());
  }
  const size_t bb = tt.type_size;  // block bytes: f16 d (and dmin for q4_K) first
  for (size_t b = 0; b < src.size() / bb; ++b) {
    const int n_half = l.type == DType::Q4_K ? 2 : 1;
    for (int k = 0; k < n_half; ++k) {
      const uint16_t h = static_cast<uint16_t>(0x3400 + rng() % 0x0800);  // 0.25 .. 1
      std::memcpy(&src[b * bb + 2 * k], &h, 2);
    }
  }
  std::vector<uint8_t> w(l.row_bytes(n) * rows);
  l.pack(src.data(), w.data(), n, rows);
  const size_t as = l.act_row_bytes(n);
  std::vector<uint8_t> a(as * toks, 0);
  const bool k_quant = l.type == DType::Q4_K;
  const int64_t blk = k_quant ? 256 : 32;
  for (int c = 0; c < toks; ++c) {
    uint8_t* row = a.data() + c * as;
    for (int64_t i = 0; i < n / blk; ++i) {
      uint8_t* ab = row + i * (k_quant ? packed::kQ8kBlockBytes : packed::kQ8sBlockBytes);
      int32_t sums[8] = {};
      for (int64_t j = 0; j < blk; ++j) {
        const int8_t q = c == 0 ? 127 : c == 1 ? -127 : c == 2 ? (rng() % 2 ? 127 : -127) : static_cast<int8_t>(rng() % 255 - 127);
        ab[j] = static_cast<uint8_t>(q);
        sums[j / 32] += q;
      }
      const float d = 0.01f * static_cast<float>(c + 1);
      std::memcpy(ab + blk, &d, 4);
      if (k_quant) {
        for (int s = 0; s < 8; ++s) {
          const int16_t v = static_cast<int16_t>(sums[s]);
          std::memcpy(ab + 260 + 2 * s, &v, 2);
        }
      } else {
        std::memcpy(ab + 36, &sums[0], 4);
      }
    }
  }
  std::vector<float> ref(rows * toks);
  l.twin(n, rows, toks, w.data(), l.row_bytes(n), a.data(), as, ref.data(), rows);
  if (!k_quant) {  // the twin against an exact dot of the file's codes, block by block
    for (int c = 0; c < toks; ++c) {
      for (int64_t r = 0; r < rows; ++r) {
        double e = 0, mag = 0;
        for (int64_t i = 0; i < n / 32; ++i) {
          const uint8_t* fb = src.data() + r * row_size(tt, n) + i * bb;
          const uint8_t* ab = a.data() + c * as + i * packed::kQ8sBlockBytes;
          int64_t dot = 0;
          for (int j = 0; j < 32; ++j) {
            const int code = l.type == DType::Q8_0 ? static_cast<int8_t>(fb[2 + j])
                                                   : ((fb[2 + j % 16] >> (j < 16 ? 0 : 4)) & 15) - 8;
            dot += code * static_cast<int8_t>(ab[j]);
          }
          float dw, da;
          type_traits(DType::F16)->to_float(fb, &dw, 1);
          std::memcpy(&da, ab + 32, 4);
          const double term = double(dw) * da * double(dot);
          e += term;
          mag += std::fabs(term);
        }
        EXPECT_NEAR(ref[c * rows + r], e, (n / 32 + 4) * 1.2e-7 * mag + 1e-30) << "row " << r << " token " << c;
      }
    }
  }
  for (Isa isa : {Isa::Avx2, Isa::Avx512}) {
    const KernelSet* ks = kernels_for(isa);
    if (ks == nullptr) continue;
    const PackedKernels* pk = ks->packed[static_cast<uint32_t>(l.type)];
    ASSERT_NE(pk, nullptr) << isa_name(isa);
    std::vector<float> y(rows * toks, -7.0f);
    pk->gemm(n, rows, toks, w.data(), l.row_bytes(n), a.data(), as, y.data(), rows);
    EXPECT_EQ(y, ref) << isa_name(isa);
  }
}

// matmul on a panel view (the start-up ISA's layout when it is one) against the file rows:
// close, and a token's row is bit-identical alone or inside any batch (decode and prefill paths).
TEST_P(PackedPanel, MatmulOnPanelViewsMatchesTheFileRowsAndIsBatchInvariant) {
  const DType wt = GetParam().type;
  const PackedKernels* pk = kernels::kernels().packed[static_cast<uint32_t>(wt)];
  if (pk == nullptr || pk->row_panel == 1) GTEST_SKIP() << kernel_isa_name() << " has no panel layout for it";
  std::mt19937 rng(3);
  const int64_t n = 512, rows = 80;
  ThreadPool pool(2);
  std::vector<uint8_t> scratch;
  const auto wsrc = file_rows(wt, n, rows, rng);
  std::vector<uint8_t> wp(pk->row_bytes(n) * rows);
  pk->pack_rows(wsrc.data(), wp.data(), n, rows);
  const WeightView file{wt, wsrc.data(), n, rows, row_size(*type_traits(wt), n)};
  WeightView panels{wt, wp.data(), n, rows, pk->row_bytes(n)};
  panels.packed = pk;
  std::vector<float> wf(static_cast<size_t>(n * rows));
  type_traits(wt)->to_float(wsrc.data(), wf.data(), n * rows);
  for (int n_tok : {1, 5, 33}) {
    const auto x = normal(n * n_tok, rng);
    std::vector<float> y0(rows * n_tok), y1(rows * n_tok);
    ops::matmul(file, x.data(), n_tok, y0.data(), pool, scratch);
    ops::matmul(panels, x.data(), n_tok, y1.data(), pool, scratch);
    for (int t = 0; t < n_tok; ++t) {
      std::vector<float> solo(rows);
      ops::matmul(panels, x.data() + t * n, 1, solo.data(), pool, scratch);
      for (int64_t r = 0; r < rows; ++r) {
        EXPECT_EQ(solo[r], y1[t * rows + r]) << "token " << t << " row " << r << " batch " << n_tok;
        // Same codes (q4_0, q8_0): q8_0 rounds each block's d to f16 (2^-11), q8s does not.
        // Otherwise (q8_K vs q8k rounding) each side's code errs by at most half its step.
        double mag = 0, step = 0;
        for (int64_t b = 0; b < n; b += 256) {
          double amax = 0;
          for (int64_t i = b; i < b + 256; ++i) amax = std::max(amax, std::fabs(double(x[t * n + i])));
          for (int64_t i = b; i < b + 256; ++i) {
            mag += std::fabs(double(wf[r * n + i]) * x[t * n + i]);
            step += std::fabs(double(wf[r * n + i])) * amax / 127.0;
          }
        }
        const double tol = 6e-4 * mag + (GetParam().same_codes ? 0.0 : step) + 1e-6;
        EXPECT_NEAR(y1[t * rows + r], y0[t * rows + r], tol) << "token " << t << " row " << r;
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Layouts, PackedPanel, ::testing::ValuesIn(kLayouts),
                         [](const ::testing::TestParamInfo<Layout>& param_info) {
                           return std::string(dtype_name(param_info.param.type));
                         });
