#include "engine/sampling.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <string_view>
#include <unordered_map>

#include "util/error.h"

namespace coppice {

namespace {
std::string num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%g", v);
  return buf;
}
std::string bad(const char* name, double v, const char* range) {
  return std::string(name) + " = " + num(v) + " is out of range " + range;
}
}  // namespace

std::string validate(const SamplingParams& p) {
  if (std::isnan(p.temperature) || p.temperature < 0 || std::isinf(p.temperature))
    return bad("temperature", p.temperature, "[0, inf) (0 = greedy)");
  if (!(p.top_p > 0 && p.top_p <= 1)) return bad("top_p", p.top_p, "(0, 1] (1 = off)");
  if (!(p.min_p >= 0 && p.min_p <= 1)) return bad("min_p", p.min_p, "[0, 1] (0 = off)");
  if (!(p.typical_p > 0 && p.typical_p <= 1)) return bad("typical_p", p.typical_p, "(0, 1] (1 = off)");
  if (!(p.repeat_penalty > 0) || std::isinf(p.repeat_penalty))
    return bad("repeat_penalty", p.repeat_penalty, "(0, inf) (1 = off)");
  if (p.repeat_last_n < -1) return bad("repeat_last_n", p.repeat_last_n, "[-1, inf) (-1 = all)");
  if (!(std::fabs(p.presence_penalty) <= 100))
    return bad("presence_penalty", p.presence_penalty, "[-100, 100]");
  if (!(std::fabs(p.frequency_penalty) <= 100))
    return bad("frequency_penalty", p.frequency_penalty, "[-100, 100]");
  for (const auto& [id, b] : p.logit_bias) {
    if (id < 0) return "logit_bias: token id " + std::to_string(id) + " is negative";
    if (std::isnan(b) || b == INFINITY)
      return "logit_bias for token " + std::to_string(id) + " = " + num(b) + " must be a number or -inf";
  }
  return "";
}

// ---- candidates ----
namespace {
bool before(const Candidate& a, const Candidate& b) {
  return a.logit > b.logit || (a.logit == b.logit && a.id < b.id);
}
}  // namespace

void Candidates::assign(std::span<const float> logits) {
  items.resize(logits.size());
  for (size_t i = 0; i < logits.size(); ++i) items[i] = {static_cast<int32_t>(i), logits[i], 0.0f};
  sorted = false;
}

void Candidates::sort_desc() {
  if (sorted) return;
  std::sort(items.begin(), items.end(), before);
  sorted = true;
}

void Candidates::softmax() {
  float mx = -INFINITY;
  for (const auto& c : items) mx = std::max(mx, c.logit);
  double sum = 0;
  for (auto& c : items) {
    c.p = std::exp(c.logit - mx);
    sum += c.p;
  }
  for (auto& c : items) c.p = static_cast<float>(c.p / sum);
}

Candidate* Candidates::find(int32_t id) {
  if (id >= 0 && static_cast<size_t>(id) < items.size() && items[id].id == id) return &items[id];
  for (auto& x : items)
    if (x.id == id) return &x;
  return nullptr;
}

namespace {

void keep_prefix(Candidates& c, size_t n) { c.items.resize(std::max<size_t>(1, std::min(n, c.items.size()))); }

struct Bias : LogitProcessor {
  std::map<int32_t, float> bias;
  const char* name() const override { return "logit_bias"; }
  void apply(Candidates& c, const SamplingContext&) override {
    for (const auto& [id, b] : bias)
      if (Candidate* x = c.find(id)) {
        x->logit += b;
        c.sorted = false;
      }
  }
};

struct Penalties : LogitProcessor {
  float repeat, presence, frequency;
  int last_n;
  std::unordered_map<int32_t, int> counts;  // reused between calls
  const char* name() const override { return "penalties"; }
  void apply(Candidates& c, const SamplingContext& ctx) override {
    counts.clear();
    const size_t n = ctx.history.size();
    const size_t from = last_n < 0 || static_cast<size_t>(last_n) >= n ? 0 : n - static_cast<size_t>(last_n);
    for (size_t i = from; i < n; ++i) ++counts[ctx.history[i]];
    for (const auto& [id, cnt] : counts) {
      Candidate* x = c.find(id);
      if (!x) continue;
      if (repeat != 1.0f) x->logit = x->logit > 0 ? x->logit / repeat : x->logit * repeat;
      x->logit -= static_cast<float>(cnt) * frequency + presence;
      c.sorted = false;
    }
  }
};

struct TopK : LogitProcessor {
  int k;
  const char* name() const override { return "top_k"; }
  void apply(Candidates& c, const SamplingContext&) override {
    if (k <= 0 || static_cast<size_t>(k) >= c.items.size()) return;
    if (!c.sorted)  // O(n log k): never sorts the whole vocabulary
      std::partial_sort(c.items.begin(), c.items.begin() + k, c.items.end(), before);
    c.items.resize(static_cast<size_t>(k));
    c.sorted = true;
  }
};

// Keeps the tokens whose surprisal -log p is closest to the entropy H, in that order, until
// their mass reaches p (the paper's rule; llama.cpp's typical_p does the same).
struct Typical : LogitProcessor {
  float p;
  std::vector<std::pair<double, size_t>> order;  // (|-log p_i - H|, i), reused
  const char* name() const override { return "typical_p"; }
  void apply(Candidates& c, const SamplingContext&) override {
    if (p >= 1.0f) return;
    c.softmax();
    double ent = 0;
    for (const auto& x : c.items)
      if (x.p > 0) ent -= x.p * std::log(static_cast<double>(x.p));
    order.clear();
    for (size_t i = 0; i < c.items.size(); ++i) {
      const double q = c.items[i].p;
      order.push_back({q > 0 ? std::fabs(-std::log(q) - ent) : INFINITY, i});
    }
    std::stable_sort(order.begin(), order.end(),
                     [](const auto& a, const auto& b) { return a.first < b.first; });
    double cum = 0;
    size_t keep = order.size();
    for (size_t i = 0; i < order.size(); ++i) {
      cum += c.items[order[i].second].p;
      if (cum >= p) {
        keep = i + 1;
        break;
      }
    }
    std::vector<Candidate> out;
    out.reserve(keep);
    for (size_t i = 0; i < keep; ++i) out.push_back(c.items[order[i].second]);
    c.items = std::move(out);
    c.sorted = false;
  }
};

// Keeps the smallest prefix (by probability) whose mass reaches p. Sorts only as far as it
// needs: a growing partial sort, since the nucleus is usually a few dozen tokens.
struct TopP : LogitProcessor {
  float p;
  const char* name() const override { return "top_p"; }
  void apply(Candidates& c, const SamplingContext&) override {
    if (p >= 1.0f) return;
    c.softmax();
    const size_t n = c.items.size();
    size_t done = 0, m = c.sorted ? n : std::min<size_t>(n, 64);
    double cum = 0;
    for (;;) {
      if (!c.sorted)
        std::partial_sort(c.items.begin() + static_cast<std::ptrdiff_t>(done),
                          c.items.begin() + static_cast<std::ptrdiff_t>(m), c.items.end(), before);
      for (size_t i = done; i < m; ++i) {
        cum += c.items[i].p;
        if (cum >= p) {
          keep_prefix(c, i + 1);
          c.sorted = true;
          return;
        }
      }
      if (m == n) break;  // rounding left the total mass just below p: keep everything
      done = m;
      m = std::min(n, m * 8);
    }
    c.sorted = true;
  }
};

// p_i >= p * p_max  <=>  logit_i >= logit_max + log p: no softmax needed.
struct MinP : LogitProcessor {
  float p;
  const char* name() const override { return "min_p"; }
  void apply(Candidates& c, const SamplingContext&) override {
    if (p <= 0.0f) return;
    float mx = -INFINITY;
    for (const auto& x : c.items) mx = std::max(mx, x.logit);
    const float thresh = mx + std::log(p);
    // remove_if is stable, so a sorted list stays sorted.
    auto end = std::remove_if(c.items.begin(), c.items.end(),
                              [&](const Candidate& x) { return !(x.logit >= thresh); });
    keep_prefix(c, static_cast<size_t>(end - c.items.begin()));
  }
};

// Shifts by the max before dividing so a tiny temperature gives -inf, never inf - inf = NaN.
struct Temperature : LogitProcessor {
  float t;
  const char* name() const override { return "temperature"; }
  void apply(Candidates& c, const SamplingContext&) override {
    if (t == 1.0f) return;
    float mx = -INFINITY;
    for (const auto& x : c.items) mx = std::max(mx, x.logit);
    if (mx == -INFINITY) return;
    for (auto& x : c.items) x.logit = x.logit == mx ? 0.0f : (x.logit - mx) / t;
  }
};

int32_t argmax(std::span<const float> v) {
  size_t best = 0;
  for (size_t i = 1; i < v.size(); ++i)
    if (v[i] > v[best]) best = i;  // strict: ties go to the lowest id
  return static_cast<int32_t>(best);
}

size_t best_index(const Candidates& c) {
  size_t best = 0;
  for (size_t i = 1; i < c.items.size(); ++i)
    if (before(c.items[i], c.items[best])) best = i;
  return best;
}

}  // namespace

std::unique_ptr<LogitProcessor> make_logit_bias(std::map<int32_t, float> bias) {
  auto b = std::make_unique<Bias>();
  b->bias = std::move(bias);
  return b;
}
std::unique_ptr<LogitProcessor> make_penalties(float repeat, int last_n, float presence, float frequency) {
  auto x = std::make_unique<Penalties>();
  x->repeat = repeat;
  x->last_n = last_n;
  x->presence = presence;
  x->frequency = frequency;
  return x;
}
std::unique_ptr<LogitProcessor> make_top_k(int k) {
  auto x = std::make_unique<TopK>();
  x->k = k;
  return x;
}
std::unique_ptr<LogitProcessor> make_typical(float p) {
  auto x = std::make_unique<Typical>();
  x->p = p;
  return x;
}
std::unique_ptr<LogitProcessor> make_top_p(float p) {
  auto x = std::make_unique<TopP>();
  x->p = p;
  return x;
}
std::unique_ptr<LogitProcessor> make_min_p(float p) {
  auto x = std::make_unique<MinP>();
  x->p = p;
  return x;
}
std::unique_ptr<LogitProcessor> make_temperature(float t) {
  auto x = std::make_unique<Temperature>();
  x->t = t;
  return x;
}

std::vector<std::unique_ptr<LogitProcessor>> default_processors(const SamplingParams& p) {
  std::vector<std::unique_ptr<LogitProcessor>> v;
  if (!p.logit_bias.empty()) v.push_back(make_logit_bias(p.logit_bias));
  if (p.repeat_last_n != 0 &&
      (p.repeat_penalty != 1.0f || p.presence_penalty != 0.0f || p.frequency_penalty != 0.0f))
    v.push_back(make_penalties(p.repeat_penalty, p.repeat_last_n, p.presence_penalty, p.frequency_penalty));
  if (p.temperature <= 0) return v;
  if (p.top_k > 0) v.push_back(make_top_k(p.top_k));
  if (p.typical_p < 1.0f) v.push_back(make_typical(p.typical_p));
  if (p.top_p < 1.0f) v.push_back(make_top_p(p.top_p));
  if (p.min_p > 0.0f) v.push_back(make_min_p(p.min_p));
  if (p.temperature != 1.0f) v.push_back(make_temperature(p.temperature));
  return v;
}

// ---- rng ----
namespace {
uint64_t splitmix64(uint64_t& x) {
  uint64_t z = (x += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
}  // namespace

Rng::Rng(uint64_t seed) {
  for (auto& s : s_) s = splitmix64(seed);
}

uint64_t Rng::next() {
  const uint64_t r = rotl(s_[1] * 5, 7) * 9;
  const uint64_t t = s_[1] << 17;
  s_[2] ^= s_[0];
  s_[3] ^= s_[1];
  s_[1] ^= s_[2];
  s_[0] ^= s_[3];
  s_[2] ^= t;
  s_[3] = rotl(s_[3], 45);
  return r;
}

double Rng::uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }

// ---- sampler ----
namespace {
uint64_t effective_seed(uint64_t s) {
  if (s != SamplingParams::kRandomSeed) return s;
  return static_cast<uint64_t>(std::chrono::high_resolution_clock::now().time_since_epoch().count());
}
}  // namespace

Sampler::Sampler(SamplingParams p)
    : p_(std::move(p)), rng_(effective_seed(p_.seed)), procs_(default_processors(p_)) {}

void Sampler::add_processor(std::unique_ptr<LogitProcessor> p, bool front) {
  size_t pos = procs_.size();
  if (front) {
    pos = 0;
    while (pos < procs_.size() && (std::string_view(procs_[pos]->name()) == "logit_bias" ||
                                   std::string_view(procs_[pos]->name()) == "penalties"))
      ++pos;
  }
  procs_.insert(procs_.begin() + static_cast<std::ptrdiff_t>(pos), std::move(p));
}

void Sampler::set_constraint(std::unique_ptr<LogitProcessor> c, bool adaptive) {
  constraint_ = std::move(c);
  adaptive_ = adaptive;
}

// constraint_first: the fallback order (bias, penalties, constraint, truncation...), used when
// the constraint masked every token that truncation had kept.
void Sampler::run_chain(std::span<const float> logits, bool constraint_first) {
  cand_.assign(logits);
  const SamplingContext ctx{history_};
  bool done = !constraint_first;
  for (auto& proc : procs_) {
    const std::string_view n = proc->name();
    if (!done && n != "logit_bias" && n != "penalties") {
      constraint_->apply(cand_, ctx);
      done = true;
    }
    proc->apply(cand_, ctx);
  }
  if (!done) constraint_->apply(cand_, ctx);
  float mx = -INFINITY;
  for (const auto& c : cand_.items) mx = std::max(mx, c.logit);
  if (!(mx > -INFINITY))
    fail("sampling", "no token left to sample: all " + std::to_string(cand_.items.size()) +
                         " candidates have logit -inf or NaN (" +
                         (constraint_first ? "the grammar allows none of them" : "every token banned?") + ")");
}

void Sampler::apply_constraint(std::span<const float> logits) {
  constraint_->apply(cand_, SamplingContext{history_});
  for (const auto& c : cand_.items)
    if (c.logit > -INFINITY) return;
  run_chain(logits, true);
}

int32_t Sampler::draw() {
  if (greedy()) return cand_.items[best_index(cand_)].id;
  cand_.softmax();
  // Inverse CDF in a fixed order with our own uniform: the same seed and logits give the same
  // token on every platform (up to libm's exp rounding).
  double total = 0;
  for (const auto& c : cand_.items) total += c.p;
  const double r = rng_.uniform() * total;
  double cum = 0;
  for (const auto& c : cand_.items) {
    cum += c.p;
    if (r < cum) return c.id;
  }
  for (size_t i = cand_.items.size(); i-- > 0;)  // rounding left r at the total
    if (cand_.items[i].p > 0) return cand_.items[i].id;
  return cand_.items.back().id;
}

const Candidates& Sampler::process(std::span<const float> logits) {
  run_chain(logits);
  if (constraint_) apply_constraint(logits);
  if (greedy()) {
    const size_t best = best_index(cand_);
    for (auto& c : cand_.items) c.p = 0.0f;
    cand_.items[best].p = 1.0f;
  } else {
    cand_.softmax();
  }
  return cand_;
}

int32_t Sampler::sample(std::span<const float> logits) {
  CP_ASSERT(!logits.empty());
  if (greedy() && procs_.empty() && !constraint_) return argmax(logits);  // the hot path: no candidate list
  run_chain(logits);
  if (!constraint_) return draw();
  if (adaptive_) {  // rejection fast path (see set_constraint)
    const int32_t id = draw();
    if (constraint_->allows(id)) return id;
  }
  apply_constraint(logits);
  return draw();
}

void Sampler::accept(int32_t token) {
  history_.push_back(token);
  if (constraint_) constraint_->accept(token);
}

void Sampler::accept_prompt(int32_t token) { history_.push_back(token); }

void Sampler::reset() {
  history_.clear();
  rng_ = Rng(effective_seed(p_.seed));
  if (constraint_) constraint_->reset();
}

Logprobs Sampler::logprobs(std::span<const float> logits, int32_t chosen, int n_top) {
  CP_ASSERT(chosen >= 0 && static_cast<size_t>(chosen) < logits.size());
  float mx = -INFINITY;
  for (float v : logits) mx = std::max(mx, v);
  double sum = 0;
  for (float v : logits) sum += std::exp(static_cast<double>(v) - mx);
  const double lse = mx + std::log(sum);
  Logprobs out;
  out.chosen = static_cast<float>(logits[chosen] - lse);
  const size_t n = std::min<size_t>(static_cast<size_t>(std::max(n_top, 0)), logits.size());
  if (n == 0) return out;
  // A size-n heap whose front is the worst kept entry: O(V log n), no V-sized allocation.
  auto worse = [&](int32_t a, int32_t b) {  // a ranks after b
    return logits[a] < logits[b] || (logits[a] == logits[b] && a > b);
  };
  auto heap_cmp = [&](int32_t a, int32_t b) { return worse(b, a); };
  std::vector<int32_t> heap;
  heap.reserve(n);
  for (size_t i = 0; i < logits.size(); ++i) {
    const auto id = static_cast<int32_t>(i);
    if (heap.size() < n) {
      heap.push_back(id);
      std::push_heap(heap.begin(), heap.end(), heap_cmp);
    } else if (worse(heap.front(), id)) {
      std::pop_heap(heap.begin(), heap.end(), heap_cmp);
      heap.back() = id;
      std::push_heap(heap.begin(), heap.end(), heap_cmp);
    }
  }
  std::sort(heap.begin(), heap.end(), [&](int32_t a, int32_t b) { return worse(b, a); });
  for (int32_t id : heap) out.top.push_back({id, static_cast<float>(logits[id] - lse)});
  return out;
}

float Sampler::logprob_of(std::span<const float> logits, int32_t id) { return logprobs(logits, id, 0).chosen; }

std::vector<TokenLogprob> Sampler::top_logprobs(std::span<const float> logits, int n) {
  if (logits.empty()) return {};
  return logprobs(logits, 0, n).top;
}

}  // namespace coppice
