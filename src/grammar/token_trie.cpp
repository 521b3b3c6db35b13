#include "grammar/token_trie.h"

#include <algorithm>
#include <map>

namespace coppice::grammar {

TokenTrie::TokenTrie(const std::vector<std::string>& pieces) : n_vocab_(pieces.size()) {
  std::vector<std::map<uint8_t, uint32_t>> kids(1);
  std::vector<std::vector<int32_t>> ends(1);
  for (size_t id = 0; id < pieces.size(); ++id) {
    if (pieces[id].empty()) continue;
    uint32_t n = 0;
    for (char c : pieces[id]) {
      auto [it, fresh] = kids[n].try_emplace(static_cast<uint8_t>(c), static_cast<uint32_t>(kids.size()));
      const uint32_t next = it->second;
      if (fresh) {
        kids.emplace_back();
        ends.emplace_back();
      }
      n = next;
    }
    ends[n].push_back(static_cast<int32_t>(id));
    max_depth_ = std::max(max_depth_, pieces[id].size());
  }
  nodes_.resize(kids.size());
  for (size_t n = 0; n < kids.size(); ++n) {
    nodes_[n].first_edge = static_cast<uint32_t>(edges_.size());
    nodes_[n].n_edges = static_cast<uint32_t>(kids[n].size());
    for (const auto& [b, c] : kids[n]) edges_.push_back({b, c});
    nodes_[n].first_tok = static_cast<uint32_t>(toks_.size());
    nodes_[n].n_toks = static_cast<uint32_t>(ends[n].size());
    toks_.insert(toks_.end(), ends[n].begin(), ends[n].end());
  }
}

void TokenTrie::walk(const Matcher& m, uint32_t node, const MatchState& st, size_t depth,
                     std::vector<uint8_t>& allowed, std::vector<MatchState>& scratch) const {
  const Node& nd = nodes_[node];
  for (uint32_t e = nd.first_edge; e < nd.first_edge + nd.n_edges; ++e) {
    MatchState& next = scratch[depth];
    if (!m.advance_byte(st, edges_[e].byte, next)) continue;
    const Node& child = nodes_[edges_[e].child];
    for (uint32_t t = child.first_tok; t < child.first_tok + child.n_toks; ++t) allowed[toks_[t]] = 1;
    if (child.n_edges) walk(m, edges_[e].child, next, depth + 1, allowed, scratch);
  }
}

void TokenTrie::mask(const Matcher& m, std::vector<uint8_t>& allowed) const {
  std::vector<MatchState> scratch;
  mask(m, allowed, scratch);
}

void TokenTrie::mask(const Matcher& m, std::vector<uint8_t>& allowed, std::vector<MatchState>& scratch) const {
  allowed.assign(n_vocab_, 0);
  // One state per depth, sized before the walk: references into it stay valid.
  if (scratch.size() < max_depth_ + 1) scratch.resize(max_depth_ + 1);
  walk(m, 0, m.state(), 0, allowed, scratch);
}

}  // namespace coppice::grammar
