// The sampling pipeline: each processor's rule on hand-built logits, the chain's order,
// seeded determinism, and sampled frequencies against softmax (chi-square).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <set>
#include <vector>

#include "engine/sampling.h"
#include "util/error.h"

using namespace coppice;

namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

SamplingParams plain(float temperature = 1.0f) {  // every processor off
  SamplingParams p;
  p.temperature = temperature;
  p.top_k = 0;
  p.top_p = 1.0f;
  p.min_p = 0.0f;
  p.typical_p = 1.0f;
  return p;
}

std::vector<float> log_of(const std::vector<double>& probs) {
  std::vector<float> l;
  for (double q : probs) l.push_back(static_cast<float>(std::log(q)));
  return l;
}

std::vector<double> softmax(const std::vector<float>& l, double t = 1.0) {
  const double mx = *std::max_element(l.begin(), l.end());
  std::vector<double> p;
  double s = 0;
  for (float v : l) s += std::exp((v - mx) / t);
  for (float v : l) p.push_back(std::exp((v - mx) / t) / s);
  return p;
}

Candidates apply(LogitProcessor& proc, const std::vector<float>& logits, std::vector<int32_t> history = {}) {
  Candidates c;
  c.assign(logits);
  proc.apply(c, SamplingContext{history});
  return c;
}

std::set<int32_t> ids(const Candidates& c) {
  std::set<int32_t> s;
  for (const auto& x : c.items) s.insert(x.id);
  return s;
}

// Pseudo-random logits from our own generator (fixed seed), in [-scale, scale).
std::vector<float> random_logits(size_t n, uint64_t seed, float scale = 5.0f) {
  Rng r(seed);
  std::vector<float> l(n);
  for (float& v : l) v = static_cast<float>((r.uniform() * 2 - 1) * scale);
  return l;
}

// Upper tail of the chi-square distribution with an even number of degrees of freedom:
// P(X > x) = exp(-x/2) * sum_{i < df/2} (x/2)^i / i!  (closed form of the regularized gamma Q).
double chi2_sf_even_df(double x, int df) {
  double term = 1, sum = 1;
  for (int i = 1; i < df / 2; ++i) {
    term *= (x / 2) / i;
    sum += term;
  }
  return std::exp(-x / 2) * sum;
}

// Draws n tokens and returns Pearson's statistic against the expected probabilities.
double chi2_of_draws(Sampler& s, const std::vector<float>& logits, const std::vector<double>& expect, int n) {
  std::vector<int> count(logits.size(), 0);
  for (int i = 0; i < n; ++i) ++count[static_cast<size_t>(s.sample(logits))];
  double chi2 = 0;
  for (size_t i = 0; i < expect.size(); ++i) {
    if (expect[i] == 0) {
      EXPECT_EQ(count[i], 0) << "token " << i << " has probability 0 but was drawn";
      continue;
    }
    const double e = expect[i] * n;
    chi2 += (count[i] - e) * (count[i] - e) / e;
  }
  return chi2;
}

// False-failure rate of the statistical tests for a random seed; the seed is fixed, so each
// run gives the same answer.
constexpr double kAlpha = 1e-3;

}  // namespace

TEST(Sampling, GreedyIsArgmaxWithTiesToTheLowestId) {
  Sampler s(plain(0.0f));
  EXPECT_EQ(s.sample(std::vector<float>{1, 3, 3, 2}), 1);
  EXPECT_EQ(s.sample(std::vector<float>{-kInf, -5, -1, -1}), 2);
  for (uint64_t seed = 1; seed <= 20; ++seed) {
    auto l = random_logits(1000, seed);
    const auto expect = std::max_element(l.begin(), l.end()) - l.begin();
    EXPECT_EQ(s.sample(l), expect);
  }
  // Greedy through the candidate list (a bias forces it) keeps the same tie rule.
  SamplingParams b = plain(0.0f);
  b.logit_bias[0] = 1.0f;
  Sampler sb(b);
  EXPECT_EQ(sb.sample(std::vector<float>{1, 2, 2, 0}), 0);  // 1+1 ties with 2 at ids 1, 2
}

TEST(Sampling, TopKOneIsGreedy) {
  SamplingParams p = plain(1.5f);
  p.top_k = 1;
  Sampler s(p);
  for (uint64_t seed = 1; seed <= 50; ++seed) {
    auto l = random_logits(500, seed, 2.0f);
    EXPECT_EQ(s.sample(l), std::max_element(l.begin(), l.end()) - l.begin());
  }
  EXPECT_EQ(s.sample(std::vector<float>{0, 4, 4, 1}), 1);
}

TEST(Sampling, TopKKeepsTheKLargestSorted) {
  auto tk = make_top_k(3);
  auto c = apply(*tk, {0.5f, 3, -1, 2, 3, 1});
  ASSERT_EQ(c.items.size(), 3u);
  EXPECT_TRUE(c.sorted);
  EXPECT_EQ(c.items[0].id, 1);  // 3, tie broken by id
  EXPECT_EQ(c.items[1].id, 4);
  EXPECT_EQ(c.items[2].id, 3);
  EXPECT_EQ(apply(*make_top_k(0), {1, 2, 3}).items.size(), 3u);   // off
  EXPECT_EQ(apply(*make_top_k(10), {1, 2, 3}).items.size(), 3u);  // k >= n: untouched
}

TEST(Sampling, TopPKeepsTheSmallestSetReachingP) {
  // ids 0..4 with probabilities 0.15, 0.5, 0.05, 0.2, 0.1 (cumulative by rank: .5 .7 .85 .95 1).
  const auto l = log_of({0.15, 0.5, 0.05, 0.2, 0.1});
  EXPECT_EQ(ids(apply(*make_top_p(0.1f), l)), (std::set<int32_t>{1}));
  EXPECT_EQ(ids(apply(*make_top_p(0.65f), l)), (std::set<int32_t>{1, 3}));
  EXPECT_EQ(ids(apply(*make_top_p(0.75f), l)), (std::set<int32_t>{1, 3, 0}));
  EXPECT_EQ(ids(apply(*make_top_p(0.9f), l)), (std::set<int32_t>{1, 3, 0, 4}));
  EXPECT_EQ(apply(*make_top_p(1.0f), l).items.size(), 5u);

  // A flat vocabulary whose nucleus is far beyond the first partial-sort window (64).
  for (float p : {0.3f, 0.9f, 0.99f}) {
    const auto big = random_logits(5000, 7, 1.0f);
    const auto prob = softmax(big);
    std::vector<int32_t> order(big.size());
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return big[a] > big[b]; });
    size_t want = 0;
    for (double cum = 0; cum < p - 1e-6;) cum += prob[order[want++]];
    auto c = apply(*make_top_p(p), big);
    // Float vs double sums may differ by one token exactly at the boundary.
    EXPECT_NEAR(static_cast<double>(c.items.size()), static_cast<double>(want), 1.0) << "p=" << p;
    EXPECT_GT(c.items.size(), 64u);
    for (size_t i = 0; i < std::min(c.items.size(), want); ++i) EXPECT_EQ(c.items[i].id, order[i]);
  }
}

TEST(Sampling, MinPKeepsTokensWithinAFactorOfTheBest) {
  const auto l = log_of({0.15, 0.5, 0.05, 0.2, 0.1});
  // threshold 0.25 * 0.5 = 0.125: keeps 0.5, 0.2, 0.15
  EXPECT_EQ(ids(apply(*make_min_p(0.25f), l)), (std::set<int32_t>{1, 3, 0}));
  // threshold 0.35 * 0.5 = 0.175: keeps 0.5, 0.2
  EXPECT_EQ(ids(apply(*make_min_p(0.35f), l)), (std::set<int32_t>{1, 3}));
  EXPECT_EQ(ids(apply(*make_min_p(1.0f), l)), (std::set<int32_t>{1}));
  EXPECT_EQ(apply(*make_min_p(0.0f), l).items.size(), 5u);
}

TEST(Sampling, TypicalKeepsTokensClosestToTheEntropy) {
  // p = .4 .3 .2 .1: H = 1.2799; |-log p - H| = .363 .076 .330 1.023, so the order is 1, 2, 0, 3.
  const auto l = log_of({0.4, 0.3, 0.2, 0.1});
  EXPECT_EQ(ids(apply(*make_typical(0.25f), l)), (std::set<int32_t>{1}));
  EXPECT_EQ(ids(apply(*make_typical(0.45f), l)), (std::set<int32_t>{1, 2}));  // drops the most likely
  EXPECT_EQ(ids(apply(*make_typical(0.6f), l)), (std::set<int32_t>{1, 2, 0}));
  EXPECT_EQ(apply(*make_typical(1.0f), l).items.size(), 4u);
}

TEST(Sampling, PenaltiesArithmetic) {
  const std::vector<float> l = {2, -2, 1, 0.5f, 3};
  const std::vector<int32_t> hist = {0, 1, 0, 3};
  // repeat 2: positive logits halved, negative doubled; then - count * 0.25 - 0.5 once present.
  auto all = apply(*make_penalties(2.0f, -1, 0.5f, 0.25f), l, hist);
  EXPECT_EQ(all.items[0].logit, 2.0f / 2 - (2 * 0.25f + 0.5f));  // count 2
  EXPECT_EQ(all.items[1].logit, -2.0f * 2 - (0.25f + 0.5f));     // count 1
  EXPECT_EQ(all.items[2].logit, 1.0f);                            // absent
  EXPECT_EQ(all.items[3].logit, 0.5f / 2 - (0.25f + 0.5f));
  EXPECT_EQ(all.items[4].logit, 3.0f);
  // Only the last 2 tokens (0, 3) count.
  auto last2 = apply(*make_penalties(2.0f, 2, 0.5f, 0.25f), l, hist);
  EXPECT_EQ(last2.items[0].logit, 1.0f - 0.75f);
  EXPECT_EQ(last2.items[1].logit, -2.0f);
  EXPECT_EQ(last2.items[3].logit, 0.25f - 0.75f);
  // Through the sampler: history comes from accept().
  SamplingParams p = plain(0.0f);
  p.repeat_penalty = 10.0f;
  Sampler s(p);
  const std::vector<float> two = {5, 4};
  EXPECT_EQ(s.sample(two), 0);
  s.accept(0);
  EXPECT_EQ(s.sample(two), 1);  // 5 / 10 < 4
  s.reset();
  EXPECT_EQ(s.sample(two), 0);
}

TEST(Sampling, LogitBiasAddsAndMinusInfBans) {
  auto c = apply(*make_logit_bias({{1, 2.5f}, {3, -1.0f}, {99, 5.0f}}), {0, 1, 2, 3});
  EXPECT_EQ(c.items[1].logit, 3.5f);
  EXPECT_EQ(c.items[3].logit, 2.0f);
  EXPECT_EQ(c.items[0].logit, 0.0f);  // id 99 is beyond the vocabulary: ignored

  SamplingParams p = plain(1.0f);
  p.logit_bias[2] = -kInf;
  Sampler s(p);
  const std::vector<float> l = {0, 1, 10, 1};
  for (int i = 0; i < 2000; ++i) ASSERT_NE(s.sample(l), 2);
  SamplingParams g = plain(0.0f);
  g.logit_bias[2] = -kInf;
  EXPECT_EQ(Sampler(g).sample(l), 1);

  SamplingParams all = plain(1.0f);
  for (int32_t i = 0; i < 4; ++i) all.logit_bias[i] = -kInf;
  Sampler none(all);
  EXPECT_THROW(none.sample(l), Error);
}

TEST(Sampling, TemperatureScalesTheDistribution) {
  const std::vector<float> l = {1, 2, 0.5f, -1};
  for (float t : {0.5f, 2.0f}) {
    Sampler s(plain(t));
    const Candidates& c = s.process(l);
    const auto want = softmax(l, t);
    ASSERT_EQ(c.items.size(), 4u);
    for (const auto& x : c.items) EXPECT_NEAR(x.p, want[x.id], 1e-6);
  }
  // A tiny temperature is greedy in effect, never NaN.
  Sampler tiny(plain(1e-30f));
  EXPECT_EQ(tiny.sample(l), 1);
}

TEST(Sampling, DefaultChainOrder) {
  SamplingParams p;
  p.temperature = 0.7f;
  p.top_k = 40;
  p.typical_p = 0.9f;
  p.top_p = 0.9f;
  p.min_p = 0.05f;
  p.repeat_penalty = 1.1f;
  p.logit_bias[1] = 1.0f;
  std::vector<std::string> names;
  for (const auto& q : default_processors(p)) names.push_back(q->name());
  EXPECT_EQ(names, (std::vector<std::string>{"logit_bias", "penalties", "top_k", "typical_p", "top_p",
                                              "min_p", "temperature"}));
  p.temperature = 0;
  names.clear();
  for (const auto& q : default_processors(p)) names.push_back(q->name());
  EXPECT_EQ(names, (std::vector<std::string>{"logit_bias", "penalties"}));
  EXPECT_TRUE(default_processors(plain(1.0f)).empty());
}

TEST(Sampling, CustomProcessorPlugsIntoTheChain) {
  // A mask that allows odd ids only (what a grammar would do), inserted before truncation.
  struct OddOnly : LogitProcessor {
    void apply(Candidates& c, const SamplingContext&) override {
      for (auto& x : c.items)
        if (x.id % 2 == 0) x.logit = -kInf;
      c.sorted = false;
    }
  };
  const std::vector<float> l = {9, 1, 8, 2, 7, 0.5f};
  SamplingParams p = plain(0.0f);
  Sampler g(p);
  g.add_processor(std::make_unique<OddOnly>());
  EXPECT_EQ(g.sample(l), 3);
  p = plain(1.0f);
  p.top_k = 2;  // after the mask: keeps ids 3 and 1
  Sampler s(p);
  s.add_processor(std::make_unique<OddOnly>());
  std::set<int32_t> seen;
  for (int i = 0; i < 500; ++i) seen.insert(s.sample(l));
  EXPECT_EQ(seen, (std::set<int32_t>{1, 3}));
}

TEST(Sampling, ProcessReturnsTheDistributionSampleDrawsFrom) {
  SamplingParams p = plain(0.8f);
  p.top_k = 3;
  Sampler s(p);
  const std::vector<float> l = {0, 3, 1, 2, -1};
  const Candidates& c = s.process(l);
  ASSERT_EQ(c.items.size(), 3u);
  double total = 0;
  for (const auto& x : c.items) total += x.p;
  EXPECT_NEAR(total, 1.0, 1e-6);
  Sampler g(plain(0.0f));
  const Candidates& one = g.process(l);
  for (const auto& x : one.items) EXPECT_EQ(x.p, x.id == 1 ? 1.0f : 0.0f);
}

TEST(Sampling, RngIsXoshiro256StarStarSeededBySplitmix64) {
  // Reference values from an independent transcription of the published algorithms.
  Rng r(0xC0FFEE);
  EXPECT_EQ(r.next(), 0x120e99a6dde4a550ull);
  EXPECT_EQ(r.next(), 0x8f989ef97733d4b4ull);
  EXPECT_EQ(r.next(), 0xf0a28eb2e4fd367bull);
  EXPECT_EQ(r.next(), 0x50c29bfe8734f5d2ull);
  EXPECT_EQ(r.uniform(), static_cast<double>(0xf763eb3e1cbe4e9bull >> 11) * 0x1.0p-53);
}

TEST(Sampling, SeededDeterminism) {
  const auto l = random_logits(300, 3, 2.0f);
  auto draw = [&](uint64_t seed) {
    SamplingParams p;  // the default chain, temperature 0.8
    p.seed = seed;
    p.top_k = 0;
    Sampler s(p);
    std::vector<int32_t> out;
    for (int i = 0; i < 200; ++i) {
      out.push_back(s.sample(l));
      s.accept(out.back());
    }
    return out;
  };
  EXPECT_EQ(draw(42), draw(42));
  EXPECT_NE(draw(42), draw(43));
  EXPECT_EQ(draw(SamplingParams{}.seed), draw(0xC0FFEE));  // the fixed default

  SamplingParams p = plain(1.0f);
  p.seed = 5;
  Sampler s(p);
  std::vector<int32_t> a, b;
  for (int i = 0; i < 50; ++i) a.push_back(s.sample(l));
  s.reset();
  for (int i = 0; i < 50; ++i) b.push_back(s.sample(l));
  EXPECT_EQ(a, b);
}

TEST(Sampling, FrequenciesMatchSoftmaxChiSquare) {
  const std::vector<float> l = {1.0f, 0.5f, 0.0f, -0.5f, 2.0f, 1.5f, -1.0f, 0.25f, 0.75f};  // 9 tokens: df 8
  SamplingParams p = plain(1.0f);
  p.seed = 1234;
  Sampler s(p);
  const int n = 200000;
  const double chi2 = chi2_of_draws(s, l, softmax(l), n);
  EXPECT_GT(chi2_sf_even_df(chi2, 8), kAlpha) << "chi2 = " << chi2;

  // Truncation and temperature: top-5 of softmax(l / 0.7), renormalised (df 4).
  SamplingParams q = plain(0.7f);
  q.top_k = 5;
  q.seed = 99;
  Sampler t(q);
  std::vector<double> want = softmax(l, 0.7);
  std::vector<size_t> order(l.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return l[a] > l[b]; });
  double kept = 0;
  for (size_t i = 0; i < order.size(); ++i) {
    if (i >= 5) want[order[i]] = 0;
    kept += want[order[i]];
  }
  for (double& w : want) w /= kept;
  const double chi2_t = chi2_of_draws(t, l, want, n);
  EXPECT_GT(chi2_sf_even_df(chi2_t, 4), kAlpha) << "chi2 = " << chi2_t;

  // The test has power: the untempered distribution is rejected.
  Sampler u(q);
  std::vector<double> wrong = softmax(l);
  double kw = 0;
  for (size_t i = 0; i < order.size(); ++i) {
    if (i >= 5) wrong[order[i]] = 0;
    kw += wrong[order[i]];
  }
  for (double& w : wrong) w /= kw;
  EXPECT_LT(chi2_sf_even_df(chi2_of_draws(u, l, wrong, n), 4), kAlpha);
}

TEST(Sampling, LogprobsAreLogSoftmaxOfRawLogits) {
  const std::vector<float> l = {1, 3, 3, -kInf, 0.5f};
  const auto want = softmax(l);
  EXPECT_NEAR(Sampler::logprob_of(l, 1), std::log(want[1]), 1e-6);
  EXPECT_EQ(Sampler::logprob_of(l, 3), -kInf);
  auto top = Sampler::top_logprobs(l, 3);
  ASSERT_EQ(top.size(), 3u);
  EXPECT_EQ(top[0].id, 1);
  EXPECT_EQ(top[1].id, 2);
  EXPECT_EQ(top[2].id, 0);
  EXPECT_NEAR(top[2].logprob, std::log(want[0]), 1e-6);
  EXPECT_TRUE(Sampler::top_logprobs(l, 0).empty());
  EXPECT_EQ(Sampler::top_logprobs(l, 20).size(), 5u);
  // Against a full sort on a larger vocabulary.
  const auto big = random_logits(3000, 11);
  const auto lp = Sampler::logprobs(big, 17, 20);
  std::vector<int32_t> order(big.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return big[a] > big[b]; });
  const auto pb = softmax(big);
  EXPECT_NEAR(lp.chosen, std::log(pb[17]), 1e-5);
  ASSERT_EQ(lp.top.size(), 20u);
  for (size_t i = 0; i < 20; ++i) {
    EXPECT_EQ(lp.top[i].id, order[i]);
    EXPECT_NEAR(lp.top[i].logprob, std::log(pb[order[i]]), 1e-5);
  }
}

TEST(Sampling, ValidateRejectsEachBadValue) {
  EXPECT_EQ(validate(SamplingParams{}), "");
  SamplingParams ok;
  ok.temperature = 0;
  ok.logit_bias[5] = -kInf;
  ok.repeat_last_n = -1;
  EXPECT_EQ(validate(ok), "");

  const float nan = std::numeric_limits<float>::quiet_NaN();
  struct Case {
    const char* name;
    void (*set)(SamplingParams&, float);
    std::vector<float> bad;
  };
  const std::vector<Case> cases = {
      {"temperature", [](SamplingParams& p, float v) { p.temperature = v; }, {-0.1f, nan, kInf}},
      {"top_p", [](SamplingParams& p, float v) { p.top_p = v; }, {0.0f, -0.5f, 1.01f, nan}},
      {"min_p", [](SamplingParams& p, float v) { p.min_p = v; }, {-0.01f, 1.5f, nan}},
      {"typical_p", [](SamplingParams& p, float v) { p.typical_p = v; }, {0.0f, 1.2f, nan}},
      {"repeat_penalty", [](SamplingParams& p, float v) { p.repeat_penalty = v; }, {0.0f, -1.0f, nan, kInf}},
      {"presence_penalty", [](SamplingParams& p, float v) { p.presence_penalty = v; }, {nan, kInf, 101.0f}},
      {"frequency_penalty", [](SamplingParams& p, float v) { p.frequency_penalty = v; }, {nan, -kInf}},
      {"logit_bias", [](SamplingParams& p, float v) { p.logit_bias[3] = v; }, {kInf, nan}},
      {"repeat_last_n", [](SamplingParams& p, float v) { p.repeat_last_n = static_cast<int>(v); }, {-2.0f}},
  };
  for (const auto& c : cases)
    for (float v : c.bad) {
      SamplingParams p;
      c.set(p, v);
      const std::string err = validate(p);
      EXPECT_NE(err.find(c.name), std::string::npos) << c.name << " = " << v << ": '" << err << "'";
    }
  SamplingParams neg;
  neg.logit_bias[-1] = 1.0f;
  EXPECT_NE(validate(neg).find("negative"), std::string::npos);
}
