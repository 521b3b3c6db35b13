// The search strategies behind SearchStrategy (see engine/search.h for what each does).
#include <algorithm>
#include <cctype>
#include <cmath>
#include <map>
#include <set>

#include "engine/search.h"
#include "util/error.h"

namespace coppice {
namespace {

bool by_score(const Branch& a, const Branch& b) {
  if (a.score != b.score) return a.score > b.score;
  const double ma = a.logprob_sum / std::max<size_t>(1, a.tokens.size());
  const double mb = b.logprob_sum / std::max<size_t>(1, b.tokens.size());
  if (ma != mb) return ma > mb;
  return a.id < b.id;
}

bool any_running(BranchSet& set, const std::vector<int>& ids) {
  for (int id : ids)
    if (!set.at(id).done) return true;
  return false;
}

// Forks `k` children of every running branch in `ids` (parents die: the children hold their
// blocks); finished branches are carried over as they are.
std::vector<int> expand_all(SearchContext& ctx, const std::vector<int>& ids, int k) {
  std::vector<int> out;
  for (int id : ids) {
    if (ctx.branches.at(id).done) {
      out.push_back(id);
      continue;
    }
    for (int j = 0; j < k; ++j) out.push_back(ctx.branches.fork(id, ctx.next_seed()));
    ctx.branches.kill(id);
  }
  return out;
}

// Advances the running branches of `ids` by one step and scores every branch that moved.
void step_and_score(SearchContext& ctx, const std::vector<int>& ids) {
  std::vector<int> running;
  for (int id : ids)
    if (!ctx.branches.at(id).done) running.push_back(id);
  ctx.branches.advance(running, ctx.opts.step, ctx.budget_left());
  for (int id : running) ctx.score(ctx.branches.at(id));
}

void collect(SearchContext& ctx, const std::vector<int>& ids) {
  for (int id : ids) ctx.finished.push_back(ctx.candidate(ctx.branches.at(id)));
}

// True when the round was not cut by the budget: every branch ended its step or is done.
bool complete_round(SearchContext& ctx, const std::vector<int>& ids) {
  for (int id : ids) {
    const Branch& b = ctx.branches.at(id);
    if (!b.done && b.step_text_begin != b.text.size()) return false;
  }
  return true;
}

// The set after a completed round: when the budget then cuts the next round mid-step, these
// (whose branches were replaced by their children) are still returned.
std::vector<SearchCandidate> snapshot(SearchContext& ctx, const std::vector<int>& ids) {
  std::vector<SearchCandidate> out;
  for (int id : ids) out.push_back(ctx.candidate(ctx.branches.at(id)));
  return out;
}
void collect_with(SearchContext& ctx, const std::vector<int>& ids, std::vector<SearchCandidate>& last_round) {
  collect(ctx, ids);
  for (SearchCandidate& c : last_round) ctx.finished.push_back(std::move(c));
}

// ---- best-of-n / self-consistency: n samples from one prefill (sample i: seed + i) ----
class BestOfN : public SearchStrategy {
 public:
  void run(SearchContext& ctx, int root) override {
    std::vector<int> ids;
    for (int i = 0; i < ctx.opts.n; ++i) ids.push_back(ctx.branches.fork(root, ctx.opts.sampling.seed + i));
    ctx.branches.kill(root);
    std::vector<int> running = ids;
    while (!running.empty() && ctx.budget_left() > 0) {
      ctx.branches.advance(running, ctx.opts.step, ctx.budget_left());
      std::vector<int> still;
      for (int id : running) {
        Branch& b = ctx.branches.at(id);
        if (b.done) ctx.score(b);  // scored once, when it ends
        else still.push_back(id);
      }
      running.swap(still);
      ctx.report(ids);
    }
    for (int id : running) ctx.score(ctx.branches.at(id));  // cut off by the budget
    collect(ctx, ids);
  }
};

// ---- beam / diverse-beam: step-level beams, `expand` sampled children each ----
class Beam : public SearchStrategy {
 public:
  explicit Beam(bool diverse) : diverse_(diverse) {}
  void run(SearchContext& ctx, int root) override {
    const SearchOptions& o = ctx.opts;
    n_ = o.n;
    const int groups = diverse_ ? o.groups : 1;
    // Group g holds o.n / groups beams (the first o.n % groups groups one more).
    std::vector<std::vector<int>> beams(groups);
    for (int g = 0; g < groups; ++g) beams[g].push_back(g == 0 ? root : ctx.branches.fork(root, ctx.next_seed()));
    auto all = [&] {
      std::vector<int> v;
      for (const auto& g : beams) v.insert(v.end(), g.begin(), g.end());
      return v;
    };
    std::vector<SearchCandidate> last_round;
    while (ctx.budget_left() > 0 && any_running(ctx.branches, all())) {
      std::vector<std::vector<int>> pools(groups);
      std::vector<int> moved;
      for (int g = 0; g < groups; ++g) {
        // The first expansion of a single root gives each group up to its width at once.
        const int k = beams[g].size() == 1 && ctx.branches.at(beams[g][0]).steps == 0
                          ? std::max(o.expand, width(g, groups))
                          : o.expand;
        pools[g] = expand_all(ctx, beams[g], k);
        moved.insert(moved.end(), pools[g].begin(), pools[g].end());
      }
      step_and_score(ctx, moved);
      std::map<std::string, int> chosen_steps;  // step text -> times chosen by earlier groups
      for (int g = 0; g < groups; ++g) {
        std::vector<std::pair<double, int>> ranked;
        for (int id : pools[g]) {
          const Branch& b = ctx.branches.at(id);
          const auto it = chosen_steps.find(b.last_step);
          const double pen = it == chosen_steps.end() ? 0.0 : o.diversity * it->second;
          ranked.push_back({b.score - pen, id});
        }
        std::stable_sort(ranked.begin(), ranked.end(), [&](const auto& a, const auto& b) {
          if (a.first != b.first) return a.first > b.first;
          return by_score(ctx.branches.at(a.second), ctx.branches.at(b.second));
        });
        beams[g].clear();
        for (size_t i = 0; i < ranked.size(); ++i) {
          if (static_cast<int>(i) < width(g, groups)) {
            beams[g].push_back(ranked[i].second);
            ++chosen_steps[ctx.branches.at(ranked[i].second).last_step];
          } else {
            ctx.branches.kill(ranked[i].second);
          }
        }
      }
      if (complete_round(ctx, all())) last_round = snapshot(ctx, all());
      ctx.report(all());
    }
    collect_with(ctx, all(), last_round);
  }

 private:
  int width_of(int n, int g, int groups) const { return n / groups + (g < n % groups ? 1 : 0); }
  int width(int g, int groups) const { return std::max(1, width_of(n_, g, groups)); }
  bool diverse_;
  int n_ = 1;
};

// ---- tree (ETS-style): keep a node set that trades score against KV cost and coverage ----
std::set<std::string> words(const std::string& s) {
  std::set<std::string> w;
  std::string cur;
  for (char c : s) {
    if (std::isalnum(static_cast<unsigned char>(c))) {
      cur += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    } else if (!cur.empty()) {
      w.insert(cur);
      cur.clear();
    }
  }
  if (!cur.empty()) w.insert(cur);
  return w;
}

// Two steps cover the same ground when their word sets overlap by Jaccard >= 1/2 (a cheap
// stand-in for ETS's embedding clusters).
bool similar(const std::set<std::string>& a, const std::set<std::string>& b) {
  if (a.empty() && b.empty()) return true;
  size_t inter = 0;
  for (const auto& w : a) inter += b.count(w);
  const size_t uni = a.size() + b.size() - inter;
  return 2 * inter >= uni;
}

class Tree : public SearchStrategy {
 public:
  void run(SearchContext& ctx, int root) override {
    const SearchOptions& o = ctx.opts;
    std::vector<int> frontier{root};
    std::vector<SearchCandidate> last_round;
    while (ctx.budget_left() > 0 && any_running(ctx.branches, frontier)) {
      // The root alone is expanded to the full width at once.
      const int k = frontier.size() == 1 && frontier[0] == root ? std::max(o.expand, o.n) : o.expand;
      std::vector<int> pool = expand_all(ctx, frontier, k);
      step_and_score(ctx, pool);
      frontier = select(ctx, pool);
      if (complete_round(ctx, frontier)) last_round = snapshot(ctx, frontier);
      ctx.report(frontier);
    }
    collect_with(ctx, frontier, last_round);
  }

 private:
  // Greedy version of ETS's objective: sum of normalized scores - kv_weight * (nodes whose
  // parent is not yet kept: their prefix blocks stay alive only for them) + coverage_weight *
  // (new clusters). A node is kept while its marginal gain is positive, at most n nodes.
  std::vector<int> select(SearchContext& ctx, std::vector<int> pool) {
    const SearchOptions& o = ctx.opts;
    std::stable_sort(pool.begin(), pool.end(),
                     [&](int a, int b) { return by_score(ctx.branches.at(a), ctx.branches.at(b)); });
    double lo = ctx.branches.at(pool.back()).score, hi = ctx.branches.at(pool.front()).score;
    const double span = hi - lo;
    std::vector<int> kept;
    std::set<int> parents;
    std::vector<std::set<std::string>> clusters;
    std::vector<bool> keep(pool.size(), false);
    for (size_t i = 0; i < pool.size() && static_cast<int>(kept.size()) < o.n; ++i) {
      const Branch& b = ctx.branches.at(pool[i]);
      const double r = span > 0 ? (b.score - lo) / span : 1.0;
      const auto w = words(b.last_step);
      bool new_cluster = true;
      for (const auto& c : clusters) new_cluster = new_cluster && !similar(c, w);
      const double gain = r - (parents.count(b.parent) ? 0.0 : o.kv_weight) + (new_cluster ? o.coverage_weight : 0.0);
      if (kept.empty() || gain > 0) {
        keep[i] = true;
        kept.push_back(pool[i]);
        parents.insert(b.parent);
        if (new_cluster) clusters.push_back(w);
      }
    }
    for (size_t i = 0; i < pool.size(); ++i)
      if (!keep[i]) ctx.branches.kill(pool[i]);
    return kept;
  }
};

// ---- particles: sequential Monte Carlo with ESS-triggered systematic resampling ----
class Particles : public SearchStrategy {
 public:
  void run(SearchContext& ctx, int root) override {
    const SearchOptions& o = ctx.opts;
    std::vector<int> ps;
    for (int i = 0; i < o.n; ++i) ps.push_back(ctx.branches.fork(root, o.sampling.seed + i));
    ctx.branches.kill(root);
    std::map<int, double> logw, prev;  // by branch id: log weight, score at the last step
    for (int id : ps) logw[id] = prev[id] = 0;
    Rng rng(o.sampling.seed ^ 0x5EEDF00DULL);
    std::vector<SearchCandidate> last_round;
    while (ctx.budget_left() > 0 && any_running(ctx.branches, ps)) {
      step_and_score(ctx, ps);
      // Incremental weights telescope: log w = (score now - score at the last resample) / T.
      for (int id : ps) {
        const double s = ctx.branches.at(id).score;
        logw[id] += (s - prev[id]) / o.temperature;
        prev[id] = s;
      }
      double mx = -INFINITY;
      for (int id : ps) mx = std::max(mx, logw[id]);
      std::vector<double> w;
      double sum = 0, sq = 0;
      for (int id : ps) {
        w.push_back(std::exp(logw[id] - mx));
        sum += w.back();
        sq += w.back() * w.back();
      }
      const double ess = sum * sum / sq;
      if (complete_round(ctx, ps)) last_round = snapshot(ctx, ps);
      if (ess < o.ess_threshold * static_cast<double>(ps.size())) ps = resample(ctx, ps, w, sum, rng, logw, prev);
      ctx.report(ps);
    }
    collect_with(ctx, ps, last_round);
  }

 private:
  // Systematic resampling (one uniform draw, n evenly spaced pointers): a particle drawn c
  // times lives on as itself plus c - 1 forks sharing its KV; undrawn particles die.
  static std::vector<int> resample(SearchContext& ctx, const std::vector<int>& ps, const std::vector<double>& w,
                                   double sum, Rng& rng, std::map<int, double>& logw, std::map<int, double>& prev) {
    const size_t n = ps.size();
    std::vector<int> count(n, 0);
    const double u0 = rng.uniform() / static_cast<double>(n);
    double cum = 0;
    size_t j = 0;
    for (size_t i = 0; i < n; ++i) {
      const double u = u0 + static_cast<double>(i) / static_cast<double>(n);
      while (j + 1 < n && cum + w[j] / sum <= u) cum += w[j++] / sum;
      ++count[j];
    }
    std::vector<int> out;
    for (size_t i = 0; i < n; ++i) {
      if (count[i] == 0) {
        ctx.branches.kill(ps[i]);
        continue;
      }
      out.push_back(ps[i]);
      for (int c = 1; c < count[i]; ++c) {
        const int f = ctx.branches.fork(ps[i], ctx.next_seed());
        out.push_back(f);
        prev[f] = prev[ps[i]];
      }
    }
    for (int id : out) logw[id] = 0;
    return out;
  }
};

}  // namespace

std::unique_ptr<SearchStrategy> make_strategy(SearchKind k) {
  switch (k) {
    case SearchKind::BestOfN:
    case SearchKind::SelfConsistency:
      return std::make_unique<BestOfN>();
    case SearchKind::Beam:
    case SearchKind::DiverseBeam:
      return std::make_unique<Beam>(k == SearchKind::DiverseBeam);
    case SearchKind::Tree:
      return std::make_unique<Tree>();
    case SearchKind::Particles:
      return std::make_unique<Particles>();
  }
  fail("search", "unknown strategy");
}

}  // namespace coppice
