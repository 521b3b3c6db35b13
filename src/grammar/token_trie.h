// The vocabulary as a byte trie, so a token mask walks shared prefixes once: the grammar
// state is advanced per trie edge and a dead state prunes every token below it.
#pragma once
#include <string>
#include <vector>

#include "grammar/matcher.h"

namespace coppice::grammar {

class TokenTrie {
 public:
  // pieces[id]: the token's bytes; "" marks a token the grammar never allows (control tokens).
  explicit TokenTrie(const std::vector<std::string>& pieces);
  // allowed[id] = 1 where m's state accepts the whole token (other entries set to 0).
  void mask(const Matcher& m, std::vector<uint8_t>& allowed) const;
  // Same, with the caller's per-depth scratch states kept between calls (grow-only), so a
  // constraint that builds masks step after step does not allocate once warm.
  void mask(const Matcher& m, std::vector<uint8_t>& allowed, std::vector<MatchState>& scratch) const;
  size_t n_vocab() const { return n_vocab_; }
  size_t n_nodes() const { return nodes_.size(); }

 private:
  struct Node {
    uint32_t first_edge = 0, n_edges = 0;  // into edges_
    uint32_t first_tok = 0, n_toks = 0;    // into toks_: tokens ending here
  };
  struct Edge {
    uint8_t byte;
    uint32_t child;
  };
  void walk(const Matcher& m, uint32_t node, const MatchState& st, size_t depth,
            std::vector<uint8_t>& allowed, std::vector<MatchState>& scratch) const;
  size_t n_vocab_ = 0;
  size_t max_depth_ = 0;  // longest token, in bytes
  std::vector<Node> nodes_;   // [n_nodes], node 0 is the root
  std::vector<Edge> edges_;   // [n_nodes - 1], grouped by parent, sorted by byte
  std::vector<int32_t> toks_;
};

}  // namespace coppice::grammar
