// Element types: block layouts, exhaustive small code domains, quantize/dequantize error bounds,
// vec_dot against the float dot of the dequantized operands, and exactness of requantization.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "kernels/blocks.h"
#include "kernels/quant_impl.h"
#include "kernels/types.h"
#include "util/fp16.h"

namespace coppice {
namespace {

const DType kAllTypes[] = {DType::F32,  DType::F16,  DType::BF16, DType::Q4_0, DType::Q4_1,
                           DType::Q5_0, DType::Q5_1, DType::Q8_0, DType::Q8_1, DType::Q2_K,
                           DType::Q3_K, DType::Q4_K, DType::Q5_K, DType::Q6_K, DType::Q8_K};

const TypeTraits& traits(DType t) {
  const TypeTraits* tt = type_traits(t);
  EXPECT_NE(tt, nullptr);
  return *tt;
}

std::vector<uint8_t> quantize(const TypeTraits& tt, const std::vector<float>& x) {
  std::vector<uint8_t> q(row_size(tt, static_cast<int64_t>(x.size())));
  tt.from_float(x.data(), q.data(), static_cast<int64_t>(x.size()));
  return q;
}

std::vector<float> dequantize(const TypeTraits& tt, const std::vector<uint8_t>& q, size_t n) {
  std::vector<float> y(n);
  tt.to_float(q.data(), y.data(), static_cast<int64_t>(n));
  return y;
}

// Fresh data each run; the seed is printed with any failure so it can be replayed.
uint32_t fresh_seed() {
  static const uint32_t seed = std::random_device{}();
  return seed;
}

enum class Dist { Normal, Uniform, Outliers };
const char* dist_name(Dist d) {
  return d == Dist::Normal ? "normal" : d == Dist::Uniform ? "uniform" : "outliers";
}

std::vector<float> random_data(std::mt19937& rng, size_t n, Dist dist) {
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::uniform_real_distribution<float> ud(-1.0f, 1.0f), u01(0.0f, 1.0f);
  std::vector<float> x(n);
  for (float& v : x) {
    if (dist == Dist::Uniform) v = ud(rng);
    else v = nd(rng) * (dist == Dist::Outliers && u01(rng) < 0.01f ? 30.0f : 1.0f);
  }
  return x;
}

double rel_rms(const std::vector<float>& x, const std::vector<float>& y) {
  double num = 0, den = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    num += (static_cast<double>(x[i]) - y[i]) * (static_cast<double>(x[i]) - y[i]);
    den += static_cast<double>(x[i]) * x[i];
  }
  return std::sqrt(num / den);
}

// ---------------------------------------------------------------- layout and names

TEST(Quant, BlockSizesMatchGguf) {
  struct Row { DType t; uint32_t id; const char* name; int64_t bs; size_t bytes; };
  const Row rows[] = {
      {DType::F32, 0, "f32", 1, 4},       {DType::F16, 1, "f16", 1, 2},
      {DType::Q4_0, 2, "q4_0", 32, 18},   {DType::Q4_1, 3, "q4_1", 32, 20},
      {DType::Q5_0, 6, "q5_0", 32, 22},   {DType::Q5_1, 7, "q5_1", 32, 24},
      {DType::Q8_0, 8, "q8_0", 32, 34},   {DType::Q8_1, 9, "q8_1", 32, 36},
      {DType::Q2_K, 10, "q2_K", 256, 84}, {DType::Q3_K, 11, "q3_K", 256, 110},
      {DType::Q4_K, 12, "q4_K", 256, 144}, {DType::Q5_K, 13, "q5_K", 256, 176},
      {DType::Q6_K, 14, "q6_K", 256, 210}, {DType::Q8_K, 15, "q8_K", 256, 292},
      {DType::BF16, 30, "bf16", 1, 2},
  };
  for (const Row& r : rows) {
    const TypeTraits* tt = type_traits(r.id);
    ASSERT_NE(tt, nullptr) << r.name;
    EXPECT_EQ(tt->type, r.t);
    EXPECT_STREQ(tt->name, r.name);
    EXPECT_EQ(tt->block_size, r.bs) << r.name;
    EXPECT_EQ(tt->type_size, r.bytes) << r.name;
    EXPECT_EQ(tt->quantized, r.bs > 1) << r.name;
    EXPECT_NE(tt->to_float, nullptr);
    EXPECT_NE(tt->from_float, nullptr);
    EXPECT_NE(tt->vec_dot, nullptr);
  }
  const size_t sizes[] = {sizeof(BlockQ4_0), sizeof(BlockQ4_1), sizeof(BlockQ5_0), sizeof(BlockQ5_1),
                         sizeof(BlockQ8_0), sizeof(BlockQ8_1), sizeof(BlockQ2_K), sizeof(BlockQ3_K),
                         sizeof(BlockQ4_K), sizeof(BlockQ5_K), sizeof(BlockQ6_K), sizeof(BlockQ8_K)};
  EXPECT_EQ(std::vector<size_t>(std::begin(sizes), std::end(sizes)),
            (std::vector<size_t>{18, 20, 22, 24, 34, 36, 84, 110, 144, 176, 210, 292}));
  // vec_dot activation formats, as ggml pairs them.
  EXPECT_EQ(traits(DType::Q4_0).vec_dot_type, DType::Q8_0);
  EXPECT_EQ(traits(DType::Q5_0).vec_dot_type, DType::Q8_0);
  EXPECT_EQ(traits(DType::Q4_1).vec_dot_type, DType::Q8_1);
  EXPECT_EQ(traits(DType::Q5_1).vec_dot_type, DType::Q8_1);
  for (DType t : {DType::Q2_K, DType::Q3_K, DType::Q4_K, DType::Q5_K, DType::Q6_K}) {
    EXPECT_EQ(traits(t).vec_dot_type, DType::Q8_K);
  }
}

TEST(Quant, UnknownIdsHaveNoTraits) {
  // 4, 5: removed q4_2/q4_3; 16-29: i-quants etc. the format defines but we do not support.
  for (uint32_t id : {4u, 5u, 16u, 20u, 29u, 31u, 39u, 1000u, 0xFFFFFFFFu}) {
    EXPECT_EQ(type_traits(id), nullptr) << id;
  }
}

TEST(Quant, NamesRoundTripCaseInsensitive) {
  for (DType t : kAllTypes) {
    const std::string name = dtype_name(t);
    EXPECT_EQ(dtype_from_name(name), t);
    std::string upper = name, lower = name;
    for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    EXPECT_EQ(dtype_from_name(upper), t);
    EXPECT_EQ(dtype_from_name(lower), t);
  }
  EXPECT_EQ(dtype_from_name("q4_k"), DType::Q4_K);
  EXPECT_EQ(dtype_from_name("Q6_K"), DType::Q6_K);
  EXPECT_EQ(dtype_from_name("BF16"), DType::BF16);
  EXPECT_FALSE(dtype_from_name("").has_value());
  EXPECT_FALSE(dtype_from_name("q4_2").has_value());
  EXPECT_FALSE(dtype_from_name("q4_k ").has_value());
  EXPECT_FALSE(dtype_from_name("iq4_nl").has_value());
}

// Hand-computed golden bytes pin the legacy layouts (x_j = j - 16).
TEST(Quant, GoldenLegacyBytes) {
  std::vector<float> x(32);
  for (int j = 0; j < 32; ++j) x[j] = static_cast<float>(j - 16);
  // q4_0: max = -16 -> d = 2; code = floor(x/2 + 8.5): j=0 -> 0, j=16 -> 8, j=31 -> min(15, 16).
  const auto q4 = quantize(traits(DType::Q4_0), x);
  ASSERT_EQ(q4.size(), 18u);
  EXPECT_EQ(q4[0], 0x00);  // fp16(2.0) = 0x4000, little-endian
  EXPECT_EQ(q4[1], 0x40);
  EXPECT_EQ(q4[2], 0x80);   // element 0 (code 0) low, element 16 (code 8) high
  EXPECT_EQ(q4[3], 0x91);   // element 1: trunc(1.0) = 1; element 17: trunc(9.0) = 9
  EXPECT_EQ(q4[17], 0xF8);  // element 15: code 8 (7.5 + 0.5 truncates to 8), element 31: 15
  // q8_0: d = 16/127, codes round(x * 127/16) half away from zero.
  const auto q8 = quantize(traits(DType::Q8_0), x);
  const float id = 127.0f / 16.0f;
  for (int j = 0; j < 32; ++j) {
    EXPECT_EQ(static_cast<int8_t>(q8[2 + j]), static_cast<int8_t>(std::round(x[j] * id))) << j;
  }
  EXPECT_EQ(static_cast<int8_t>(q8[2]), -127);
}

// ---------------------------------------------------------------- exhaustive small domains

// Every non-NaN bit pattern survives bits -> f32 -> bits; NaNs stay NaN.
TEST(Quant, HalfTypesEveryBitPatternRoundTrips) {
  struct Case { DType t; uint32_t exp_mask, mant_mask; };
  for (const Case c : {Case{DType::F16, 0x7C00u, 0x03FFu}, Case{DType::BF16, 0x7F80u, 0x007Fu}}) {
    std::vector<uint16_t> h(65536), back(65536);
    for (uint32_t i = 0; i < 65536; ++i) h[i] = static_cast<uint16_t>(i);
    std::vector<float> f(65536);
    traits(c.t).to_float(h.data(), f.data(), 65536);
    traits(c.t).from_float(f.data(), back.data(), 65536);
    for (uint32_t i = 0; i < 65536; ++i) {
      if ((i & c.exp_mask) == c.exp_mask && (i & c.mant_mask) != 0) {
        EXPECT_TRUE(std::isnan(f[i])) << i;
        continue;
      }
      ASSERT_EQ(back[i], h[i]) << dtype_name(c.t) << " bits " << i;
      if (c.t == DType::BF16) {
        ASSERT_EQ(fp32_to_bits(f[i]), i << 16);
      }
    }
  }
}

const float kScales[] = {1.0f, -0.5f, 0.0137f, 3.0e-5f, 1000.0f, 65504.0f, 0.0f};

// Every 4-bit code at every nibble position: x = d * (q - offset) (+ m), exactly.
TEST(Quant, Legacy4BitEveryCode) {
  for (float dv : kScales) {
    for (int shift = 0; shift < 16; ++shift) {
      BlockQ4_0 a{};
      BlockQ4_1 b{};
      a.d = b.d = fp32_to_fp16(dv);
      b.m = fp32_to_fp16(-3.25f * dv);
      int code[32];
      for (int j = 0; j < 32; ++j) code[j] = (j + shift) % 16;
      for (int j = 0; j < 16; ++j) {
        a.qs[j] = b.qs[j] = static_cast<uint8_t>(code[j] | (code[j + 16] << 4));
      }
      float ya[32], yb[32];
      traits(DType::Q4_0).to_float(&a, ya, 32);
      traits(DType::Q4_1).to_float(&b, yb, 32);
      const float d = fp16_to_fp32(a.d), m = fp16_to_fp32(b.m);
      for (int j = 0; j < 32; ++j) {
        EXPECT_EQ(ya[j], static_cast<float>((code[j] - 8) * static_cast<double>(d)));
        EXPECT_EQ(yb[j], static_cast<float>(code[j] * static_cast<double>(d) + m));
      }
    }
  }
}

TEST(Quant, Legacy5BitEveryCode) {
  for (float dv : kScales) {
    for (int shift = 0; shift < 32; ++shift) {
      BlockQ5_0 a{};
      BlockQ5_1 b{};
      a.d = b.d = fp32_to_fp16(dv);
      b.m = fp32_to_fp16(7.5f * dv);
      int code[32];
      uint32_t qh = 0;
      for (int j = 0; j < 32; ++j) {
        code[j] = (j * 7 + shift) % 32;  // a permutation: every code once per block
        qh |= static_cast<uint32_t>(code[j] >> 4) << j;
      }
      for (int j = 0; j < 16; ++j) {
        a.qs[j] = b.qs[j] = static_cast<uint8_t>((code[j] & 0xF) | ((code[j + 16] & 0xF) << 4));
      }
      std::memcpy(a.qh, &qh, 4);
      std::memcpy(b.qh, &qh, 4);
      float ya[32], yb[32];
      traits(DType::Q5_0).to_float(&a, ya, 32);
      traits(DType::Q5_1).to_float(&b, yb, 32);
      const float d = fp16_to_fp32(a.d), m = fp16_to_fp32(b.m);
      for (int j = 0; j < 32; ++j) {
        EXPECT_EQ(ya[j], static_cast<float>((code[j] - 16) * static_cast<double>(d)));
        EXPECT_EQ(yb[j], static_cast<float>(code[j] * static_cast<double>(d) + m));
      }
    }
  }
}

TEST(Quant, Legacy8BitEveryCode) {
  for (float dv : kScales) {
    BlockQ8_0 a[8];
    BlockQ8_1 b[8];
    for (int i = 0; i < 8; ++i) {
      a[i].d = b[i].d = fp32_to_fp16(dv);
      b[i].s = 0;
      for (int j = 0; j < 32; ++j) a[i].qs[j] = b[i].qs[j] = static_cast<int8_t>(32 * i + j - 128);
    }
    float ya[256], yb[256];
    traits(DType::Q8_0).to_float(a, ya, 256);
    traits(DType::Q8_1).to_float(b, yb, 256);
    const float d = fp16_to_fp32(a[0].d);
    for (int k = 0; k < 256; ++k) {
      EXPECT_EQ(ya[k], static_cast<float>((k - 128) * static_cast<double>(d)));
      EXPECT_EQ(yb[k], ya[k]);
    }
  }
}

// ---------------------------------------------------------------- K-quant layouts
// Decoders written in ggml's loop order (dequantize_row_q*_K), independent of the element
// accessors in quant_impl.h, run on blocks of random bytes.

void ggml_order_q2_K(const BlockQ2_K& b, float* y) {
  const float d = fp16_to_fp32(b.d), dmin = fp16_to_fp32(b.dmin);
  const uint8_t* q = b.qs;
  int is = 0;
  for (int n = 0; n < QK_K; n += 128, q += 32) {
    for (int shift = 0; shift < 8; shift += 2) {
      for (int h = 0; h < 2; ++h) {
        const uint8_t sc = b.scales[is++];
        const float dl = d * static_cast<float>(sc & 0xF), ml = dmin * static_cast<float>(sc >> 4);
        for (int l = 0; l < 16; ++l) *y++ = dl * static_cast<float>((q[l + 16 * h] >> shift) & 3) - ml;
      }
    }
  }
}

void ggml_order_q3_K(const BlockQ3_K& b, float* y) {
  // Scales unpacked with 32-bit masks, the way ggml does it.
  uint32_t aux[4];
  std::memcpy(aux, b.scales, 12);
  const uint32_t tmp = aux[2], k1 = 0x03030303u, k2 = 0x0f0f0f0fu;
  aux[2] = ((aux[0] >> 4) & k2) | (((tmp >> 4) & k1) << 4);
  aux[3] = ((aux[1] >> 4) & k2) | (((tmp >> 6) & k1) << 4);
  aux[0] = (aux[0] & k2) | (((tmp >> 0) & k1) << 4);
  aux[1] = (aux[1] & k2) | (((tmp >> 2) & k1) << 4);
  int8_t sc[16];
  std::memcpy(sc, aux, 16);
  const float d = fp16_to_fp32(b.d);
  const uint8_t* q = b.qs;
  int is = 0;
  uint8_t m = 1;
  for (int n = 0; n < QK_K; n += 128, q += 32) {
    for (int shift = 0; shift < 8; shift += 2, m = static_cast<uint8_t>(m << 1)) {
      for (int h = 0; h < 2; ++h) {
        const float dl = d * static_cast<float>(sc[is++] - 32);
        for (int l = 16 * h; l < 16 * h + 16; ++l) {
          const int v = ((q[l] >> shift) & 3) - ((b.hmask[l] & m) ? 0 : 4);
          *y++ = dl * static_cast<float>(v);
        }
      }
    }
  }
}

void scale_min_k4(int j, const uint8_t* q, int* sc, int* m) {
  if (j < 4) { *sc = q[j] & 63; *m = q[j + 4] & 63; return; }
  *sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
  *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
}

template <typename Block, bool kFiveBit>
void ggml_order_q45_K(const Block& b, float* y) {
  const float d = fp16_to_fp32(b.d), dmin = fp16_to_fp32(b.dmin);
  const uint8_t* q = b.qs;
  int u1 = 1, u2 = 2;
  for (int j = 0, is = 0; j < QK_K; j += 64, q += 32, is += 2, u1 <<= 2, u2 <<= 2) {
    int sc, m;
    scale_min_k4(is, b.scales, &sc, &m);
    const float d1 = d * static_cast<float>(sc), m1 = dmin * static_cast<float>(m);
    scale_min_k4(is + 1, b.scales, &sc, &m);
    const float d2 = d * static_cast<float>(sc), m2 = dmin * static_cast<float>(m);
    for (int l = 0; l < 32; ++l) {
      int v = q[l] & 0xF;
      if constexpr (kFiveBit) v += (b.qh[l] & u1) ? 16 : 0;
      *y++ = d1 * static_cast<float>(v) - m1;
    }
    for (int l = 0; l < 32; ++l) {
      int v = q[l] >> 4;
      if constexpr (kFiveBit) v += (b.qh[l] & u2) ? 16 : 0;
      *y++ = d2 * static_cast<float>(v) - m2;
    }
  }
}

void ggml_order_q6_K(const BlockQ6_K& b, float* y) {
  const float d = fp16_to_fp32(b.d);
  const uint8_t *ql = b.ql, *qh = b.qh;
  const int8_t* sc = b.scales;
  for (int n = 0; n < QK_K; n += 128, ql += 64, qh += 32, sc += 8, y += 128) {
    for (int l = 0; l < 32; ++l) {
      const int is = l / 16;
      const int q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
      const int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
      const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
      const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
      y[l] = d * static_cast<float>(sc[is]) * static_cast<float>(q1);
      y[l + 32] = d * static_cast<float>(sc[is + 2]) * static_cast<float>(q2);
      y[l + 64] = d * static_cast<float>(sc[is + 4]) * static_cast<float>(q3);
      y[l + 96] = d * static_cast<float>(sc[is + 6]) * static_cast<float>(q4);
    }
  }
}

// Random bytes with finite fp16 scale fields at the given offsets.
template <typename Block>
Block random_block(std::mt19937& rng, std::initializer_list<size_t> half_offsets) {
  Block b;
  auto* p = reinterpret_cast<uint8_t*>(&b);
  for (size_t i = 0; i < sizeof(Block); ++i) p[i] = static_cast<uint8_t>(rng());
  std::uniform_real_distribution<float> u(-2.0f, 2.0f);
  for (size_t off : half_offsets) {
    const uint16_t h = fp32_to_fp16(u(rng));
    std::memcpy(p + off, &h, 2);
  }
  return b;
}

template <typename Block, typename Ref>
void check_layout(DType t, std::initializer_list<size_t> halves, Ref ref) {
  std::mt19937 rng(fresh_seed());
  for (int trial = 0; trial < 2000; ++trial) {
    const Block b = random_block<Block>(rng, halves);
    float got[QK_K], want[QK_K];
    traits(t).to_float(&b, got, QK_K);
    ref(b, want);
    for (int e = 0; e < QK_K; ++e) ASSERT_EQ(got[e], want[e]) << dtype_name(t) << " element " << e;
  }
}

TEST(Quant, KQuantLayoutsMatchGgmlLoopOrder) {
  SCOPED_TRACE(testing::Message() << "seed " << fresh_seed());
  check_layout<BlockQ2_K>(DType::Q2_K, {offsetof(BlockQ2_K, d), offsetof(BlockQ2_K, dmin)},
                          ggml_order_q2_K);
  check_layout<BlockQ3_K>(DType::Q3_K, {offsetof(BlockQ3_K, d)}, ggml_order_q3_K);
  check_layout<BlockQ4_K>(DType::Q4_K, {offsetof(BlockQ4_K, d), offsetof(BlockQ4_K, dmin)},
                          ggml_order_q45_K<BlockQ4_K, false>);
  check_layout<BlockQ5_K>(DType::Q5_K, {offsetof(BlockQ5_K, d), offsetof(BlockQ5_K, dmin)},
                          ggml_order_q45_K<BlockQ5_K, true>);
  check_layout<BlockQ6_K>(DType::Q6_K, {offsetof(BlockQ6_K, d)}, ggml_order_q6_K);
}

// ---------------------------------------------------------------- round-trip error

// Per-element bound on |x - dequant(quant(x))| from the block's own stored scales; < 0 when the
// element's code may have been clamped (the relative-RMS bound covers those).
double element_bound(DType t, const uint8_t* q, const float* x, const float* y, int64_t i) {
  constexpr double kH = 1.0 / 1024;  // 2 * fp16 rounding (2^-11): the stored scale vs the fp32 one
  const double ax = std::fabs(x[i]), slack = 1e-6 * ax + 1e-30;
  auto legacy = [&](auto* blocks, int qmax, int offset) {
    const auto& b = blocks[i / 32];
    const double d = std::fabs(fp16_to_fp32(b.d));
    // q = qmax - offset is the clamp target of the rounding; it may sit a full step away.
    const bool top = offset > 0 && y[i] == static_cast<float>((qmax - offset) * fp16_to_fp32(b.d));
    return d * ((top ? 1.0 : 0.5) + std::max(offset, qmax - offset) * kH) + slack;
  };
  auto with_min = [&](auto* blocks, int qmax) {
    const auto& b = blocks[i / 32];
    const double d = fp16_to_fp32(b.d), m = std::fabs(fp16_to_fp32(b.m));
    return d * (0.5 + qmax * kH) + m * kH + slack;
  };
  const int e = static_cast<int>(i % QK_K);
  switch (t) {
    case DType::F32: return 0.0;
    case DType::F16: return std::max(ax / 2048, std::ldexp(1.0, -25));
    case DType::BF16: return ax / 256 + 1e-38;
    case DType::Q4_0: return legacy(reinterpret_cast<const BlockQ4_0*>(q), 15, 8);
    case DType::Q5_0: return legacy(reinterpret_cast<const BlockQ5_0*>(q), 31, 16);
    case DType::Q8_0: return legacy(reinterpret_cast<const BlockQ8_0*>(q), 127, 0);
    case DType::Q8_1: return legacy(reinterpret_cast<const BlockQ8_1*>(q), 127, 0);
    case DType::Q4_1: return with_min(reinterpret_cast<const BlockQ4_1*>(q), 15);
    case DType::Q5_1: return with_min(reinterpret_cast<const BlockQ5_1*>(q), 31);
    case DType::Q8_K: return std::fabs(reinterpret_cast<const BlockQ8_K*>(q)[i / QK_K].d) * 0.5 + slack;
    default: break;
  }
  // K-quants: codes are round((x + min) / dl), so an unclamped code is within dl / 2.
  double dl = 0;
  bool edge = true;
  if (t == DType::Q2_K) {
    const auto& b = reinterpret_cast<const BlockQ2_K*>(q)[i / QK_K];
    dl = fp16_to_fp32(b.d) * (b.scales[e / 16] & 0xF);
    const int c = quant::q2k_code(b, e);
    edge = c == 0 || c == 3;
  } else if (t == DType::Q3_K) {
    const auto& b = reinterpret_cast<const BlockQ3_K*>(q)[i / QK_K];
    dl = fp16_to_fp32(b.d) * quant::q3k_scale(b.scales, e / 16);
    const int c = quant::q3k_code(b, e);
    edge = c == -4 || c == 3;
  } else if (t == DType::Q4_K || t == DType::Q5_K) {
    const bool q5 = t == DType::Q5_K;
    const auto* b4 = reinterpret_cast<const BlockQ4_K*>(q) + i / QK_K;
    const auto* b5 = reinterpret_cast<const BlockQ5_K*>(q) + i / QK_K;
    uint8_t sc, m;
    quant::get_scale_min_k4(e / 32, q5 ? b5->scales : b4->scales, &sc, &m);
    dl = fp16_to_fp32(q5 ? b5->d : b4->d) * sc;
    const int c = q5 ? quant::q5k_code(*b5, e) : quant::q4k_code(*b4, e);
    edge = c == 0 || c == (q5 ? 31 : 15);
  } else if (t == DType::Q6_K) {
    const auto& b = reinterpret_cast<const BlockQ6_K*>(q)[i / QK_K];
    dl = fp16_to_fp32(b.d) * b.scales[e / 16];
    const int c = quant::q6k_code(b, e);
    edge = c == -32 || c == 31;
  }
  if (edge || dl == 0) return -1;
  return std::fabs(dl) * 0.5 * (1 + 1e-5) + 1e-6 * (ax + std::fabs(y[i])) + 1e-30;
}

// Relative RMS error bounds per type and distribution, about 1.2x the worst of 25 seeds.
// Expected: a grid of step d has RMS error d/sqrt(12); N(0,1) blocks of 32 have amax ~2.1, so
// q8_0 (d = amax/127) ~0.5% and q4_0 (d = amax/8) ~7.5% plus clamping of the top code. The
// K-quants fit their grids per 16/32 elements and come in below the legacy type of equal bits.
// Outliers (1% at 30x) stretch their block's range and so the error of its neighbours.
struct RmsBound { DType t; double normal, uniform, outliers; };
const RmsBound kRmsBounds[] = {
    {DType::F32, 0, 0, 0},
    {DType::F16, 3e-4, 3e-4, 3.5e-4},    // 2^-11 / sqrt(3) ~ 2.8e-4 at worst
    {DType::BF16, 2.2e-3, 2e-3, 2.6e-3},  // 2^-8 / sqrt(3) ~ 2.3e-3 at worst
    {DType::Q8_0, 0.0065, 0.0046, 0.016}, {DType::Q8_1, 0.0065, 0.0046, 0.016},
    {DType::Q8_K, 0.0085, 0.0048, 0.040}, {DType::Q5_0, 0.050, 0.037, 0.110},
    {DType::Q5_1, 0.045, 0.035, 0.072},   {DType::Q4_0, 0.100, 0.077, 0.170},
    {DType::Q4_1, 0.093, 0.073, 0.160},   {DType::Q6_K, 0.021, 0.016, 0.045},
    {DType::Q5_K, 0.043, 0.033, 0.070},   {DType::Q4_K, 0.085, 0.066, 0.125},
    {DType::Q3_K, 0.180, 0.145, 0.170},   {DType::Q2_K, 0.340, 0.280, 0.350},
};

TEST(Quant, RoundTripErrorBounds) {
  SCOPED_TRACE(testing::Message() << "seed " << fresh_seed());
  std::mt19937 rng(fresh_seed());
  const size_t n = 64 * QK_K;
  for (const RmsBound& rb : kRmsBounds) {
    const TypeTraits& tt = traits(rb.t);
    for (Dist dist : {Dist::Normal, Dist::Uniform, Dist::Outliers}) {
      const auto x = random_data(rng, n, dist);
      const auto q = quantize(tt, x);
      const auto y = dequantize(tt, q, n);
      const double err = rel_rms(x, y);
      const double bound = dist == Dist::Normal ? rb.normal : dist == Dist::Uniform ? rb.uniform : rb.outliers;
      if (std::getenv("COPPICE_QUANT_VERBOSE") != nullptr) {
        std::printf("%-5s %-9s rel_rms %.5f (bound %.4f)\n", tt.name, dist_name(dist), err, bound);
      }
      EXPECT_LE(err, bound) << tt.name << " " << dist_name(dist);
      for (size_t i = 0; i < n; ++i) {
        const double bnd = element_bound(rb.t, q.data(), x.data(), y.data(), static_cast<int64_t>(i));
        if (bnd < 0) continue;
        ASSERT_LE(std::fabs(static_cast<double>(x[i]) - y[i]), bnd)
            << tt.name << " " << dist_name(dist) << " element " << i << " x " << x[i] << " y " << y[i];
      }
    }
  }
}

// Degenerate inputs: zeros, constants, a single spike. Results must be finite and exact where
// the format can represent the input exactly (zeros everywhere, constants in the min formats).
TEST(Quant, DegenerateBlocks) {
  for (DType t : kAllTypes) {
    const TypeTraits& tt = traits(t);
    const size_t n = 2 * QK_K;
    for (int c = 0; c < 4; ++c) {
      std::vector<float> x(n, 0.0f);
      if (c == 1) std::fill(x.begin(), x.end(), 0.75f);
      if (c == 2) std::fill(x.begin(), x.end(), -1.5f);
      if (c == 3) x[37] = 5.0f;
      const auto y = dequantize(tt, quantize(tt, x), n);
      for (size_t i = 0; i < n; ++i) {
        ASSERT_TRUE(std::isfinite(y[i])) << tt.name << " case " << c;
        if (c == 0 || (c == 3 && i != 37)) {
          ASSERT_EQ(y[i], 0.0f) << tt.name << " case " << c << " element " << i;
        }
      }
      // Constants and spikes land on a code; only the fp16 rounding of the scales remains.
      if (c != 0) {
        EXPECT_LE(rel_rms(x, y), 2e-3) << tt.name << " case " << c;
      }
    }
  }
}

// ---------------------------------------------------------------- vec_dot

// Per-element bound on the activation quantization error |y - dequant(quant(y))| for the
// vec_dot_type formats (same reasoning as element_bound, without clamping).
std::vector<double> activation_error_bound(DType t, const std::vector<float>& y) {
  std::vector<double> e(y.size());
  const size_t bs = static_cast<size_t>(traits(t).block_size);
  for (size_t b = 0; b < y.size(); b += bs) {
    double amax = 0;
    for (size_t i = b; i < b + bs; ++i) amax = std::max(amax, std::fabs(static_cast<double>(y[i])));
    for (size_t i = b; i < b + bs; ++i) {
      const double ay = std::fabs(y[i]);
      switch (t) {
        case DType::F32: e[i] = 0; break;
        case DType::F16: e[i] = std::max(ay / 2048, std::ldexp(1.0, -25)); break;
        case DType::BF16: e[i] = ay / 256; break;
        case DType::Q8_K: e[i] = amax / 254 * (1 + 1e-5); break;
        default: e[i] = amax * (1.0 / 254 + 1.0 / 2048) * (1 + 1e-5); break;  // fp16 d
      }
    }
  }
  return e;
}

// The q8_1 sum s is stored in fp16, so m * s differs from m * sum(dequant(y)) by up to
// |m| * (|s| + |d * sum q|) * 2^-11 per block (q4_1 / q5_1 only).
double q8_1_sum_slack(DType t, const std::vector<uint8_t>& xq, const std::vector<uint8_t>& yq) {
  if (t != DType::Q4_1 && t != DType::Q5_1) return 0;
  const auto* yb = reinterpret_cast<const BlockQ8_1*>(yq.data());
  const size_t nb = yq.size() / sizeof(BlockQ8_1);
  double slack = 0;
  for (size_t b = 0; b < nb; ++b) {
    const float m = t == DType::Q4_1 ? fp16_to_fp32(reinterpret_cast<const BlockQ4_1*>(xq.data())[b].m)
                                     : fp16_to_fp32(reinterpret_cast<const BlockQ5_1*>(xq.data())[b].m);
    int sum = 0;
    for (int j = 0; j < 32; ++j) sum += yb[b].qs[j];
    const double s_exact = static_cast<double>(fp16_to_fp32(yb[b].d)) * sum;
    slack += std::fabs(m) * (std::fabs(fp16_to_fp32(yb[b].s)) + std::fabs(s_exact)) / 1024;
  }
  return slack;
}

TEST(Quant, VecDotMatchesDequantizedDot) {
  SCOPED_TRACE(testing::Message() << "seed " << fresh_seed());
  std::mt19937 rng(fresh_seed());
  for (DType t : kAllTypes) {
    const TypeTraits& tx = traits(t);
    const TypeTraits& ty = traits(tx.vec_dot_type);
    const int64_t bs = std::max(tx.block_size, ty.block_size);
    const int64_t max_blocks = bs == 1 ? 4096 : bs == 32 ? 128 : 16;
    std::uniform_int_distribution<int64_t> nblocks(1, max_blocks);
    for (int trial = 0; trial < 24; ++trial) {
      const int64_t n = bs * nblocks(rng);
      const Dist dist = static_cast<Dist>(trial % 3);
      const auto x = random_data(rng, static_cast<size_t>(n), dist);
      const auto y = random_data(rng, static_cast<size_t>(n), dist);
      const auto xq = quantize(tx, x), yq = quantize(ty, y);
      const auto xd = dequantize(tx, xq, static_cast<size_t>(n));
      const auto yd = dequantize(ty, yq, static_cast<size_t>(n));
      float s = 0;
      tx.vec_dot(n, &s, xq.data(), yq.data());

      // (1) Against the float dot of the dequantized operands: only rounding differs. The
      // kernel sums n/block terms in fp32 and the min formats subtract two large partial sums,
      // so the scale is the block-max of |x| times |y| (covers that cancellation).
      double ref = 0, mag = 0;
      for (int64_t b = 0; b < n; b += tx.block_size) {
        double bmax = 0;
        for (int64_t i = b; i < b + tx.block_size; ++i) bmax = std::max(bmax, std::fabs(static_cast<double>(xd[i])));
        for (int64_t i = b; i < b + tx.block_size; ++i) {
          ref += static_cast<double>(xd[i]) * yd[i];
          mag += (tx.block_size == 1 ? std::fabs(static_cast<double>(xd[i])) : 2 * bmax) * std::fabs(yd[i]);
        }
      }
      const double eps = std::ldexp(1.0, -23);
      const double nterms = static_cast<double>(n / bs) + 8;
      const double tol1 = nterms * eps * mag + q8_1_sum_slack(t, xq, yq) + 1e-30;
      ASSERT_NEAR(s, ref, tol1) << tx.name << " n=" << n << " " << dist_name(dist);

      // (2) Against dequant(x) . y with the original fp32 activations: the difference is the
      // activation quantization, bounded elementwise by activation_error_bound.
      const auto ey = activation_error_bound(tx.vec_dot_type, y);
      double ref2 = 0, tol2 = tol1;
      for (int64_t i = 0; i < n; ++i) {
        ref2 += static_cast<double>(xd[i]) * y[i];
        tol2 += std::fabs(static_cast<double>(xd[i])) * ey[i];
      }
      ASSERT_NEAR(s, ref2, tol2) << tx.name << " n=" << n << " " << dist_name(dist);
    }
  }
}

// ---------------------------------------------------------------- exact requantization

// Random blocks whose values the reference quantizer can hit exactly: the extreme code is
// present so the recomputed d equals the stored one, and m is within 2^4 of d in magnitude so
// q*d + m is exact in fp32. Dequantize, requantize, compare bytes.
template <typename Block>
void check_requantize_exact(DType t, int nbits, bool has_min, bool signed_codes) {
  SCOPED_TRACE(testing::Message() << dtype_name(t) << " seed " << fresh_seed());
  std::mt19937 rng(fresh_seed());
  std::uniform_real_distribution<float> ud(1e-3f, 10.0f), um(-16.0f, 16.0f), u01(0, 1);
  const int qmax = (1 << nbits) - 1;
  const TypeTraits& tt = traits(t);
  for (int trial = 0; trial < 4000; ++trial) {
    std::vector<int> code(32);
    std::uniform_int_distribution<int> uc(signed_codes ? -127 : 0, signed_codes ? 127 : qmax);
    for (int& c : code) c = uc(rng);
    std::uniform_int_distribution<int> pos(0, 31);
    const int p0 = pos(rng), p1 = (p0 + 1 + pos(rng) % 31) % 32;
    float d = fp16_to_fp32(fp32_to_fp16(ud(rng)));
    if (signed_codes) {
      code[p0] = u01(rng) < 0.5f ? 127 : -127;  // d > 0 is what q8 writes
    } else {
      code[p0] = 0;
      if (has_min) code[p1] = qmax;
      if (!has_min && u01(rng) < 0.5f) d = -d;  // q4_0/q5_0 keep the sign of the extreme in d
    }
    float m = 0;
    if (has_min) {
      do { m = fp16_to_fp32(fp32_to_fp16(d * um(rng))); } while (std::fabs(m) < d / 16);
    }
    const int offset = signed_codes || has_min ? 0 : 1 << (nbits - 1);
    std::vector<float> x(32);
    for (int j = 0; j < 32; ++j) x[j] = static_cast<float>(code[j] - offset) * d + m;
    const auto q1 = quantize(tt, x);
    const auto y = dequantize(tt, q1, 32);
    ASSERT_EQ(y, x) << "trial " << trial;
    ASSERT_EQ(quantize(tt, y), q1) << "trial " << trial;
    // And the codes we chose are the codes stored: requantize our own block bytes.
    const float d_stored = fp16_to_fp32(reinterpret_cast<const Block*>(q1.data())->d);
    ASSERT_EQ(d_stored, d) << "trial " << trial;
  }
}

TEST(Quant, RequantizeRepresentableIsExact) {
  check_requantize_exact<BlockQ4_0>(DType::Q4_0, 4, false, false);
  check_requantize_exact<BlockQ5_0>(DType::Q5_0, 5, false, false);
  check_requantize_exact<BlockQ4_1>(DType::Q4_1, 4, true, false);
  check_requantize_exact<BlockQ5_1>(DType::Q5_1, 5, true, false);
  check_requantize_exact<BlockQ8_0>(DType::Q8_0, 8, false, true);
  check_requantize_exact<BlockQ8_1>(DType::Q8_1, 8, false, true);
}

// Requantizing a K-quant's own output must not lose much: the scale search finds a grid at
// least as good as the one that produced the data (allowing for scale re-quantization).
TEST(Quant, KQuantRequantizeIsStable) {
  SCOPED_TRACE(testing::Message() << "seed " << fresh_seed());
  std::mt19937 rng(fresh_seed());
  for (DType t : {DType::Q2_K, DType::Q3_K, DType::Q4_K, DType::Q5_K, DType::Q6_K, DType::Q8_K}) {
    const TypeTraits& tt = traits(t);
    const auto x = random_data(rng, 16 * QK_K, Dist::Normal);
    const auto y1 = dequantize(tt, quantize(tt, x), x.size());
    const auto y2 = dequantize(tt, quantize(tt, y1), x.size());
    EXPECT_LE(rel_rms(y1, y2), 0.5 * rel_rms(x, y1)) << tt.name;
  }
}

}  // namespace
}  // namespace coppice
