// A draft model loaded once and shared by many sequences (serve --spec draft:PATH): one
// paged KV pool in which every target sequence that drafts keeps its own draft sequence.
// Draft KV is only a cache of the context's prefix: when the pool is short, the least
// recently used other sequences' draft KV is dropped and recomputed by them later, so
// sequences never share cells. Not thread-safe: one thread (the engine's) drafts at a time.
#pragma once
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "engine/spec.h"
#include "model/model.h"

namespace coppice {

class DraftModelHost {
 public:
  // Loads the GGUF and checks that its vocabulary is the target's (size and every token's
  // text); throws coppice::Error naming the file and the first difference. The pool holds
  // `n_seqs` contexts of n_ctx cells plus a draft's depth.
  DraftModelHost(const std::string& path, const Model& target, int n_threads, int64_t n_ctx, int n_seqs);

  const std::string& path() const { return path_; }
  const std::string& file_name() const { return file_name_; }
  // Whether `name` (a per-request "draft:NAME") names this model: the path as given at load,
  // its canonical form or its file name. Compares strings only, never opens `name`.
  bool names(const std::string& name) const;
  int64_t kv_blocks_used() const { return blocks_used_.load(); }  // any thread
  int live_sequences() const { return static_cast<int>(slots_.size()); }

  // Per draft sequence (ids from new_sequence): its KV and the tokens it holds.
  SeqId new_sequence() { return next_id_++; }
  void release(SeqId id);
  // Evaluates ctx (keeping the common prefix with what the sequence holds) and drafts a
  // chain of up to `depth` tokens into `out` (argmax, or sampled with q when `sampler`).
  void draft(SeqId id, std::span<const int32_t> ctx, int depth, Sampler* sampler, DraftTree& out);

 private:
  struct Slot {
    std::vector<int32_t> have;  // tokens whose K/V the draft sequence holds, in order
    uint64_t last_use = 0;
  };
  bool make_room(SeqId id, int n_new);  // drops other sequences' draft KV, LRU first
  void update_usage() { blocks_used_.store(cache_->blocks_used()); }

  std::string path_, canonical_, file_name_;
  std::unique_ptr<Model> model_;
  std::unique_ptr<KvCache> cache_;
  std::unordered_map<SeqId, Slot> slots_;
  SeqId next_id_ = 0;
  uint64_t clock_ = 0;
  std::atomic<int64_t> blocks_used_{0};
  std::vector<BatchToken> batch_;
  std::vector<float> logits_;  // [n][n_vocab]
  std::vector<float> q_;       // [n_vocab]
};

// A Drafter bound to one draft sequence of a shared host; releases its KV when destroyed.
std::unique_ptr<Drafter> make_draft_model_drafter(std::shared_ptr<DraftModelHost> host);

}  // namespace coppice
