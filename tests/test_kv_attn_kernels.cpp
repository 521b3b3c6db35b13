// The fused quantized-KV attention kernels (kernels/attn.h: score_rows, accum_rows) for q8_0,
// q4_0, q4_1, q5_0 and q5_1: the scalar twins against double-precision math over the rows as
// the type's own to_float decodes them, and every SIMD table against the scalar twins.
// Tolerances come from the data: float roundings times the magnitudes summed. Then
// ops::attention over them (start-up ISA): GQA, masked keys, a sub-range of query heads.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "kernels/attn.h"
#include "kernels/dispatch.h"
#include "kernels/types.h"
#include "ops/attention.h"
#include "util/fp16.h"

using namespace coppice;
using kernels::Isa;
using kernels::KvQuery;

namespace {

constexpr double kEps = 1.0 / (1 << 24);

// n cached cells of n_kv = 3 heads of hd elements; the kernels read head 1 (offset rows).
struct Rows {
  std::vector<uint8_t> bytes;
  std::vector<float> back;  // head 1 of each cell as to_float decodes it: [n][hd]
  std::vector<float> amax;  // per (cell, 32-block): max |decoded value|
  size_t stride = 0, head_off = 0;
  const uint8_t* head(int j = 0) const { return bytes.data() + head_off + j * stride; }
};

Rows make_rows(DType t, int n, int hd, std::mt19937& rng) {
  const TypeTraits& tt = *type_traits(t);
  Rows r;
  r.stride = row_size(tt, 3 * hd);
  r.head_off = row_size(tt, hd);
  r.bytes.resize(r.stride * n);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::uniform_real_distribution<float> shift(-2.0f, 2.0f);
  std::vector<float> x(3 * hd), dec(3 * hd);
  for (int j = 0; j < n; ++j) {
    const float sc = std::exp(shift(rng)), off = 0.5f * shift(rng);  // blocks of varied range
    for (float& v : x) v = off + sc * nd(rng);
    tt.from_float(x.data(), r.bytes.data() + j * r.stride, 3 * hd);
    tt.to_float(r.bytes.data() + j * r.stride, dec.data(), 3 * hd);
    r.back.insert(r.back.end(), dec.begin() + hd, dec.begin() + 2 * hd);
    for (int b = 0; b < hd / 32; ++b) {
      float m = 0;
      for (int i = 0; i < 32; ++i) m = std::max(m, std::fabs(dec[hd + 32 * b + i]));
      r.amax.push_back(m);
    }
  }
  return r;
}

// Rows written byte by byte so that the cells' head blocks hold every code of the type (all 256
// q8_0 bytes, -128 included; all 256 nibble pairs), random 5th bits and random fp16 scales/mins.
Rows make_raw_rows(DType t, int hd, std::mt19937& rng) {
  const TypeTraits& tt = *type_traits(t);
  const int n = 16, nb = hd / 32;
  Rows r;
  r.stride = row_size(tt, 3 * hd);
  r.head_off = row_size(tt, hd);
  r.bytes.resize(r.stride * n);
  std::uniform_real_distribution<float> u(0.05f, 1.0f);
  std::uniform_int_distribution<uint32_t> bits;
  const size_t bs = tt.type_size;
  int next = 0;
  for (int j = 0; j < n; ++j) {
    for (int b = 0; b < 3 * nb; ++b) {
      uint8_t* blk = r.bytes.data() + j * r.stride + b * bs;
      const uint16_t d = fp32_to_fp16((bits(rng) & 1 ? -1.0f : 1.0f) * u(rng) * 0.1f);
      const uint16_t m = fp32_to_fp16(-u(rng));
      std::memcpy(blk, &d, 2);
      size_t at = 2;
      if (t == DType::Q4_1 || t == DType::Q5_1) { std::memcpy(blk + 2, &m, 2); at = 4; }
      if (t == DType::Q5_0 || t == DType::Q5_1) { const uint32_t qh = bits(rng); std::memcpy(blk + at, &qh, 4); at += 4; }
      for (size_t i = at; i < bs; ++i) blk[i] = static_cast<uint8_t>(next++);
    }
  }
  std::vector<float> dec(3 * hd);
  for (int j = 0; j < n; ++j) {
    tt.to_float(r.bytes.data() + j * r.stride, dec.data(), 3 * hd);
    r.back.insert(r.back.end(), dec.begin() + hd, dec.begin() + 2 * hd);
    for (int b = 0; b < nb; ++b) {
      float mx = 0;
      for (int i = 0; i < 32; ++i) mx = std::max(mx, std::fabs(dec[hd + 32 * b + i]));
      r.amax.push_back(mx);
    }
  }
  return r;
}

// |error| bound terms: |q_i| (|k_i| + 2 amax of k's block) summed (a min/offset of a block is
// within its range; the integer dot is exact, only the per-block float terms round).
double score_mag(const std::vector<float>& qd, const Rows& r, int j, int hd) {
  double m = 0;
  for (int i = 0; i < hd; ++i) m += std::fabs(qd[i]) * (std::fabs(r.back[j * hd + i]) + 2 * r.amax[j * (hd / 32) + i / 32]);
  return m;
}
double accum_mag(const std::vector<float>& y0, const std::vector<float>& p, const Rows& r, int i, int hd) {
  double m = std::fabs(y0[i]);
  for (size_t j = 0; j < p.size(); ++j) m += p[j] * (std::fabs(r.back[j * hd + i]) + 2 * r.amax[j * (hd / 32) + i / 32]);
  return m;
}

std::vector<float> query(int hd, std::mt19937& rng) {
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> q(hd);
  for (float& v : q) v = nd(rng);
  q[3] = 6.0f;  // an outlier sets one block's scale
  return q;
}

std::vector<float> weights(int n, std::mt19937& rng) {  // softmax-like, some exactly 0 (masked)
  std::uniform_real_distribution<float> u(0.0f, 1.0f);
  std::vector<float> p(n);
  for (int j = 0; j < n; ++j) p[j] = j % 5 == 2 ? 0.0f : u(rng) * u(rng);
  return p;
}

const int kHeadDims[] = {32, 64, 128};
const int kCounts[] = {1, 7, 8, 9, 31, 32, 33};

}  // namespace

TEST(KvQuery, IsTheQ8_0RoundingOfTheQuery) {
  std::mt19937 rng(3);
  for (int hd : kHeadDims) {
    const auto q = query(hd, rng);
    KvQuery kq;
    kernels::kv_query_prepare(q.data(), hd, kq);
    ASSERT_EQ(kq.nb, hd / 32);
    const TypeTraits& q8 = *type_traits(DType::Q8_0);
    std::vector<uint8_t> blocks(row_size(q8, hd));
    std::vector<float> qd(hd);
    q8.from_float(q.data(), blocks.data(), hd);
    q8.to_float(blocks.data(), qd.data(), hd);
    for (int b = 0; b < kq.nb; ++b) {
      int32_t s = 0;
      for (int i = 0; i < 32; ++i) {
        EXPECT_EQ(kq.d[b] * kq.q[32 * b + i], qd[32 * b + i]) << "hd " << hd << " i " << 32 * b + i;
        s += kq.q[32 * b + i];
      }
      EXPECT_EQ(kq.sum[b], s);
      EXPECT_FLOAT_EQ(kq.s[b], kq.d[b] * static_cast<float>(s));
    }
  }
}

// Scalar twins against double math over to_float's rows and the q8_0-rounded query.
TEST(KvQuantKernels, ScalarTwinsMatchFloatMath) {
  std::mt19937 rng(5);
  const kernels::AttnKernels& ref = kernels::kernels_for(Isa::Scalar)->attn;
  for (DType t : kernels::kKvQuantTypes) {
    const kernels::KvQuantKernels* kk = ref.for_quant(t);
    ASSERT_NE(kk, nullptr);
    for (int hd : kHeadDims) {
      const int n = 33;
      const Rows r = make_rows(t, n, hd, rng);
      const auto q = query(hd, rng);
      KvQuery kq;
      kernels::kv_query_prepare(q.data(), hd, kq);
      std::vector<float> qd(hd);
      for (int i = 0; i < hd; ++i) qd[i] = kq.d[i / 32] * kq.q[i];
      std::vector<float> sc(n);
      kk->score_rows(kq, r.head(), r.stride, n, sc.data());
      for (int j = 0; j < n; ++j) {
        double e = 0;
        for (int i = 0; i < hd; ++i) e += double{qd[i]} * r.back[j * hd + i];
        EXPECT_NEAR(sc[j], e, 8 * (hd / 32 + 4) * kEps * score_mag(qd, r, j, hd))
            << dtype_name(t) << " hd " << hd << " key " << j;
      }
      const auto p = weights(n, rng);
      const auto y0 = query(hd, rng);
      std::vector<float> y = y0;
      kk->accum_rows(y.data(), p.data(), r.head(), r.stride, n, hd / 32);
      for (int i = 0; i < hd; ++i) {
        double e = y0[i];
        for (int j = 0; j < n; ++j) e += double{p[j]} * r.back[j * hd + i];
        EXPECT_NEAR(y[i], e, 4 * (n + 4) * kEps * accum_mag(y0, p, r, i, hd))
            << dtype_name(t) << " hd " << hd << " element " << i;
      }
    }
  }
}

class KvQuantIsa : public ::testing::TestWithParam<Isa> {};

// Every ISA's fused kernels against the scalar twins: all types, head sizes, key counts
// (8-key groups and their tails), weights with zeros.
TEST_P(KvQuantIsa, MatchScalarTwins) {
  const kernels::KernelSet* ks = kernels::kernels_for(GetParam());
  if (ks == nullptr) GTEST_SKIP() << "this CPU cannot run " << kernels::isa_name(GetParam());
  const kernels::AttnKernels& ref = kernels::kernels_for(Isa::Scalar)->attn;
  std::mt19937 rng(7);
  for (DType t : kernels::kKvQuantTypes) {
    for (int hd : kHeadDims) {
      for (int n : kCounts) {
        const Rows r = make_rows(t, n, hd, rng);
        const auto q = query(hd, rng);
        KvQuery kq;
        kernels::kv_query_prepare(q.data(), hd, kq);
        std::vector<float> qd(hd);
        for (int i = 0; i < hd; ++i) qd[i] = kq.d[i / 32] * kq.q[i];
        std::vector<float> want(n), got(n, -1.0f);
        ref.for_quant(t)->score_rows(kq, r.head(), r.stride, n, want.data());
        ks->attn.for_quant(t)->score_rows(kq, r.head(), r.stride, n, got.data());
        for (int j = 0; j < n; ++j) {
          EXPECT_NEAR(got[j], want[j], 16 * (hd / 32 + 8) * kEps * score_mag(qd, r, j, hd))
              << dtype_name(t) << " hd " << hd << " n " << n << " key " << j;
        }
        const auto p = weights(n, rng);
        const auto y0 = query(hd, rng);
        std::vector<float> yw = y0, yg = y0;
        ref.for_quant(t)->accum_rows(yw.data(), p.data(), r.head(), r.stride, n, hd / 32);
        ks->attn.for_quant(t)->accum_rows(yg.data(), p.data(), r.head(), r.stride, n, hd / 32);
        for (int i = 0; i < hd; ++i) {
          EXPECT_NEAR(yg[i], yw[i], 8 * (n + 4) * kEps * accum_mag(y0, p, r, i, hd))
              << dtype_name(t) << " hd " << hd << " n " << n << " element " << i;
        }
      }
    }
  }
}

// Every code of each type (hand-written blocks): the scalar twin against double math over
// to_float's rows, and this ISA against the twin.
TEST_P(KvQuantIsa, EveryCodeOfEveryType) {
  const kernels::KernelSet* ks = kernels::kernels_for(GetParam());
  if (ks == nullptr) GTEST_SKIP() << "this CPU cannot run " << kernels::isa_name(GetParam());
  const kernels::AttnKernels& ref = kernels::kernels_for(Isa::Scalar)->attn;
  std::mt19937 rng(21);
  const int hd = 64, n = 16;
  for (DType t : kernels::kKvQuantTypes) {
    const Rows r = make_raw_rows(t, hd, rng);
    const auto q = query(hd, rng);
    KvQuery kq;
    kernels::kv_query_prepare(q.data(), hd, kq);
    std::vector<float> qd(hd);
    for (int i = 0; i < hd; ++i) qd[i] = kq.d[i / 32] * kq.q[i];
    std::vector<float> want(n), got(n);
    ref.for_quant(t)->score_rows(kq, r.head(), r.stride, n, want.data());
    ks->attn.for_quant(t)->score_rows(kq, r.head(), r.stride, n, got.data());
    for (int j = 0; j < n; ++j) {
      double e = 0;
      for (int i = 0; i < hd; ++i) e += double{qd[i]} * r.back[j * hd + i];
      const double mag = score_mag(qd, r, j, hd);
      EXPECT_NEAR(want[j], e, 8 * (hd / 32 + 4) * kEps * mag) << dtype_name(t) << " key " << j;
      EXPECT_NEAR(got[j], want[j], 16 * (hd / 32 + 8) * kEps * mag) << dtype_name(t) << " key " << j;
    }
    const auto p = weights(n, rng);
    const auto y0 = query(hd, rng);
    std::vector<float> yw = y0, yg = y0;
    ref.for_quant(t)->accum_rows(yw.data(), p.data(), r.head(), r.stride, n, hd / 32);
    ks->attn.for_quant(t)->accum_rows(yg.data(), p.data(), r.head(), r.stride, n, hd / 32);
    for (int i = 0; i < hd; ++i) {
      double e = y0[i];
      for (int j = 0; j < n; ++j) e += double{p[j]} * r.back[j * hd + i];
      const double mag = accum_mag(y0, p, r, i, hd);
      EXPECT_NEAR(yw[i], e, 4 * (n + 4) * kEps * mag) << dtype_name(t) << " element " << i;
      EXPECT_NEAR(yg[i], yw[i], 8 * (n + 4) * kEps * mag) << dtype_name(t) << " element " << i;
    }
  }
}

// A weight of exactly 0 skips the row: a cell holding garbage (a NaN scale) adds nothing.
TEST_P(KvQuantIsa, ZeroWeightSkipsTheRow) {
  const kernels::KernelSet* ks = kernels::kernels_for(GetParam());
  if (ks == nullptr) GTEST_SKIP() << "this CPU cannot run " << kernels::isa_name(GetParam());
  std::mt19937 rng(9);
  for (DType t : kernels::kKvQuantTypes) {
    Rows r = make_rows(t, 3, 64, rng);
    const uint16_t nan_half = 0x7E00;
    for (int b = 0; b < 2; ++b) std::memcpy(r.bytes.data() + r.head_off + r.stride + b * type_traits(t)->type_size, &nan_half, 2);
    const std::vector<float> p = {0.25f, 0.0f, 0.5f};
    std::vector<float> y(64, 1.0f);
    ks->attn.for_quant(t)->accum_rows(y.data(), p.data(), r.head(), r.stride, 3, 2);
    for (int i = 0; i < 64; ++i) {
      const double e = 1.0 + 0.25 * r.back[i] + 0.5 * r.back[2 * 64 + i];
      EXPECT_NEAR(y[i], e, 1e-5 * (1 + std::fabs(e))) << dtype_name(t) << " element " << i;
    }
  }
}

// ops::attention reads blocks of cells for all query heads of [h0, h1) at once (the heads of a
// kv group share each block): against a double softmax over the decoded K/V and the
// q8_0-rounded query, with every fourth key masked; heads outside [h0, h1) are not written.
TEST(KvQuantAttention, GroupedHeadsMaskAndHeadRange) {
  std::mt19937 rng(13);
  const int n_head = 8, n_kv = 2, hd = 64, n_keys = 77, chunk = 20, group = n_head / n_kv;
  const int h0 = 2, h1 = 7;  // straddles both kv groups
  for (DType kt : {DType::Q8_0, DType::Q4_0, DType::Q5_1, DType::F16}) {
    for (DType vt : {DType::Q8_0, DType::Q4_1, DType::Q5_0}) {
      const TypeTraits &ktt = *type_traits(kt), &vtt = *type_traits(vt);
      const int row = n_kv * hd;
      const size_t kr = row_size(ktt, row), vr = row_size(vtt, row);
      std::normal_distribution<float> nd(0.0f, 1.0f);
      std::vector<float> kf(static_cast<size_t>(n_keys) * row), vf(kf.size()), kd(kf.size()), vd(kf.size());
      for (float& x : kf) x = nd(rng);
      for (float& x : vf) x = nd(rng);
      std::vector<uint8_t> kb(kr * n_keys), vb(vr * n_keys);
      for (int j = 0; j < n_keys; ++j) {
        ops::store_kv_row(kf.data() + j * row, kb.data() + j * kr, row, kt);
        ops::store_kv_row(vf.data() + j * row, vb.data() + j * vr, row, vt);
        ktt.to_float(kb.data() + j * kr, kd.data() + j * row, row);
        vtt.to_float(vb.data() + j * vr, vd.data() + j * row, row);
      }
      std::vector<ops::KvChunk> chunks;
      for (int j = 0; j < n_keys; j += chunk)
        chunks.push_back({kb.data() + j * kr, vb.data() + j * vr, std::min(chunk, n_keys - j)});
      std::vector<uint8_t> mask(n_keys);
      for (int j = 0; j < n_keys; ++j) mask[j] = j % 4 != 1;
      std::vector<float> q(static_cast<size_t>(n_head) * hd);
      for (float& x : q) x = nd(rng);
      const float scale = 1.0f / 8.0f;
      ops::AttentionShape shape{n_head, n_kv, hd, kt, scale};
      shape.v_type = vt;
      std::vector<float> out(q.size(), 42.0f), scratch(2 * n_head);
      ops::attention(q.data(), chunks, shape, mask.data(), out.data(), scratch.data(), h0, h1);
      for (int h = 0; h < n_head; ++h) {
        if (h < h0 || h >= h1) {
          for (int i = 0; i < hd; ++i) ASSERT_EQ(out[h * hd + i], 42.0f) << "head " << h << " written";
          continue;
        }
        std::vector<float> qd(q.begin() + h * hd, q.begin() + (h + 1) * hd);
        if (ktt.quantized) {
          KvQuery kq;
          kernels::kv_query_prepare(qd.data(), hd, kq);
          for (int i = 0; i < hd; ++i) qd[i] = kq.d[i / 32] * kq.q[i];
        }
        const int g = h / group;
        std::vector<double> sc(n_keys, -INFINITY), o(hd, 0.0);
        double mx = -INFINITY, l = 0;
        for (int j = 0; j < n_keys; ++j) {
          if (!mask[j]) continue;
          double d = 0;
          for (int i = 0; i < hd; ++i) d += double{qd[i]} * kd[j * row + g * hd + i];
          sc[j] = d * scale;
          mx = std::max(mx, sc[j]);
        }
        for (int j = 0; j < n_keys; ++j) l += mask[j] ? std::exp(sc[j] - mx) : 0.0;
        double vmax = 0;
        for (int j = 0; j < n_keys; ++j) {
          if (!mask[j]) continue;
          for (int i = 0; i < hd; ++i) {
            o[i] += std::exp(sc[j] - mx) / l * vd[j * row + g * hd + i];
            vmax = std::max(vmax, std::fabs(double{vd[j * row + g * hd + i]}));
          }
        }
        for (int i = 0; i < hd; ++i)  // float softmax and sums over 58 keys: a few hundred ulps of |v|
          EXPECT_NEAR(out[h * hd + i], o[i], 512 * kEps * vmax)
              << dtype_name(kt) << "/" << dtype_name(vt) << " head " << h << " element " << i;
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(All, KvQuantIsa, ::testing::Values(Isa::Scalar, Isa::Avx2, Isa::Avx512, Isa::Neon),
                         [](const auto& p) { return std::string(kernels::isa_name(p.param)); });
