// Token Recycling (Luo et al. 2024, "Turning Trash into Treasure"): the top-k candidates of
// every verified position are kept in an adjacency matrix (token -> its k likeliest
// successors, [n_vocab][k] int32: 1 MB for 32k tokens and k = 8), and the draft tree is grown
// breadth-first from the pending token through that matrix. Branches narrow with depth and
// with sibling rank, so the budget goes to the likeliest paths.
#include <algorithm>
#include <numeric>

#include "engine/spec.h"

namespace coppice {
namespace {

class RecycleDrafter final : public Drafter {
 public:
  RecycleDrafter(int64_t n_vocab, int k)
      : k_(std::max(1, k)), adj_(static_cast<size_t>(n_vocab) * k_, -1) {}
  const char* name() const override { return "recycle"; }

  void draft(const DraftRequest& req, DraftTree& out) override {
    struct Node { int idx; int32_t token; int rank; int depth; };
    std::vector<Node> frontier{{-1, req.context.back(), 0, 0}}, next;
    while (!frontier.empty() && out.size() < req.max_nodes) {
      next.clear();
      for (const Node& nd : frontier) {
        if (nd.depth >= req.max_depth) continue;
        const int width = std::max(1, k_ >> (nd.depth + nd.rank));
        const int32_t* row = adj_.data() + static_cast<size_t>(nd.token) * k_;
        for (int j = 0; j < width && row[j] >= 0; ++j) {
          if (out.size() >= req.max_nodes) return;
          next.push_back({out.add(row[j], nd.idx), row[j], j, nd.depth + 1});
        }
      }
      frontier.swap(next);
    }
  }

  void observe(std::span<const int32_t> tokens, std::span<const float> logits, int64_t n_vocab,
               int accepted) override {
    (void)accepted;
    idx_.resize(static_cast<size_t>(n_vocab));
    for (size_t i = 0; i < tokens.size(); ++i) {
      const float* row = logits.data() + i * n_vocab;
      std::iota(idx_.begin(), idx_.end(), 0);
      const int k = static_cast<int>(std::min<int64_t>(k_, n_vocab));
      std::partial_sort(idx_.begin(), idx_.begin() + k, idx_.end(), [&](int32_t a, int32_t b) {
        return row[a] > row[b] || (row[a] == row[b] && a < b);
      });
      std::copy(idx_.begin(), idx_.begin() + k, adj_.begin() + static_cast<size_t>(tokens[i]) * k_);
    }
  }

 private:
  int k_;
  std::vector<int32_t> adj_;  // [n_vocab][k] successors by decreasing logit, -1 = none yet
  std::vector<int32_t> idx_;  // [n_vocab] sort scratch
};

}  // namespace

std::unique_ptr<Drafter> make_recycle_drafter(int64_t n_vocab, int k) {
  return std::make_unique<RecycleDrafter>(n_vocab, k);
}

}  // namespace coppice
