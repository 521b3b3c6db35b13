// Prompt lookup / n-gram drafting: the longest suffix of the context (n = max_n down to 1)
// that occurred before proposes what followed it. Several earlier occurrences with different
// continuations become branches of one tree (most recent occurrence first).
#include <algorithm>

#include "engine/spec.h"

namespace coppice {
namespace {

class NgramDrafter final : public Drafter {
 public:
  explicit NgramDrafter(int max_n) : max_n_(std::max(1, max_n)) {}
  const char* name() const override { return "ngram"; }

  void draft(const DraftRequest& req, DraftTree& out) override {
    constexpr int kMaxBranches = 4;
    const std::span<const int32_t> ctx = req.context;
    const int N = static_cast<int>(ctx.size());
    for (int n = std::min(max_n_, N - 1); n >= 1; --n) {
      const std::span<const int32_t> pat = ctx.subspan(static_cast<size_t>(N - n));
      int matches = 0;
      for (int i = N - n - 1; i >= 0 && matches < kMaxBranches; --i) {
        if (!std::equal(pat.begin(), pat.end(), ctx.begin() + i)) continue;
        ++matches;
        // Insert ctx[i + n, ...) as a path from the root, sharing existing prefixes.
        int par = -1;
        const int end = std::min(N, i + n + req.max_depth);
        for (int j = i + n; j < end; ++j) {
          int c = out.child(par, ctx[j]);
          if (c < 0) {
            if (out.size() >= req.max_nodes) return;
            c = out.add(ctx[j], par);
          }
          par = c;
        }
      }
      if (matches > 0) return;
    }
  }

 private:
  int max_n_;
};

}  // namespace

std::unique_ptr<Drafter> make_ngram_drafter(int max_n) { return std::make_unique<NgramDrafter>(max_n); }

}  // namespace coppice
