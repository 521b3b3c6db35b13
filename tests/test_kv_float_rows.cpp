// The float-KV row-block attention kernels (kernels/attn.h KvFloatKernels: score_rows,
// accum_rows over F32 / F16 / BF16 rows, head_dim % 8 == 0): the scalar twins against double
// math over the decoded rows, every SIMD table against the twins, a row's score independent of
// the block it is scored in, and ops::attention on narrow heads (head_dim 8, as stories260K)
// against a double softmax. Tolerances: float roundings times the magnitudes summed.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "kernels/attn.h"
#include "kernels/dispatch.h"
#include "kernels/types.h"
#include "ops/attention.h"

using namespace coppice;
using kernels::Isa;

namespace {

constexpr double kEps = 1.0 / (1 << 24);
const DType kTypes[] = {DType::F32, DType::F16, DType::BF16};
const int kHeadDims[] = {8, 16, 24, 40, 64, 128};
const int kCounts[] = {1, 3, 7, 8, 9, 16, 31, 33};

// n cells of 3 heads of hd elements; the kernels read head 1.
struct Rows {
  std::vector<uint8_t> bytes;
  std::vector<float> back;  // head 1 of each cell as stored: [n][hd]
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
  std::vector<float> x(3 * hd), dec(3 * hd);
  for (int j = 0; j < n; ++j) {
    for (float& v : x) v = nd(rng) * (j % 3 == 0 ? 8.0f : 1.0f);
    ops::store_kv_row(x.data(), r.bytes.data() + j * r.stride, 3 * hd, t);
    tt.to_float(r.bytes.data() + j * r.stride, dec.data(), 3 * hd);
    r.back.insert(r.back.end(), dec.begin() + hd, dec.begin() + 2 * hd);
  }
  return r;
}

std::vector<float> randn(int n, std::mt19937& rng) {
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::vector<float> v(n);
  for (float& x : v) x = nd(rng);
  return v;
}

std::vector<float> weights(int n, std::mt19937& rng) {  // softmax-like, some exactly 0 (masked)
  std::uniform_real_distribution<float> u(0.0f, 1.0f);
  std::vector<float> p(n);
  for (int j = 0; j < n; ++j) p[j] = j % 5 == 2 ? 0.0f : u(rng) * u(rng);
  return p;
}

TEST(KvFloatRows, ScalarTwinsMatchDoubleMath) {
  const kernels::AttnKernels& ref = kernels::kernels_for(Isa::Scalar)->attn;
  std::mt19937 rng(3);
  for (DType t : kTypes) {
    for (int hd : kHeadDims) {
      for (int n : kCounts) {
        const Rows r = make_rows(t, n, hd, rng);
        const auto q = randn(hd, rng);
        std::vector<float> got(n, -1.0f);
        ref.rows.score_rows(q.data(), r.head(), r.stride, n, hd, t, got.data());
        for (int j = 0; j < n; ++j) {
          double want = 0, mag = 0;
          for (int i = 0; i < hd; ++i) {
            want += double{q[i]} * r.back[j * hd + i];
            mag += std::fabs(double{q[i]} * r.back[j * hd + i]);
          }
          EXPECT_NEAR(got[j], want, 2 * hd * kEps * mag) << dtype_name(t) << " hd " << hd << " row " << j;
        }
        const auto p = weights(n, rng);
        const auto y0 = randn(hd, rng);
        std::vector<float> y = y0;
        ref.rows.accum_rows(y.data(), p.data(), r.head(), r.stride, n, hd, t);
        for (int i = 0; i < hd; ++i) {
          double want = y0[i], mag = std::fabs(y0[i]);
          for (int j = 0; j < n; ++j) {
            want += double{p[j]} * r.back[j * hd + i];
            mag += std::fabs(double{p[j]} * r.back[j * hd + i]);
          }
          EXPECT_NEAR(y[i], want, 2 * (n + 1) * kEps * mag) << dtype_name(t) << " hd " << hd << " element " << i;
        }
      }
    }
  }
}

class KvFloatRowsIsa : public ::testing::TestWithParam<Isa> {};

TEST_P(KvFloatRowsIsa, MatchScalarTwins) {
  const kernels::KernelSet* ks = kernels::kernels_for(GetParam());
  if (ks == nullptr) GTEST_SKIP() << "this CPU cannot run " << kernels::isa_name(GetParam());
  const kernels::AttnKernels& ref = kernels::kernels_for(Isa::Scalar)->attn;
  std::mt19937 rng(5);
  for (DType t : kTypes) {
    for (int hd : kHeadDims) {
      for (int n : kCounts) {
        const Rows r = make_rows(t, n, hd, rng);
        const auto q = randn(hd, rng);
        std::vector<float> want(n), got(n, -1.0f);
        ref.rows.score_rows(q.data(), r.head(), r.stride, n, hd, t, want.data());
        ks->attn.rows.score_rows(q.data(), r.head(), r.stride, n, hd, t, got.data());
        for (int j = 0; j < n; ++j) {
          double mag = 0;
          for (int i = 0; i < hd; ++i) mag += std::fabs(double{q[i]} * r.back[j * hd + i]);
          EXPECT_NEAR(got[j], want[j], 4 * hd * kEps * mag) << dtype_name(t) << " hd " << hd << " n " << n << " row " << j;
        }
        const auto p = weights(n, rng);
        const auto y0 = randn(hd, rng);
        std::vector<float> yw = y0, yg = y0;
        ref.rows.accum_rows(yw.data(), p.data(), r.head(), r.stride, n, hd, t);
        ks->attn.rows.accum_rows(yg.data(), p.data(), r.head(), r.stride, n, hd, t);
        for (int i = 0; i < hd; ++i) {
          double mag = std::fabs(y0[i]);
          for (int j = 0; j < n; ++j) mag += std::fabs(double{p[j]} * r.back[j * hd + i]);
          EXPECT_NEAR(yg[i], yw[i], 4 * (n + 1) * kEps * mag) << dtype_name(t) << " hd " << hd << " element " << i;
        }
      }
    }
  }
}

// A row's score is bit-for-bit the same alone (n = 1) and at any slot of a block: speculative
// trees gather other rows around a cell than plain decoding does, and must score it alike.
TEST_P(KvFloatRowsIsa, ARowScoresAlikeInEveryBlock) {
  const kernels::KernelSet* ks = kernels::kernels_for(GetParam());
  if (ks == nullptr) GTEST_SKIP() << "this CPU cannot run " << kernels::isa_name(GetParam());
  std::mt19937 rng(11);
  for (DType t : kTypes) {
    for (int hd : {8, 16, 64}) {
      const int n = 19;
      const Rows r = make_rows(t, n, hd, rng);
      const auto q = randn(hd, rng);
      std::vector<float> all(n);
      ks->attn.rows.score_rows(q.data(), r.head(), r.stride, n, hd, t, all.data());
      for (int j = 0; j < n; ++j) {
        float alone = 0;
        ks->attn.rows.score_rows(q.data(), r.head(j), r.stride, 1, hd, t, &alone);
        ASSERT_EQ(alone, all[j]) << dtype_name(t) << " hd " << hd << " row " << j;
        if (j + 3 <= n) {
          float three[3];
          ks->attn.rows.score_rows(q.data(), r.head(j), r.stride, 3, hd, t, three);
          ASSERT_EQ(three[0], all[j]) << dtype_name(t) << " hd " << hd << " row " << j;
        }
      }
    }
  }
}

// The softmax passes: scale_max against plain float math (exact: one multiply per key), and
// exp_sum within a few ulp of double exp, exactly 0 for -inf and far-negative arguments, the
// same value for a score wherever it sits in the block, the sum within n ulp of its terms'.
TEST_P(KvFloatRowsIsa, SoftmaxPassesMatchTheirDefinition) {
  const kernels::KernelSet* ks = kernels::kernels_for(GetParam());
  if (ks == nullptr) GTEST_SKIP() << "this CPU cannot run " << kernels::isa_name(GetParam());
  std::mt19937 rng(23);
  std::uniform_real_distribution<float> u(-30.0f, 30.0f);
  for (int n : {1, 5, 8, 15, 16, 17, 32}) {
    std::vector<float> raw(n);
    for (float& x : raw) x = u(rng);
    std::vector<uint8_t> mask(n);
    for (int j = 0; j < n; ++j) mask[j] = j % 4 != 3;
    const uint8_t* masks[] = {nullptr, mask.data()};
    for (const uint8_t* m : masks) {
      std::vector<float> s = raw;
      const float mx = ks->attn.scale_max(s.data(), n, 0.37f, m);
      float want_mx = -INFINITY;
      for (int j = 0; j < n; ++j) {
        const float w = m == nullptr || m[j] ? raw[j] * 0.37f : -INFINITY;
        ASSERT_EQ(s[j], w) << "n " << n << " key " << j;
        want_mx = std::max(want_mx, w);
      }
      ASSERT_EQ(mx, want_mx);
      if (mx == -INFINITY) continue;
      std::vector<float> e = s;
      const float sum = ks->attn.exp_sum(e.data(), n, mx);
      double want_sum = 0;
      for (int j = 0; j < n; ++j) {
        if (s[j] == -INFINITY) {
          ASSERT_EQ(e[j], 0.0f) << "masked key " << j;
          continue;
        }
        const float arg = s[j] - mx;  // rounded as the kernels round it
        const double w = std::exp(double{arg});
        want_sum += e[j];
        EXPECT_NEAR(e[j], w, 4 * kEps * w) << "n " << n << " key " << j << " arg " << arg;
        float alone = s[j];  // the same argument alone in a block of one
        ks->attn.exp_sum(&alone, 1, mx);
        ASSERT_EQ(alone, e[j]) << "key " << j;
      }
      EXPECT_NEAR(sum, want_sum, (n + 1) * kEps * want_sum);
    }
  }
  float far[3] = {-100.0f, -88.0f, -1000.0f};
  ks->attn.exp_sum(far, 3, 0.0f);
  for (float x : far) EXPECT_LE(x, 1e-37f);  // underflow: 0 (SIMD) or a denormal (std::exp)
}

INSTANTIATE_TEST_SUITE_P(All, KvFloatRowsIsa, ::testing::Values(Isa::Scalar, Isa::Avx2, Isa::Avx512, Isa::Neon),
                         [](const auto& p) { return std::string(kernels::isa_name(p.param)); });

// ops::attention on narrow heads (head_dim 8 and 24, GQA 2, every third key masked, chunks of
// odd sizes) against a double softmax over the stored rows.
TEST(KvFloatRows, NarrowHeadAttentionMatchesDoubleSoftmax) {
  std::mt19937 rng(17);
  const int n_head = 8, n_kv = 4, n_keys = 70, chunk = 13, group = n_head / n_kv;
  for (int hd : {8, 24}) {
    for (DType t : kTypes) {
      const TypeTraits& tt = *type_traits(t);
      const int row = n_kv * hd;
      const size_t rb = row_size(tt, row);
      std::vector<float> kd(static_cast<size_t>(n_keys) * row), vd(kd.size());
      std::vector<uint8_t> kb(rb * n_keys), vb(rb * n_keys);
      for (int j = 0; j < n_keys; ++j) {
        const auto k = randn(row, rng), v = randn(row, rng);
        ops::store_kv_row(k.data(), kb.data() + j * rb, row, t);
        ops::store_kv_row(v.data(), vb.data() + j * rb, row, t);
        tt.to_float(kb.data() + j * rb, kd.data() + j * row, row);
        tt.to_float(vb.data() + j * rb, vd.data() + j * row, row);
      }
      std::vector<ops::KvChunk> chunks;
      for (int j = 0; j < n_keys; j += chunk)
        chunks.push_back({kb.data() + j * rb, vb.data() + j * rb, std::min(chunk, n_keys - j)});
      std::vector<uint8_t> mask(n_keys);
      for (int j = 0; j < n_keys; ++j) mask[j] = j % 3 != 1;
      const auto q = randn(n_head * hd, rng);
      const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
      const ops::AttentionShape shape{n_head, n_kv, hd, t, scale};
      std::vector<float> out(q.size()), scratch(2 * n_head);
      ops::attention(q.data(), chunks, shape, mask.data(), out.data(), scratch.data(), 0, n_head);
      for (int h = 0; h < n_head; ++h) {
        const int g = h / group;
        std::vector<double> sc(n_keys, 0.0), o(hd, 0.0);
        double mx = -INFINITY, l = 0, vmax = 0;
        for (int j = 0; j < n_keys; ++j) {
          if (!mask[j]) continue;
          double d = 0;
          for (int i = 0; i < hd; ++i) d += double{q[h * hd + i]} * kd[j * row + g * hd + i];
          sc[j] = d * scale;
          mx = std::max(mx, sc[j]);
        }
        for (int j = 0; j < n_keys; ++j) l += mask[j] ? std::exp(sc[j] - mx) : 0.0;
        for (int j = 0; j < n_keys; ++j) {
          if (!mask[j]) continue;
          for (int i = 0; i < hd; ++i) {
            o[i] += std::exp(sc[j] - mx) / l * vd[j * row + g * hd + i];
            vmax = std::max(vmax, std::fabs(double{vd[j * row + g * hd + i]}));
          }
        }
        for (int i = 0; i < hd; ++i)
          EXPECT_NEAR(out[h * hd + i], o[i], 512 * kEps * vmax) << dtype_name(t) << " hd " << hd << " head " << h;
      }
    }
  }
}

}  // namespace
