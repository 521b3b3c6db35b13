// Ops against naive formulas: RoPE (both pair layouts), attention with online softmax over
// paged chunks (GQA, f32/f16/bf16 KV, masks), RMSNorm, and the thread pool's splitting.
#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <random>

#include "ops/attention.h"
#include "ops/ops.h"
#include "util/fp16.h"
#include "util/threadpool.h"

using namespace coppice;

namespace {
std::vector<float> randn(size_t n, std::mt19937& rng, float s = 1.0f) {
  std::normal_distribution<float> d(0.0f, s);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}
}  // namespace

TEST(Ops, RopeMatchesComplexRotation) {
  std::mt19937 rng(1);
  const int n_head = 3, hd = 16, rope_dim = 12;
  for (bool neox : {false, true}) {
    auto x = randn(n_head * hd, rng);
    auto y = x;
    const float pos = 37, base = 10000, scale = 0.5f;
    ops::rope(y.data(), n_head, hd, rope_dim, pos, base, scale, neox);
    for (int h = 0; h < n_head; ++h) {
      for (int i = 0; i < rope_dim / 2; ++i) {
        const int a = neox ? i : 2 * i, b = neox ? i + rope_dim / 2 : 2 * i + 1;
        const double theta = pos * scale * std::pow(base, -2.0 * i / rope_dim);
        const double re = x[h * hd + a] * std::cos(theta) - x[h * hd + b] * std::sin(theta);
        const double im = x[h * hd + a] * std::sin(theta) + x[h * hd + b] * std::cos(theta);
        EXPECT_NEAR(y[h * hd + a], re, 1e-4);
        EXPECT_NEAR(y[h * hd + b], im, 1e-4);
      }
      for (int d = rope_dim; d < hd; ++d) EXPECT_EQ(y[h * hd + d], x[h * hd + d]);  // untouched
    }
  }
}

TEST(Ops, RmsNorm) {
  std::vector<float> x = {1, -2, 3, -4}, w = {1, 2, 0.5f, 1}, out(4);
  ops::rmsnorm(x.data(), w.data(), out.data(), 4, 0.0f);
  const float r = std::sqrt((1 + 4 + 9 + 16) / 4.0f);
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(out[i], x[i] / r * w[i], 1e-6);
}

// Naive attention in double: softmax(q.k * scale) v over the visible keys.
static std::vector<double> naive_attention(const std::vector<float>& q, const std::vector<float>& k,
                                           const std::vector<float>& v, int n_keys, int n_head,
                                           int n_kv, int hd, float scale, const std::vector<uint8_t>& mask) {
  std::vector<double> out(n_head * hd, 0.0);
  for (int h = 0; h < n_head; ++h) {
    const int g = h / (n_head / n_kv);
    std::vector<double> s(n_keys, -INFINITY);
    double mx = -INFINITY;
    for (int j = 0; j < n_keys; ++j) {
      if (!mask.empty() && !mask[j]) continue;
      double d = 0;
      for (int t = 0; t < hd; ++t) d += q[h * hd + t] * static_cast<double>(k[(j * n_kv + g) * hd + t]);
      s[j] = d * scale;
      mx = std::max(mx, s[j]);
    }
    double sum = 0;
    for (int j = 0; j < n_keys; ++j) sum += std::isinf(s[j]) ? 0 : std::exp(s[j] - mx);
    for (int j = 0; j < n_keys; ++j) {
      if (std::isinf(s[j])) continue;
      const double p = std::exp(s[j] - mx) / sum;
      for (int t = 0; t < hd; ++t) out[h * hd + t] += p * v[(j * n_kv + g) * hd + t];
    }
  }
  return out;
}

TEST(Ops, AttentionOverPagedChunksMatchesNaive) {
  std::mt19937 rng(7);
  const int n_head = 8, n_kv = 2, hd = 32, n_keys = 53, block = 16;
  for (DType kt : {DType::F32, DType::F16, DType::BF16}) {
    for (bool use_mask : {false, true}) {
      auto q = randn(n_head * hd, rng), k = randn(n_keys * n_kv * hd, rng), v = randn(n_keys * n_kv * hd, rng);
      // Round K/V through the storage type so the oracle sees the same values.
      const size_t es = kt == DType::F32 ? 4 : 2;
      std::vector<uint8_t> ks(k.size() * es), vs(v.size() * es);
      for (int j = 0; j < n_keys; ++j) {
        ops::store_kv_row(k.data() + j * n_kv * hd, ks.data() + j * n_kv * hd * es, n_kv * hd, kt);
        ops::store_kv_row(v.data() + j * n_kv * hd, vs.data() + j * n_kv * hd * es, n_kv * hd, kt);
      }
      auto back = [&](std::vector<float>& f, const std::vector<uint8_t>& s) {
        for (size_t i = 0; i < f.size(); ++i) {
          uint16_t h;
          std::memcpy(&h, s.data() + i * es, es == 2 ? 2 : 0);
          if (kt == DType::F16) f[i] = fp16_to_fp32(h);
          if (kt == DType::BF16) f[i] = bf16_to_fp32(h);
        }
      };
      back(k, ks);
      back(v, vs);
      std::vector<ops::KvChunk> chunks;
      for (int s = 0; s < n_keys; s += block)
        chunks.push_back({ks.data() + s * n_kv * hd * es, vs.data() + s * n_kv * hd * es, std::min(block, n_keys - s)});
      std::vector<uint8_t> mask;
      if (use_mask) {
        mask.resize(n_keys);
        for (int j = 0; j < n_keys; ++j) mask[j] = (j % 3 != 1);
      }
      ops::AttentionShape shape{n_head, n_kv, hd, kt, 1.0f / std::sqrt(float(hd))};
      std::vector<float> out(n_head * hd), scratch(2 * n_head);
      ops::attention(q.data(), chunks, shape, use_mask ? mask.data() : nullptr, out.data(), scratch.data(), 0, n_head);
      const auto ref = naive_attention(q, k, v, n_keys, n_head, n_kv, hd, shape.scale, mask);
      for (size_t i = 0; i < out.size(); ++i) EXPECT_NEAR(out[i], ref[i], 1e-4) << dtype_name(kt);
    }
  }
}

TEST(ThreadPool, EveryIndexExactlyOnceAcrossManyRuns) {
  for (int nt : {1, 2, 3, 5}) {
    ThreadPool pool(nt);
    for (int rep = 0; rep < 200; ++rep) {
      const int64_t n = rep % 17;
      std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
      pool.parallel_for(n, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) hits[static_cast<size_t>(i)]++;
      });
      for (auto& h : hits) ASSERT_EQ(h.load(), 1);
    }
    std::atomic<int> seen{0};
    pool.run([&](int ith, int nth) {
      EXPECT_EQ(nth, nt);
      EXPECT_LT(ith, nt);
      seen++;
    });
    EXPECT_EQ(seen.load(), nt);
  }
  EXPECT_GE(ThreadPool::default_threads(), 1);
}
