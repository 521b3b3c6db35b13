// Speculative decoding: drafters propose a tree of candidate continuations, one batched
// Model::step verifies the whole tree (tree attention: each node sees its ancestors only), the
// longest verified path is kept. Lossless: every emitted token is drawn from the target
// model's distribution (greedy: token-for-token identical to plain decoding).
#pragma once
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "engine/sampling.h"
#include "model/model.h"

namespace coppice {

// Drafted nodes in breadth-first order (a parent before its children). The tree's root is
// the pending token (sampled, not yet evaluated); it is not stored here.
struct DraftTree {
  std::vector<int32_t> tokens;  // [n]
  std::vector<int32_t> parent;  // [n] parent node index, -1: child of the root
  // Optional draft distributions: q[i] ([n_vocab]) is the distribution node i's token was
  // drawn from. Empty: the drafter is deterministic (point mass on each proposed token).
  std::vector<std::vector<float>> q;

  void clear() { tokens.clear(), parent.clear(), q.clear(); }
  int size() const { return static_cast<int>(tokens.size()); }
  int add(int32_t token, int32_t par) {
    tokens.push_back(token);
    parent.push_back(par);
    return size() - 1;
  }
  int child(int32_t par, int32_t token) const;  // index of par's child with that token, or -1
  int depth() const;                            // longest root-to-leaf path in nodes
};

struct DraftRequest {
  std::span<const int32_t> context;  // every token of the sequence, the pending root last
  int max_nodes = 8;                 // tree size budget (adaptive)
  int max_depth = 8;
  // The target's sampling settings: a drafter with a distribution samples its drafts with
  // them (filling DraftTree::q); null or greedy: draft the argmax.
  const SamplingParams* sampling = nullptr;
};

class Drafter {
 public:
  virtual ~Drafter() = default;
  virtual const char* name() const = 0;
  virtual void draft(const DraftRequest& req, DraftTree& out) = 0;
  // After verification: the step's tokens (root first, then the tree) and the target model's
  // logits for each ([n][n_vocab]); `accepted` is how many of them (the path) were kept.
  virtual void observe(std::span<const int32_t> tokens, std::span<const float> logits,
                       int64_t n_vocab, int accepted) {
    (void)tokens, (void)logits, (void)n_vocab, (void)accepted;
  }
};

// `--spec` values: "ngram[:N]", "recycle[:K]", "layerskip[:EXIT]", "draft:PATH", "none".
struct SpecConfig {
  enum class Kind { None, Ngram, Recycle, LayerSkip, DraftModel } kind = Kind::None;
  int ngram_n = 3;          // longest n-gram matched (down to 1)
  int recycle_k = 8;        // successors kept per token (adjacency matrix width)
  int exit_layer = 0;       // layerskip: 0 = chosen adaptively
  std::string draft_path;   // draft model GGUF
  int max_nodes = 16;       // upper bound of the adaptive tree size
  bool adaptive = true;     // adaptive size and fallback to plain decoding
};
// Throws coppice::Error naming the bad value.
SpecConfig parse_spec(const std::string& text);
std::string spec_name(const SpecConfig& c);

// Drafter factories (engine/spec_*.cpp). layerskip and draft models run on `model`'s thread
// pool; layerskip drafts on the main sequence's cache past its end and truncates afterwards.
std::unique_ptr<Drafter> make_ngram_drafter(int max_n);
std::unique_ptr<Drafter> make_recycle_drafter(int64_t n_vocab, int k);
std::unique_ptr<Drafter> make_layerskip_drafter(Model& model, KvCache& cache, SeqId seq, int exit_layer);
std::unique_ptr<Drafter> make_draft_model_drafter(const std::string& path, const Model& target,
                                                  int n_threads, int64_t n_ctx);
std::unique_ptr<Drafter> make_drafter(const SpecConfig& c, Model& model, KvCache& cache, SeqId seq,
                                      int n_threads, int64_t n_ctx);

}  // namespace coppice
